"""Each device's identity and the host devices, read from domain XML: the recorded lab guest's, with one device
of each kind put in, written the way libvirt (and Nova, for OpenStack's NICs) writes it."""

from __future__ import annotations

import pytest

from kvm_telegraf.device_xml import DiskIdentity, HostDevice, NicIdentity
from kvm_telegraf.domain_xml import parse_domain_xml
from tests.conftest import load_snapshots
from tests.harness.nova import NOVA_OVS_NIC


@pytest.fixture(scope="module")
def running_xml() -> str:
    config = load_snapshots("lab-running.json")[0].domains[0].config
    assert config is not None
    return config.xml


def with_device(xml: str, device: str) -> str:
    """The guest's XML with one more device, after its others."""
    return xml.replace("</devices>", device + "\n  </devices>", 1)


def test_the_lab_guests_raw_file_disks_are_read_with_their_image_bus_and_format(running_xml):
    (vda, vdb) = parse_domain_xml(running_xml).disk_identities
    assert vda == DiskIdentity(
        "vda", "/var/cache/kvm-telegraf-lab/guests/ktlab-01/vda.img", "virtio", "raw", None, "disk"
    )
    assert vdb.target == "vdb" and vdb.source.endswith("/vdb.img")


@pytest.mark.parametrize(
    ("disk", "expected"),
    [
        (  # an LVM volume on a SCSI bus, with a serial
            "<disk type='block' device='disk'><driver name='qemu' type='raw' cache='none'/>"
            "<source dev='/dev/vg0/web01'/><target dev='sda' bus='scsi'/><serial>WD-0001</serial></disk>",
            DiskIdentity("sda", "/dev/vg0/web01", "scsi", "raw", "WD-0001", "disk"),
        ),
        (  # Nova's Ceph volume: the pool and image name, however many monitors
            "<disk type='network' device='disk'><driver name='qemu' type='raw' cache='writeback'/>"
            "<source protocol='rbd' name='volumes/volume-6f1e0c3c'><host name='10.0.0.1' port='6789'/>"
            "<host name='10.0.0.2' port='6789'/></source><target dev='vdc' bus='virtio'/>"
            "<serial>6f1e0c3c-4b2a-4d0e-9a7b-5c3d1e2f4a6b</serial></disk>",
            DiskIdentity(
                "vdc", "rbd:volumes/volume-6f1e0c3c", "virtio", "raw", "6f1e0c3c-4b2a-4d0e-9a7b-5c3d1e2f4a6b", "disk"
            ),
        ),
        (  # an iSCSI LUN: its target and host
            "<disk type='network' device='lun'><driver name='qemu' type='raw'/>"
            "<source protocol='iscsi' name='iqn.2010-10.org.openstack:volume-1/1'><host name='10.0.0.9' port='3260'/>"
            "</source><target dev='sdb' bus='scsi'/></disk>",
            DiskIdentity(
                "sdb", "iscsi://10.0.0.9:3260/iqn.2010-10.org.openstack:volume-1/1", "scsi", "raw", None, "lun"
            ),
        ),
        (  # a storage pool's volume
            "<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
            "<source pool='default' volume='web01-data.qcow2'/><target dev='vdd' bus='virtio'/></disk>",
            DiskIdentity("vdd", "default/web01-data.qcow2", "virtio", "qcow2", None, "disk"),
        ),
        (  # an empty CD-ROM drive: no source at all
            "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='hdc' bus='ide'/>"
            "<readonly/></disk>",
            DiskIdentity("hdc", None, "ide", "raw", None, "cdrom"),
        ),
    ],
    ids=["block", "rbd", "iscsi", "volume", "empty-cdrom"],
)
def test_every_kind_of_disk_source_is_named_as_an_operator_names_it(running_xml, disk, expected):
    assert parse_domain_xml(with_device(running_xml, disk)).disk_identities[-1] == expected


def test_a_disk_without_a_target_has_no_identity(running_xml):
    xml = with_device(running_xml, "<disk type='file' device='floppy'><source file='/tmp/f.img'/></disk>")
    assert [disk.target for disk in parse_domain_xml(xml).disk_identities] == ["vda", "vdb"]


@pytest.mark.parametrize(
    ("nic", "expected"),
    [
        (
            NOVA_OVS_NIC,
            NicIdentity(
                "fa:16:3e:4c:2c:30",
                "tap8d7c6b5a-4e",
                "bridge",
                "br-int",
                None,
                "virtio",
                1450,
                "8d7c6b5a-4e3f-4a2b-9c1d-0e9f8a7b6c5d",
            ),
        ),
        (  # a running domain's NIC on a libvirt network: libvirt adds the network's bridge to the live XML
            "<interface type='network'><mac address='52:54:00:aa:00:01'/>"
            "<source network='default' portid='3b0e6f5c-2d4a-4e8b-9c1d-7a6f5e4d3c2b' bridge='virbr0'/>"
            "<target dev='vnet7'/><model type='e1000e'/></interface>",
            NicIdentity("52:54:00:aa:00:01", "vnet7", "network", "virbr0", "default", "e1000e", None, None),
        ),
        (  # macvtap on a host NIC: neither bridge nor network
            "<interface type='direct'><mac address='52:54:00:aa:00:02'/><source dev='eth0' mode='bridge'/>"
            "<target dev='macvtap0'/><model type='virtio'/></interface>",
            NicIdentity("52:54:00:aa:00:02", "macvtap0", "direct", None, None, "virtio", None, None),
        ),
    ],
    ids=["nova-ovs", "network", "direct"],
)
def test_every_kind_of_nic_is_read_with_where_it_is_plugged_in(running_xml, nic, expected):
    assert parse_domain_xml(with_device(running_xml, nic)).nic_identities[-1] == expected


def test_the_lab_guests_ethernet_nics_have_a_model_and_no_bridge(running_xml):
    nics = parse_domain_xml(running_xml).nic_identities
    assert [(nic.kind, nic.model, nic.bridge, nic.network) for nic in nics] == [("ethernet", "virtio", None, None)] * 2
    assert [nic.mac for nic in nics] == ["52:54:00:6b:01:00", "52:54:00:6b:01:01"]


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        (  # a GPU given whole, libvirt detaching it from the host's driver
            "<hostdev mode='subsystem' type='pci' managed='yes'><driver name='vfio'/><source>"
            "<address domain='0x0000' bus='0x65' slot='0x00' function='0x0'/></source></hostdev>",
            HostDevice("pci", "0000:65:00.0", pci_address="0000:65:00.0", managed=True),
        ),
        (  # a vGPU: a mediated device by its UUID
            "<hostdev mode='subsystem' type='mdev' managed='no' model='vfio-pci' display='off'><source>"
            "<address uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/></source></hostdev>",
            HostDevice(
                "mdev",
                "c2177883-f1bb-47f0-914d-32a22e3a8804",
                mdev_uuid="c2177883-f1bb-47f0-914d-32a22e3a8804",
                model="vfio-pci",
            ),
        ),
        (  # a USB device by its ids
            "<hostdev mode='subsystem' type='usb' managed='yes'><source><vendor id='0x046d'/>"
            "<product id='0xc52b'/></source></hostdev>",
            HostDevice("usb", "0x046d:0xc52b", vendor_id="0x046d", product_id="0xc52b", managed=True),
        ),
        (  # a USB device by where it is plugged in
            "<hostdev mode='subsystem' type='usb'><source><address bus='1' device='4'/></source></hostdev>",
            HostDevice("usb", "001:004"),
        ),
        (  # a SCSI device of a host adapter
            "<hostdev mode='subsystem' type='scsi'><source><adapter name='scsi_host0'/>"
            "<address bus='0' target='2' unit='1'/></source></hostdev>",
            HostDevice("scsi", "scsi_host0:0:2:1"),
        ),
        (  # an SR-IOV virtual function as a NIC
            "<interface type='hostdev' managed='yes'><mac address='52:54:00:AB:CD:EF'/><source>"
            "<address type='pci' domain='0x0000' bus='0x3b' slot='0x02' function='0x3'/></source></interface>",
            HostDevice("pci", "0000:3b:02.3", pci_address="0000:3b:02.3", managed=True, mac="52:54:00:ab:cd:ef"),
        ),
    ],
    ids=["pci", "mdev", "usb-ids", "usb-address", "scsi", "sriov-nic"],
)
def test_every_kind_of_host_device_is_named_by_its_address_on_the_host(running_xml, device, expected):
    assert parse_domain_xml(with_device(running_xml, device)).host_devices == (expected,)


def test_a_domain_without_host_devices_has_none(running_xml):
    assert parse_domain_xml(running_xml).host_devices == ()
