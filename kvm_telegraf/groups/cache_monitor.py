"""``--collect cache_monitor``: vm_cache_monitor, the last-level cache the monitored vCPUs occupy (resctrl).

Its keys (cpu.cache.monitor.*) come with the cpu-total group the default call already
asks for: no bits, no call. Not verified on live hardware: no host here has resctrl, so the
tests use the keys libvirt's documentation names.
"""

from __future__ import annotations

from typing import List, Optional

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import counter, resctrl_entries, with_tags
from kvm_telegraf.group import DomainView, Group, Stats
from kvm_telegraf.points import Point


def vm_cache_monitor(view: DomainView) -> List[Point]:
    """One point per resctrl cache monitor and cache bank.

    ``vm_cache_monitor,bank=0,monitor=vcpus_0-1,uuid=1b4e…,vcpus=0-1,vm=web01 bytes=5406720i``
    """
    stats = view.domain.stats
    points = []
    for entry, tags in resctrl_entries(stats, "cpu.cache.monitor", "bank", "bank"):
        used = counter(stats.get(entry + "bytes"))
        if used is not None:
            points.append(Point("vm_cache_monitor", with_tags(view.tags, *tags), {"bytes": used}))
    return points


def enabled(stats: Stats, _facts: Optional[DomainFacts]) -> bool:
    return bool(stats.get("cpu.cache.monitor.count"))


GROUP = Group(
    name="cache_monitor",
    help="vm_cache_monitor: resctrl cache occupancy per monitor and bank",
    since=4_010_000,
    measurements=("vm_cache_monitor",),
    points=vm_cache_monitor,
    enabled=enabled,
    enable_hint="<cputune><cachetune> with a <monitor> in the domain XML (resctrl, Intel RDT CMT)",
)
