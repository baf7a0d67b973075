"""The processes the bench drives newline by newline: the bare call (the floor) and kvm-telegraf, and their CPU.

Both are driven the way Telegraf's execd drives kvm-telegraf: a newline in, the answer out on a
pipe; each one's CPU is read from /proc between two cycles (procstat.py).
"""

from __future__ import annotations

import os
import queue
import select
import subprocess
import time
from typing import List, Optional, Sequence, Tuple

from benchmarks import procstat
from benchmarks.peers import stop_process
from kvm_telegraf.libvirt_facts import DEFAULT_STATS
from tests.harness.execd import ExecdDriver

URI = "qemu:///system"
SYSTEM_PYTHON = os.environ.get("PYTHON_SYSTEM", "/usr/bin/python3")
BATCH_TIMEOUT_S = 30.0


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
