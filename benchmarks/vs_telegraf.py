"""Telegraf + kvm-telegraf against Telegraf + ``inputs.libvirt``, side by side, each Telegraf in a cgroup.

Five Telegrafs run at the same time on the same guests, with the same interval and agent settings,
each in a CPU-accounting cgroup of its own that counts it and its execd child together:

- ``libvirt``: Telegraf's own ``inputs.libvirt`` (the six stats groups our four measurements cover);
- ``kvm-telegraf``: our execd block (``signal = "STDIN"``, the kvm-telegraf installed for the bench);
- ``replay``: an execd block whose command only prints a recorded batch of our lines on each newline
  (``replay_lines.py``): Telegraf's parse and output of our lines, without our collection;
- ``floor``: the same replayer, making the bare bulk call kvm-telegraf makes before each batch: the least any
  Python execd input printing our lines can cost with Telegraf, the floor of the ratio;
- ``baseline``: no input but ``inputs.internal``, which every setup has: Telegraf's own cost per interval.

Their gathers are spread over the interval (collection_offset) so that no two read libvirtd at once.
CPU per gather is each cgroup's count over a window of whole intervals divided by the gathers in it;
the window is cut into chunks (the least common multiple of the interval and inputs.internal's 5 s)
so the table can show how much the ratio moves from chunk to chunk.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from benchmarks import procstat
from benchmarks.contenders import URI
from benchmarks.under_telegraf import (
    Setup,
    execd_input,
    gather_time_s,
    libvirt_input,
    per_gather,
    read_capture,
    start_setup,
)
from kvm_telegraf.libvirt_facts import DEFAULT_STATS
from tests.harness.execd import ExecdDriver

REPLAY = Path(__file__).resolve().parent / "replay_lines.py"
INTERNAL_S = 5  # inputs.internal's interval in under_telegraf.agent
# name -> (measurement prefix in the capture, collection offset as a share of the interval)
SETUPS: Dict[str, Tuple[str, float]] = {
    "kvm-telegraf": ("vm_", 0.0),
    "replay": ("vm_", 0.25),
    "libvirt": ("libvirt_", 0.5),
    "floor": ("vm_", 0.75),
    "baseline": ("", 0.0),
}


@dataclass
class TelegrafRun:
    """One side-by-side window of the five setups on one set of guests."""

    label: str  # e.g. "20 paused"
    interval_s: float
    gathers: int
    cpu_s: Dict[str, float] = field(default_factory=dict)  # per gather, the whole cgroup
    chunk_ratios: List[float] = field(default_factory=list)  # kvm-telegraf to libvirt, per chunk
    child_s: Dict[str, float] = field(default_factory=dict)  # per gather, the execd child's own (schedstat)
    rss_mib: Dict[str, float] = field(default_factory=dict)  # VmHWM of Telegraf plus its child
    lines: Dict[str, float] = field(default_factory=dict)
    fields: Dict[str, float] = field(default_factory=dict)
    gather_s: Dict[str, Optional[float]] = field(default_factory=dict)
    log_problems: Dict[str, List[str]] = field(default_factory=dict)
    wall_s: float = 0.0


def chunk_s(interval_s: float) -> int:
    """The shortest window that holds whole intervals and whole inputs.internal periods."""
    return math.lcm(int(round(interval_s)), INTERNAL_S)


def record_batch(argv: Sequence[str], path: Path, timeout: float = 30.0) -> int:
    """The second batch of a fresh kvm-telegraf (cpu_percent and disk latencies in it, as in a steady run)."""
    driver = ExecdDriver(argv)
    driver.start()
    try:
        batch: List[str] = []
        for _ in range(2):
            driver.tick()
            batch = driver.read_batch(timeout=timeout, settle=1.0)
    finally:
        driver.stop()
    if not batch:
        raise RuntimeError(f"kvm-telegraf printed no batch to record; stderr: {driver.stderr[-5:]}")
    path.write_text("".join(line + "\n" for line in batch))
    return len(batch)


def blocks(names: Sequence[str], argv: Sequence[str], batch: Path, interval_s: float) -> Dict[str, str]:
    offsets = {name: share * interval_s for name, (_, share) in SETUPS.items()}
    replay = [sys.executable, str(REPLAY), str(batch)]
    glob = argv[argv.index("--domain") + 1] if "--domain" in argv else "*"  # the floor reads what ours reads
    return {
        "kvm-telegraf": execd_input(argv, offsets["kvm-telegraf"]),
        "replay": execd_input(replay, offsets["replay"]),
        "floor": execd_input([*replay, URI, glob, str(DEFAULT_STATS)], offsets["floor"]),
        "libvirt": libvirt_input(names, offsets["libvirt"]),
        "baseline": "",
    }


def sleep_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


def children_cpu_ns(setup: Setup) -> int:
    return sum(procstat.schedstat_cpu_ns(pid) for pid in setup.pids()[1:])


def compare(
    binary: Path,
    workdir: Path,
    label: str,
    names: Sequence[str],
    argv: Sequence[str],
    interval_s: float,
    chunks: int,
) -> TelegrafRun:
    """The five setups at once for *chunks* windows of chunk_s(interval_s) seconds."""
    started = time.monotonic()
    slug = label.replace(" ", "-")
    batch = workdir / f"batch-{slug}.lp"
    record_batch(argv, batch)
    setups: Dict[str, Setup] = {}
    run = TelegrafRun(label, interval_s, 0)
    try:
        for name, block in blocks(names, argv, batch, interval_s).items():
            prefix = SETUPS[name][0]
            setups[name] = start_setup(
                name, binary, workdir / f"telegraf-{slug}-{name}", interval_s, block, prefix, f"ktbench-{slug}-{name}"
            )
        for name, setup in setups.items():
            if not setup.wait_first_gather(timeout=max(30.0, 4 * interval_s)):
                raise RuntimeError(f"Telegraf with {name} wrote nothing; log: {setup.telegraf.log_text()}")
        window = chunk_s(interval_s)
        moment = (int(time.time()) // window + 1) * window + 0.85 * interval_s  # ticks fall on whole intervals
        sleep_until(moment)
        first = {name: s.group.usage_ns() for name, s in setups.items() if s.group is not None}
        children = {name: children_cpu_ns(s) for name, s in setups.items()}
        previous = dict(first)
        ratios = []
        for _ in range(chunks):
            moment += window
            sleep_until(moment)
            now = {name: s.group.usage_ns() for name, s in setups.items() if s.group is not None}
            ours, theirs = now["kvm-telegraf"] - previous["kvm-telegraf"], now["libvirt"] - previous["libvirt"]
            if theirs > 0:
                ratios.append(ours / theirs)
            previous = now
        gathers = chunks * int(round(window / interval_s))
        run.gathers, run.chunk_ratios = gathers, ratios
        run.cpu_s = {name: (previous[name] - first[name]) / 1e9 / gathers for name in first}
        for name in ("kvm-telegraf", "replay", "floor"):
            run.child_s[name] = (children_cpu_ns(setups[name]) - children[name]) / 1e9 / gathers
        run.rss_mib = {name: sum(procstat.peak_rss_mib(pid) for pid in s.pids()) for name, s in setups.items()}
    finally:
        for setup in setups.values():
            setup.stop()
    for name, setup in setups.items():
        prefix = SETUPS[name][0]
        points = read_capture(setup.capture)
        if prefix:
            run.lines[name], run.fields[name] = per_gather(points, prefix, interval_s)
        run.gather_s[name] = gather_time_s(points, "execd" if name in ("kvm-telegraf", "replay", "floor") else name)
        run.log_problems[name] = [
            f"{x.level}! [{x.plugin}] {x.message}" for x in setup.telegraf.log() if x.level in "EW" and x.plugin
        ]
    run.wall_s = time.monotonic() - started
    return run


@dataclass(frozen=True)
class TelegrafSplit:
    """Telegraf + kvm-telegraf per gather, in parts, in seconds; see split()."""

    total: float
    baseline: float  # Telegraf with inputs.internal only
    parse: float  # Telegraf's parse and output of our recorded lines
    execd_rest: float  # the rest of Telegraf's side: the newline, the pipe, what parse does not explain
    ours: float  # our process
    theirs_total: float  # Telegraf + inputs.libvirt
    theirs_gather: float  # its gather and output, less the baseline
    floor: float  # Telegraf + a process that only makes the bare call and prints our recorded lines
    floor_process: float  # that process: the bare call and one write


def split(run: TelegrafRun) -> TelegrafSplit:
    """The parts of Telegraf + kvm-telegraf per gather, from the five cgroups and the three children."""
    cpu, child = run.cpu_s, run.child_s
    baseline = cpu["baseline"]
    parse = cpu["replay"] - child["replay"] - baseline
    ours = child["kvm-telegraf"]
    return TelegrafSplit(
        total=cpu["kvm-telegraf"],
        baseline=baseline,
        parse=parse,
        execd_rest=cpu["kvm-telegraf"] - ours - baseline - parse,
        ours=ours,
        theirs_total=cpu["libvirt"],
        theirs_gather=cpu["libvirt"] - baseline,
        floor=cpu["floor"],
        floor_process=child["floor"],
    )


def spread(values: List[float]) -> str:
    """``median (min..max)`` of per-chunk ratios."""
    if not values:
        return "n/a"
    return f"{statistics.median(values):.2f}x ({min(values):.2f}..{max(values):.2f})"
