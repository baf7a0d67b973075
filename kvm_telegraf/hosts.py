"""Several hypervisors from one process: one Collector per ``--uri``, each on a persistent thread of its own.

Every cycle asks all hosts at once and waits for them until one deadline:
``--timeout`` (the bulk call's own deadline) plus HOST_GRACE_S for its NOWAIT
fallback and the XML reads. A host that misses the deadline or fails costs its
own points only; the others' go out in the same batch, with one timestamp. Each
host's trouble is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, List, Optional, Sequence, Tuple

from kvm_telegraf.collect import Collector
from kvm_telegraf.connection import LibvirtUnavailableError, redact_uri
from kvm_telegraf.log import HOST_THREAD_PREFIX, get_logger
from kvm_telegraf.snapshot import Snapshot

log = get_logger(__name__)

# Beyond --timeout: room for the NOWAIT fallback after a stuck bulk call, and for the XML reads.
HOST_GRACE_S = 0.5


class Host:
    """One hypervisor: its Collector, run on a thread that lives as long as the process, never twice at once."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.label = redact_uri(collector.connection.uri)
        self.trouble: Optional[str] = None  # why its domains are left out, while they are
        self._requests: queue.Queue[Future] = queue.Queue()
        self._worker: Optional[threading.Thread] = None
        self._running: Optional[Future] = None

    def start(self) -> Optional[Future]:
        """Begin one collection; None while the previous one still runs (it missed its deadline)."""
        if self._running is not None and not self._running.done():
            return None
        if self._worker is None:
            name = HOST_THREAD_PREFIX + self.label  # log lines from this thread name the host
            self._worker = threading.Thread(target=self._serve, name=name, daemon=True)
            self._worker.start()
        self._running = Future()
        self._requests.put(self._running)
        return self._running

    def _serve(self) -> None:
        while True:
            future = self._requests.get()
            try:
                future.set_result(self._collect())
            except BaseException as exc:  # handed to the waiting caller
                future.set_exception(exc)

    def _collect(self) -> Snapshot:
        snapshot = self.collector.collect()
        hostname = self.collector.connection.hostname()  # cached; asked again after a reconnect
        domains = tuple(dataclasses.replace(domain, hypervisor=hostname) for domain in snapshot.domains)
        return dataclasses.replace(snapshot, domains=domains)

    def describe(self, problem: str) -> str:
        """The problem, naming this host unless it already does (credentials never included)."""
        return problem if self.label in problem else f"{self.label}: {problem}"


class HostSet:
    """Reads every host at once and merges what arrives by the deadline into one Snapshot.

    To the pipeline it is one source, like a single Collector.
    """

    def __init__(
        self,
        collectors: Sequence[Collector],
        deadline_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hosts = tuple(Host(collector) for collector in collectors)
        self.deadline_s = deadline_s
        self._monotonic = monotonic

    def collect(self) -> Snapshot:
        """The domains of every host that answered in time, stamped with the latest read.

        Every stat of the batch was read between ``started_ns`` and the stamp, which is
        what keeps cpu_percent within its bound across hosts.

        LibvirtUnavailableError, naming each host's problem, when none answered.
        """
        started = [(host, host.start()) for host in self.hosts]
        deadline = self._monotonic() + self.deadline_s
        parts: List[Snapshot] = []
        failed: List[Tuple[Host, Callable[..., None], str]] = []
        for host, future in started:
            if future is None:  # still stuck in an earlier cycle: logged then, not waited for now
                failed.append((host, log.warning, host.trouble or "still busy with an earlier collection"))
                continue
            try:
                parts.append(future.result(timeout=max(0.0, deadline - self._monotonic())))
            except FutureTimeout:
                failed.append((host, log.warning, f"did not answer within {self.deadline_s:g}s"))
            except Exception as exc:  # LibvirtUnavailableError, or a bug: either costs this host only
                text = str(exc) if isinstance(exc, LibvirtUnavailableError) else f"{type(exc).__name__}: {exc}"
                failed.append((host, log.error, text))
            else:
                if host.trouble is not None:
                    log.info("%s answers again; its domains are back", host.label)
                    host.trouble = None
        if not parts:
            raise LibvirtUnavailableError("no hypervisor answered: " + "; ".join(h.describe(p) for h, _, p in failed))
        for host, report, problem in failed:
            if host.trouble is None:
                report("%s; its domains are left out until it answers", host.describe(problem))
                host.trouble = problem
        starts = [part.started_ns for part in parts if part.started_ns is not None]
        return Snapshot(
            timestamp_ns=max(part.timestamp_ns for part in parts),
            domains=tuple(domain for part in parts for domain in part.domains),
            started_ns=min(starts) if starts else None,
        )

    def forget_configs(self) -> None:
        for host in self.hosts:
            host.collector.forget_configs()

    def close(self) -> None:
        for host in self.hosts:
            host.collector.close()
