"""A replayed host whose libvirt calls block or drag, as a hung QEMU or a starved libvirtd makes them.

Each call is one of four kinds: the full bulk call, its NOWAIT fallback, the
state-only call and a domain's XML read. A kind in ``stall`` blocks until
``release()``; a kind in ``delays`` takes that long. What each kind answers
follows libvirt: the state-only call returns ``state.*`` alone, and NOWAIT
leaves out what only a busy domain's QEMU monitor gives.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Iterable, List, Optional

from kvm_telegraf.libvirt_facts import DEFAULT_STATS, STATS_NOWAIT, STATS_STATE
from kvm_telegraf.snapshot import Snapshot
from tests.replay import ReplayConnection

FULL, NOWAIT, STATE, XML = "full", "nowait", "state", "xml"
# What libvirt still has for a domain whose job is busy (FACTS.md: state, cpu, vcpu and net).
WITHOUT_MONITOR = ("state.", "cpu.", "vcpu.", "net.", "balloon.current", "balloon.maximum")


class StallingDomain:
    def __init__(self, domain: Any, host: StallingConnection) -> None:
        self._domain, self._host = domain, host

    def XMLDesc(self, flags: int) -> str:  # noqa: N802 - libvirt's API
        self._host.hold(XML)
        return self._domain.XMLDesc(flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._domain, name)


class OneClient:
    """One connection to a StallingConnection host, as libvirt 9.0's client serves it at worst: a call made while
    another call on the same connection waits stays unsent until that one returns (a lost wake-up; on a real
    host, until a reply or the next keepalive probe, 5 s later)."""

    def __init__(self, host: StallingConnection) -> None:
        self._host = host
        self._one_at_a_time = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        answer = getattr(self._host, name)
        if not callable(answer):
            return answer

        def one_at_a_time(*args: Any) -> Any:
            with self._one_at_a_time:
                return answer(*args)

        return one_at_a_time


class StallingConnection(ReplayConnection):
    def __init__(
        self,
        snapshots: List[Snapshot],
        stall: Iterable[str] = (),
        delays: Optional[Dict[str, float]] = None,
        busy: Iterable[str] = (),
        nowait_after_full: bool = False,
        hostname: str = "lab-host",
    ) -> None:
        super().__init__(snapshots, hostname)
        self.stall = set(stall)
        self.delays = dict(delays or {})
        self.busy = set(busy)  # domains NOWAIT skips: their job is held by a call still out
        self.nowait_after_full = nowait_after_full  # NOWAIT answers only once the full call is back
        self.asked: List[str] = []  # the kinds of call, in the order they were made
        self._released = threading.Event()
        self._full_back = threading.Event()

    def client(self) -> OneClient:
        """A connection of its own to this host (an opener's answer)."""
        return OneClient(self)

    def release(self) -> None:
        """Every blocked call returns, and none blocks again."""
        self._released.set()

    def hold(self, kind: str) -> None:
        self.asked.append(kind)
        if kind in self.stall:
            self._released.wait(60)
        time.sleep(self.delays.get(kind, 0.0))

    def getAllDomainStats(self, stats: int, flags: int):  # noqa: N802 - libvirt's API
        if stats not in (STATS_STATE, DEFAULT_STATS):  # doctor's probes of single groups: never held
            return super().getAllDomainStats(stats, flags)
        kind = STATE if stats == STATS_STATE else NOWAIT if flags & STATS_NOWAIT else FULL
        if kind == NOWAIT and self.nowait_after_full:
            self._full_back.wait(10)
        if kind == FULL:
            self._full_back.clear()
        self.hold(kind)
        records = []
        for dom, values in super().getAllDomainStats(stats, flags):
            if kind == STATE:
                values = {key: value for key, value in values.items() if key.startswith("state.")}
            elif kind == NOWAIT and dom.name() in self.busy:
                values = {key: value for key, value in values.items() if key.startswith(WITHOUT_MONITOR)}
            records.append((StallingDomain(dom, self), values))
        if kind == FULL:
            self._full_back.set()
        return records
