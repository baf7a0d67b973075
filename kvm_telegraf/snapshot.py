"""What one collection read: the raw bulk stats plus each domain's cached facts.

A snapshot is plain data. ``kvm-telegraf record`` saves it as JSON; the golden
tests load those files and feed them to shape and encode, so the JSON layout
below is also the bug-report format.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Dict, List, Mapping, Optional, Tuple

from kvm_telegraf.domain_xml import DomainFacts, parse_domain_xml

SNAPSHOT_FORMAT = "kvm-telegraf-snapshot/1"

StatValue = Any  # int, float, bool or str, exactly as libvirt returned it


@dataclass(frozen=True)
class DomainConfig:
    """Facts from the domain XML and flags: they change rarely, so they are cached."""

    xml: str
    persistent: Optional[bool] = None
    autostart: Optional[bool] = None
    managed_save: Optional[bool] = None

    @cached_property
    def facts(self) -> Optional[DomainFacts]:
        """The parsed XML, once per fetched config; None when it does not parse."""
        try:
            return parse_domain_xml(self.xml)
        except ValueError:
            return None


@dataclass(frozen=True)
class DomainSample:
    name: str
    uuid: str
    id: int  # -1 when not running; a new id means the domain was restarted
    stats: Mapping[str, StatValue]
    config: Optional[DomainConfig] = None  # None when the XML could not be read


@dataclass(frozen=True)
class Snapshot:
    timestamp_ns: int
    domains: Tuple[DomainSample, ...] = field(default_factory=tuple)


def snapshot_to_json(snapshots: List[Snapshot]) -> str:
    """Serialise consecutive snapshots (one per cycle) for ``record``."""
    cycles = [
        {
            "timestamp_ns": snap.timestamp_ns,
            "domains": [
                {
                    "name": dom.name,
                    "uuid": dom.uuid,
                    "id": dom.id,
                    "stats": dict(dom.stats),
                    "config": asdict(dom.config) if dom.config else None,
                }
                for dom in snap.domains
            ],
        }
        for snap in snapshots
    ]
    return json.dumps({"format": SNAPSHOT_FORMAT, "cycles": cycles}, indent=1, sort_keys=True)


def _domain_from_dict(raw: Dict[str, Any]) -> DomainSample:
    config = raw.get("config")
    return DomainSample(
        name=raw["name"],
        uuid=raw["uuid"],
        id=raw["id"],
        stats=raw["stats"],
        config=DomainConfig(**config) if config else None,
    )


def snapshots_from_json(text: str) -> List[Snapshot]:
    """Load what ``record`` wrote; ValueError names what is wrong."""
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
                domains=tuple(_domain_from_dict(dom) for dom in cycle["domains"]),
            )
            for cycle in data["cycles"]
        ]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed snapshot file: {exc!r}") from None
