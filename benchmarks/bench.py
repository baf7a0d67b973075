"""``make bench``: kvm-telegraf side by side with collectd's virt plugin and the Prometheus libvirt exporter.

One run, all contenders interleaved on the same paused lab guests, then the
bare call, kvm-telegraf and collectd again with a few of the guests running
(benchmarks/README.md has the method and what is fair about it). Prints the
tables and writes them to benchmarks/results.md and docs/performance.md.

    .venv/bin/python -m benchmarks.bench [--guests 20] [--cycles 30] [--running 5] [--keep-guests]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import queue
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from benchmarks import procstat
from benchmarks.peers import COLLECTD, EXPORTER, Collectd, Exporter, stop_process
from benchmarks.synthetic import GROUPS_ON, GROUPS_ON_VCPUS, time_shape_encode
from benchmarks.under_telegraf import (
    Agreement,
    Setup,
    agreement,
    execd_input,
    gather_time_s,
    libvirt_input,
    per_gather,
    read_capture,
    start_setup,
)
from kvm_telegraf.libvirt_facts import DEFAULT_STATS
from tests.harness.execd import ExecdDriver
from tests.harness.telegraf import find_telegraf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
URI = "qemu:///system"
PREFIX = os.environ.get("KVM_TELEGRAF_BENCH_PREFIX", "ktbench-")
SYSTEM_PYTHON = os.environ.get("PYTHON_SYSTEM", "/usr/bin/python3")
BATCH_TIMEOUT_S = 30.0
DEFAULT_RESULTS = os.path.join(REPO, "benchmarks", "results.md")
PERFORMANCE_DOC = os.path.join(REPO, "docs", "performance.md")
RESULTS_START, RESULTS_END = "<!-- bench-results:start -->", "<!-- bench-results:end -->"

# The targets of issue #5, each a ratio or a limit measured in the same run.
LATENCY_RATIO_MAX = 1.05
CPU_RATIO_MAX = 0.5
CPU_BARE_RATIO_MAX = 2.0  # issue #15: CPU per cycle against the bare call's own client CPU, in one process
PEAK_RSS_MIB_MAX = 30.0
SHAPE_ENCODE_US_MAX = 25.0
START_S_MAX = 0.5

# Telegraf's interval for the two setups under the real Telegraf. For the data agreement both inputs run in one
# Telegraf, inputs.libvirt half an interval after ours; both stamp a point when their call has returned, so the
# interval there is longer than two calls on a loaded host, or a reading could fall on the wrong side of a stamp.
TELEGRAF_INTERVAL_S = 2.0
AGREEMENT_INTERVAL_S = 3.0
AGREEMENT_GATHERS = 5


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --- the lab -------------------------------------------------------------------------------------


def lab(*args: str) -> None:
    """tests/lab/lab.py with this bench's prefix, so the shared test lab (ktlab-*) is never touched."""
    env = {**os.environ, "KVM_TELEGRAF_LAB_PREFIX": PREFIX}
    subprocess.run([sys.executable, os.path.join(REPO, "tests", "lab", "lab.py"), *args], env=env, check=True)


def install_as_documented(workdir: str) -> str:
    """kvm-telegraf as README's Install section has it: a venv on the host's Python, a plain pip install.

    The development venv's editable install loads an import hook at every start
    (about 2 MiB), which a real install does not have. Returns the entry point's path.
    """
    source, venv = os.path.join(workdir, "src"), os.path.join(workdir, "venv")
    shutil.copytree(
        os.path.join(REPO, "kvm_telegraf"),
        os.path.join(source, "kvm_telegraf"),
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), source)
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", venv], check=True)
    pip = [os.path.join(venv, "bin", "pip"), "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*pip, source], check=True)
    return os.path.join(venv, "bin", "kvm-telegraf")


def ensure_peers() -> None:
    missing = [path for path in (COLLECTD, EXPORTER) if not os.path.exists(path)]
    if missing:
        log(f"missing {' '.join(missing)}: installing collectd-core prometheus-libvirt-exporter")
        subprocess.run(
            [os.path.join(REPO, "scripts", "apt-ensure"), "collectd-core", "prometheus-libvirt-exporter"], check=True
        )


# --- samples -------------------------------------------------------------------------------------


@dataclass
class Series:
    """Per-cycle samples of one contender; failed cycles are counted, not sampled."""

    wall_s: List[float] = field(default_factory=list)
    cpu_s: List[float] = field(default_factory=list)
    out_bytes: List[int] = field(default_factory=list)
    paired_ratio: List[float] = field(default_factory=list)  # to the bare call made in the same second
    failures: List[str] = field(default_factory=list)

    def median(self, name: str) -> Optional[float]:
        values = getattr(self, name)
        return statistics.median(values) if values else None


class CpuMeter:
    """CPU of one process between consecutive marks: schedstat (ns) per cycle, utime+stime over the run."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._last: Optional[int] = None
        self._first_stat: Optional[float] = None
        self._stat_s = 0.0
        self.marks = 0

    def mark(self) -> Optional[float]:
        """Seconds of CPU since the previous mark (None at the first)."""
        now = procstat.schedstat_cpu_ns(self.pid)
        stat = procstat.stat_cpu_s(self.pid)
        if self._first_stat is None:
            self._first_stat = stat
        self._stat_s = stat - self._first_stat
        previous, self._last = self._last, now
        self.marks += 1
        return None if previous is None else (now - previous) / 1e9

    def stat_mean_s(self, cycles_per_mark: float = 1.0) -> Optional[float]:
        """utime+stime from the first to the last mark, per cycle: the coarse cross-check."""
        intervals = (self.marks - 1) * cycles_per_mark
        return self._stat_s / intervals if intervals > 0 else None


# --- the contenders ------------------------------------------------------------------------------


BARE_LOOP = """\
import fnmatch, sys, libvirt
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
conn = libvirt.openReadOnly(sys.argv[1])
for _ in iter(sys.stdin.readline, ""):
    records = conn.getAllDomainStats(int(sys.argv[3]), 0)
    kept = [stats for dom, stats in records if fnmatch.fnmatchcase(dom.name(), sys.argv[2])]
    print(len(kept), len(records), flush=True)
"""


class BareCall:
    """The floor: the smallest Python process that makes libvirt-python's getAllDomainStats with
    kvm-telegraf's groups and flags, plus the same name filter, on each newline on its stdin.

    It is driven and measured the way kvm-telegraf is: newline in, one line out, its own CPU and RSS.
    """

    def __init__(self, glob: str) -> None:
        argv = [SYSTEM_PYTHON, "-c", BARE_LOOP, URI, glob, str(DEFAULT_STATS)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.meter = CpuMeter(self.proc.pid)
        self.domains_read = 0

    def cycle(self) -> float:
        """Seconds from the newline to the answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        started = time.monotonic()
        os.write(self.proc.stdin.fileno(), b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            ready, _, _ = select.select([self.proc.stdout], [], [], BATCH_TIMEOUT_S)
            chunk = os.read(self.proc.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                raise RuntimeError(f"the bare call answered nothing (exit code {self.proc.poll()})")
            answer += chunk
        elapsed = time.monotonic() - started
        self.domains_read = int(answer.split()[1])
        return elapsed

    def close(self) -> None:
        stop_process(self.proc)


class KvmTelegraf:
    """kvm-telegraf under the execd harness: one newline in, one batch out."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.driver = ExecdDriver(argv)
        self.lines_per_batch = 0
        self.meter: Optional[CpuMeter] = None

    def start(self) -> None:
        self.driver.start()
        assert self.driver.pid is not None
        self.meter = CpuMeter(self.driver.pid)
        self.driver.tick()
        first = self.driver.read_batch(timeout=BATCH_TIMEOUT_S, settle=1.0)
        if not first:
            raise RuntimeError(f"kvm-telegraf printed no batch; stderr: {self.driver.stderr[-5:]}")
        self.lines_per_batch = len(first)

    def cycle(self) -> Tuple[float, int]:
        """(seconds from the newline to the batch's last line, batch bytes)."""
        self.driver.drain()
        started = time.monotonic()
        if not self.driver.tick():
            raise RuntimeError(f"tick failed: {self.driver.errors[-1:]}")
        lines = take_lines(self.driver, self.lines_per_batch, BATCH_TIMEOUT_S)
        if len(lines) != self.lines_per_batch:
            raise RuntimeError(f"batch of {len(lines)} lines, expected {self.lines_per_batch}")
        if len({line.rsplit(" ", 1)[-1] for line in lines}) != 1:
            raise RuntimeError("lines of one batch carry different timestamps")
        with self.driver.lock:
            last_line_at = self.driver.stdout_log[-1][0]
        return last_line_at - started, sum(len(line) + 1 for line in lines)

    def peak_rss_mib(self) -> float:
        assert self.driver.pid is not None
        return procstat.peak_rss_mib(self.driver.pid)

    def stop(self) -> None:
        self.driver.stop()


def take_lines(driver: ExecdDriver, count: int, timeout: float) -> List[str]:
    deadline = time.monotonic() + timeout
    lines: List[str] = []
    while len(lines) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            lines.append(driver.lines.get(timeout=remaining))
        except queue.Empty:
            break
    return lines


def start_to_first_batch(argv: Sequence[str], lines: int) -> float:
    """Seconds from starting a fresh process, its stdin newline already written, to its first batch's last line."""
    read_end, write_end = os.pipe()
    os.write(write_end, b"\n")
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=read_end, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    os.close(read_end)
    try:
        assert proc.stdout is not None
        seen, deadline = 0, started + BATCH_TIMEOUT_S
        while seen < lines and time.monotonic() < deadline:
            chunk = os.read(proc.stdout.fileno(), 1 << 20)
            if not chunk:
                break
            seen += chunk.count(b"\n")
        elapsed = time.monotonic() - started
        if seen < lines:
            raise RuntimeError(f"first batch had {seen} lines, expected {lines}")
        return elapsed
    finally:
        os.close(write_end)  # stdin EOF: the process exits 0
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


# --- scheduling around collectd ------------------------------------------------------------------


def collectd_phase(pid: int, seconds: float = 3.0, step: float = 0.002) -> Tuple[float, float]:
    """(offset within the second at which collectd's reads start, how long their CPU bursts last).

    collectd reads on its own 1 s grid. The other contenders run right after a
    read, so no two of them ever talk to libvirtd at the same time.
    """
    samples = []
    end = time.time() + seconds
    while time.time() < end:
        samples.append((time.time(), procstat.schedstat_cpu_ns(pid)))
        time.sleep(step)
    active = [t1 for (_, c0), (t1, c1) in zip(samples, samples[1:]) if c1 - c0 > 200_000]
    bursts: List[List[float]] = []
    for moment in active:
        if bursts and moment - bursts[-1][-1] < 0.2:
            bursts[-1].append(moment)
        else:
            bursts.append([moment])
    if not bursts:
        return 0.0, 0.5
    starts = [burst[0] % 1.0 for burst in bursts]
    return statistics.median(starts), max(burst[-1] - burst[0] for burst in bursts)


def sleep_until(wall_clock: float) -> None:
    delay = wall_clock - time.time()
    if delay > 0:
        time.sleep(delay)


# --- under the real Telegraf ----------------------------------------------------------------------


@dataclass
class TelegrafRow:
    """One setup under the real Telegraf: Telegraf with inputs.libvirt, or with our execd block."""

    telegraf_cpu_s: List[float] = field(default_factory=list)  # per gather, Telegraf's own
    plugin_cpu_s: List[float] = field(default_factory=list)  # per gather, the execd child's (ours)
    rss_mib: float = 0.0
    gather_s: Optional[float] = None
    lines: float = 0.0
    fields: float = 0.0
    log_problems: List[str] = field(default_factory=list)  # E! and W! lines about a plugin


def run_setup(setup: Setup, gathers: int) -> TelegrafRow:
    """CPU per gather over ``gathers`` intervals, sampled half way between two ticks; then peak RSS and the capture."""
    row = TelegrafRow()
    try:
        if not setup.wait_first_gather():
            raise RuntimeError(f"Telegraf with {setup.name} wrote nothing; log: {setup.telegraf.log_text()}")
        pids = setup.pids()
        moment = int(time.time()) + 1 + TELEGRAF_INTERVAL_S / 2  # ticks fall on whole seconds (round_interval)
        sleep_until(moment)
        previous = [procstat.schedstat_cpu_ns(pid) for pid in pids]
        for _ in range(gathers):
            moment += TELEGRAF_INTERVAL_S
            sleep_until(moment)
            now = [procstat.schedstat_cpu_ns(pid) for pid in pids]
            deltas = [(b - a) / 1e9 for a, b in zip(previous, now)]
            row.telegraf_cpu_s.append(deltas[0])
            row.plugin_cpu_s.append(sum(deltas[1:]))
            previous = now
        row.rss_mib = sum(procstat.peak_rss_mib(pid) for pid in pids)
    finally:
        setup.telegraf.stop()
    points = read_capture(setup.capture)
    row.lines, row.fields = per_gather(points, setup.prefix, TELEGRAF_INTERVAL_S)
    row.gather_s = gather_time_s(points, setup.name)
    row.log_problems = [
        f"{x.level}! [{x.plugin}] {x.message}" for x in setup.telegraf.log() if x.level in "EW" and x.plugin
    ]
    return row


def under_telegraf(
    binary: Path, workdir: str, names: List[str], argv: Sequence[str], gathers: int
) -> Dict[str, TelegrafRow]:
    """Telegraf with only inputs.libvirt, then Telegraf with only our execd block, one after the other."""
    rows = {}
    for name, block, prefix in (("libvirt", libvirt_input(names), "libvirt_"), ("execd", execd_input(argv), "vm_")):
        log(f"Telegraf with only inputs.{name}: {gathers} gathers, {TELEGRAF_INTERVAL_S:g} s apart")
        setup = start_setup(name, binary, Path(workdir) / f"telegraf-{name}", TELEGRAF_INTERVAL_S, block, prefix)
        rows[name] = run_setup(setup, gathers)
    return rows


def data_agreement(binary: Path, workdir: str, names: List[str], argv: Sequence[str]) -> Agreement:
    """One Telegraf with both inputs, inputs.libvirt half an interval after ours, into one capture."""
    block = execd_input(argv) + libvirt_input(names, offset_s=AGREEMENT_INTERVAL_S / 2)
    setup = start_setup("both", binary, Path(workdir) / "telegraf-both", AGREEMENT_INTERVAL_S, block, "libvirt_")
    try:
        if not setup.wait_first_gather():
            raise RuntimeError(f"Telegraf with both inputs wrote nothing; log: {setup.telegraf.log_text()}")
        time.sleep(AGREEMENT_GATHERS * AGREEMENT_INTERVAL_S)
    finally:
        setup.telegraf.stop()
    return agreement(read_capture(setup.capture), AGREEMENT_INTERVAL_S)


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Results:
    machine: Dict[str, str]
    cycles: int
    guests: int
    domains_on_host: int
    bare: Series
    kvm: Series
    collectd: Series
    exporter: Series
    start_s: List[float]
    rss_mib: Dict[str, float]
    stat_mean_s: Dict[str, Optional[float]]
    synthetic: Dict[str, Any]
    synthetic_groups: List[Dict[str, Any]]
    same_process: Optional[Dict[str, Dict[str, List[float]]]]
    lines_per_batch: int
    exporter_domains: int
    running: int
    live: Dict[str, Series]
    telegraf: Dict[str, TelegrafRow]
    agreement: Optional[Agreement]
    agreement_running: int


def machine_info() -> Dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def version(number: int) -> str:
        return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"

    import libvirt

    conn = libvirt.openReadOnly(URI)
    try:
        libvirt_version, qemu_version = version(conn.getLibVersion()), version(conn.getVersion())
    finally:
        conn.close()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "libvirt": libvirt_version,
        "qemu": qemu_version,
        "python": platform.python_version(),
        "telegraf": telegraf_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def telegraf_version() -> str:
    binary = find_telegraf()
    if binary is None:
        return "not built"
    return subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.split()[-1]


def run(guests: int, cycles: int, running: int, workdir: str, telegraf: Path) -> Results:
    glob = f"{PREFIX}*"
    names = [f"{PREFIX}{index:02d}" for index in range(1, guests + 1)]
    log("installing this checkout into a fresh venv, as README's Install section does")
    argv = [install_as_documented(workdir), "--domain", glob]
    bare = BareCall(glob)
    kvm = KvmTelegraf(argv)
    exporter = Exporter(workdir, URI)
    collectds: List[Collectd] = []
    paused = {name: Series() for name in ("bare", "kvm", "collectd", "exporter")}
    live = {name: Series() for name in ("bare", "kvm", "collectd")}
    start_s: List[float] = []

    def start_collectd(label: str) -> CpuMeter:
        directory = os.path.join(workdir, label)
        os.makedirs(directory)
        collectd = Collectd(directory, "^" + re.escape(PREFIX), URI)
        collectds.append(collectd)
        meter = CpuMeter(collectd.start())
        collectd.wait_first_values()
        return meter

    def bare_sample(s: Series, meters: Dict[str, CpuMeter]) -> None:
        s.wall_s.append(bare.cycle())
        s.cpu_s.append(meters["bare"].mark() or 0.0)  # since the previous call: idle time included

    def kvm_sample(s: Series, meters: Dict[str, CpuMeter]) -> None:
        wall, size = kvm.cycle()
        s.wall_s.append(wall)
        s.out_bytes.append(size)
        s.cpu_s.append(meters["kvm"].mark() or 0.0)  # since the previous batch: idle time included

    def exporter_sample(s: Series, meters: Dict[str, CpuMeter]) -> None:
        wall, body = exporter.scrape()
        s.wall_s.append(wall)
        s.out_bytes.append(len(body))
        s.cpu_s.append(meters["exporter"].mark() or 0.0)

    def play(rounds: int, series: Dict[str, Series], meters: Dict[str, CpuMeter], full: bool) -> None:
        """Rounds of exactly 3 s on collectd's 1 s grid: bare call + kvm-telegraf | exporter | a new kvm-telegraf."""
        collectd = collectds[-1]
        phase, burst = collectd_phase(meters["collectd"].pid)
        offset = (phase + burst + 0.05) % 1.0
        log(f"collectd reads at +{phase:.3f}s of each second ({burst * 1e3:.0f} ms); slots start at +{offset:.3f}s")
        for name in ("bare", "kvm", "exporter"):
            meters[name].mark()
        slot = int(time.time()) + 1 + offset
        for index in range(rounds + 1):
            sleep_until(slot)
            collectd_cpu, sent = meters["collectd"].mark(), collectd.drain()  # 3 s: three reads
            if collectd_cpu is not None:
                series["collectd"].cpu_s.append(collectd_cpu / 3)
                series["collectd"].out_bytes.append(sent // 3)
            if index == rounds:
                return
            pair = [("bare", bare_sample), ("kvm", kvm_sample)]
            before = (len(series["bare"].wall_s), len(series["kvm"].wall_s))
            for name, sample in pair if index % 2 == 0 else pair[::-1]:  # neither always goes first
                measure(series[name], lambda s, sample=sample: sample(s, meters))
                time.sleep(0.02)
            if (len(series["bare"].wall_s), len(series["kvm"].wall_s)) == (before[0] + 1, before[1] + 1):
                series["kvm"].paired_ratio.append(series["kvm"].wall_s[-1] / series["bare"].wall_s[-1])
            if full:
                sleep_until(slot + 1)
                measure(series["exporter"], lambda s: exporter_sample(s, meters))
                sleep_until(slot + 2)
                try:
                    start_s.append(start_to_first_batch(argv, kvm.lines_per_batch))
                except RuntimeError as exc:
                    log(f"start to first batch: {exc}")
            slot += 3
            log(
                f"round {index + 1}/{rounds}: bare {fmt_ms(last(series['bare'].wall_s))}, "
                f"kvm-telegraf {fmt_ms(last(series['kvm'].wall_s))}"
                + (
                    f", exporter {fmt_ms(last(series['exporter'].wall_s))}, start {fmt_s(last(start_s))}"
                    if full
                    else ""
                )
            )

    try:
        log("starting kvm-telegraf, collectd and the exporter")
        kvm.start()
        assert kvm.meter is not None
        meters = {
            "bare": bare.meter,
            "kvm": kvm.meter,
            "exporter": CpuMeter(exporter.start()),
            "collectd": start_collectd("paused"),
        }
        exporter.wait_ready()
        for _ in range(2):  # warm-up: connections, caches, first XML reads
            bare.cycle()
            kvm.cycle()
            exporter.scrape()
        exporter_domains = exporter.scrape()[1].count(b"\nlibvirt_domain_info_virtual_cpus{")
        domains_on_host = bare.domains_read
        log(f"{cycles} rounds on {guests} paused guests")
        play(cycles, paused, meters, full=True)
        rss = {name: procstat.peak_rss_mib(meters[name].pid) for name in ("bare", "collectd", "exporter")}
        stat_means = {
            "bare": meters["bare"].stat_mean_s(),
            "kvm-telegraf": meters["kvm"].stat_mean_s(),
            "collectd": meters["collectd"].stat_mean_s(3.0),
            "exporter": meters["exporter"].stat_mean_s(),
        }
        machine = machine_info()
        collectds[-1].stop()  # no read of collectd's between Telegraf's (nor of the same-process rounds)
        log(f"CPU per cycle against the bare call's, in one process: {cycles} rounds")
        same = same_process(workdir, glob, cycles)
        telegraf_rows = under_telegraf(telegraf, workdir, names, argv, cycles)
        resumed = names[:running]
        if running:
            log(f"resuming {' '.join(resumed)}; a new collectd, whose device list then holds them")
            for name in resumed:
                subprocess.run(["virsh", "-q", "-c", URI, "resume", name], check=True, stdout=subprocess.DEVNULL)
            time.sleep(5)
        log(f"data agreement: one Telegraf with both inputs, {len(resumed)} guests running")
        try:
            agreed: Optional[Agreement] = data_agreement(telegraf, workdir, names, argv)
        except RuntimeError as exc:
            log(f"data agreement: {exc}")
            agreed = None
        if running:
            assert kvm.driver.pid is not None
            live_meters = {
                "bare": CpuMeter(bare.proc.pid),
                "kvm": CpuMeter(kvm.driver.pid),
                "exporter": meters["exporter"],
            }
            live_meters["collectd"] = start_collectd("running")
            log(f"{cycles} rounds with {running} of the guests running")
            play(cycles, live, live_meters, full=False)
        rss["kvm-telegraf"] = kvm.peak_rss_mib()
    finally:
        kvm.stop()
        for collectd in collectds:
            collectd.stop()
        exporter.stop()
        bare.close()
    log("shape + encode on a synthetic 1,000-domain host: groups off; vcpu, then all on, with 8 vCPUs per domain")
    synthetic = time_shape_encode(1000, repeats=max(cycles, 15))
    synthetic_groups = [
        time_shape_encode(1000, repeats=max(cycles, 15), groups=groups, vcpus=GROUPS_ON_VCPUS)
        for groups in (frozenset({"vcpu"}), GROUPS_ON)
    ]
    return Results(
        machine=machine,
        cycles=cycles,
        guests=guests,
        domains_on_host=domains_on_host,
        bare=paused["bare"],
        kvm=paused["kvm"],
        collectd=paused["collectd"],
        exporter=paused["exporter"],
        start_s=start_s,
        rss_mib=rss,
        stat_mean_s=stat_means,
        synthetic=synthetic,
        synthetic_groups=synthetic_groups,
        same_process=same,
        lines_per_batch=kvm.lines_per_batch,
        exporter_domains=exporter_domains,
        running=running,
        live=live,
        telegraf=telegraf_rows,
        agreement=agreed,
        agreement_running=running,
    )


def same_process(workdir: str, glob: str, rounds: int) -> Optional[Dict[str, Dict[str, List[float]]]]:
    """benchmarks/same_process.py with the installed kvm-telegraf's Python: per contender, per-round CPU and wall."""
    python = os.path.join(workdir, "venv", "bin", "python")
    script = os.path.join(REPO, "benchmarks", "same_process.py")
    try:
        done = subprocess.run(
            [python, script, URI, glob, str(rounds)], capture_output=True, text=True, timeout=rounds * 30, check=True
        )
        return json.loads(done.stdout)
    except (subprocess.SubprocessError, ValueError) as exc:
        log(f"same-process rounds failed: {type(exc).__name__}: {exc}")
        return None


def paired_median(numerators: List[float], denominators: List[float]) -> Optional[float]:
    """The median of the per-round ratios (a pair shares the load of its moment)."""
    ratios = [a / b for a, b in zip(numerators, denominators) if b > 0]
    return statistics.median(ratios) if ratios else None


def measure(series: Series, sample: Callable[[Series], None]) -> None:
    """One cycle; a failure (libvirtd restarted by someone else, a timeout) is counted and the run goes on."""
    try:
        sample(series)
    except Exception as exc:  # any failure costs one sample, never the run
        series.failures.append(f"{type(exc).__name__}: {exc}")
        log(f"cycle failed: {type(exc).__name__}: {exc}")


def last(values: List[float]) -> Optional[float]:
    return values[-1] if values else None


# --- the table -----------------------------------------------------------------------------------


def fmt_ms(seconds: Optional[float], digits: int = 1) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.{digits}f} ms"


def fmt_s(seconds: Optional[float]) -> str:
    return "n/a" if seconds is None else f"{seconds:.2f} s"


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def fmt_ratio(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def verdict(value: Optional[float], limit: float) -> str:
    if value is None:
        return "not measured"
    if value <= limit:
        return "met"
    if value < 1.5 * limit:
        return f"missed by {(value / limit - 1) * 100:.0f}%"
    return f"missed: {value / limit:.1f}x the limit"


def median_kib(values: List[int]) -> str:
    return f"{statistics.median(values) / 1024:.0f}" if values else "n/a"


def render(results: Results) -> str:
    r = results
    m = r.machine
    bare_wall, kvm_wall = r.bare.median("wall_s"), r.kvm.median("wall_s")
    exporter_wall = r.exporter.median("wall_s")
    kvm_cpu, collectd_cpu = r.kvm.median("cpu_s"), r.collectd.median("cpu_s")
    paired = r.kvm.median("paired_ratio")
    start = statistics.median(r.start_s) if r.start_s else None
    syn = r.synthetic
    kib = 1024.0
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, libvirt {m['libvirt']}, "
        f"QEMU {m['qemu']}, Python {m['python']}.",
        f"Run: {m['date']}; {r.guests} paused lab guests ({PREFIX}*) among {r.domains_on_host} domains on the host; "
        f"medians over {r.cycles} interleaved cycles.",
        "",
        "| Process | Domains it reads | Latency | vs bare call | CPU per cycle | CPU per cycle, utime+stime "
        "| Peak RSS | Output per cycle |",
        "|---|---|---|---|---|---|---|---|",
        f"| bare `getAllDomainStats` in a minimal Python process (floor) | {r.domains_on_host}, keeps {r.guests} "
        f"| {fmt_ms(bare_wall)} | 1.00x | {fmt_ms(r.bare.median('cpu_s'), 2)} | {fmt_ms(r.stat_mean_s['bare'], 2)} "
        f"| {r.rss_mib['bare']:.1f} MiB | one line |",
        f"| kvm-telegraf | {r.domains_on_host}, prints {r.guests} | {fmt_ms(kvm_wall)} | "
        f"{fmt_ratio(paired)} | {fmt_ms(kvm_cpu, 2)} | "
        f"{fmt_ms(r.stat_mean_s['kvm-telegraf'], 2)} | {r.rss_mib['kvm-telegraf']:.1f} MiB | "
        f"{r.lines_per_batch} lines, {statistics.median(r.kvm.out_bytes) / kib:.0f} KiB |"
        if r.kvm.out_bytes
        else "| kvm-telegraf | no sample |",
        f"| collectd `virt`, Interval 1 s | {r.domains_on_host} | own timer | | "
        f"{fmt_ms(collectd_cpu, 2)} | "
        f"{fmt_ms(r.stat_mean_s['collectd'], 2)} | {r.rss_mib['collectd']:.1f} MiB | "
        f"{(statistics.median(r.collectd.out_bytes) if r.collectd.out_bytes else 0) / kib:.0f} KiB over UDP |",
        f"| prometheus-libvirt-exporter, per scrape | {r.exporter_domains} | {fmt_ms(exporter_wall)} | "
        f"{fmt_ratio(ratio(exporter_wall, bare_wall))} | {fmt_ms(r.exporter.median('cpu_s'), 2)} | "
        f"{fmt_ms(r.stat_mean_s['exporter'], 2)} | {r.rss_mib['exporter']:.1f} MiB | "
        f"{(statistics.median(r.exporter.out_bytes) if r.exporter.out_bytes else 0) / kib:.0f} KiB of text |",
        "",
        "| Target | Limit | Measured | |",
        "|---|---|---|---|",
        f"| Latency, newline to last line | <= {LATENCY_RATIO_MAX:.2f}x bare call | "
        f"{fmt_ratio(paired)} (median of the per-cycle ratios; medians {fmt_ms(kvm_wall)} / {fmt_ms(bare_wall)}) | "
        f"{verdict(paired, LATENCY_RATIO_MAX)} |",
        f"| CPU per cycle | <= {CPU_RATIO_MAX:.2f}x collectd | "
        f"{fmt_ratio(ratio(kvm_cpu, collectd_cpu))} ({fmt_ms(kvm_cpu, 2)} / {fmt_ms(collectd_cpu, 2)}) | "
        f"{verdict(ratio(kvm_cpu, collectd_cpu), CPU_RATIO_MAX)} |",
        f"| Peak RSS | <= {PEAK_RSS_MIB_MAX:.0f} MiB | {r.rss_mib['kvm-telegraf']:.1f} MiB | "
        f"{verdict(r.rss_mib['kvm-telegraf'], PEAK_RSS_MIB_MAX)} |",
        f"| Shape + encode, {syn['domains']:,} domains | <= {SHAPE_ENCODE_US_MAX:.0f} us per domain | "
        f"{syn['reference_per_domain_us']:.1f} us per domain ({syn['lines']:,} lines, "
        f"{syn['bytes'] / kib / kib:.1f} MiB; compiled layouts, not shipped: {syn['layout_per_domain_us']:.1f} us, "
        f"byte-identical: {'yes' if syn['identical'] else 'NO'}; printing the same fields as bare key=value text "
        f"alone: {syn['floor_per_domain_us']:.1f} us) | "
        f"{verdict(syn['reference_per_domain_us'], SHAPE_ENCODE_US_MAX)} |",
        same_process_target(r),
        f"| Start to first batch | <= {START_S_MAX:.1f} s | {fmt_s(start)} | {verdict(start, START_S_MAX)} |",
    ]
    lines += render_same_process(r)
    lines += render_telegraf(r)
    if r.running:
        live = r.live
        live_bare, live_kvm = live["bare"].median("wall_s"), live["kvm"].median("wall_s")
        live_kvm_cpu, live_collectd_cpu = live["kvm"].median("cpu_s"), live["collectd"].median("cpu_s")
        lines += [
            "",
            f"The same, {r.cycles} more cycles with {r.running} of the {r.guests} guests running (a new collectd, "
            "so that its device list holds them; it reads CPU, memory, vCPUs, disks and NICs of running guests only):",
            "",
            "| Process | Latency | vs bare call | CPU per cycle | Output per cycle |",
            "|---|---|---|---|---|",
            f"| bare `getAllDomainStats` | {fmt_ms(live_bare)} | 1.00x | {fmt_ms(live['bare'].median('cpu_s'), 2)} "
            "| one line |",
            f"| kvm-telegraf | {fmt_ms(live_kvm)} | {fmt_ratio(live['kvm'].median('paired_ratio'))} | "
            f"{fmt_ms(live_kvm_cpu, 2)} | {median_kib(live['kvm'].out_bytes)} KiB |",
            f"| collectd `virt` | own timer | | {fmt_ms(live_collectd_cpu, 2)} | "
            f"{median_kib(live['collectd'].out_bytes)} KiB over UDP |",
            "",
            f"CPU per cycle, kvm-telegraf to collectd, with {r.running} guests running: "
            f"{fmt_ratio(ratio(live_kvm_cpu, live_collectd_cpu))}.",
        ]
    failures = [
        f"{name}: {len(s.failures)} failed cycle(s), e.g. {s.failures[0]}"
        for name, s in (
            ("bare", r.bare),
            ("kvm-telegraf", r.kvm),
            ("exporter", r.exporter),
            ("bare, guests running", r.live["bare"]),
            ("kvm-telegraf, guests running", r.live["kvm"]),
        )
        if s.failures
    ]
    if failures:
        lines += ["", "Failed cycles (left out of the medians): " + "; ".join(failures) + "."]
    return "\n".join(lines) + "\n"


def same_process_ratios(r: Results) -> Dict[str, Optional[float]]:
    """Per variant, the median of the per-round ratios of its CPU to the bare call's."""
    same = r.same_process or {}
    bare = same.get("bare", {}).get("cpu_s", [])
    return {
        name: paired_median(same[name]["cpu_s"], bare) if name in same else None for name in ("layouts", "reference")
    }


def same_process_target(r: Results) -> str:
    ratios = same_process_ratios(r)
    return (
        f"| CPU per cycle, in one process | <= {CPU_BARE_RATIO_MAX:.2f}x the bare call's client CPU | "
        f"{fmt_ratio(ratios['reference'])} (median of the per-round ratios; with compiled layouts, not shipped: "
        f"{fmt_ratio(ratios['layouts'])}; table below) | {verdict(ratios['reference'], CPU_BARE_RATIO_MAX)} |"
    )


def render_same_process(r: Results) -> List[str]:
    """The bare call and both pipeline variants in one process; then shape + encode with every group on."""
    out = []
    same, ratios = r.same_process, same_process_ratios(r)
    if same is None:
        out += ["", "CPU per cycle in one process: not measured (see the bench's log)."]
    else:
        rounds = len(same["bare"]["cpu_s"])
        out += [
            "",
            f"In one process (`benchmarks/same_process.py`), {rounds} rounds on the same {r.guests} paused guests, "
            "each round the bare call, one Pipeline cycle and one cycle whose batch comes from compiled layouts "
            "(`benchmarks/layout_cache.py`, not shipped), CPU from `time.process_time_ns()` (all threads, ns), "
            "the median:",
            "",
            "| In one process | CPU per cycle | vs bare call | Wall time | vs bare call |",
            "|---|---|---|---|---|",
        ]
        bare_wall = same["bare"]["wall_s"]
        for name, label in (
            ("bare", "bare `getAllDomainStats` + the name filter"),
            ("reference", "Pipeline.cycle: collect, shape + encode, write (what runs)"),
            ("layouts", "the same with compiled layouts (not shipped)"),
        ):
            cpu, wall = same[name]["cpu_s"], same[name]["wall_s"]
            out.append(
                f"| {label} | {fmt_ms(statistics.median(cpu), 2)} | "
                f"{fmt_ratio(1.0 if name == 'bare' else ratios[name])} | {fmt_ms(statistics.median(wall))} | "
                f"{fmt_ratio(1.0 if name == 'bare' else paired_median(wall, bare_wall))} |"
            )
    for g in r.synthetic_groups:
        out += [
            "",
            f"Shape + encode, {g['domains']:,} synthetic domains, `--collect {g['groups']}`, {g['vcpus']} vCPUs each "
            f"({g['lines']:,} lines, {g['bytes'] / 1024 / 1024:.1f} MiB): {g['reference_per_domain_us']:.1f} us per "
            f"domain (compiled layouts, not shipped: {g['layout_per_domain_us']:.1f} us, byte-identical: "
            f"{'yes' if g['identical'] else 'NO'}).",
        ]
    return out


def render_telegraf(r: Results) -> List[str]:
    """The two setups under the real Telegraf, and the data agreement."""
    theirs, ours = r.telegraf["libvirt"], r.telegraf["execd"]
    their_cpu = statistics.median(theirs.telegraf_cpu_s) if theirs.telegraf_cpu_s else None
    our_total = [a + b for a, b in zip(ours.telegraf_cpu_s, ours.plugin_cpu_s)]
    our_cpu = statistics.median(our_total) if our_total else None
    our_parts = (
        f"Telegraf {fmt_ms(statistics.median(ours.telegraf_cpu_s), 2)} + kvm-telegraf "
        f"{fmt_ms(statistics.median(ours.plugin_cpu_s), 2)}"
        if our_total
        else "no sample"
    )
    out = [
        "",
        f"Under Telegraf {r.machine['telegraf']} (`make telegraf`), interval {TELEGRAF_INTERVAL_S:g} s, "
        f"{r.cycles} gathers each, one setup after the other, on the same {r.guests} paused guests; "
        "CPU per gather from schedstat over each interval (idle time between gathers included), the median:",
        "",
        "| Setup | CPU per gather | Peak RSS, in total | Gather time (`inputs.internal`) | Lines per gather "
        "| Fields per gather | `E!`/`W!` in Telegraf's log |",
        "|---|---|---|---|---|---|---|",
        f"| Telegraf + `inputs.libvirt` (6 groups, `domains` = the {r.guests}) | {fmt_ms(their_cpu, 2)} "
        f"| {theirs.rss_mib:.1f} MiB | {fmt_ms(theirs.gather_s, 1)} "
        f"| {theirs.lines:.0f} | {theirs.fields:.0f} | {len(theirs.log_problems)} |",
        f"| Telegraf + kvm-telegraf (`inputs.execd`) | {fmt_ms(our_cpu, 2)} ({our_parts}) "
        f"| {ours.rss_mib:.1f} MiB (both processes) | {fmt_ms(ours.gather_s, 3)} (the newline only; "
        f"newline to last line: kvm-telegraf's latency above) | {ours.lines:.0f} | {ours.fields:.0f} "
        f"| {len(ours.log_problems)} |",
        "",
        "CPU per gather, Telegraf + kvm-telegraf to Telegraf + `inputs.libvirt`: "
        f"{fmt_ratio(ratio(our_cpu, their_cpu))}.",
    ]
    for name, row in (("inputs.libvirt", theirs), ("kvm-telegraf", ours)):
        if row.log_problems:
            out += ["", f"Telegraf's log with {name}, first of {len(row.log_problems)}: `{row.log_problems[0]}`"]
    a = r.agreement
    if a is None:
        out += ["", "Data agreement: not measured (see the bench's log)."]
    else:
        misses = f" Outside even those: {'; '.join(a.misses[:5])}." if a.misses else ""
        out += [
            "",
            f"Data agreement (one Telegraf with both inputs, interval {AGREEMENT_INTERVAL_S:g} s, `inputs.libvirt` "
            f"half an interval after ours, {r.agreement_running} of the guests running), their values mapped onto "
            f"our fields by the migration table: of {a.counters} counters, {a.bracketed} sit between our two "
            f"readings that bracket them and {a.one_further} more between our readings one further out (both stamp "
            f"a point once their call has returned, so a reading early in a long call can fall on the other side of "
            f"a stamp); {len(a.misses)} outside.{misses} Of {a.gauges} gauges (state, sizes, guest memory), "
            f"{a.gauges_equal} equal one of our two readings. {a.unmatched} values of the first and last gathers "
            "had no reading of ours on one side.",
        ]
    return out


def show_in_docs(table: str) -> None:
    """Put the table between the markers of docs/performance.md, so the docs show the latest run."""
    with open(PERFORMANCE_DOC, encoding="utf-8") as handle:
        text = handle.read()
    start, end = text.find(RESULTS_START), text.find(RESULTS_END)
    if start < 0 or end < start:
        log(f"docs/performance.md has no {RESULTS_START} ... {RESULTS_END} block: not updated")
        return
    text = text[: start + len(RESULTS_START)] + "\n" + table + text[end:]
    with open(PERFORMANCE_DOC, "w", encoding="utf-8") as handle:
        handle.write(text)
    log("updated the table of docs/performance.md")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--guests", type=int, default=20, help="lab guests to measure (default 20)")
    parser.add_argument("--cycles", type=int, default=30, help="interleaved cycles, at least 15 (default 30)")
    parser.add_argument(
        "--running",
        type=int,
        default=5,
        help="then resume this many of the guests for a second set of cycles, 0 for none (default 5)",
    )
    parser.add_argument(
        "--keep-guests",
        action="store_true",
        default=os.environ.get("KVM_TELEGRAF_BENCH_KEEP") == "1",
        help=f"leave the {PREFIX}* guests defined (paused) at the end; env KVM_TELEGRAF_BENCH_KEEP=1",
    )
    parser.add_argument(
        "--results", default=DEFAULT_RESULTS, help="results file (the default also updates docs/performance.md)"
    )
    args = parser.parse_args(argv)
    if args.cycles < 15:
        parser.error("--cycles must be at least 15")
    if args.guests < 1:
        parser.error("--guests must be at least 1")
    if not 0 <= args.running <= args.guests:
        parser.error("--running must be between 0 and --guests")
    telegraf = find_telegraf()
    if telegraf is None:
        parser.error("Telegraf is not built: make telegraf (make bench does it)")
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))  # so the cleanup below runs
    ensure_peers()
    log(f"bringing up {args.guests} lab guests ({PREFIX}01..), then pausing them")
    try:
        try:
            lab("up", str(args.guests))
        except subprocess.CalledProcessError:  # a TCG guest that crashed while booting on a loaded host
            log("lab up failed; once more (a crashed guest is booted again)")
            lab("up", str(args.guests))
        lab("pause")
        workdir = tempfile.mkdtemp(prefix="kvm-telegraf-bench-")
        try:
            results = run(args.guests, args.cycles, args.running, workdir, telegraf)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if args.keep_guests:
            log(f"keeping the {PREFIX}* guests paused; remove: KVM_TELEGRAF_LAB_PREFIX={PREFIX} tests/lab/lab.py down")
            with contextlib.suppress(subprocess.CalledProcessError):
                lab("pause")
        else:
            lab("down")
    table = render(results)
    print(table)
    if os.path.abspath(args.results) == DEFAULT_RESULTS:
        show_in_docs(table)
    with open(args.results, "w", encoding="utf-8") as handle:
        handle.write("# Benchmark results\n\nWritten by `make bench`; the method is in benchmarks/README.md.\n\n")
        handle.write(table)
    log(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
