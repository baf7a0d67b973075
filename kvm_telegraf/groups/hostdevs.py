"""``--collect hostdevs``: vm_hostdevs, the host's devices each domain holds: GPUs, SR-IOV NICs, mdevs, USB.

The devices come from the cached domain XML; what the host knows of them (a PCI
device's vendor and product, an mdev's parent and type) from libvirt's node
devices, listed once per ``--features-refresh``. No call per cycle: a GPU passed
through is out of the host's own monitoring (DCGM, nvidia-smi), so this says which
VM holds it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from typing import Any, Dict, List, Mapping, Optional, Sequence

from kvm_telegraf.device_xml import HostDevice
from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import extra_tags, with_tags
from kvm_telegraf.group import Group, HostMemo, Stats, or_none
from kvm_telegraf.libvirt_facts import NODE_DEVICES_MDEV, NODE_DEVICES_PCI
from kvm_telegraf.measurements import domain_tags
from kvm_telegraf.points import FieldValue, Point
from kvm_telegraf.snapshot import DomainSample

# HostDevice attributes -> vm_hostdevs fields, where the XML gives them.
XML_FIELDS = ("pci_address", "vendor_id", "product_id", "mdev_uuid", "model", "managed", "mac")
# What a PCI node device says -> vm_hostdevs fields.
NODE_FIELDS = ("vendor_id", "product_id", "vendor", "product", "driver")


def parse_node_device(xml: str) -> Optional[Dict[str, Any]]:
    """A PCI device's address, ids, names and driver, or an mdev's UUID, parent and type, from its XML."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    capability = root.find("capability")
    if capability is None:
        return None
    kind = capability.get("type")
    if kind == "pci":
        try:
            numbers = [int(capability.findtext(name) or "", 0) for name in ("domain", "bus", "slot", "function")]
        except ValueError:
            return None
        entry: Dict[str, Any] = {"kind": "pci", "address": "{:04x}:{:02x}:{:02x}.{:x}".format(*numbers)}
        for name in ("vendor", "product"):
            element = capability.find(name)
            if element is not None:
                if element.get("id"):
                    entry[f"{name}_id"] = element.get("id")
                if (element.text or "").strip():
                    entry[name] = element.text.strip()
        driver = root.findtext("driver/name")
        if driver:
            entry["driver"] = driver
        return entry
    uuid = capability.findtext("uuid") or ""
    if kind == "mdev" and uuid:
        entry = {"kind": "mdev", "address": uuid, "parent": root.findtext("parent") or ""}
        mdev_type = capability.find("type")
        if mdev_type is not None and mdev_type.get("id"):
            entry["mdev_type"] = mdev_type.get("id")
        return entry
    return None


def node_devices(conn: Any) -> Dict[str, Dict[str, Any]]:
    """``{"pci": {address: {...}}, "mdev": {uuid: {...}}}``: the host's PCI devices and mediated devices."""
    found: Dict[str, Dict[str, Any]] = {"pci": {}, "mdev": {}}
    names: Dict[str, str] = {}  # node device name (pci_0000_03_00_0) -> PCI address
    for device in conn.listAllDevices(NODE_DEVICES_PCI | NODE_DEVICES_MDEV):
        entry = parse_node_device(or_none(lambda device=device: device.XMLDesc(0)) or "")
        if entry is None:
            continue
        kind, address = entry.pop("kind"), entry.pop("address")
        found[kind][address] = entry
        if kind == "pci":
            names[device.name()] = address
    for mdev in found["mdev"].values():
        parent = names.get(mdev.pop("parent"))
        if parent:
            mdev["pci_address"] = parent
    return found


def call(conn: Any, memo: HostMemo) -> Dict[str, Any]:
    """``{"node_devices": {...}}``, read again once ``--features-refresh`` has passed.

    A daemon that refuses the listing (a modular host without virtnodedevd) is asked again only then too,
    not every cycle: the devices then show what the domain XML alone says.
    """
    listing = memo.every("node_devices", lambda: or_none(lambda: node_devices(conn)) or {"pci": {}, "mdev": {}})
    return {"node_devices": listing}


def hostdev_fields(device: HostDevice, nodes: Mapping[str, Any]) -> Dict[str, FieldValue]:
    fields: Dict[str, FieldValue] = {
        name: getattr(device, name) for name in XML_FIELDS if getattr(device, name) is not None
    }
    if device.kind == "mdev":
        mdev = (nodes.get("mdev") or {}).get(device.address) or {}
        if mdev.get("mdev_type"):
            fields["mdev_type"] = mdev["mdev_type"]
        if mdev.get("pci_address"):
            fields["pci_address"] = mdev["pci_address"]
    pci = (nodes.get("pci") or {}).get(fields.get("pci_address")) or {}
    for name in NODE_FIELDS:
        if name in pci:
            fields.setdefault(name, pci[name])
    return fields


def vm_hostdevs(host: Mapping[str, Any], domains: Sequence[DomainSample], _cycle_ns: Optional[int]) -> List[Point]:
    """One point per host device of each domain, running or not: its address and what the host knows of it.

    ``vm_hostdevs,hostdev=0000:65:00.0,type=pci,uuid=1b4e…,vm=gpu01 pci_address="0000:65:00.0",managed=true,vendor_id="0x10de",vendor="NVIDIA Corporation",driver="vfio-pci"``
    """
    nodes = host.get("node_devices") or {}
    points = []
    for domain in domains:
        facts = domain.config.facts if domain.config is not None else None
        if facts is None or not facts.host_devices:
            continue
        tags = domain_tags(domain, extra_tags(domain))
        for device in facts.host_devices:
            fields = {**hostdev_fields(device, nodes), "count": 1}
            points.append(
                Point("vm_hostdevs", with_tags(tags, ("hostdev", device.address), ("type", device.kind)), fields)
            )
    return points


def enabled(_stats: Stats, facts: Optional[DomainFacts]) -> bool:
    return facts is not None and bool(facts.host_devices)


GROUP = Group(
    name="hostdevs",
    help="vm_hostdevs: the host devices each domain holds (PCI address, vendor and product, mdev UUID)",
    since=3_004_000,
    reads_xml=True,
    calls=("virConnectListAllNodeDevices", "virNodeDeviceGetXMLDesc"),
    measurements=("vm_hostdevs",),
    host_call=call,
    host_points=vm_hostdevs,
    enabled=enabled,
    enable_hint="a <hostdev> in the domain XML (virsh attach-device with a hostdev)",
)
