"""``--collect guest``: vm_guest and vm_filesystems, the guest's own view through its QEMU guest agent.

libvirt answers agent calls on a read-write connection only, so the group needs
``--read-write`` and ``all`` leaves it out. The calls run on threads of their own,
each with its own connection (kvm_telegraf/guest_agent.py): an agent may never answer.
Every string the guest gives is cut to GUEST_STRING_MAX_CHARS here, where it becomes a
field or a tag (a guest controls its os-release and its mount points); guest_agent.py
says once per domain what was cut.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import counter, with_tags
from kvm_telegraf.group import DomainView, Group, Stats
from kvm_telegraf.guest_agent import GUEST_STRING_MAX_CHARS, GuestAgents
from kvm_telegraf.libvirt_facts import STATE_RUNNING
from kvm_telegraf.log import clip
from kvm_telegraf.points import FieldValue, Point

# virDomainGetGuestInfo keys -> vm_guest string fields, and the load averages (libvirt 11.2 and later).
GUEST_STRING_FIELDS = (
    ("os_id", "os.id"),
    ("os_version_id", "os.version-id"),
    ("kernel_release", "os.kernel-release"),
    ("hostname", "hostname"),
    ("timezone", "timezone.name"),
)
GUEST_LOAD_FIELDS = (("load_1m", "load.1m"), ("load_5m", "load.5m"), ("load_15m", "load.15m"))


def bounded(value: str) -> str:
    """*value* cut to GUEST_STRING_MAX_CHARS and how many more characters it had (log.clip); a length check else."""
    return value if len(value) <= GUEST_STRING_MAX_CHARS else clip(value, GUEST_STRING_MAX_CHARS)


def vm_guest(view: DomainView) -> List[Point]:
    """The guest's own view through its agent, for a domain whose agent channel is connected.

    ``vm_guest,uuid=1b4e…,vm=web01 os_id="debian",os_version_id="12",…,users=2i,agent_responding=true``
    An agent that did not answer by the deadline, or failed, gives ``agent_responding=false`` alone.
    """
    guest = view.domain.calls.get("guest")
    if not guest:
        return []
    info = guest.get("info") or {}
    fields: Dict[str, FieldValue] = {}
    for name, key in GUEST_STRING_FIELDS:
        value = info.get(key)
        if isinstance(value, str) and value:
            fields[name] = bounded(value)
    users = counter(info.get("user.count"))
    if users is not None:
        fields["users"] = users
    for name, key in GUEST_LOAD_FIELDS:
        value = info.get(key)
        if type(value) in (int, float):
            fields[name] = float(value)
    fields["agent_responding"] = bool(guest.get("responding"))
    return [Point("vm_guest", view.tags, fields)]


def vm_filesystems(view: DomainView) -> List[Point]:
    """One point per filesystem the guest has mounted, tagged with its mount point and type.

    ``vm_filesystems,fstype=ext4,mountpoint=/,uuid=1b4e…,vm=web01 total_bytes=…,used_percent=41.07,disks="vda"``
    """
    guest = view.domain.calls.get("guest") or {}
    info = guest.get("info") or {}
    points = []
    for i in range(counter(info.get("fs.count")) or 0):
        prefix = f"fs.{i}."
        mountpoint, fstype = info.get(prefix + "mountpoint"), info.get(prefix + "fstype")
        if not isinstance(mountpoint, str) or not mountpoint:
            continue
        fields: Dict[str, FieldValue] = {}
        total, used = counter(info.get(prefix + "total-bytes")), counter(info.get(prefix + "used-bytes"))
        if total is not None:
            fields["total_bytes"] = total
        if used is not None:
            fields["used_bytes"] = used
        if total and used is not None:
            fields["used_percent"] = round(100.0 * used / total, 2)
        disks = [info.get(f"{prefix}disk.{j}.alias") for j in range(counter(info.get(prefix + "disk.count")) or 0)]
        fields["disks"] = bounded(",".join(disk for disk in disks if isinstance(disk, str) and disk))
        tags = [("mountpoint", bounded(mountpoint))]
        if isinstance(fstype, str) and fstype:
            tags.append(("fstype", bounded(fstype)))
        points.append(Point("vm_filesystems", with_tags(view.tags, *tags), fields))
    return points


def guest_points(view: DomainView) -> List[Point]:
    return vm_guest(view) + vm_filesystems(view)


def enabled(stats: Stats, facts: Optional[DomainFacts]) -> bool:
    """A running domain whose agent channel the XML shows connected."""
    return stats.get("state.state") == STATE_RUNNING and facts is not None and facts.agent_state == "connected"


GROUP = Group(
    name="guest",
    help="vm_guest, vm_filesystems: the guest's own view through its QEMU agent (needs --read-write)",
    since=5_007_000,
    reads_xml=True,
    read_write=True,
    calls=("virDomainGetGuestInfo",),
    measurements=("vm_guest", "vm_filesystems"),
    own_calls=GuestAgents,
    points=guest_points,
    enabled=enabled,
    enable_hint="run qemu-guest-agent in the guest, with an org.qemu.guest_agent.0 virtio-serial channel in its XML",
)
