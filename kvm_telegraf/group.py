"""What a ``--collect`` group is: the one contract that collect, shape, doctor and the CLI read.

Each group is one module under ``kvm_telegraf/groups/`` that ends in a ``GROUP``
built from this class, and one line of the registry (``groups/__init__.py``).
A group fills in only what it adds: the bits or flags of the one bulk call,
calls of its own, points or fields, and how doctor tells whether a domain has
it on. Nothing outside its module and the registry names a group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Protocol, Sequence, Tuple

from kvm_telegraf.connection import Connection
from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.libvirt_facts import (
    DEFAULT_STATS,
    ERR_ARGUMENT_UNSUPPORTED,
    STATS_ENFORCE,
    STATS_NO_DOMAINS,
    error_code,
)
from kvm_telegraf.points import FieldValue, Point, Tags
from kvm_telegraf.snapshot import DomainConfig, DomainSample, Snapshot, StatValue

Fields = Dict[str, FieldValue]
Stats = Mapping[str, StatValue]
RawStats = List[Tuple[Any, Dict[str, Any]]]  # getAllDomainStats' answer: (virDomain, stats) per domain


class DomainView(NamedTuple):
    """What a group's shape functions see of one domain."""

    domain: DomainSample
    tags: Tags  # uuid, vm and the extra tags, sorted: the domain's own series
    extra: Tags  # hypervisor and metadata tags, for points tagged by more than the domain
    groups: Tuple[Group, ...]  # the groups on this run (kvm adds its fields to vcpu's points)
    carried: Any = None  # what this group carried over from the domain's previous cycle (None: first, or restarted)


@dataclass
class HostMemo:
    """What one group's host calls keep between cycles, per host: until SIGHUP, or for ``refresh_s``."""

    refresh_s: float
    monotonic: Callable[[], float] = time.monotonic
    _values: Dict[str, Tuple[float, Any]] = field(default_factory=dict, init=False)

    def once(self, key: str, fetch: Callable[[], Any]) -> Any:
        """The value fetched once (facts fixed while the daemon runs); a failed fetch (None) is tried next cycle."""
        if key not in self._values:
            value = fetch()
            if value is not None:
                self._values[key] = (self.monotonic(), value)
        return self._values[key][1] if key in self._values else None

    def every(self, key: str, fetch: Callable[[], Any]) -> Any:
        """The value fetched again once ``refresh_s`` has passed; the last good one while a fetch fails."""
        kept = self._values.get(key)
        if kept is None or self.monotonic() - kept[0] >= self.refresh_s:
            value = fetch()
            if value is not None:
                self._values[key] = kept = (self.monotonic(), value)
        return kept[1] if kept is not None else None

    def forget(self) -> None:
        self._values.clear()


class OwnCalls(Protocol):
    """Calls that cannot share the groups' workers (a guest agent may never answer): threads of their own."""

    def calls(
        self, records: RawStats, configs: Mapping[str, DomainConfig], not_responding: Sequence[str], deadline: float
    ) -> Dict[str, Dict[str, Any]]:
        """Per UUID, the entries for DomainSample.calls, by *deadline* (a monotonic time)."""

    def close(self) -> None: ...


DomainCall = Callable[[Any, Optional[DomainFacts]], Dict[str, Any]]  # (virDomain, its XML's facts) -> calls entries
HostCall = Callable[[Any, HostMemo], Dict[str, Any]]  # (virConnect, memo) -> entries of the host's data


@dataclass(frozen=True)
class Group:
    """A ``--collect`` group: what it reads, what it needs, what it adds."""

    name: str
    help: str  # one line: what it adds, for --collect --help, doctor and the README's table
    since: int  # the libvirt version it needs, as libvirt numbers it (major * 1,000,000 + minor * 1,000 + micro)
    bits: int = 0  # the bulk-stats bits it ORs into the one call
    flags: int = 0  # the flags it ORs into the one call (BACKING)
    reads_xml: bool = False  # it needs each domain's XML (vcpu's affinity, the disks to ask about)
    read_write: bool = False  # libvirt serves its calls on a read-write connection only; ``all`` leaves it out
    events: bool = False  # it reports libvirt's domain events, so the run subscribes to them
    calls: Tuple[str, ...] = ()  # the libvirt calls it makes besides the bulk call, as doctor names them
    measurements: Tuple[str, ...] = ()  # the measurements of its own
    # collect: on the groups' workers, per active domain whose QEMU answered this cycle (paused too), and per host
    domain_call: Optional[DomainCall] = None
    host_call: Optional[HostCall] = None
    # collect: calls on threads and a connection of their own (Connection, the refresh period in s)
    own_calls: Optional[Callable[[Connection, float], OwnCalls]] = None
    # shape, pure: its points per domain, the fields it adds to others' points, its points per host and batch
    points: Optional[Callable[[DomainView], List[Point]]] = None
    totals_fields: Optional[Callable[[DomainView], Fields]] = None  # onto vm_totals
    disk_fields: Optional[Callable[[DomainView, str], Fields]] = None  # onto vm_devices, per disk target
    # onto vm_vcpus: from the domain's stats, the fields of each vCPU, by its number as libvirt writes it (vcpu.<n>.)
    vcpu_fields: Optional[Callable[[Stats], Mapping[str, Fields]]] = None
    host_points: Optional[Callable[[Mapping[str, Any], Sequence[DomainSample], Optional[int]], List[Point]]] = None
    batch_points: Optional[Callable[[Snapshot], List[Point]]] = None  # after every domain's and host's
    carry: Optional[Callable[[DomainView], Any]] = None  # what the domain's next cycle gets as DomainView.carried
    # doctor: whether a domain has it on (its stats with every group's bits, its XML's facts), and how to
    enabled: Optional[Callable[[Stats, Optional[DomainFacts]], bool]] = None
    enable_hint: str = ""

    def supported_by(self, conn: Any) -> bool:
        """Whether the daemon serves it: its bulk bits probed with ENFORCE_STATS, else the daemon's version.

        A probe that fails otherwise says nothing about support: the cycle reports that failure.
        """
        extra_bits = self.bits & ~DEFAULT_STATS
        try:
            if extra_bits:
                conn.getAllDomainStats(extra_bits, STATS_ENFORCE | STATS_NO_DOMAINS)
                return True
            return bool(conn.getLibVersion() >= self.since)
        except Exception as exc:  # libvirtError
            return not (error_code(exc) == ERR_ARGUMENT_UNSUPPORTED or extra_bits == 0)


def stats_bits(groups: Iterable[Group]) -> int:
    """The bulk-stats bits *groups* add to the default ones."""
    bits = 0
    for group in groups:
        bits |= group.bits
    return bits


def stats_flags(groups: Iterable[Group]) -> int:
    """The call flags *groups* add (BACKING)."""
    flags = 0
    for group in groups:
        flags |= group.flags
    return flags


def or_none(call: Callable[[], Any]) -> Any:
    """The call's answer, or None when libvirt refuses it: a domain gone, a disk without medium, an old driver.

    A group's calls lose only their own entry that way.
    """
    try:
        return call()
    except Exception:  # libvirtError
        return None
