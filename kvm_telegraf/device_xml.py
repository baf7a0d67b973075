"""What a domain's XML says of each device: a disk's and a NIC's identity, and the host devices passed through.

Read with the rest of the XML's facts (kvm_telegraf/domain_xml.py), once per
read, never per cycle: an image path, a bridge or a Neutron port UUID changes
only when the domain's configuration does.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from typing import NamedTuple, Optional, Tuple


class DiskIdentity(NamedTuple):
    """One ``<disk>``: what its image is and how the guest sees it."""

    target: str  # <target dev>: vda, the vm_devices device tag
    source: Optional[str]  # the image file, block device, pool/volume or network volume; None: an empty drive
    bus: Optional[str]  # virtio, scsi, sata, ide, usb, ...
    format: Optional[str]  # <driver type>: raw, qcow2, ...
    serial: Optional[str]
    kind: str  # <disk device>: disk, cdrom, floppy, lun


class NicIdentity(NamedTuple):
    """One ``<interface>``: where it is plugged in and what the guest sees."""

    mac: Optional[str]  # lower case, as vm_devices' mac tag
    target: Optional[str]  # <target dev>: the tap (vnet3) in a running domain's XML, or the operator's name
    kind: str  # <interface type>: bridge, network, ethernet, direct, hostdev, vhostuser, ...
    bridge: Optional[str]
    network: Optional[str]  # a libvirt network's name
    model: Optional[str]  # virtio, e1000e, ...
    mtu: Optional[int]
    interface_id: Optional[str]  # <virtualport><parameters interfaceid>: OpenStack's Neutron port UUID on OVS


class HostDevice(NamedTuple):
    """One device of the host given to the guest: a ``<hostdev>``, or an ``<interface type='hostdev'>`` (SR-IOV)."""

    kind: str  # pci, mdev, usb, scsi, scsi_host, ...
    address: str  # what names it on the host: PCI 0000:03:00.0, an mdev UUID, USB 001:004 or 046d:c52b, ...
    pci_address: Optional[str] = None  # PCI devices (and SR-IOV NICs)
    vendor_id: Optional[str] = None  # where the XML names it (USB): 0x046d
    product_id: Optional[str] = None
    mdev_uuid: Optional[str] = None
    model: Optional[str] = None  # an mdev's model: vfio-pci, vfio-ccw, vfio-ap
    managed: Optional[bool] = None  # libvirt detaches it from the host's driver at start, and gives it back
    mac: Optional[str] = None  # an SR-IOV NIC's


def _attr(element: Optional[ElementTree.Element], name: str) -> Optional[str]:
    value = element.get(name) if element is not None else None
    return value or None


def _disk_source(disk: ElementTree.Element) -> Optional[str]:
    """The image as an operator names it: its file, block device or directory, ``pool/volume``, or the network
    volume (``rbd:volumes/volume-6f1e…``, ``iscsi://host:3260/iqn…/1``)."""
    source = disk.find("source")
    if source is None:
        return None
    for name in ("file", "dev", "dir", "path"):
        if source.get(name):
            return source.get(name)
    if source.get("volume"):
        return f"{source.get('pool', '')}/{source.get('volume')}"
    protocol, name = source.get("protocol"), source.get("name")
    if protocol and name:
        host = source.find("host")
        if protocol == "rbd" or host is None or not host.get("name"):
            return f"{protocol}:{name}"
        port = f":{host.get('port')}" if host.get("port") else ""
        return f"{protocol}://{host.get('name')}{port}/{name}"
    return None


def disk_identities(root: ElementTree.Element) -> Tuple[DiskIdentity, ...]:
    disks = []
    for disk in root.findall("devices/disk"):
        target = disk.find("target")
        dev = _attr(target, "dev")
        if dev is None:
            continue
        serial = (disk.findtext("serial") or "").strip() or None
        disks.append(
            DiskIdentity(
                dev,
                _disk_source(disk),
                _attr(target, "bus"),
                _attr(disk.find("driver"), "type"),
                serial,
                disk.get("device", "disk"),
            )
        )
    return tuple(disks)


def _number(text: Optional[str]) -> Optional[int]:
    """A number as libvirt writes it in XML: decimal, or 0x-prefixed hex."""
    try:
        return int(text, 0) if text is not None else None
    except ValueError:
        return None


def nic_identities(root: ElementTree.Element) -> Tuple[NicIdentity, ...]:
    nics = []
    for nic in root.findall("devices/interface"):
        source = nic.find("source")
        mac = _attr(nic.find("mac"), "address")
        nics.append(
            NicIdentity(
                mac.lower() if mac else None,
                _attr(nic.find("target"), "dev"),
                nic.get("type", ""),
                _attr(source, "bridge"),
                _attr(source, "network"),
                _attr(nic.find("model"), "type"),
                _number(_attr(nic.find("mtu"), "size")),
                _attr(nic.find("virtualport/parameters"), "interfaceid"),
            )
        )
    return tuple(nics)


def pci_address(address: Optional[ElementTree.Element]) -> Optional[str]:
    """``<address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>`` as the host writes it: 0000:03:00.0."""
    if address is None:
        return None
    parts = [_number(address.get(name, "0")) for name in ("domain", "bus", "slot", "function")]
    if None in parts:
        return None
    domain, bus, slot, function = parts
    return f"{domain:04x}:{bus:02x}:{slot:02x}.{function:x}"


def _managed(element: ElementTree.Element) -> Optional[bool]:
    value = element.get("managed")
    return None if value is None else value == "yes"


def _host_device(hostdev: ElementTree.Element) -> Optional[HostDevice]:
    kind = hostdev.get("type", "")
    source = hostdev.find("source")
    if source is None:
        return None
    managed = _managed(hostdev)
    if kind == "pci":
        pci = pci_address(source.find("address"))
        return HostDevice(kind, pci, pci_address=pci, managed=managed) if pci else None
    if kind == "mdev":
        uuid = _attr(source.find("address"), "uuid")
        return HostDevice(kind, uuid, mdev_uuid=uuid, model=hostdev.get("model")) if uuid else None
    if kind == "usb":
        vendor, product = _attr(source.find("vendor"), "id"), _attr(source.find("product"), "id")
        address = source.find("address")
        bus, device = _number(_attr(address, "bus")), _number(_attr(address, "device"))
        name = f"{bus:03d}:{device:03d}" if bus is not None and device is not None else None
        name = name or (f"{vendor}:{product}" if vendor and product else None)
        return HostDevice(kind, name, vendor_id=vendor, product_id=product, managed=managed) if name else None
    if kind == "scsi":
        adapter, address = _attr(source.find("adapter"), "name"), source.find("address")
        if adapter and address is not None:
            unit = ":".join(address.get(name, "0") for name in ("bus", "target", "unit"))
            return HostDevice(kind, f"{adapter}:{unit}")
        return None
    name = _attr(source, "wwpn") or _attr(source, "name")  # scsi_host (vhost-scsi), others
    return HostDevice(kind, name) if name else None


def host_devices(root: ElementTree.Element) -> Tuple[HostDevice, ...]:
    """Each ``<hostdev>`` and each SR-IOV NIC (``<interface type='hostdev'>``) that names its host device."""
    found = [_host_device(hostdev) for hostdev in root.findall("devices/hostdev")]
    for nic in root.findall("devices/interface"):
        if nic.get("type") != "hostdev":
            continue
        pci = pci_address(nic.find("source/address"))
        if pci:
            mac = _attr(nic.find("mac"), "address")
            mac = mac.lower() if mac else None
            found.append(HostDevice("pci", pci, pci_address=pci, managed=_managed(nic), mac=mac))
    return tuple(device for device in found if device is not None)
