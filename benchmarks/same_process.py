"""CPU per cycle against the bare call's own client CPU, in one process, interleaved; and per stage.

``make bench`` runs this file with the Python of the kvm-telegraf it installed for the bench:

    python same_process.py URI GLOB ROUNDS              # prints one JSON object
    python same_process.py URI GLOB ROUNDS --callgrind  # the stages under callgrind's markers (callgrind.py)

Each round makes, one after the other (the order rotates from round to round): the bare
``getAllDomainStats`` with kvm-telegraf's groups and flags plus the name filter; one
``Pipeline.cycle`` (what the process runs); one cycle of a second pipeline, built the same
way, run stage by stage (collect, shape, encode, write) with each stage timed. Each is timed
with ``time.process_time_ns()`` (CLOCK_PROCESS_CPUTIME_ID: the kernel's ns run time summed over
the threads, the count schedstat gives too; collect makes its call on a worker thread) and the
wall clock. ``gc.callbacks`` time every collection of the garbage collector in the thread it
runs in. Only the kvm_telegraf package and libvirt are imported: it runs with the kvm-telegraf
installed for the bench, outside this checkout (and gc_clock.py beside this file).
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import libvirt
from gc_clock import GcClock  # this file's directory is on sys.path when it runs as a script

from kvm_telegraf.cli import main as cli_main
from kvm_telegraf.libvirt_facts import DEFAULT_STATS
from kvm_telegraf.pipeline import Pipeline
from kvm_telegraf.points import each_point
from kvm_telegraf.program import build_pipeline, settle_collector
from kvm_telegraf.settings import Settings
from kvm_telegraf.shape import shape_snapshot

STAGES = ("collect", "shape", "encode", "write")


class PrintFloor:
    """The least Python that prints a cycle's values as its lines: each point's values as a tuple, through a ``%``
    template of its series and field keys made in an earlier cycle, the lines joined in one call. Only the formatting
    is timed: the values' tuples are made before the clock (a plan's lines carry theirs, ``Fields.row``); no stats
    are read, nothing is checked or escaped, no layout is looked up. Any Python input printing this schema from new
    values each cycle does at least this. Rounds whose points differ from the cycle before (a first one) are not
    timed."""

    def __init__(self) -> None:
        self.layout: List = []
        self.templates: List[str] = []
        self.samples: List[float] = []

    def __call__(self, batch: List, timestamp_ns: int) -> None:
        points = each_point(batch)  # a planned domain's Lines as its points
        layout = [(measurement, tags, tuple(fields)) for measurement, tags, fields, _ in points]
        rows = [tuple(dict(fields).values()) for _, _, fields, _ in points]
        if layout != self.layout:
            self.layout, self.templates = layout, [template(*series) for series in layout]
            return
        clock = time.process_time_ns
        started = clock()
        f" {timestamp_ns}\n".join([text % row for text, row in zip(self.templates, rows)])
        self.samples.append((clock() - started) / 1e9)


def template(measurement: str, tags: Tuple[Tuple[str, str], ...], keys: Tuple[str, ...]) -> str:
    """``measurement,tags key=%di,...``: the line's text with a ``%`` slot per field (unescaped: a floor)."""
    prefix = ",".join([measurement, *(f"{key}={value}" for key, value in tags)]).replace("%", "%%")
    return prefix + " " + ",".join(f"{key.replace('%', '%%')}=%s" for key in keys)


class StagedCycle:
    """Pipeline.cycle's four stages, each timed; the same calls in the same order as Pipeline.cycle."""

    def __init__(self, pipeline: Pipeline, print_floor: bool = True) -> None:
        """print_floor: also time PrintFloor on each cycle's points (not under callgrind: its markers cut stages)."""
        self.pipeline = pipeline
        self.history: Dict = {}
        self.samples: Dict[str, List[float]] = {stage: [] for stage in STAGES}
        self.domains: List[int] = []
        self.print_floor = PrintFloor() if print_floor else None

    def __call__(self, marker: Callable[[], None] = lambda: None) -> float:
        """One cycle, stage by stage; the CPU seconds spent on the print floor, which are no part of the cycle."""
        p = self.pipeline
        clock = time.process_time_ns
        t0 = clock()
        snapshot = p.source.collect()
        t1 = clock()
        marker()
        points, self.history = shape_snapshot(
            snapshot, self.history, p.measurements, p.groups, devices=p.devices, plans=p.plans
        )
        t2 = clock()
        marker()
        batch = p.encoder.encode(points, snapshot.timestamp_ns)
        t3 = clock()
        marker()
        p.writer.write(batch)
        t4 = clock()
        marker()
        for stage, start, end in zip(STAGES, (t0, t1, t2, t3), (t1, t2, t3, t4)):
            self.samples[stage].append((end - start) / 1e9)
        self.domains.append(len(snapshot.domains))
        if self.print_floor is None:
            return 0.0
        self.print_floor(points, snapshot.timestamp_ns)  # after the stages' clocks: in no stage's time
        return (clock() - t4) / 1e9


def measure(
    rounds: int, contenders: Dict[str, Callable[[], Optional[float]]], gc_clock: GcClock, pause_s: float = 0.2
) -> Dict:
    """Each contender's CPU and wall time per round, the order rotating; a contender may return CPU seconds it
    spent measuring something else (StagedCycle's print floor), left out of its CPU time."""
    keys = ("cpu_s", "wall_s", "gc_s", "gc_runs")
    samples: Dict[str, Dict[str, List[float]]] = {name: {key: [] for key in keys} for name in contenders}
    names = list(contenders)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            gc_ns, gc_runs = gc_clock.ns, gc_clock.runs
            cpu, wall = time.process_time_ns(), time.perf_counter_ns()
            aside = contenders[name]() or 0.0
            samples[name]["wall_s"].append((time.perf_counter_ns() - wall) / 1e9)
            samples[name]["cpu_s"].append((time.process_time_ns() - cpu) / 1e9 - aside)
            samples[name]["gc_s"].append((gc_clock.ns - gc_ns) / 1e9)
            samples[name]["gc_runs"].append(gc_clock.runs - gc_runs)
            time.sleep(pause_s)
    return samples


def callgrind_marker() -> None:
    """The call callgrind.py's ``--dump-before=getpgrp`` cuts the count at: nothing else here calls getpgrp."""
    os.getpgrp()


def only_these(conn: libvirt.virConnect, glob: str) -> bool:
    """Whether every domain on the host is one of the bench's: then the pipeline runs as an operator's default does,
    with no ``--domain`` (one ``getAllDomainStats``); with other domains there, ``--domain GLOB`` keeps them out, and
    the cycle's listing call (docs/performance.md, "Reading only the chosen domains") counts in its CPU."""
    return all(fnmatch.fnmatchcase(dom.name(), glob) for dom in conn.listAllDomains())


def main(argv: List[str]) -> int:
    uri, glob, rounds = argv[0], argv[1], int(argv[2])
    under_callgrind = "--callgrind" in argv
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.openReadOnly(uri)
    kept: List[int] = []

    def bare() -> None:
        records = conn.getAllDomainStats(DEFAULT_STATS, 0)
        kept.append(len([stats for dom, stats in records if fnmatch.fnmatchcase(dom.name(), glob)]))

    # one more minute of deadline under valgrind, whose client side is some 50 times slower
    timeout = ["--timeout", "60s"] if under_callgrind else []
    filtered = not only_these(conn, glob)
    chosen = ["--domain", glob] if filtered else []
    options = cli_main.make_context("kvm-telegraf", ["--uri", uri, *chosen, *timeout]).params
    settings = Settings.from_options(options)
    sink = open(os.devnull, "wb")  # noqa: SIM115 - open for the whole run
    shipped = build_pipeline(settings, sink, libvirt.openReadOnly, events=False)
    staged = StagedCycle(build_pipeline(settings, sink, libvirt.openReadOnly, events=False), not under_callgrind)
    settle_collector()  # as the long-running process does before its first cycle
    for _ in range(2):  # warm-up: connections, domain XML, the encoders' caches, cpu_percent's history
        bare()
        shipped.cycle()
        staged()
    if under_callgrind:  # the order callgrind.py names the parts by: one marker after each
        callgrind_marker()
        for _ in range(rounds):
            bare()
            callgrind_marker()
            staged(callgrind_marker)
        print(json.dumps({"parts": ["setup"] + ["bare", *STAGES] * rounds}))
    else:
        gc_clock = GcClock()
        samples = measure(rounds, {"bare": bare, "cycle": shipped.cycle, "staged": staged}, gc_clock)
        samples["stages"] = staged.samples
        samples["print_floor_s"] = staged.print_floor.samples if staged.print_floor else []
        samples["domains"] = {"read": staged.domains[-1], "kept_by_bare": kept[-1], "filtered": filtered}
        print(json.dumps(samples))
    for pipeline in (shipped, staged.pipeline):
        pipeline.source.close()
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
