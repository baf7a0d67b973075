"""``--collect dirtyrate``: ``dirtyrate_*`` on vm_totals (and per vCPU on vm_vcpus), where a calculation was run.

kvm-telegraf never starts a calculation (a read-write call): it reports the last one someone ran,
with its mode, period and start; a dirty-ring calculation also gives each vCPU's rate.
"""

from __future__ import annotations

from typing import Dict, Optional

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import counter
from kvm_telegraf.group import DomainView, Fields, Group, Stats
from kvm_telegraf.libvirt_facts import STATS_DIRTYRATE

# dirtyrate.* keys -> vm_totals fields (numbers).
DIRTYRATE_FIELDS = (
    ("dirtyrate_mib_per_s", "dirtyrate.megabytes_per_second"),
    ("dirtyrate_calc_period_s", "dirtyrate.calc_period"),
    ("dirtyrate_calc_start_s", "dirtyrate.calc_start_time"),
)


def dirtyrate_fields(view: DomainView) -> Fields:
    """The last dirty-rate calculation, once one has been started (calc_status 0 is "never")."""
    stats = view.domain.stats
    status = counter(stats.get("dirtyrate.calc_status"))
    if not status:
        return {}
    fields: Fields = {"dirtyrate_calc_status": status}
    for name, key in DIRTYRATE_FIELDS:
        value = counter(stats.get(key))
        if value is not None:
            fields[name] = value
    mode = stats.get("dirtyrate.calc_mode")
    if isinstance(mode, str) and mode:
        fields["dirtyrate_calc_mode"] = mode
    return fields


def vcpu_rates(stats: Stats) -> Dict[str, Fields]:
    """Each vCPU's dirty rate, by vCPU number: a dirty-ring calculation reports it per vCPU."""
    rates: Dict[str, Fields] = {}
    for n in range(counter(stats.get("vcpu.maximum")) or 0):
        rate = counter(stats.get(f"dirtyrate.vcpu.{n}.megabytes_per_second"))
        if rate is not None:
            rates[str(n)] = {"dirtyrate_mib_per_s": rate}
    return rates


def enabled(stats: Stats, _facts: Optional[DomainFacts]) -> bool:
    return bool(stats.get("dirtyrate.calc_status"))


GROUP = Group(
    name="dirtyrate",
    help="dirtyrate_* on vm_totals (mode, period, start, rate) and per vCPU on vm_vcpus, where a calculation was run",
    since=7_002_000,
    bits=STATS_DIRTYRATE,
    totals_fields=dirtyrate_fields,
    vcpu_fields=vcpu_rates,
    enabled=enabled,
    enable_hint="virsh domdirtyrate-calc DOMAIN (a read-write call; kvm-telegraf never starts one)",
)
