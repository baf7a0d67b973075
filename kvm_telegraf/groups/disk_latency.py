"""``--collect disk_latency``: vm_disk_latency, QEMU's own latency figures per disk and configured interval.

A disk whose ``<driver>`` has ``<statistics><statistic interval='N'/></statistics>`` (libvirt 11.9, QEMU
10.2) makes the bulk stats carry, per interval, the min, max and average latency of the requests QEMU
served in the last N seconds and the average queue depths (``block.<i>.timed_group.<j>.*``, libvirt 11.10).
They come with the default call's block group: no bits, no call. Its own measurement, tagged like
vm_devices' disks plus ``interval``, so a disk's vm_devices series stays one series whatever the
intervals, and a query picks one window by its tag.
"""

from __future__ import annotations

from typing import List, Optional

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import counter, with_tags
from kvm_telegraf.group import DomainView, Fields, Group, Stats
from kvm_telegraf.measurements import device_tags, disk_entries
from kvm_telegraf.points import INT64_MAX, Point

# (field prefix, libvirt's prefix) per kind of request; zone appends exist on zoned disks only.
LATENCY_KINDS = (("read", "rd"), ("write", "wr"), ("flush", "flush"), ("zone_append", "zone_append"))
QUEUE_DEPTHS = (("read", "rd"), ("write", "wr"), ("zone_append", "zone_append"))
STATISTICS = ("min", "max", "avg")


def _latency(value: object) -> Optional[int]:
    """ns as libvirt reports them (integers; a double is taken too), or None when not a number in range."""
    if type(value) is float and 0 <= value <= INT64_MAX:
        return round(value)
    return counter(value)


def _depth(value: object) -> Optional[float]:
    return float(value) if type(value) in (int, float) and value >= 0 else None  # type: ignore[operator]


def interval_fields(stats: Stats, prefix: str) -> Fields:
    """One interval's figures: per kind of request, min/max/avg latency, where the interval saw such a request.

    QEMU reports 0 for all three when it served none of a kind in the interval; a latency of 0 ns is
    no measurement, so that kind is left out, and with it a zone append's queue depth (a disk that is
    not zoned never has one). The read and write queue depths are there whenever QEMU reports them.
    """
    fields: Fields = {}
    seen = set()
    for kind, key in LATENCY_KINDS:
        values = [_latency(stats.get(f"{prefix}{key}_latency_{name}")) for name in STATISTICS]
        if None in values or not values[1]:  # max 0: none of this kind in the interval
            continue
        seen.add(kind)
        for name, value in zip(STATISTICS, values):
            fields[f"{kind}_latency_{name}_ns"] = value  # type: ignore[assignment]
    for kind, key in QUEUE_DEPTHS:
        depth = _depth(stats.get(f"{prefix}{key}_queue_depth_avg"))
        if depth is not None and (kind != "zone_append" or kind in seen):
            fields[f"{kind}_queue_depth_avg"] = depth
    return fields


def vm_disk_latency(view: DomainView) -> List[Point]:
    """One point per disk and configured interval, tagged with the interval in seconds (``10s``).

    ``vm_disk_latency,device=vda,interval=10s,type=disk,uuid=1b4e…,vm=web01 read_latency_min_ns=19630i,…,write_queue_depth_avg=0.0006``
    """
    domain = view.domain
    stats = domain.stats
    points = []
    for disk, prefix in disk_entries(stats):
        for j in range(counter(stats.get(prefix + "timed_group.count")) or 0):
            group = f"{prefix}timed_group.{j}."
            interval = counter(stats.get(group + "interval"))
            if not interval:
                continue
            fields = interval_fields(stats, group)
            if fields:
                tags = with_tags(device_tags(domain, disk, "disk", view.extra), ("interval", f"{interval}s"))
                points.append(Point("vm_disk_latency", tags, fields))
    return points


def enabled(stats: Stats, _facts: Optional[DomainFacts]) -> bool:
    """A disk with at least one configured interval."""
    return any(counter(stats.get(prefix + "timed_group.count")) for _, prefix in disk_entries(stats))


GROUP = Group(
    name="disk_latency",
    help="vm_disk_latency: QEMU's min/max/avg latency and queue depth per disk and interval",
    since=11_010_000,
    measurements=("vm_disk_latency",),
    points=vm_disk_latency,
    enabled=enabled,
    enable_hint="<statistics><statistic interval='10'/></statistics> inside each disk's <driver> in the domain "
    "XML (libvirt 11.9 and QEMU 10.2 or later)",
)
