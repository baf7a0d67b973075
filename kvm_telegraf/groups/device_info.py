"""``--collect device_info``: vm_device_info, what each disk and NIC is, with vm_devices' own tags.

From the cached domain XML: no libvirt call. Its points carry exactly the tags of
the device's vm_devices point, so a query joins the two (disk I/O by image path,
traffic by Neutron port) while vm_devices' series stay as they are.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.group import DomainView, Group, Stats
from kvm_telegraf.measurements import device_tags, disks, interfaces
from kvm_telegraf.points import FieldValue, Point

DISK_FIELDS = ("source", "bus", "format", "serial", "kind")
NIC_FIELDS = ("kind", "bridge", "network", "model", "mtu", "target", "interface_id")


def _fields(identity: Any, names: Tuple[str, ...]) -> Dict[str, FieldValue]:
    """The identity's attributes of *names*, in that order, where the XML gives them."""
    return {name: getattr(identity, name) for name in names if getattr(identity, name) is not None}


def vm_device_info(view: DomainView) -> List[Point]:
    """One point per NIC and disk that vm_devices reports and the XML describes.

    ``vm_device_info,device=vda,type=disk,uuid=1b4e…,vm=web01 source="/var/lib/libvirt/images/web01.qcow2",bus="virtio",format="qcow2",kind="disk"``
    ``vm_device_info,device=52:54:00:6b:01:00,mac=52:54:00:6b:01:00,type=interface,uuid=1b4e…,vm=web01 kind="bridge",bridge="br0",model="virtio",target="vnet3"``
    """
    domain = view.domain
    facts = domain.config.facts if domain.config is not None else None
    if facts is None:
        return []
    points = []
    by_mac = {nic.mac: nic for nic in facts.nic_identities if nic.mac}
    by_target = {nic.target: nic for nic in facts.nic_identities if nic.target}
    for nic in interfaces(domain):
        identity = by_mac.get(nic.mac) if nic.mac else by_target.get(nic.tap or "")
        fields = _fields(identity, NIC_FIELDS) if identity is not None else {}
        if fields:
            tags = device_tags(domain, nic.device, "interface", view.extra, nic.mac)
            points.append(Point("vm_device_info", tags, fields))
    by_disk = {disk.target: disk for disk in facts.disk_identities}
    for name, _ in disks(domain.stats):
        disk = by_disk.get(name)
        if disk is not None:
            tags = device_tags(domain, name, "disk", view.extra)
            points.append(Point("vm_device_info", tags, _fields(disk, DISK_FIELDS)))
    return points


def enabled(_stats: Stats, facts: Optional[DomainFacts]) -> bool:
    return facts is not None and bool(facts.disk_identities or facts.nic_identities)


GROUP = Group(
    name="device_info",
    help="vm_device_info: each disk's image, bus, format, serial; each NIC's bridge, network, model, MTU, port",
    since=1_000,
    reads_xml=True,
    measurements=("vm_device_info",),
    points=vm_device_info,
    enabled=enabled,
    enable_hint="a domain with a disk or a NIC",
)
