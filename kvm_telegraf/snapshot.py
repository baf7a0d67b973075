"""What one collection read: the raw bulk stats plus each domain's cached facts.

A snapshot is plain data. ``kvm-telegraf record`` saves it as JSON; the golden
tests load those files and feed them to shape and encode, so the JSON layout
below is also the bug-report format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Dict, List, Mapping, Optional, Tuple

from kvm_telegraf.domain_xml import DomainFacts, MetadataTag, parse_domain_xml

SNAPSHOT_FORMAT = "kvm-telegraf-snapshot/1"

StatValue = Any  # int, float, bool or str, exactly as libvirt returned it


@dataclass(frozen=True)
class DomainConfig:
    """Facts from the domain XML and flags: they change rarely, so they are cached."""

    xml: str
    persistent: Optional[bool] = None
    autostart: Optional[bool] = None
    managed_save: Optional[bool] = None
    # How to read tags from the XML: an option of this run, not recorded with the snapshot.
    metadata_tags: Tuple[MetadataTag, ...] = field(default=(), compare=False, repr=False)

    @cached_property
    def facts(self) -> Optional[DomainFacts]:
        """The parsed XML, once per fetched config; None when it does not parse."""
        try:
            return parse_domain_xml(self.xml, self.metadata_tags)
        except ValueError:
            return None


@dataclass(frozen=True)
class DomainSample:
    name: str
    uuid: str
    id: int  # -1 when not running; a new id means the domain was restarted
    stats: Mapping[str, StatValue]
    config: Optional[DomainConfig] = None  # None when the XML could not be read
    hypervisor: Optional[str] = None  # libvirt's hostname, when several hosts are read (or asked for)
    # False when this running domain's QEMU did not answer by the deadline: its stats are only what
    # libvirt had without it (a frozen guest), or the state alone (a saturated host).
    responding: bool = True


@dataclass(frozen=True)
class Snapshot:
    timestamp_ns: int
    domains: Tuple[DomainSample, ...] = field(default_factory=tuple)


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
    return raw


def snapshot_to_json(snapshots: List[Snapshot]) -> str:
    """Serialise consecutive snapshots (one per cycle) for ``record``."""
    import json  # only record and the tests need it; the collector's start-up does not

    cycles = [
        {"timestamp_ns": snap.timestamp_ns, "domains": [_domain_to_dict(dom) for dom in snap.domains]}
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
            )
            for cycle in data["cycles"]
        ]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed snapshot file: {exc!r}") from None
