"""``--collect dirtyrate``: ``dirtyrate_*`` on vm_totals, where a dirty-rate calculation was run.

kvm-telegraf never starts a calculation (a read-write call): it reports the last one someone ran.
"""

from __future__ import annotations

from typing import Optional

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import counter
from kvm_telegraf.group import DomainView, Fields, Group, Stats
from kvm_telegraf.libvirt_facts import STATS_DIRTYRATE


def dirtyrate_fields(view: DomainView) -> Fields:
    """The last dirty-rate calculation, once one has been started (calc_status 0 is "never")."""
    stats = view.domain.stats
    status = counter(stats.get("dirtyrate.calc_status"))
    if not status:
        return {}
    fields: Fields = {"dirtyrate_calc_status": status}
    rate = counter(stats.get("dirtyrate.megabytes_per_second"))
    if rate is not None:
        fields["dirtyrate_mib_per_s"] = rate
    return fields


def enabled(stats: Stats, _facts: Optional[DomainFacts]) -> bool:
    return bool(stats.get("dirtyrate.calc_status"))


GROUP = Group(
    name="dirtyrate",
    help="dirtyrate_* on vm_totals, where a calculation was run",
    since=7_002_000,
    bits=STATS_DIRTYRATE,
    totals_fields=dirtyrate_fields,
    enabled=enabled,
    enable_hint="virsh domdirtyrate-calc DOMAIN (a read-write call; kvm-telegraf never starts one)",
)
