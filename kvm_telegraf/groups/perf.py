"""``--collect perf``: ``perf_<event>`` on vm_totals, for the perf events enabled on a domain.

Not verified on live hardware: perf events are not available inside the VM the lab runs in,
so the tests use the keys libvirt's documentation names.
"""

from __future__ import annotations

from typing import Optional

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import counter
from kvm_telegraf.group import DomainView, Fields, Group, Stats
from kvm_telegraf.libvirt_facts import STATS_PERF


def perf_fields(view: DomainView) -> Fields:
    """``perf_<event>`` for each perf event enabled on the domain (``perf.cpu_cycles``)."""
    stats = view.domain.stats
    return {
        "perf_" + key[5:]: value
        for key, value in stats.items()
        if key.startswith("perf.") and counter(value) is not None
    }


def enabled(stats: Stats, _facts: Optional[DomainFacts]) -> bool:
    return any(key.startswith("perf.") and value is not None for key, value in stats.items())


GROUP = Group(
    name="perf",
    help="perf_<event> on vm_totals (events enabled with virsh perf)",
    since=1_003_003,
    bits=STATS_PERF,
    totals_fields=perf_fields,
    enabled=enabled,
    enable_hint="virsh perf DOMAIN --enable cpu_cycles,instructions (needs perf events on the host)",
)
