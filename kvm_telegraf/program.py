"""The work behind each command, from typed Settings: the stages built and run, an exit code back.

Like httpie's ``core``: kvm_telegraf/cli.py parses and maps errors to exit
codes; everything that builds stages from the settings and runs them is here,
importing the libvirt-facing modules only when a run starts.
"""

from __future__ import annotations

import gc
import os
import sys
from functools import partial
from typing import Any, BinaryIO, Callable, Optional

from kvm_telegraf.collect import Collector
from kvm_telegraf.connection import Connection, LibvirtUnavailableError, open_read_only, open_read_write
from kvm_telegraf.domain_configs import ConfigCache
from kvm_telegraf.events import EventQueue, start_event_loop, subscribe
from kvm_telegraf.log import get_logger, safe_line, setup_logging
from kvm_telegraf.pipeline import Pipeline
from kvm_telegraf.settings import Settings
from kvm_telegraf.snapshot import SnapshotSource
from kvm_telegraf.trigger import Shutdown, StdinTrigger, run_every, run_on_newlines, stdin_is_pipe
from kvm_telegraf.write import BatchWriter

log = get_logger(__name__)

Opener = Callable[[str], Any]  # a URI in, a libvirt connection out
DOCTOR_INTERVAL_S = 10.0  # Telegraf's default interval


def agent_opener(settings: Settings, opener: Optional[Opener] = None) -> Opener:
    """How the guest agent's own connections open: read-write with --read-write (settings.py allows it only with
    --collect guest), else read-only like every other; a test's *opener* serves both."""
    if opener is not None:
        return opener
    return open_read_write if settings.read_write else open_read_only


def build_source(
    settings: Settings, opener: Optional[Opener], want_config: Optional[bool] = None, events: bool = False
) -> SnapshotSource:
    """One Collector per ``--uri``; several (or ``--hypervisor-tag``) make a HostSet.

    opener: a test's, for every connection; None for libvirt's: the statistics connection is read-only
    whatever the options say, and only the guest agent's own ones are read-write (agent_opener).

    want_config: read each domain's XML always (True), never (False), or when what the
    run reports needs it (None).
    events: run libvirt's event loop, so each Collector's cache follows the domains'
    changes and the groups that report events have them (the long-running modes;
    the operator tools read once and need neither).
    """
    want_config = settings.wants_xml if want_config is None else want_config
    events = events and start_event_loop()  # before any connection opens, as libvirt requires
    collectors = []
    for uri in settings.uris:
        collector = Collector(
            connection=Connection(uri, opener or open_read_only),
            domain_filter=settings.domain_filter,
            timeout_s=settings.timeout_s,
            configs=ConfigCache(settings.features_refresh_s, settings.metadata_tags) if want_config else None,
            groups=settings.groups,
            implied_groups=settings.implied_groups,
            events=EventQueue() if events and settings.wants_events else None,
            own_connection=partial(Connection, uri, agent_opener(settings, opener)),
            features_refresh_s=settings.features_refresh_s,
            own_refresh_s=settings.guest_refresh_s,
        )
        if events:
            collector.connection.subscriber = partial(_subscribe, collector)
        collectors.append(collector)
    if len(collectors) > 1 or settings.hypervisor_tag:
        from kvm_telegraf.hosts import HOST_GRACE_S, HostSet  # only several hosts (or their tag) need it

        return HostSet(collectors, deadline_s=settings.timeout_s + HOST_GRACE_S)
    return collectors[0]


def _subscribe(collector: Collector, conn: Any, died: Callable[[], None]) -> Callable[[], None]:
    """The collector's events on each of its connections (connection.Subscriber)."""
    return subscribe(conn, collector, collector.clock, died)


def build_pipeline(settings: Settings, stdout: BinaryIO, opener: Optional[Opener], events: bool = True) -> Pipeline:
    """The source, the writer on *stdout* and the signals, for what the settings ask for.

    events: False for ``--once``, whose one read needs no event loop: subscribing costs
    libvirtd round trips before the first call, outside the batch deadline.
    """
    source = build_source(settings, opener, events=events)
    # A group the daemon lacks reads no data, so shape makes nothing of it.
    return Pipeline(
        source, BatchWriter(stdout), Shutdown(), settings.measurements, settings.groups, devices=settings.device_filter
    )


def run(settings: Settings, stdin: BinaryIO, stdout: BinaryIO, opener: Optional[Opener] = None) -> int:
    """The plugin: batches on stdin newlines, on --interval, or --once; 1 when --once cannot reach libvirt."""
    setup_logging(settings.log_level)
    if settings.output_format == "table":
        return _table(settings, stdout, opener)
    pipeline = build_pipeline(settings, stdout, opener, events=not settings.once)
    restore = pipeline.shutdown.install()
    try:
        if settings.once:
            try:
                pipeline.cycle()
            except LibvirtUnavailableError as exc:
                log.error("%s", exc)
                return 1
            return 0
        settle_collector()
        if settings.interval_s is not None:
            trigger = StdinTrigger(stdin) if stdin_is_pipe(stdin) else None
            run_every(settings.interval_s, pipeline.survive_cycle, trigger)
        else:
            run_on_newlines(StdinTrigger(stdin), pipeline.survive_cycle)
    except BrokenPipeError:
        _silence_stdout()
    finally:
        restore()
        pipeline.source.close()
    return 0


COLLECTOR_THRESHOLD = 10_000  # allocations between the garbage collector's youngest collections (CPython's: 700)


def settle_collector() -> None:
    """Python's garbage collector, set for a long run: what start-up made (the modules, the options, libvirt's
    binding) frozen out of its reach, and a first threshold of 10,000 allocations. A cycle's objects are freed by
    their counts, nearly none sits in a reference cycle, yet at 1,000 domains the collector ran 13 times a batch
    (callgrind, ``python -m benchmarks.synthetic --stages 3 --domains 1000``: shape 136.8 K -> 127.7 K
    instructions per domain; the freeze alone, 137.2 K).
    """
    gc.freeze()
    gc.set_threshold(COLLECTOR_THRESHOLD)


def _silence_stdout() -> None:
    """After EPIPE, point fd 1 at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _table(settings: Settings, stdout: BinaryIO, opener: Optional[Opener]) -> int:
    """--once --format table: one reading, or two --sample apart for rates; 1 without libvirt."""
    from kvm_telegraf.table import read_samples, table_from_snapshots

    source = build_source(settings, opener, want_config=False)
    try:
        snapshots = read_samples(source, settings.sample_s)
    except LibvirtUnavailableError as exc:
        log.error("%s", exc)
        return 1
    finally:
        source.close()
    stdout.write(table_from_snapshots(snapshots).encode())
    stdout.flush()
    return 0


def doctor(settings: Settings, interval_s: Optional[float], opener: Optional[Opener] = None) -> int:
    """``kvm-telegraf doctor``: the findings on stdout, host after host; 1 when one of them is a FAIL."""
    import pwd

    from kvm_telegraf.doctor import FAIL, diagnose
    from kvm_telegraf.hosts import HostSet

    setup_logging(settings.log_level)
    interval_s = interval_s or settings.interval_s or DOCTOR_INTERVAL_S
    source = build_source(settings, opener, want_config=True)  # balloon checks read XML
    collectors = [host.collector for host in source.hosts] if isinstance(source, HostSet) else [source]
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = f"uid {os.geteuid()}"
    failed = False
    try:
        for collector in collectors:  # one host after the other, each from its "connected" line on
            for finding in diagnose(collector, interval_s, user, read_write=settings.read_write):
                print(safe_line(str(finding)), flush=True)
                failed = failed or finding.level == FAIL
    finally:
        source.close()
    return 1 if failed else 0


def record(settings: Settings, path: str, cycles: int, every_s: float, opener: Optional[Opener] = None) -> int:
    """``kvm-telegraf record``: *cycles* snapshots saved to *path*; returns how many domains the first held.

    LibvirtUnavailableError without libvirt, OSError when the file cannot be written.
    """
    from kvm_telegraf.snapshot import record_cycles, snapshot_to_json

    setup_logging(settings.log_level)
    events = settings.wants_events  # the groups that report events record them too
    source = build_source(settings, opener, want_config=True, events=events)
    try:
        snapshots = record_cycles(source, cycles, every_s)
    finally:
        source.close()
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(snapshot_to_json(snapshots) + "\n")
    return len(snapshots[0].domains)
