"""One bulk read per cycle, plus each domain's cached configuration.

``getAllDomainStats`` asks only for the six groups the measurements use. It
runs on one persistent worker thread under a deadline: a guest whose QEMU
stops answering blocks the call, and then a second call with NOWAIT returns
at once with all that libvirt has without that monitor.
"""

from __future__ import annotations

import fnmatch
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

from kvm_telegraf.connection import Connection, LibvirtUnavailableError, error_message
from kvm_telegraf.domain_xml import MetadataTag
from kvm_telegraf.log import get_logger
from kvm_telegraf.snapshot import DomainConfig, DomainSample, Snapshot, nic_taps

log = get_logger(__name__)

# virDomainStatsTypes: state | cpu-total | balloon | vcpu | interface | block.
STATS_GROUPS = 1 | 2 | 4 | 8 | 16 | 32
STATS_NOWAIT = 1 << 29  # VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
STATE_RUNNING = 1
VIR_ERR_NO_DOMAIN = 42

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


class StuckCallGuard:
    """Runs the bulk call on one persistent worker and never waits past the deadline.

    At most one call is ever stuck; while it is, every call is made with NOWAIT
    from the caller's thread, and the stuck one's late answer is dropped.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._requests: queue.Queue[Tuple[Callable[[], RawStats], Future]] = queue.Queue()
        self._worker: Optional[threading.Thread] = None
        self._stuck: Optional[Future] = None
        self._stuck_since = 0.0

    def _serve(self) -> None:
        while True:
            call, future = self._requests.get()
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the waiting caller
                future.set_exception(exc)

    @property
    def stuck(self) -> bool:
        return self._stuck is not None and not self._stuck.done()

    def call(self, conn: Any, flags: int) -> Tuple[RawStats, bool]:
        """(records, whether they came from a NOWAIT fallback)."""
        if self._stuck is not None:
            if not self._stuck.done():
                return conn.getAllDomainStats(STATS_GROUPS, flags | STATS_NOWAIT), True
            log.info(
                "libvirt answered the stuck stats call after %.1fs; full stats resume",
                time.monotonic() - self._stuck_since,
            )
            self._stuck = None
        if self._worker is None:
            self._worker = threading.Thread(target=self._serve, name="bulk-stats", daemon=True)
            self._worker.start()
        future: Future = Future()
        self._requests.put((lambda: conn.getAllDomainStats(STATS_GROUPS, flags), future))
        try:
            return future.result(timeout=self.timeout_s), False
        except FutureTimeout:
            self._stuck, self._stuck_since = future, time.monotonic()
            return conn.getAllDomainStats(STATS_GROUPS, flags | STATS_NOWAIT), True


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


@dataclass
class _ConfigEntry:
    domain_id: int
    fetched_at: float
    config: DomainConfig
    taps: FrozenSet[str]  # the NICs' tap names in the stats when it was read


def read_config(dom: Any, metadata_tags: Tuple[MetadataTag, ...] = ()) -> Optional[DomainConfig]:
    """XML and flags of one domain; None (logged) when libvirt refuses, so only this domain loses vm_features."""
    try:
        return DomainConfig(
            xml=dom.XMLDesc(0),
            persistent=bool(dom.isPersistent()),
            autostart=bool(dom.autostart()),
            managed_save=bool(dom.hasManagedSaveImage(0)),
            metadata_tags=metadata_tags,
        )
    except Exception as exc:  # libvirtError: vanished, or a driver that refuses
        code = exc.get_error_code() if hasattr(exc, "get_error_code") else None
        if code != VIR_ERR_NO_DOMAIN:
            log.warning("cannot read the configuration of domain %s: %s", dom.name(), error_message(exc))
        return None


@dataclass
class Collector:
    """Reads one Snapshot per call over a persistent connection."""

    connection: Connection
    domain_filter: DomainFilter = field(default_factory=DomainFilter)
    features_refresh_s: float = 300.0
    timeout_s: float = 5.0
    want_config: bool = True
    metadata_tags: Tuple[MetadataTag, ...] = ()
    clock: Callable[[], int] = time.time_ns
    monotonic: Callable[[], float] = time.monotonic
    _configs: Dict[str, _ConfigEntry] = field(default_factory=dict, init=False)
    _guard: StuckCallGuard = field(init=False)
    _stuck_episode: bool = field(default=False, init=False)
    _forget: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._guard = StuckCallGuard(self.timeout_s)

    def _bulk_stats(self) -> RawStats:
        """The bulk call; after a dead connection (libvirtd restarted) it reconnects and retries once."""
        for attempt in (1, 2):
            conn = self.connection.get()
            try:
                records, nowait = self._guard.call(conn, 0)
            except Exception as exc:  # libvirtError: daemon restarted, socket closed
                alive = _is_alive(conn)
                if not alive:
                    self.connection.close()
                if alive or attempt == 2:
                    raise LibvirtUnavailableError(f"stats call failed: {error_message(exc)}") from None
                continue
            self._note_frozen(records if nowait else None)
            return records
        raise AssertionError("unreachable")

    def _note_frozen(self, nowait_records: Optional[RawStats]) -> None:
        """One W! per episode of a stuck call, naming the guests that do not answer."""
        if nowait_records is None:
            self._stuck_episode = False
        elif not self._stuck_episode:
            self._stuck_episode = True
            names = ", ".join(unresponsive_domains(nowait_records)) or "none identified"
            log.warning(
                "stats call did not return within %gs (domains not answering: %s); "
                "reporting what libvirt has without waiting until it does",
                self.timeout_s,
                names,
            )

    def _config_for(
        self, dom: Any, uuid: str, domain_id: int, stats: Dict[str, Any], now: float
    ) -> Optional[DomainConfig]:
        entry = self._configs.get(uuid)
        taps = nic_taps(stats)
        if (
            entry is not None
            and entry.domain_id == domain_id
            and now - entry.fetched_at < self.features_refresh_s
            and (taps == entry.taps or entry.config.names_all(taps))  # a hot-plugged NIC: read once more
        ):
            return entry.config
        config = read_config(dom, self.metadata_tags)
        if config is None:
            self._configs.pop(uuid, None)
            return None
        self._configs[uuid] = _ConfigEntry(domain_id, now, config, taps)
        return config

    def collect(self) -> Snapshot:
        """One cycle's snapshot; LibvirtUnavailableError when libvirt cannot be reached."""
        if self._forget:
            self._forget = False
            self._configs.clear()
        started = self.clock()
        records = self._bulk_stats()
        timestamp = self.clock()
        now = self.monotonic()
        domains = []
        for dom, stats in records:
            name = dom.name()
            if not self.domain_filter(name):
                continue
            uuid, domain_id = dom.UUIDString(), dom.ID()
            config = self._config_for(dom, uuid, domain_id, stats, now) if self.want_config else None
            domains.append(DomainSample(name=name, uuid=uuid, id=domain_id, stats=stats, config=config))
        seen = {d.uuid for d in domains}
        for uuid in [u for u in self._configs if u not in seen]:
            del self._configs[uuid]
        return Snapshot(timestamp_ns=timestamp, domains=tuple(domains), started_ns=started)

    def forget_configs(self) -> None:
        """Read every domain's configuration again at the next collect(); safe from another thread."""
        self._forget = True

    def close(self) -> None:
        self.connection.close()


def _is_alive(conn: Any) -> bool:
    try:
        return bool(conn.isAlive())
    except Exception:
        return False
