"""Several hypervisors from one process: one Collector per ``--uri``, each on a persistent worker of its own.

Every cycle asks all hosts at once and waits for them until one deadline:
``--timeout`` plus HOST_GRACE_S. Each Collector keeps its own deadline of
``--timeout`` + COLLECT_GRACE_S, so only a host that hangs before its stats
calls (while connecting) misses this one. A host that misses it or fails costs
its own points only; the others' go out in the same batch, with one
timestamp. Each host's trouble is logged once when it starts and once when it ends.

Two hosts that report one hostname (an unconfigured ``localhost``, two URIs to one daemon, containerised
daemons) would give their domains the same tag set (hypervisor, uuid, vm) and overwrite each other's series:
the first ``--uri`` that reports a hostname keeps it, and each later one is left out with one W! line.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from kvm_telegraf.collect import COLLECT_GRACE_S, Collector
from kvm_telegraf.connection import LibvirtUnavailableError, redact_uri
from kvm_telegraf.log import HOST_THREAD_PREFIX, get_logger
from kvm_telegraf.snapshot import Snapshot
from kvm_telegraf.worker import Call, CallTimeoutError, Worker

log = get_logger(__name__)

# Beyond --timeout: the Collector's own grace, and a little for handing its snapshot over.
HOST_GRACE_S = COLLECT_GRACE_S + 0.1


class Host:
    """One hypervisor: its Collector, run on a worker that lives as long as the process, never twice at once."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.label = redact_uri(collector.connection.uri)
        self.trouble: Optional[str] = None  # why its domains are left out, while they are
        self.hostname = ""  # what libvirt called the host at the last collection
        self.shadowed_by: Optional[str] = None  # the --uri whose hostname it repeats, while it does
        self._worker = Worker(HOST_THREAD_PREFIX + self.label)  # log lines from this thread name the host

    def start(self) -> Optional[Call]:
        """Begin one collection; None while the previous one still runs (it missed its deadline)."""
        return self._worker.submit(self._collect)

    def _collect(self) -> Snapshot:
        snapshot = self.collector.collect()
        hostname = self.collector.connection.hostname()  # cached; asked again after a reconnect
        self.hostname = hostname  # read by HostSet once this future has answered
        domains = tuple(dataclasses.replace(domain, hypervisor=hostname) for domain in snapshot.domains)
        hosts = tuple({**host, "hypervisor": hostname} for host in snapshot.hosts)
        events = tuple(dataclasses.replace(event, hypervisor=hostname) for event in snapshot.events)
        return dataclasses.replace(snapshot, domains=domains, hosts=hosts, events=events)

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
        answered: List[Tuple[Host, Snapshot]] = []
        failed: List[Tuple[Host, Callable[..., None], str]] = []
        for host, future in started:
            if future is None:  # still stuck in an earlier cycle: logged then, not waited for now
                failed.append((host, log.warning, host.trouble or "still busy with an earlier collection"))
                continue
            try:
                answered.append((host, future.result(timeout=max(0.0, deadline - self._monotonic()))))
            except CallTimeoutError:
                failed.append((host, log.warning, f"did not answer within {self.deadline_s:g}s"))
            except Exception as exc:  # LibvirtUnavailableError, or a bug: either costs this host only
                text = str(exc) if isinstance(exc, LibvirtUnavailableError) else f"{type(exc).__name__}: {exc}"
                failed.append((host, log.error, text))
            else:
                if host.trouble is not None:
                    log.info("%s answers again; its domains are back", host.label)
                    host.trouble = None
        if not answered:
            raise LibvirtUnavailableError("no hypervisor answered: " + "; ".join(h.describe(p) for h, _, p in failed))
        for host, report, problem in failed:
            if host.trouble is None:
                report("%s; its domains are left out until it answers", host.describe(problem))
                host.trouble = problem
        parts = one_per_hostname(answered)
        starts = [part.started_ns for part in parts if part.started_ns is not None]
        return Snapshot(
            timestamp_ns=max(part.timestamp_ns for part in parts),
            domains=tuple(domain for part in parts for domain in part.domains),
            started_ns=min(starts) if starts else None,
            hosts=tuple(host for part in parts for host in part.hosts),
            events=tuple(sorted((event for part in parts for event in part.events), key=lambda e: e.timestamp_ns)),
        )

    def forget_configs(self) -> None:
        for host in self.hosts:
            host.collector.forget_configs()

    def close(self) -> None:
        for host in self.hosts:
            host.collector.close()


def one_per_hostname(answered: Sequence[Tuple[Host, Snapshot]]) -> List[Snapshot]:
    """Each hostname's snapshot from the first host (in --uri order) that reports it; a later one is left out,
    with one W! when it starts repeating a hostname and one I! when it stops."""
    owners: Dict[str, Host] = {}
    kept = []
    for host, snapshot in answered:
        owner = owners.setdefault(host.hostname, host)
        if owner is host:
            if host.shadowed_by is not None:
                log.info("%s now reports hostname %s of its own; its domains are back", host.label, host.hostname)
                host.shadowed_by = None
            kept.append(snapshot)
            continue
        if host.shadowed_by != owner.label:
            log.warning(
                "%s reports hostname %s, as %s does: their points would share one series (hypervisor, uuid, vm), "
                "so its domains are left out; fix: give each hypervisor a hostname of its own, or drop one --uri "
                "if both reach the same daemon",
                host.label,
                host.hostname,
                owner.label,
            )
            host.shadowed_by = owner.label
    return kept
