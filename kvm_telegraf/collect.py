"""One host's snapshot per cycle: the bulk read, the domains' configurations, the groups' calls, the events.

Every libvirt call runs on a persistent worker, and a cycle waits for none past
``--timeout`` + COLLECT_GRACE_S, whatever libvirt does (kvm_telegraf/bulk_read.py
for the bulk read's tiers, kvm_telegraf/domain_configs.py for the XML,
kvm_telegraf/group_calls.py for the groups' calls).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Optional, Tuple

from kvm_telegraf.bulk_read import FULL, STATE_ONLY, BulkRead, Episodes, TieredRead
from kvm_telegraf.connection import Connection, LibvirtUnavailableError, error_message, is_alive, redact_uri
from kvm_telegraf.domain_configs import ConfigCache
from kvm_telegraf.domain_filter import DomainFilter, MatchNotes
from kvm_telegraf.events import CONFIG_CHANGING, TUNABLES_CHANGED, EventQueue
from kvm_telegraf.group import Group, RawStats, stats_bits, stats_flags
from kvm_telegraf.group_calls import DomainCalls, GroupCalls, served_groups
from kvm_telegraf.libvirt_facts import DEFAULT_STATS
from kvm_telegraf.log import get_logger
from kvm_telegraf.snapshot import DomainConfig, DomainEvent, DomainSample, Snapshot

log = get_logger(__name__)

# How far past --timeout a cycle may take: the XML reads and the groups' calls get what the bulk read left of it.
COLLECT_GRACE_S = 0.5


@dataclass
class Collector:
    """Reads one Snapshot per call over a persistent connection, by a deadline."""

    connection: Connection
    domain_filter: DomainFilter = field(default_factory=DomainFilter)
    timeout_s: float = 5.0
    configs: Optional[ConfigCache] = field(default_factory=ConfigCache)  # None: nothing needs the domains' XML
    groups: Tuple[Group, ...] = ()  # --collect: the groups asked for
    implied_groups: FrozenSet[str] = frozenset()  # those only ``all`` asked for: no warning where the daemon lacks one
    events: Optional[EventQueue] = None  # vm_events: what libvirt pushed, for the next batch
    own_connection: Optional[Callable[[], Connection]] = None  # for the groups whose calls run on their own
    features_refresh_s: float = 300.0  # how long the groups' host calls keep what rarely changes (pools)
    own_refresh_s: float = 60.0  # how often the groups whose calls run on their own ask (--guest-refresh)
    clock: Callable[[], int] = time.time_ns
    last_read: Optional[BulkRead] = field(default=None, init=False)  # the last cycle's bulk read, for doctor
    reader: TieredRead = field(init=False)
    _episodes: Episodes = field(init=False)
    _matches: MatchNotes = field(init=False)
    _active: Optional[Tuple[Group, ...]] = field(default=None, init=False)  # the groups the daemon serves
    _calls: Optional[GroupCalls] = field(default=None, init=False)
    _forget: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.reader = TieredRead(
            self.timeout_s,
            self.connection.another,
            self.domain_filter if self.domain_filter.active else None,
        )
        self._episodes = Episodes(self.timeout_s)
        self._matches = MatchNotes(self.domain_filter, redact_uri(self.connection.uri))

    def collect(self) -> Snapshot:
        """One cycle's snapshot by --timeout + COLLECT_GRACE_S; LibvirtUnavailableError when libvirt cannot be had."""
        if self._forget:
            self._forget = False
            if self.configs is not None:
                self.configs.forget()
            if self._calls is not None:
                self._calls.forget()
        started, started_ns = time.monotonic(), self.clock()
        read = self.last_read = self._bulk_read(started)
        timestamp = self.clock()
        self._episodes.note(read)
        records = read.records  # the chosen domains only (bulk_read.read_stats)
        # Each accessor once here: libvirt-python's UUIDString() alone costs about 1 us a call, and a collect
        # used to ask 11 per domain (3 names, 5 UUIDs, 3 IDs; now one each: tests/test_collect.py).
        identities = [(dom.name(), dom.UUIDString(), dom.ID()) for dom, _ in records]
        self._matches.note(len(identities), read.domains_listed)
        deadline = started + self.timeout_s + COLLECT_GRACE_S  # for every call after the bulk read
        configs: Dict[str, DomainConfig] = {}
        if self.configs is not None:
            # On a saturated host the XML reads are not waited for: they land in the cache for later cycles.
            configs = self.configs.configs_for(
                records, identities, time.monotonic() if read.tier == STATE_ONLY else deadline
            )
        host, calls = self._group_calls(records, configs, read, deadline)
        not_responding = frozenset(read.not_responding)
        domains = tuple(
            DomainSample(
                name=name,
                uuid=uuid,
                id=domain_id,
                stats=stats,
                config=configs.get(uuid),
                responding=name not in not_responding,
                calls=calls.get(uuid, {}),
            )
            for (name, uuid, domain_id), (_, stats) in zip(identities, records)
        )
        if self.configs is not None:
            self.configs.prune(frozenset(domain.uuid for domain in domains))
        hosts: Tuple[Dict[str, Any], ...] = ()
        if self._calls is not None and self._calls.per_host:
            hosts = ({**host, "health": self._health(read, timestamp - started_ns)},)
        return Snapshot(timestamp, domains, started_ns, hosts, self._take_events())

    def _bulk_read(self, started: float) -> BulkRead:
        """The tiered read; a failed call is made once more in the same cycle, on a new connection if it died.

        A dead connection is libvirtd restarted. On a live one, libvirt 9.0 fails the whole call when a guest is
        destroyed while the call reads it (seen with the iothread and dirtyrate bits), and the retry finds it gone.
        """
        for attempt in (1, 2):
            conn = self.connection.get()
            active = self._check_groups(conn)
            try:
                return self.reader.read(conn, DEFAULT_STATS | stats_bits(active), stats_flags(active), started)
            except LibvirtUnavailableError:
                raise
            except Exception as exc:  # libvirtError: daemon restarted, socket closed, a domain gone mid-call
                if not is_alive(conn):
                    self.connection.close()
                if attempt == 2:
                    raise LibvirtUnavailableError(
                        f"stats call failed: {error_message(exc, self.connection.uri)}"
                    ) from None
        raise AssertionError("unreachable")

    def _check_groups(self, conn: Any) -> Tuple[Group, ...]:
        """The groups the daemon serves, found once per process (served_groups says which it does not)."""
        if self._active is None:
            self._active = served_groups(conn, self.groups, redact_uri(self.connection.uri), self.implied_groups)
            own = self.own_connection or self.connection.another
            self._calls = GroupCalls(self._active, self.features_refresh_s, own, self.own_refresh_s)
        return self._active

    def _group_calls(
        self, records: RawStats, configs: Dict[str, DomainConfig], read: BulkRead, deadline: float
    ) -> Tuple[Dict[str, Any], Dict[str, DomainCalls]]:
        """The groups' own calls, none on a saturated host (state-only tier)."""
        if self._calls is None or read.tier == STATE_ONLY:
            return {}, {}
        return self._calls.run(read.conn, records, configs, read.not_responding, deadline)

    def _health(self, read: BulkRead, collect_ns: int) -> Dict[str, Any]:
        """This cycle's own health, for vm_host."""
        return {
            "collect_ns": collect_ns,
            "nowait_fallback": read.tier != FULL,
            "domains_not_responding": len(read.not_responding),
            "config_reads": self.configs.reads if self.configs is not None else 0,
        }

    def _take_events(self) -> Tuple[DomainEvent, ...]:
        """The events queued since the last batch, of the domains --domain lets through; one W! if any were dropped."""
        if self.events is None:
            return ()
        events, dropped = self.events.take()
        if dropped:
            log.warning(
                "%d domain events were dropped since the last batch (more than %d queued); the newest are kept",
                dropped,
                len(events),
            )
        return tuple(event for event in events if self.domain_filter(event.name))

    def forget_configs(self) -> None:
        """Read every domain's configuration and the host facts again at the next collect() (SIGHUP)."""
        self._forget = True

    def domain_event(self, event: DomainEvent) -> None:
        """An event from libvirt's event thread: it only queues (events.EventSink)."""
        if event.event in CONFIG_CHANGING and self.configs is not None:
            self.configs.stale(event.uuid)
        if self.events is not None and event.event != TUNABLES_CHANGED:
            self.events.put(event)

    def close(self) -> None:
        self.connection.close()
        self.reader.close()
        if self._calls is not None:
            self._calls.close()
