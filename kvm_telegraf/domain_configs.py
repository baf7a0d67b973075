"""Each domain's configuration (XML and flags), read on a worker and cached: it changes rarely.

A domain's entry is read again on start and restart (a new id), after
``--features-refresh``, when the stats show a NIC tap its XML does not name (a
hot-plugged NIC), after an event says it changed, and for all after SIGHUP.
Reads still out at the cycle's deadline are cached when they come; a domain with
no entry of its current boot meanwhile lacks what its XML gives (vm_features).
"""

from __future__ import annotations

import contextlib
import queue
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Sequence, Set, Tuple, Union

from kvm_telegraf.connection import error_message
from kvm_telegraf.domain_xml import METADATA_VALUE_MAX_CHARS, MetadataTag
from kvm_telegraf.group import RawStats
from kvm_telegraf.libvirt_facts import ERR_NO_DOMAIN, error_code
from kvm_telegraf.log import clip, get_logger
from kvm_telegraf.snapshot import DomainConfig, StatValue, tap_names, tap_set
from kvm_telegraf.worker import CallTimeoutError, Worker, answer_by

log = get_logger(__name__)

# A domain as collect names it: (name, UUID, ID).
Identity = Tuple[str, str, int]
# What one XML read gives: the config, or libvirt's refusal.
ConfigRead = Union[DomainConfig, Exception]


def read_config(dom: Any, metadata_tags: Tuple[MetadataTag, ...] = ()) -> ConfigRead:
    """XML and flags of one domain, or the exception libvirt raised (vanished, or a driver that refuses)."""
    try:
        return DomainConfig(
            xml=dom.XMLDesc(0),
            persistent=bool(dom.isPersistent()),
            autostart=bool(dom.autostart()),
            managed_save=bool(dom.hasManagedSaveImage(0)),
            metadata_tags=metadata_tags,
        )
    except Exception as exc:  # libvirtError
        return exc


@dataclass
class _Entry:
    domain_id: int
    fetched_at: float
    config: DomainConfig
    tap_names: Tuple[StatValue, ...]  # the NICs' tap names in the stats when it was read, as libvirt sent them
    taps: FrozenSet[str]  # the same as a set of the names


@dataclass
class ConfigCache:
    """The configurations of one host's domains, by UUID; reads run on one worker, never waited for past a deadline."""

    refresh_s: float = 300.0
    metadata_tags: Tuple[MetadataTag, ...] = ()
    monotonic: Callable[[], float] = time.monotonic  # the entries' age; deadlines use real time
    reads: int = field(default=0, init=False)  # how many reads the last cycle asked for (vm_host's config_reads)
    _entries: Dict[str, _Entry] = field(default_factory=dict, init=False)
    _worker: Worker = field(default_factory=lambda: Worker("domain-xml"), init=False)
    _results: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, init=False)
    _stale: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, init=False)  # UUIDs an event made stale
    _forget: bool = field(default=False, init=False)
    _costly_xml: Set[str] = field(default_factory=set, init=False)  # domains whose metadata tags were cut: said once
    _long_tags: Set[str] = field(default_factory=set, init=False)  # domains whose metadata values were cut: said once

    def forget(self) -> None:
        """Have the next cycle read every configuration again (SIGHUP); safe from another thread."""
        self._forget = True

    def stale(self, uuid: str) -> None:
        """Have the next cycle read this domain's configuration again (an event); safe from the event thread."""
        self._stale.put(uuid)

    def configs_for(
        self, records: RawStats, identities: Sequence[Identity], deadline: float
    ) -> Dict[str, DomainConfig]:
        """Each domain's configuration of its current boot, read where due, by *deadline*.

        *identities* are the records' (name, UUID, ID), in their order: collect asks libvirt-python once.
        """
        if self._forget:
            self._forget = False
            self._entries.clear()
        self._drop_stale()
        self._merge()
        now, refresh_s, entries = self.monotonic(), self.refresh_s, self._entries
        configs: Dict[str, DomainConfig] = {}
        wanted = []
        # One pass that also serves the cached configs: the stats' tap names are compared as libvirt sent them,
        # and turned into a set for the XML's check only when they changed (a hot-plug, a restart). Two passes
        # with a set per domain cost 14.4 K instructions per domain, this 6.8 K (callgrind, 20 paused guests).
        for (dom, stats), (name, uuid, domain_id) in zip(records, identities):
            names = tap_names(stats)
            entry = entries.get(uuid)
            if (
                entry is not None
                and entry.domain_id == domain_id
                and now - entry.fetched_at < refresh_s
                and (names == entry.tap_names or self._names_all(entry, names))
            ):
                configs[uuid] = entry.config
                continue
            wanted.append((dom, name, uuid, domain_id, names))
            if entry is not None and entry.domain_id == domain_id:  # served until the new read is in
                configs[uuid] = entry.config
        self._worker.start()  # at once, like the stats workers: the thread count stays level
        self.reads = len(wanted)
        if wanted:
            future = self._worker.submit(lambda: self._read(wanted, now))
            if future is not None:
                with contextlib.suppress(CallTimeoutError):
                    answer_by(future, deadline)
        if self._merge():  # reads in by the deadline (this cycle's, or late ones): every domain's newest
            configs = {}
            for _, uuid, domain_id in identities:
                entry = entries.get(uuid)
                if entry is not None and entry.domain_id == domain_id:
                    configs[uuid] = entry.config
        return configs

    @staticmethod
    def _names_all(entry: _Entry, names: Tuple[StatValue, ...]) -> bool:
        """Whether the stats' taps are those of the entry's read, or its XML names them all."""
        taps = tap_set(names)
        return taps == entry.taps or entry.config.names_all(taps)

    def prune(self, seen: FrozenSet[str]) -> None:
        """Forget the domains that are gone (or filtered out)."""
        for uuid in [uuid for uuid in self._entries if uuid not in seen]:
            del self._entries[uuid]
        self._costly_xml &= seen
        self._long_tags &= seen

    def _read(self, wanted: List[Tuple[Any, str, str, int, Tuple[StatValue, ...]]], now: float) -> None:
        for dom, name, uuid, domain_id, names in wanted:
            self._results.put((uuid, name, domain_id, names, now, read_config(dom, self.metadata_tags)))

    def _merge(self) -> bool:
        """Cache what the worker has read so far, this cycle's reads and late ones alike; whether there was any."""
        merged = False
        while True:
            try:
                uuid, name, domain_id, names, fetched_at, result = self._results.get_nowait()
            except queue.Empty:
                return merged
            merged = True
            if isinstance(result, DomainConfig):
                self._entries[uuid] = _Entry(domain_id, fetched_at, result, names, tap_set(names))
                self._note_costly_xml(uuid, name, result)
                continue
            self._entries.pop(uuid, None)  # only this domain loses vm_features
            if error_code(result) != ERR_NO_DOMAIN:  # a domain that vanished mid-cycle is no news
                log.warning("cannot read the configuration of domain %s: %s", name, error_message(result))

    def _note_costly_xml(self, uuid: str, name: str, config: DomainConfig) -> None:
        """One W! per domain whose XML would cost a --metadata-tag more than kvm_telegraf.xpath allows, and one per
        domain whose metadata values were cut to their bound."""
        cut = config.facts.metadata_cut if config.facts is not None else ()
        if cut and uuid not in self._long_tags:
            self._long_tags.add(uuid)
            log.warning(
                "domain %s: --metadata-tag %s cut to %d characters, so every series key stays within InfluxDB's limit",
                name,
                clip(", ".join(f"{tag} ({length} characters)" for tag, length in cut)),
                METADATA_VALUE_MAX_CHARS,
            )
        skipped = config.facts.metadata_skipped if config.facts is not None else ()
        if skipped and uuid not in self._costly_xml:
            self._costly_xml.add(uuid)
            log.warning(
                "domain %s: --metadata-tag %s not read (%s); its other tags and vm_features are",
                name,
                ", ".join(tag for tag, _ in skipped),
                "; ".join(sorted({why for _, why in skipped})),
            )

    def _drop_stale(self) -> None:
        while True:
            try:
                self._entries.pop(self._stale.get_nowait(), None)
            except queue.Empty:
                return
