"""The ``--collect`` groups' own libvirt calls, after the bulk read, under the cycle's deadline.

The per-host and per-domain calls (Group.host_call, Group.domain_call) run on two
persistent workers: while one waits on a guest whose QEMU hangs, the other
serves the next cycles without that guest, and each holds at most one call in
libvirtd. A group whose calls may never answer (a guest agent) brings threads of
its own (Group.own_calls). What comes in by the deadline goes into the Snapshot
as plain data, which ``record`` saves and the goldens replay; what is late is
dropped.
"""

from __future__ import annotations

import contextlib
import queue
import time
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from kvm_telegraf.connection import Connection
from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.group import Group, HostMemo, OwnCalls, RawStats
from kvm_telegraf.libvirt_facts import version_text
from kvm_telegraf.log import get_logger
from kvm_telegraf.snapshot import DomainConfig
from kvm_telegraf.worker import CallTimeoutError, Worker, answer_by

log = get_logger(__name__)

DomainCalls = Dict[str, Any]  # what one domain's calls read: {"pcpus": {...}, "job": {...}, ...}
HOST_KEY = ""  # no UUID is empty


def served_groups(
    conn: Any, groups: Sequence[Group], where: str, implied: AbstractSet[str] = frozenset()
) -> Tuple[Group, ...]:
    """The groups the daemon behind *conn* serves; one W! for each it does not, naming the version it needs.

    A group that only ``--collect all`` brought in (*implied*) is left out with a debug line: ``all`` means
    every group this daemon serves, and doctor lists the others.
    """
    served = tuple(group for group in groups if group.supported_by(conn))
    for group in groups:
        if group not in served:
            (log.debug if group.name in implied else log.warning)(
                "--collect %s: libvirt on %s does not support it (it needs libvirt %s or later and a driver that "
                "offers it); not collected",
                group.name,
                where,
                version_text(group.since),
            )
    return served


@dataclass
class CallRun:
    """One cycle's calls as they come in: what is done so far, and the domain being asked now.

    The worker fills it; the collector takes what is in at its deadline, and a domain
    still ``current`` on a worker that missed it (its QEMU hangs) is not asked again
    until that call returns.
    """

    results: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    current: Optional[str] = None  # the UUID whose calls are out

    def taken(self) -> Tuple[Dict[str, Any], Dict[str, DomainCalls]]:
        """(host data, per-domain data by UUID) that came in so far."""
        host: Dict[str, Any] = {}
        per_domain: Dict[str, DomainCalls] = {}
        while True:
            try:
                key, value = self.results.get_nowait()
            except queue.Empty:
                return host, per_domain
            if key == HOST_KEY:
                host = value
            else:
                per_domain[key] = value


class GroupCalls:
    """One host's group calls: the workers', and each group's own (on a connection of its own)."""

    def __init__(
        self,
        groups: Sequence[Group],
        refresh_s: float,
        own_connection: Callable[[], Connection],
        own_refresh_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.groups = tuple(groups)
        self._memos = {group.name: HostMemo(refresh_s, monotonic) for group in groups if group.host_call is not None}
        self._own: List[OwnCalls] = [
            group.own_calls(own_connection(), own_refresh_s) for group in groups if group.own_calls is not None
        ]
        self._workers = (Worker("group-calls"), Worker("group-calls-2"))
        self._runs: Dict[int, CallRun] = {}  # the last run of each worker

    def forget(self) -> None:
        """Read the host facts kept between cycles again (SIGHUP)."""
        for memo in self._memos.values():
            memo.forget()

    def run(
        self,
        conn: Any,
        records: RawStats,
        configs: Mapping[str, DomainConfig],
        not_responding: Sequence[str],
        deadline: float,
    ) -> Tuple[Dict[str, Any], Dict[str, DomainCalls]]:
        """(host data, per-domain data by UUID) of this cycle's calls, by *deadline*.

        Every active domain (its QEMU runs: running, paused, pmsuspended) is asked unless its QEMU did not
        answer this cycle's bulk read, or a call to it from an earlier cycle is still out: a hung QEMU costs
        its own points only. A paused domain's QEMU answers: a dump, a save or a migration with --suspend
        pauses it, and that is when its job matters; an I/O error pauses it too.
        """
        host, calls = self._on_workers(conn, records, configs, not_responding, deadline)
        for own in self._own:
            for uuid, entries in own.calls(records, configs, not_responding, deadline).items():
                calls.setdefault(uuid, {}).update(entries)
        return host, calls

    def _on_workers(
        self,
        conn: Any,
        records: RawStats,
        configs: Mapping[str, DomainConfig],
        not_responding: Sequence[str],
        deadline: float,
    ) -> Tuple[Dict[str, Any], Dict[str, DomainCalls]]:
        per_domain = [group for group in self.groups if group.domain_call is not None]
        if not per_domain and not self._memos:
            return {}, {}
        for worker in self._workers:
            worker.start()  # at once: the thread count stays level
        busy = [index for index, worker in enumerate(self._workers) if worker.busy]
        held: Set[Optional[str]] = {self._runs[index].current for index in busy if index in self._runs}
        free = [index for index in range(len(self._workers)) if index not in busy]
        if not free:  # both still wait on earlier cycles' calls
            return {}, {}
        asked = []
        for dom, _stats in records:
            if not per_domain or dom.ID() < 0 or dom.name() in not_responding:  # shut off: no QEMU to ask
                continue
            if dom.UUIDString() in held:  # a call to it is still out on the other worker
                continue
            config = configs.get(dom.UUIDString())
            asked.append((dom, config.facts if config is not None else None))
        run = CallRun()
        self._runs[free[0]] = run
        future = self._workers[free[0]].submit(lambda: self._calls(conn, asked, run))
        if future is not None:
            with contextlib.suppress(CallTimeoutError):
                answer_by(future, deadline)
        return run.taken()  # what came in by the deadline; the rest of a late run is never read

    def _calls(self, conn: Any, domains: Sequence[Tuple[Any, Optional[DomainFacts]]], run: CallRun) -> None:
        """One cycle's calls: the host's first, then each domain's, each result handed over as it comes."""
        if self._memos:
            host: Dict[str, Any] = {}
            for group in self.groups:
                if group.host_call is not None:
                    host.update(group.host_call(conn, self._memos[group.name]))
            run.results.put((HOST_KEY, host))
        for dom, facts in domains:
            uuid = dom.UUIDString()
            run.current = uuid
            calls: DomainCalls = {}
            for group in self.groups:
                if group.domain_call is not None:
                    calls.update(group.domain_call(dom, facts))
            run.results.put((uuid, calls))
        run.current = None

    @property
    def per_host(self) -> bool:
        """Whether a group makes host calls (the snapshot then carries the host's data and the cycle's health)."""
        return bool(self._memos)

    def close(self) -> None:
        for own in self._own:
            own.close()
