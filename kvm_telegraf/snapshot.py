"""What one collection read: the raw bulk stats plus each domain's cached facts.

A snapshot is plain data. ``kvm-telegraf record`` saves it as JSON; the golden
tests load those files and feed them to shape and encode, so the JSON layout
below is also the bug-report format.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Protocol, Tuple

from kvm_telegraf.domain_xml import DomainFacts, MetadataTag, parse_domain_xml
from kvm_telegraf.points import FieldValue

SNAPSHOT_FORMAT = "kvm-telegraf-snapshot/1"

StatValue = Any  # int, float, bool or str, exactly as libvirt returned it


@dataclass(frozen=True)
class DomainConfig:
    """Facts from the domain XML and flags: they change rarely, so they are cached.

    The XML is parsed when the config is made (in collect, once per fetch), never
    in shape: ``facts`` is None when it does not parse.
    """

    xml: str
    persistent: Optional[bool] = None
    autostart: Optional[bool] = None
    managed_save: Optional[bool] = None
    # How to read tags from the XML: an option of this run, not recorded with the snapshot.
    metadata_tags: Tuple[MetadataTag, ...] = field(default=(), compare=False, repr=False)
    facts: Optional[DomainFacts] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        try:
            facts: Optional[DomainFacts] = parse_domain_xml(self.xml, self.metadata_tags)
        except ValueError:
            facts = None
        object.__setattr__(self, "facts", facts)  # frozen: set once, here

    def names_all(self, taps: FrozenSet[str]) -> bool:
        """False when a tap is missing from this XML: a NIC hot-plugged (or a restart) since it was read."""
        facts = self.facts
        if facts is None:
            return True  # re-reading an XML that does not parse would not help
        return taps <= {dev for dev, _ in facts.interfaces}


# libvirt's keys of the first NICs' tap names, made once: the cache check reads them for every domain each cycle.
TAP_NAME_KEYS = tuple(tuple(f"net.{i}.name" for i in range(count)) for count in range(9))


def tap_names(stats: Mapping[str, StatValue]) -> Tuple[StatValue, ...]:
    """The bulk stats' tap name of each NIC, as libvirt sent it (None where it sent none): compared as they are.

    A tuple from one C-level map over keys made once, where the check built each key and a set per domain:
    the configuration cache's check per cycle, 14.4 K -> 6.8 K instructions per domain (issue #26, callgrind,
    20 paused lab guests with 2 NICs each).
    """
    count = stats.get("net.count")
    if type(count) is not int or count <= 0:
        return ()
    keys = TAP_NAME_KEYS[count] if count < len(TAP_NAME_KEYS) else tuple(f"net.{i}.name" for i in range(count))
    return tuple(map(stats.get, keys))


def tap_set(names: Tuple[StatValue, ...]) -> FrozenSet[str]:
    """The host-side tap names among tap_names(): the set an XML must name."""
    return frozenset(tap for tap in names if isinstance(tap, str) and tap)


@dataclass
class DomainSample:
    """One domain's part of a snapshot; shape reads it and nothing changes it after collect made it.

    Not frozen: a frozen dataclass sets each of its 8 fields through object.__setattr__, 1.95 us a
    sample against 0.54 us (timeit, Python 3.11); it was 13.5 K of collect's 38 K instructions per
    domain on replayed records (issue #26).
    """

    name: str
    uuid: str
    id: int  # -1 when not running; a new id means the domain was restarted
    stats: Mapping[str, StatValue]
    config: Optional[DomainConfig] = None  # None when the XML could not be read
    hypervisor: Optional[str] = None  # libvirt's hostname, when several hosts are read (or asked for)
    # False when this running domain's QEMU did not answer by the deadline: its stats are only what
    # libvirt had without it (a frozen guest), or the state alone (a saturated host).
    responding: bool = True
    # What the --collect groups' own calls read for this domain (kvm_telegraf.group_calls); empty without them.
    calls: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DomainEvent:
    """One libvirt domain event, stamped when it arrived: a vm_events point of its own time."""

    timestamp_ns: int
    uuid: str
    name: str
    event: str  # the vm_events ``event`` tag: started, stopped, device_added, ...
    detail: Optional[str] = None  # libvirt's detail as a word: booted, destroyed, ...
    device: Optional[str] = None  # device and I/O-error events
    action: Optional[str] = None  # I/O error and watchdog
    reason: Optional[str] = None  # I/O error (enospc, ...) and agent events
    hypervisor: Optional[str] = None  # as DomainSample.hypervisor
    # What else the event carries, as vm_events fields: a threshold's bytes, a balloon's size, a NIC's MACs, ...
    values: Tuple[Tuple[str, FieldValue], ...] = ()


_EVENT_FIELDS = ("detail", "device", "action", "reason", "hypervisor")


@dataclass(frozen=True)
class Snapshot:
    timestamp_ns: int  # when the bulk call returned: the batch's timestamp
    domains: Tuple[DomainSample, ...] = field(default_factory=tuple)
    started_ns: Optional[int] = None  # when the bulk call began (absent in files recorded before 0.3)
    # Per hypervisor, what the host and pools groups read plus the cycle's own health; empty without them.
    hosts: Tuple[Mapping[str, Any], ...] = ()
    events: Tuple[DomainEvent, ...] = ()  # what libvirt pushed since the previous snapshot, in arrival order


_RECORDED_CONFIG = ("xml", "persistent", "autostart", "managed_save")


def _domain_to_dict(dom: DomainSample) -> Dict[str, Any]:
    config = dom.config
    raw: Dict[str, Any] = {
        "name": dom.name,
        "uuid": dom.uuid,
        "id": dom.id,
        "stats": dict(dom.stats),
        "config": {name: getattr(config, name) for name in _RECORDED_CONFIG} if config else None,
    }
    if dom.hypervisor is not None:  # absent in single-host files, which stay as they were
        raw["hypervisor"] = dom.hypervisor
    if not dom.responding:  # absent when it answered, so earlier files stay as they were
        raw["responding"] = False
    if dom.calls:  # absent without --collect groups that make calls
        raw["calls"] = dict(dom.calls)
    return raw


def _event_to_dict(event: DomainEvent) -> Dict[str, Any]:
    raw: Dict[str, Any] = {"timestamp_ns": event.timestamp_ns, "uuid": event.uuid, "name": event.name}
    raw["event"] = event.event
    raw.update({key: getattr(event, key) for key in _EVENT_FIELDS if getattr(event, key) is not None})
    if event.values:  # absent for the events that carry nothing else, so earlier files stay as they were
        raw["values"] = [list(pair) for pair in event.values]  # pairs: JSON would sort an object's keys
    return raw


def _event_from_dict(raw: Dict[str, Any]) -> DomainEvent:
    return DomainEvent(
        timestamp_ns=raw["timestamp_ns"],
        uuid=raw["uuid"],
        name=raw["name"],
        event=raw["event"],
        **{key: raw[key] for key in _EVENT_FIELDS if key in raw},
        values=tuple((name, value) for name, value in raw.get("values", ())),
    )


class SnapshotSource(Protocol):
    """Where a cycle's snapshot comes from: one host's Collector, or a HostSet of several."""

    def collect(self) -> Snapshot: ...

    def forget_configs(self) -> None:
        """Have the next collect() read every domain's XML and flags again (SIGHUP)."""

    def close(self) -> None: ...


def record_cycles(source: SnapshotSource, cycles: int, every_s: float) -> List[Snapshot]:
    """``kvm-telegraf record``: *cycles* consecutive snapshots, *every_s* apart."""
    snapshots = []
    for index in range(cycles):
        if index:
            time.sleep(every_s)
        snapshots.append(source.collect())
    return snapshots


def snapshot_to_json(snapshots: List[Snapshot]) -> str:
    """Serialise consecutive snapshots (one per cycle) for ``record``."""
    import json  # only record and the tests need it; the collector's start-up does not

    cycles = [
        {"timestamp_ns": snap.timestamp_ns, "domains": [_domain_to_dict(dom) for dom in snap.domains]}
        | ({} if snap.started_ns is None else {"started_ns": snap.started_ns})
        | ({"hosts": [dict(host) for host in snap.hosts]} if snap.hosts else {})
        | ({"events": [_event_to_dict(event) for event in snap.events]} if snap.events else {})  # else as before
        for snap in snapshots
    ]
    return json.dumps({"format": SNAPSHOT_FORMAT, "cycles": cycles}, indent=1, sort_keys=True)


def _domain_from_dict(raw: Dict[str, Any], metadata_tags: Tuple[MetadataTag, ...]) -> DomainSample:
    config = raw.get("config")
    return DomainSample(
        name=raw["name"],
        uuid=raw["uuid"],
        id=raw["id"],
        stats=raw["stats"],
        config=DomainConfig(**config, metadata_tags=metadata_tags) if config else None,
        hypervisor=raw.get("hypervisor"),
        responding=raw.get("responding", True),
        calls=raw.get("calls", {}),
    )


def snapshots_from_json(text: str, metadata_tags: Tuple[MetadataTag, ...] = ()) -> List[Snapshot]:
    """Load what ``record`` wrote, reading *metadata_tags* from its XML; ValueError names what is wrong."""
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a snapshot file: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"not a snapshot file: expected format {SNAPSHOT_FORMAT!r}")
    try:
        return [
            Snapshot(
                timestamp_ns=cycle["timestamp_ns"],
                domains=tuple(_domain_from_dict(dom, metadata_tags) for dom in cycle["domains"]),
                started_ns=cycle.get("started_ns"),
                hosts=tuple(cycle.get("hosts", ())),
                events=tuple(_event_from_dict(event) for event in cycle.get("events", ())),
            )
            for cycle in data["cycles"]
        ]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed snapshot file: {exc!r}") from None
