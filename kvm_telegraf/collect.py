"""One bulk read per cycle under a hard deadline, plus each domain's cached configuration.

``getAllDomainStats`` asks only for the six groups the measurements use. Every
stats and XML call runs on a persistent worker (kvm_telegraf.worker), and a cycle
waits for none of them past ``--timeout`` + COLLECT_GRACE_S, whatever libvirt
does. The read falls back in tiers, each on a worker of its own:

1. full stats, until ``--timeout``;
2. NOWAIT, which skips the domains whose job is busy (a guest whose QEMU does
   not answer holds its job), until ``--timeout`` + NOWAIT_GRACE_S;
3. the state group alone, which needs no QEMU and answers in about a
   millisecond even on a saturated host, until ``--timeout`` + STATE_GRACE_S.

A late answer is dropped: its domains were read at instants spread over the
whole late call, up to an interval before the next batch, so sending it then
would pass old values off as new and skew every rate.
"""

from __future__ import annotations

import contextlib
import fnmatch
import queue
import shlex
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Set, Tuple, Union

from kvm_telegraf.connection import Connection, LibvirtUnavailableError, error_message, redact_uri
from kvm_telegraf.domain_xml import MetadataTag
from kvm_telegraf.events import CONFIG_CHANGING, TUNABLES_CHANGED, EventQueue
from kvm_telegraf.group_calls import (
    DOMAIN_CALL_GROUPS,
    HOST_CALL_GROUPS,
    CallRun,
    DomainCalls,
    HostCache,
    all_calls,
)
from kvm_telegraf.groups import BY_NAME, stats_bits, stats_flags, version_text
from kvm_telegraf.guest_agent import GuestAgents
from kvm_telegraf.libvirt_facts import (
    DEFAULT_STATS,
    ERR_ARGUMENT_UNSUPPORTED,
    ERR_NO_DOMAIN,
    STATE_RUNNING,
    STATS_ENFORCE,
    STATS_NO_DOMAINS,
    STATS_NOWAIT,
    STATS_STATE,
    error_code,
)
from kvm_telegraf.log import get_logger
from kvm_telegraf.snapshot import DomainConfig, DomainEvent, DomainSample, Snapshot, nic_taps
from kvm_telegraf.worker import Worker, answer_by

log = get_logger(__name__)

# The groups the four measurements read, and the state group alone for the last tier.
STATS_GROUPS = DEFAULT_STATS

# How far past --timeout each tier may answer; the XML reads get what is left of COLLECT_GRACE_S.
NOWAIT_GRACE_S = 0.3
STATE_GRACE_S = 0.4
COLLECT_GRACE_S = 0.5

# Which tier answered a cycle's bulk read.
FULL, NOWAIT, STATE_ONLY = "full", "nowait", "state-only"
# Why a cycle was not full: a guest's QEMU does not answer; the call as a whole is slower than
# --timeout; neither full nor NOWAIT answered by the deadline (a saturated host).
FROZEN, SLOW, SATURATED = "frozen", "slow", "saturated"

RawStats = List[Tuple[Any, Dict[str, Any]]]


@dataclass(frozen=True)
class DomainFilter:
    """``--domain`` / ``--exclude-domain`` globs over domain names."""

    include: Tuple[str, ...] = ()
    exclude: Tuple[str, ...] = ()

    def __call__(self, name: str) -> bool:
        if self.include and not any(fnmatch.fnmatchcase(name, glob) for glob in self.include):
            return False
        return not any(fnmatch.fnmatchcase(name, glob) for glob in self.exclude)

    def __str__(self) -> str:
        """The options as given: ``--domain 'web*' --exclude-domain web09``."""
        return " ".join(
            [f"--domain {shlex.quote(glob)}" for glob in self.include]
            + [f"--exclude-domain {shlex.quote(glob)}" for glob in self.exclude]
        )


class StuckCallGuard:
    """The bulk read in three tiers, each on one persistent worker, none waited for past the deadline.

    A worker whose call is still out takes no new one, so at most three stats
    calls per host are outstanding in libvirtd at any time, whatever the load:
    one full, one NOWAIT, one state-only (libvirtd serves five at once per
    client by default).
    """

    def __init__(self, timeout_s: float, stats: int = STATS_GROUPS) -> None:
        self.timeout_s = timeout_s
        self.stats = stats  # the default groups plus the bits of the --collect groups
        self._full = Worker("bulk-stats")
        self._nowait = Worker("bulk-stats-nowait")
        self._state = Worker("bulk-stats-state")
        self._full_started = 0.0
        self.slowest_full_s = 0.0  # the slowest full call that returned since reset_slowest()
        self.carried_over = False  # whether the last read found a full call out since an earlier cycle

    @property
    def stuck(self) -> bool:
        """Whether a full call is still out after missing its deadline."""
        return self._full.busy

    def full_call_time(self) -> Tuple[float, bool]:
        """(seconds, whether measured): the slowest late full call that came back, else how long the one out has run."""
        if self.stuck and self.slowest_full_s <= self.timeout_s:
            return max(self.slowest_full_s, time.monotonic() - self._full_started), False
        return self.slowest_full_s, True

    def reset_slowest(self) -> None:
        self.slowest_full_s = 0.0

    def settle(self, wait_s: float) -> None:
        """Wait up to *wait_s* for a full call still out (doctor measures it)."""
        deadline = time.monotonic() + wait_s
        while self.stuck and time.monotonic() < deadline:
            time.sleep(0.05)

    def _full_call(self, conn: Any, flags: int) -> RawStats:
        started = time.monotonic()
        records = conn.getAllDomainStats(self.stats, flags)
        self.slowest_full_s = max(self.slowest_full_s, time.monotonic() - started)
        return records

    def read(self, conn: Any, flags: int, started: float) -> Tuple[RawStats, str]:
        """(records, tier) by *started* + timeout + STATE_GRACE_S; a failed call's error propagates.

        LibvirtUnavailableError when no tier answered in time.
        """
        for worker in (self._full, self._nowait, self._state):
            worker.start()  # all at once: a first fallback, however late, adds no thread
        self.carried_over = self.stuck
        future = None if self.stuck else self._full.submit(lambda: self._full_call(conn, flags))
        if future is not None:
            self._full_started = started
            with contextlib.suppress(FutureTimeout):
                return answer_by(future, started + self.timeout_s), FULL
        # Both fallbacks at once: the state-only call costs libvirtd a millisecond and no QEMU,
        # and is then in hand the moment NOWAIT misses its deadline.
        fallbacks = (
            (self._nowait.submit(lambda: conn.getAllDomainStats(self.stats, flags | STATS_NOWAIT)), NOWAIT),
            (self._state.submit(lambda: conn.getAllDomainStats(STATS_STATE, flags)), STATE_ONLY),
        )
        for future, tier in fallbacks:
            if future is None:  # its call of an earlier cycle is still out
                continue
            grace_s = NOWAIT_GRACE_S if tier == NOWAIT else STATE_GRACE_S
            with contextlib.suppress(FutureTimeout):
                return answer_by(future, started + self.timeout_s + grace_s), tier
        raise LibvirtUnavailableError(
            f"libvirt answered no stats call within {self.timeout_s + STATE_GRACE_S:g}s, not even for the state alone"
        )


def unresponsive_domains(records: RawStats) -> List[str]:
    """Running domains whose NOWAIT answer lacks what only their QEMU monitor gives."""
    names = []
    for dom, stats in records:
        if stats.get("state.state") != STATE_RUNNING:
            continue
        disks = stats.get("block.count") or 0
        if "balloon.rss" not in stats or (disks and "block.0.rd.reqs" not in stats):
            names.append(dom.name())
    return names


def running_domains(records: RawStats) -> List[str]:
    return [dom.name() for dom, stats in records if stats.get("state.state") == STATE_RUNNING]


@dataclass
class _ConfigEntry:
    domain_id: int
    fetched_at: float
    config: DomainConfig
    taps: FrozenSet[str]  # the NICs' tap names in the stats when it was read


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
class Collector:
    """Reads one Snapshot per call over a persistent connection, by a deadline."""

    connection: Connection
    domain_filter: DomainFilter = field(default_factory=DomainFilter)
    features_refresh_s: float = 300.0
    timeout_s: float = 5.0
    want_config: bool = True
    metadata_tags: Tuple[MetadataTag, ...] = ()
    groups: FrozenSet[str] = frozenset()  # --collect: the opt-in groups asked for
    clock: Callable[[], int] = time.time_ns
    monotonic: Callable[[], float] = time.monotonic  # the configuration cache's age; deadlines use real time
    last_tier: str = field(default=FULL, init=False)  # which tier answered the last cycle
    _configs: Dict[str, _ConfigEntry] = field(default_factory=dict, init=False)
    _guard: StuckCallGuard = field(init=False)
    _config_worker: Worker = field(default_factory=lambda: Worker("domain-xml"), init=False)
    _config_results: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, init=False)
    _episode: Set[str] = field(default_factory=set, init=False)  # the kinds of trouble logged since full stats
    _matched: Optional[FrozenSet[str]] = field(default=None, init=False)
    _forget: bool = field(default=False, init=False)
    _active: Optional[FrozenSet[str]] = field(default=None, init=False)  # the groups the daemon supports
    # Two workers for the groups' own calls: while one waits on a guest whose QEMU hangs, the other serves
    # the next cycles without that guest. Each holds at most one call in libvirtd.
    _calls_workers: Tuple[Worker, ...] = field(
        default_factory=lambda: (Worker("group-calls"), Worker("group-calls-2")), init=False
    )
    _call_runs: Dict[int, CallRun] = field(default_factory=dict, init=False)  # the last run of each worker
    _host_cache: HostCache = field(init=False)
    _completed_jobs: Dict[str, Tuple[Any, ...]] = field(default_factory=dict, init=False)  # reported once each
    _config_reads: int = field(default=0, init=False)  # XML reads asked for in the last cycle
    events: Optional[EventQueue] = None  # vm_events (--collect events): what libvirt pushed, for the next batch
    _stale: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, init=False)  # UUIDs whose config changed
    guest_agents: Optional[GuestAgents] = None  # --collect guest: the agent calls, on a connection of their own

    def __post_init__(self) -> None:
        self._guard = StuckCallGuard(self.timeout_s, STATS_GROUPS | stats_bits(self.groups))
        self._host_cache = HostCache(self.features_refresh_s, self.monotonic)

    @property
    def active_groups(self) -> FrozenSet[str]:
        """The --collect groups this daemon supports (all asked for, before the first connection)."""
        return self.groups if self._active is None else self._active

    def _check_groups(self, conn: Any) -> None:
        """Once per process: one W! per group the daemon cannot serve, naming the version it needs; then silence."""
        if self._active is not None or not self.groups:
            return
        unsupported = [name for name in sorted(self.groups) if not group_supported(conn, name)]
        for name in unsupported:
            group = BY_NAME[name]
            log.warning(
                "--collect %s: libvirt on %s does not support it (it needs libvirt %s or later and a driver that "
                "offers it); not collected",
                name,
                redact_uri(self.connection.uri),
                version_text(group.since),
            )
        self._active = self.groups - frozenset(unsupported)
        self._guard.stats = STATS_GROUPS | stats_bits(self._active)

    def _bulk_stats(self, started: float) -> Tuple[RawStats, str]:
        """The tiered read; a failed call is made once more in the same cycle, on a new connection if it died.

        A dead connection is libvirtd restarted. On a live one, libvirt 9.0 fails the whole call when a guest is
        destroyed while the call reads it (seen with the iothread and dirtyrate bits), and the retry finds it gone.
        """
        for attempt in (1, 2):
            conn = self.connection.get()
            self._check_groups(conn)
            try:
                return self._guard.read(conn, stats_flags(self.active_groups), started)
            except LibvirtUnavailableError:
                raise
            except Exception as exc:  # libvirtError: daemon restarted, socket closed, a domain gone mid-call
                if not _is_alive(conn):
                    self.connection.close()
                if attempt == 2:
                    raise LibvirtUnavailableError(f"stats call failed: {error_message(exc)}") from None
        raise AssertionError("unreachable")

    def _not_responding(self, tier: str, records: RawStats) -> List[str]:
        """The running domains whose QEMU did not answer this cycle; one W! per episode, one I! at its end.

        A NOWAIT answer also lacks the domain that a slow but healthy full call
        holds at that moment, so a guest is called frozen only once the full call
        it blocks has been out since an earlier cycle; a full call that missed its
        deadline and came back means the call as a whole is slow.
        """
        if tier == FULL:
            if self._episode:
                took, _ = self._guard.full_call_time()
                log.info(
                    "full stats answer within --timeout %gs again (the slowest call took %.1fs); full batches resume",
                    self.timeout_s,
                    took,
                )
                self._episode.clear()
            self._guard.reset_slowest()
            return []
        if tier == STATE_ONLY:
            kind: Optional[str] = SATURATED
            marked = running_domains(records)
        else:
            marked = unresponsive_domains(records)
            came_back_late = self._guard.slowest_full_s > self.timeout_s
            if self._guard.stuck and self._guard.carried_over and marked:
                kind = FROZEN
            elif self._guard.stuck and not came_back_late and marked:
                kind = None  # this cycle's own full call is still out: frozen or slow, the next cycle tells
            else:
                kind, marked = SLOW, []
        # One W! per episode; a frozen guest is still named if the episode began otherwise.
        if kind is not None and (not self._episode or (kind == FROZEN and FROZEN not in self._episode)):
            self._warn(kind, marked)
        if kind is not None:
            self._episode.add(kind)
        return marked

    def _warn(self, kind: str, frozen: List[str]) -> None:
        if kind == FROZEN:
            log.warning(
                "stats call did not return within %gs (domains not answering: %s); "
                "reporting what libvirt has without waiting until it does",
                self.timeout_s,
                ", ".join(frozen),
            )
            return
        seconds, final = self._guard.full_call_time()
        took = f"full stats took {seconds:.1f}s" if final else f"full stats still unanswered after {seconds:.1f}s"
        if kind == SLOW:
            log.warning(
                "the bulk stats call as a whole is slower than --timeout %gs (%s), though no guest is frozen: "
                "every batch falls back to NOWAIT and may lack memory and disk fields; fix: raise --timeout "
                "above the call's time",
                self.timeout_s,
                took,
            )
        else:
            log.warning(
                "libvirt answered too slowly for the batch deadline (%s); reporting state only until it recovers",
                took,
            )

    def _note_matches(self, matched: FrozenSet[str], total: int) -> None:
        """Say so once when no domain is left to report, and again only after the matches changed."""
        if not matched and self._matched != matched:
            where = redact_uri(self.connection.uri)
            if str(self.domain_filter):
                log.warning("no domain matches %s (%d domains on %s)", self.domain_filter, total, where)
            else:
                log.info("no domains on %s: batches stay empty until one is defined", where)
        self._matched = matched

    def _merge_config_reads(self) -> None:
        """Cache what the XML worker has read so far, this cycle's reads and late ones alike."""
        while True:
            try:
                uuid, name, domain_id, taps, fetched_at, result = self._config_results.get_nowait()
            except queue.Empty:
                return
            if isinstance(result, DomainConfig):
                self._configs[uuid] = _ConfigEntry(domain_id, fetched_at, result, taps)
                continue
            self._configs.pop(uuid, None)  # only this domain loses vm_features
            if error_code(result) != ERR_NO_DOMAIN:  # a domain that vanished mid-cycle is no news
                log.warning("cannot read the configuration of domain %s: %s", name, error_message(result))

    def _read_configs(self, wanted: List[Tuple[Any, str, int, FrozenSet[str]]], now: float) -> None:
        for dom, uuid, domain_id, taps in wanted:
            self._config_results.put((uuid, dom.name(), domain_id, taps, now, read_config(dom, self.metadata_tags)))

    def _configs_for(self, records: RawStats, now: float, deadline: float) -> Dict[str, DomainConfig]:
        """Each domain's cached configuration, read again on start, restart, after the refresh period
        and when the stats show a NIC tap its XML does not name (a hot-plugged NIC).

        Reads still out at the deadline are cached when they come; a domain
        with no entry of its current boot meanwhile lacks vm_features.
        """
        self._merge_config_reads()
        wanted = []
        for dom, stats in records:
            uuid, domain_id, taps = dom.UUIDString(), dom.ID(), nic_taps(stats)
            entry = self._configs.get(uuid)
            if (
                entry is None
                or entry.domain_id != domain_id
                or now - entry.fetched_at >= self.features_refresh_s
                or not (taps == entry.taps or entry.config.names_all(taps))
            ):
                wanted.append((dom, uuid, domain_id, taps))
        self._config_worker.start()  # at once, like the stats workers: the thread count stays level
        self._config_reads = len(wanted)
        if wanted:
            future = self._config_worker.submit(lambda: self._read_configs(wanted, now))
            if future is not None:
                with contextlib.suppress(FutureTimeout):
                    answer_by(future, deadline)
            self._merge_config_reads()
        configs = {}
        for dom, _ in records:
            entry = self._configs.get(dom.UUIDString())
            if entry is not None and entry.domain_id == dom.ID():
                configs[dom.UUIDString()] = entry.config
        return configs

    def _drop_stale_configs(self) -> None:
        """Forget the entries that an event made stale: SIGHUP's forget_configs(), for one domain."""
        while True:
            try:
                self._configs.pop(self._stale.get_nowait(), None)
            except queue.Empty:
                return

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

    def collect(self) -> Snapshot:
        """One cycle's snapshot by --timeout + COLLECT_GRACE_S; LibvirtUnavailableError when libvirt cannot be had."""
        if self._forget:
            self._forget = False
            self._configs.clear()
            self._host_cache.forget()
        self._drop_stale_configs()
        started, started_ns = time.monotonic(), self.clock()
        records, self.last_tier = self._bulk_stats(started)
        timestamp = self.clock()
        not_responding = set(self._not_responding(self.last_tier, records))
        total = len(records)
        records = [(dom, stats) for dom, stats in records if self.domain_filter(dom.name())]
        self._note_matches(frozenset(dom.name() for dom, _ in records), total)
        deadline = started + self.timeout_s + COLLECT_GRACE_S  # for every call after the bulk read
        configs: Dict[str, DomainConfig] = {}
        if self.want_config:
            # On a saturated host the XML reads are not waited for: they land in the cache for later cycles.
            xml_deadline = time.monotonic() if self.last_tier == STATE_ONLY else deadline
            configs = self._configs_for(records, self.monotonic(), xml_deadline)
        host, calls = self._group_calls(records, configs, not_responding, deadline)
        self._guest_calls(records, configs, not_responding, calls, deadline)
        domains = []
        for dom, stats in records:
            name, uuid = dom.name(), dom.UUIDString()
            domains.append(
                DomainSample(
                    name=name,
                    uuid=uuid,
                    id=dom.ID(),
                    stats=stats,
                    config=configs.get(uuid),
                    responding=name not in not_responding,
                    calls=calls.get(uuid, {}),
                )
            )
        seen = {d.uuid for d in domains}
        for uuid in [u for u in self._configs if u not in seen]:
            del self._configs[uuid]
        for uuid in [u for u in self._completed_jobs if u not in seen]:
            del self._completed_jobs[uuid]
        hosts: Tuple[Dict[str, Any], ...] = ()
        if self.active_groups & HOST_CALL_GROUPS:
            health = {
                "collect_ns": timestamp - started_ns,
                "nowait_fallback": self.last_tier != FULL,
                "domains_not_responding": len(not_responding),
                "config_reads": self._config_reads if self.want_config else 0,
            }
            hosts = ({**host, "health": health},)
        events = self._take_events()
        return Snapshot(
            timestamp_ns=timestamp, domains=tuple(domains), started_ns=started_ns, hosts=hosts, events=events
        )

    def _group_calls(
        self, records: RawStats, configs: Dict[str, DomainConfig], not_responding: Set[str], deadline: float
    ) -> Tuple[Dict[str, Any], Dict[str, DomainCalls]]:
        """The --collect groups' own calls on a worker, waited for until *deadline*; what is late is dropped.

        Only running domains that answered this cycle are asked, and not one whose call from an earlier
        cycle is still out: a hung QEMU costs its own points only. On a saturated host (state-only
        tier) nothing is asked.
        """
        groups = self.active_groups
        if not groups & (DOMAIN_CALL_GROUPS | HOST_CALL_GROUPS) or self.last_tier == STATE_ONLY:
            return {}, {}
        for worker in self._calls_workers:
            worker.start()  # at once: the thread count stays level
        busy = [index for index, worker in enumerate(self._calls_workers) if worker.busy]
        held = {self._call_runs[index].current for index in busy if index in self._call_runs}
        free = [index for index in range(len(self._calls_workers)) if index not in busy]
        if not free:  # both still wait on earlier cycles' calls
            return {}, {}
        asked = []
        for dom, stats in records:
            if stats.get("state.state") != STATE_RUNNING or dom.name() in not_responding:
                continue
            if dom.UUIDString() in held:  # a call to it is still out on the other worker
                continue
            config = configs.get(dom.UUIDString())
            asked.append((dom, config.facts if config is not None else None))
        conn = self.connection.get()
        run = CallRun()
        index = free[0]
        self._call_runs[index] = run
        future = self._calls_workers[index].submit(lambda: all_calls(conn, groups, self._host_cache, asked, run))
        if future is not None:
            with contextlib.suppress(FutureTimeout):
                answer_by(future, deadline)
        host, calls = run.taken()  # what came in by the deadline; the rest of a late run is never read
        for uuid, domain_calls in calls.items():
            completed = domain_calls.get("completed_job")
            if completed is not None:
                signature = (completed.get("operation"), completed.get("time_elapsed"), completed.get("type"))
                if self._completed_jobs.get(uuid) == signature:
                    del domain_calls["completed_job"]  # reported in an earlier cycle
                self._completed_jobs[uuid] = signature
        return host, calls

    def _guest_calls(
        self,
        records: RawStats,
        configs: Dict[str, DomainConfig],
        not_responding: Set[str],
        calls: Dict[str, DomainCalls],
        deadline: float,
    ) -> None:
        """--collect guest: what the agents of the running domains whose channel is connected answered.

        Asked once per --guest-refresh (kvm_telegraf.guest_agent); each batch carries the last answer,
        under ``calls[uuid]["guest"]``. Not on a saturated host, nor for a domain whose QEMU hangs.
        """
        if self.guest_agents is None or "guest" not in self.active_groups or self.last_tier == STATE_ONLY:
            return
        connected = []
        for dom, stats in records:
            config = configs.get(dom.UUIDString())
            facts = config.facts if config is not None else None
            if stats.get("state.state") != STATE_RUNNING or dom.name() in not_responding or facts is None:
                continue
            if facts.agent_state == "connected":
                connected.append(dom.UUIDString())
        self.guest_agents.ask(connected, deadline)
        for uuid, answer in self.guest_agents.results(connected).items():
            calls.setdefault(uuid, {})["guest"] = answer

    def forget_configs(self) -> None:
        """Read every domain's configuration again at the next collect(); safe from another thread."""
        self._forget = True

    def domain_event(self, event: DomainEvent) -> None:
        """An event from libvirt's event thread: it only queues (events.EventSink)."""
        if event.event in CONFIG_CHANGING:
            self._stale.put(event.uuid)
        if self.events is not None and event.event != TUNABLES_CHANGED:
            self.events.put(event)

    def settle_full_call(self, wait_s: float) -> Tuple[float, bool]:
        """Wait up to *wait_s* for a late full call; then (its seconds, whether it returned), as doctor reports it."""
        self._guard.settle(wait_s)
        return self._guard.full_call_time()

    def close(self) -> None:
        self.connection.close()
        if self.guest_agents is not None:
            self.guest_agents.close()


def group_supported(conn: Any, name: str) -> bool:
    """Whether the daemon serves a --collect group: its bulk bits probed with ENFORCE_STATS, else its version."""
    group = BY_NAME[name]
    extra_bits = group.bits & ~DEFAULT_STATS
    try:
        if extra_bits:
            conn.getAllDomainStats(extra_bits, STATS_ENFORCE | STATS_NO_DOMAINS)
            return True
        return bool(conn.getLibVersion() >= group.since)
    except Exception as exc:  # libvirtError
        # Another failure of the probe says nothing about support: the cycle reports it.
        return not (error_code(exc) == ERR_ARGUMENT_UNSUPPORTED or extra_bits == 0)


def _is_alive(conn: Any) -> bool:
    try:
        return bool(conn.isAlive())
    except Exception:
        return False
