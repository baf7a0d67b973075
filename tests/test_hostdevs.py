"""``--collect hostdevs``: the host devices each domain holds, and what libvirt's node devices say of them.

lab-anchors.json holds a guest defined (never started) with a PCI device of the lab machine, an mdev, a USB
device and an SR-IOV NIC (tests/record_snapshots.py anchors), and the host's node devices as the group read
them. The node device XML below is the lab machine's (``virsh nodedev-dumpxml pci_0000_00_02_0``), and, for
what this machine has not (a GPU with its names, a mediated device), libvirt's documented format.
"""

from __future__ import annotations

from typing import Any, Dict, List

from kvm_telegraf.cli import main
from kvm_telegraf.group import HostMemo
from kvm_telegraf.groups import resolve
from kvm_telegraf.groups.hostdevs import call, node_devices, parse_node_device
from kvm_telegraf.shape import shape_snapshot
from tests.conftest import load_snapshots
from tests.harness.cli import runner
from tests.replay import ReplayConnection

LAB_PCI = """<device>
  <name>pci_0000_00_02_0</name>
  <path>/sys/devices/pci0000:00/0000:00:02.0</path>
  <parent>computer</parent>
  <driver>
    <name>virtio-pci</name>
  </driver>
  <capability type='pci'>
    <class>0x018000</class>
    <domain>0</domain>
    <bus>0</bus>
    <slot>2</slot>
    <function>0</function>
    <product id='0x1042'/>
    <vendor id='0x1af4'/>
  </capability>
</device>"""

GPU = """<device>
  <name>pci_0000_65_00_0</name>
  <parent>pci_0000_64_00_0</parent>
  <driver><name>vfio-pci</name></driver>
  <capability type='pci'>
    <class>0x030200</class>
    <domain>0</domain><bus>101</bus><slot>0</slot><function>0</function>
    <product id='0x20b5'>GA100 [A100 PCIe 80GB]</product>
    <vendor id='0x10de'>NVIDIA Corporation</vendor>
    <iommuGroup number='13'><address domain='0x0000' bus='0x65' slot='0x00' function='0x0'/></iommuGroup>
  </capability>
</device>"""

MDEV = """<device>
  <name>mdev_c2177883_f1bb_47f0_914d_32a22e3a8804</name>
  <path>/sys/devices/pci0000:64/0000:64:00.0/0000:65:00.0/c2177883-f1bb-47f0-914d-32a22e3a8804</path>
  <parent>pci_0000_65_00_0</parent>
  <driver><name>vfio_mdev</name></driver>
  <capability type='mdev'>
    <type id='nvidia-63'/>
    <uuid>c2177883-f1bb-47f0-914d-32a22e3a8804</uuid>
    <iommuGroup number='24'/>
  </capability>
</device>"""


class NodeDevice:
    def __init__(self, name: str, xml: str) -> None:
        self._name, self._xml = name, xml

    def name(self) -> str:
        return self._name

    def XMLDesc(self, _flags: int) -> str:  # noqa: N802 - libvirt's API
        return self._xml


class NodeDevices:
    """A connection that lists these node devices (libvirt's virConnectListAllNodeDevices)."""

    def __init__(self, devices: List[NodeDevice]) -> None:
        self._devices = devices

    def listAllDevices(self, _flags: int) -> List[NodeDevice]:  # noqa: N802 - libvirt's API
        return self._devices


def test_a_pci_node_device_gives_its_address_ids_names_and_driver():
    assert parse_node_device(GPU) == {
        "kind": "pci",
        "address": "0000:65:00.0",
        "vendor_id": "0x10de",
        "vendor": "NVIDIA Corporation",
        "product_id": "0x20b5",
        "product": "GA100 [A100 PCIe 80GB]",
        "driver": "vfio-pci",
    }
    assert parse_node_device(LAB_PCI) == {
        "kind": "pci",
        "address": "0000:00:02.0",
        "vendor_id": "0x1af4",
        "product_id": "0x1042",
        "driver": "virtio-pci",
    }


def test_an_mdev_is_tied_to_its_parents_pci_address_through_the_parents_node_device_name():
    listed = node_devices(NodeDevices([NodeDevice("pci_0000_65_00_0", GPU), NodeDevice("mdev_c217", MDEV)]))
    assert listed["mdev"] == {
        "c2177883-f1bb-47f0-914d-32a22e3a8804": {"mdev_type": "nvidia-63", "pci_address": "0000:65:00.0"}
    }
    assert listed["pci"]["0000:65:00.0"]["vendor"] == "NVIDIA Corporation"


def test_node_device_xml_that_does_not_parse_or_is_of_another_kind_is_left_out():
    usb = "<device><name>usb_1_4</name><capability type='usb_device'><bus>1</bus></capability></device>"
    assert [parse_node_device(xml) for xml in ("<device>", usb, "")] == [None, None, None]


def hostdevs(snapshot_name: str) -> Dict[tuple, Dict[str, Any]]:
    points, _ = shape_snapshot(load_snapshots(snapshot_name)[-1], {}, groups=resolve(["hostdevs"]))
    return {
        (dict(p.tags)["vm"], dict(p.tags)["type"], dict(p.tags)["hostdev"]): p.fields
        for p in points
        if p.measurement == "vm_hostdevs"
    }


def test_the_recorded_guest_holds_four_host_devices_named_as_the_host_names_them():
    recorded = load_snapshots("lab-anchors.json")[-1]
    (host,) = recorded.hosts
    points = hostdevs("lab-anchors.json")
    (vm,) = {key[0] for key in points}
    assert vm.startswith("ktanch-") and len(points) == 4
    pcis = sorted(key[2] for key in points if key[1] == "pci")
    for address in pcis:
        node = host["node_devices"]["pci"][address]
        fields = points[(vm, "pci", address)]
        assert (fields["vendor_id"], fields["product_id"], fields["driver"]) == (
            node["vendor_id"],
            node["product_id"],
            node["driver"],
        )
    assert {key[1] for key in points} == {"pci", "mdev", "usb"}
    (mdev,) = [fields for key, fields in points.items() if key[1] == "mdev"]
    assert mdev == {"mdev_uuid": "c2177883-f1bb-47f0-914d-32a22e3a8804", "model": "vfio-pci", "count": 1}


def test_without_hostdevs_a_domain_has_no_vm_hostdevs_point():
    assert hostdevs("lab-running.json") == {}


class RefusingDaemon:
    """A modular host without virtnodedevd: the node device listing fails."""

    def __init__(self) -> None:
        self.asked = 0

    def listAllDevices(self, _flags: int) -> list:  # noqa: N802 - libvirt's API
        self.asked += 1
        raise RuntimeError("Failed to connect socket to '/var/run/libvirt/virtnodedevd-sock-ro'")


def test_a_daemon_that_refuses_the_node_devices_is_asked_again_only_after_features_refresh():
    now = [0.0]
    memo = HostMemo(300.0, monotonic=lambda: now[0])
    daemon = RefusingDaemon()
    answers = []
    for at in (0.0, 10.0, 20.0, 301.0):
        now[0] = at
        answers.append(call(daemon, memo))
    assert daemon.asked == 2 and answers[0] == {"node_devices": {"pci": {}, "mdev": {}}}


def test_doctor_has_a_line_for_each_new_group_saying_where_it_is_on_and_what_it_calls():
    anchors = load_snapshots("lab-anchors.json")
    result = runner().invoke(
        main, ["--collect", "hostdevs", "doctor"], obj={"opener": lambda _uri: ReplayConnection(anchors)}
    )
    lines = {line.split(":", 1)[0][6:]: line for line in result.stdout.splitlines() if line[6:].startswith("group ")}
    assert lines["group hostdevs"] == (
        "ok    group hostdevs: on (--collect); supported (needs libvirt 3.4.0, found 9.0.0); enabled on 1 of 4 "
        "domain(s); extra calls: virConnectListAllNodeDevices, virNodeDeviceGetXMLDesc"
    )
    assert lines["group device_info"].startswith("ok    group device_info: off; supported")
    assert "enabled on 4 of 4 domain(s)" in lines["group device_info"]
    assert lines["group disk_errors"].endswith("extra calls: virDomainGetDiskErrors")
