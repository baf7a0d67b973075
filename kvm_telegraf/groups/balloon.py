"""``--collect balloon``: ``memory_stats_updated_s`` and ``memory_hugetlb_*`` on vm_totals.

Its keys come with the balloon group of the default call; the default vm_totals leaves them out.
"""

from __future__ import annotations

from typing import Optional

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import counter
from kvm_telegraf.group import DomainView, Fields, Group, Stats

# balloon.* keys the default vm_totals leaves out -> their fields.
BALLOON_EXTRA_FIELDS = (
    ("memory_hugetlb_pgalloc", "balloon.hugetlb_pgalloc"),
    ("memory_hugetlb_pgfail", "balloon.hugetlb_pgfail"),
)


def balloon_fields(view: DomainView) -> Fields:
    """When the guest last sent balloon statistics (unix seconds; 0, "never", is left out) and its huge page
    allocations through the balloon, successful and failed."""
    stats = view.domain.stats
    fields: Fields = {}
    updated = counter(stats.get("balloon.last-update"))
    if updated:
        fields["memory_stats_updated_s"] = updated
    for name, key in BALLOON_EXTRA_FIELDS:
        value = counter(stats.get(key))
        if value is not None:
            fields[name] = value
    return fields


def enabled(stats: Stats, _facts: Optional[DomainFacts]) -> bool:
    return bool(stats.get("balloon.last-update"))


GROUP = Group(
    name="balloon",
    help="memory_stats_updated_s, memory_hugetlb_* on vm_totals",
    since=2_001_000,
    totals_fields=balloon_fields,
    enabled=enabled,
    enable_hint="<memballoon><stats period='N'/> in the domain XML, or virsh dommemstat --period N --live DOMAIN",
)
