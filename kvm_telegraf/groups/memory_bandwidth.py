"""``--collect memory_bandwidth``: vm_memory_bandwidth, resctrl memory bandwidth per monitor and NUMA node.

Not verified on live hardware: no host here has resctrl, so the tests use the keys libvirt's
documentation names.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import counter, resctrl_entries, with_tags
from kvm_telegraf.group import DomainView, Group, Stats
from kvm_telegraf.libvirt_facts import STATS_MEMORY
from kvm_telegraf.points import FieldValue, Point


def vm_memory_bandwidth(view: DomainView) -> List[Point]:
    """One point per resctrl monitor and NUMA node: local and total memory bandwidth used, cumulative bytes.

    ``vm_memory_bandwidth,monitor=vcpus_1,node=0,uuid=1b4e…,vm=web01 local_bytes=4818688i,total_bytes=5054464i``
    """
    stats = view.domain.stats
    points = []
    for entry, tags in resctrl_entries(stats, "memory.bandwidth.monitor", "node", "node", vcpus=False):
        fields: Dict[str, FieldValue] = {}
        for name, key in (("local_bytes", "bytes.local"), ("total_bytes", "bytes.total")):
            value = counter(stats.get(entry + key))
            if value is not None:
                fields[name] = value
        points.append(Point("vm_memory_bandwidth", with_tags(view.tags, *tags), fields))
    return points


def enabled(stats: Stats, _facts: Optional[DomainFacts]) -> bool:
    return bool(stats.get("memory.bandwidth.monitor.count"))


GROUP = Group(
    name="memory_bandwidth",
    help="vm_memory_bandwidth: resctrl memory bandwidth",
    since=6_000_000,
    bits=STATS_MEMORY,
    measurements=("vm_memory_bandwidth",),
    points=vm_memory_bandwidth,
    enabled=enabled,
    enable_hint="<cputune><memorytune> with a <monitor> in the domain XML (resctrl, Intel RDT MBM)",
)
