"""``--collect energy``: vm_energy, the energy the monitored vCPUs used per CPU package (resctrl, Linux 7.0).

libvirt 12.4 reads Linux 7.0's resctrl PERF_PKG_MON counters for a domain with ``<cputune><energytune>`` and
a ``<monitor>``, and reports them with the cpu-total group the default call already asks for
(``cpu.energy.monitor.<i>.pkg.<j>.<feature>``): no bits, no call. The feature names are the ones libvirt
12.8 reads: ``core_energy`` (joules) and ``activity`` (farads), both doubles. Not verified on live
hardware: no host here has PERF_PKG_MON, so the tests use the keys libvirt's headers name
(VIR_DOMAIN_STATS_CPU_ENERGY_MONITOR_*) with the features of its resctrl allow-list.
"""

from __future__ import annotations

from typing import List, Optional

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import resctrl_entries, with_tags
from kvm_telegraf.group import DomainView, Fields, Group, Stats
from kvm_telegraf.points import Point

# vm_energy fields <- cpu.energy.monitor.<i>.pkg.<j>.<feature>: counters since the monitor began.
ENERGY_FEATURES = (("core_energy_joules", "core_energy"), ("activity_farads", "activity"))


def vm_energy(view: DomainView) -> List[Point]:
    """One point per resctrl energy monitor and CPU package.

    ``vm_energy,monitor=vcpus_0-1,package=0,uuid=1b4e…,vcpus=0-1,vm=web01 core_energy_joules=812.25,activity_farads=0.031``
    """
    stats = view.domain.stats
    points = []
    for entry, tags in resctrl_entries(stats, "cpu.energy.monitor", "pkg", "package"):
        fields: Fields = {}
        for name, feature in ENERGY_FEATURES:
            value = stats.get(entry + feature)
            if type(value) in (int, float) and value >= 0:
                fields[name] = float(value)
        if fields:
            points.append(Point("vm_energy", with_tags(view.tags, *tags), fields))
    return points


def enabled(stats: Stats, _facts: Optional[DomainFacts]) -> bool:
    return bool(stats.get("cpu.energy.monitor.count"))


GROUP = Group(
    name="energy",
    help="vm_energy: the energy of the monitored vCPUs per CPU package (resctrl)",
    since=12_004_000,
    measurements=("vm_energy",),
    points=vm_energy,
    enabled=enabled,
    enable_hint="<cputune><energytune vcpus='0-1'><monitor vcpus='0-1'/></energytune> in the domain XML, on a host "
    "with Linux 7.0 or later whose CPUs have PERF_PKG_MON, resctrl mounted (mount -t resctrl resctrl "
    "/sys/fs/resctrl) and /sys/fs/resctrl/info/PERF_PKG_MON present",
)
