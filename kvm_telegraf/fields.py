"""libvirt's numbers as fields, and the tags a domain's points share: one rule for every measurement.

A stat libvirt does not report is left out, never written as 0; and a value
that is not a non-negative int64 (libvirt's -1 "unknown", which the binding
hands over as 2**64-1) counts as not reported. Every measurement, the default
four and the groups', reads its numbers through here.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

from kvm_telegraf.points import INT64_MAX, FieldValue, Tags
from kvm_telegraf.snapshot import DomainSample

# (field, stat key, multiplier); device keys are relative to "net.<i>." or "block.<i>.".
Rows = Sequence[Tuple[str, str, int]]


def counter(value: Any) -> Optional[int]:
    """The value as a reportable integer, or None when absent or out of range."""
    return value if type(value) is int and 0 <= value <= INT64_MAX else None


def read_fields(stats: Mapping[str, Any], rows: Rows, prefix: str = "") -> Dict[str, FieldValue]:
    """The reportable counters of *rows*, scaled, under their field names."""
    fields: Dict[str, FieldValue] = {}
    for name, key, scale in rows:
        value = stats.get(prefix + key)
        # counter(), inlined: this loop reads nearly every stat (callgrind, 1,000-domain batch: 705M -> 629M
        # instructions together with encode's inlined integer path)
        if type(value) is int and 0 <= value <= INT64_MAX:
            fields[name] = value * scale
    return fields


def resctrl_entries(
    stats: Mapping[str, Any], monitors: str, part: str, tag: str, vcpus: bool = True
) -> Iterator[Tuple[str, Tuple[Tuple[str, str], ...]]]:
    """Each ``<monitors>.<i>.<part>.<j>.`` prefix of libvirt's resctrl monitors (cache banks, NUMA nodes, CPU packages),
    with its tags: ``monitor`` (its name, else i), *tag* (the entry's id, else j) and, where asked, ``vcpus``."""
    for i in range(counter(stats.get(f"{monitors}.count")) or 0):
        prefix = f"{monitors}.{i}."
        monitor = ("monitor", str(stats.get(prefix + "name") or i))
        vcpu_set = stats.get(prefix + "vcpus") if vcpus else None
        vcpu_tag = (("vcpus", vcpu_set),) if isinstance(vcpu_set, str) and vcpu_set else ()
        for j in range(counter(stats.get(f"{prefix}{part}.count")) or 0):
            entry = f"{prefix}{part}.{j}."
            number = counter(stats.get(entry + "id"))
            yield entry, (monitor, (tag, str(number if number is not None else j)), *vcpu_tag)


def with_tags(tags: Tags, *more: Tuple[str, str]) -> Tags:
    """*tags* and *more*, sorted by key as InfluxDB prefers."""
    return tuple(sorted((*tags, *more)))


def host_tags(host: Mapping[str, Any]) -> Tags:
    """A host's points' tags: ``hypervisor`` where the host has a name (several --uri, or --hypervisor-tag)."""
    hypervisor = host.get("hypervisor")
    return (("hypervisor", hypervisor),) if hypervisor else ()


def extra_tags(domain: DomainSample) -> Tags:
    """``hypervisor`` and the metadata tags (``--nova``, ``--metadata-tag``) that this domain has."""
    facts = domain.config.facts if domain.config is not None else None
    metadata = facts.metadata if facts is not None else ()
    return (("hypervisor", domain.hypervisor), *metadata) if domain.hypervisor else metadata
