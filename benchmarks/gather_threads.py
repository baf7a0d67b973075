"""Not part of ``make bench``: CPU per gather of each thread of kvm-telegraf processes driven by newlines, side by side.

    python -m benchmarks.gather_threads --tree main=DIR --tree branch=DIR [--newlines 20] [--interval 2] -- ARGS

Each ``--tree`` names a checkout (``git archive`` of a commit will do) whose ``kvm_telegraf`` package runs as
``python -m kvm_telegraf ARGS`` with this Python, its ``PYTHONPATH`` the tree. All run at once, driven the way
Telegraf's execd drives the process (one newline, then the whole batch read); their newlines are spread over the
interval (tree i at i/n of it), so no two talk to libvirtd at once, and the trees take turns being first when the
command is run again. After a warm-up, each thread's schedstat run time and time slices are counted over the
newlines, the last interval included (keepalive and timers between gathers count). Threads are shown in the
order they started: the main thread, libvirt's event loop (with events), then the workers as they start.
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import time
from typing import Dict, List, Sequence, Tuple

BATCH_TIMEOUT_S = 30.0
Threads = Dict[int, Tuple[int, int]]  # thread id: (run time in ns, time slices)


def thread_counts(pid: int) -> Threads:
    counts = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as handle:
                run_ns, _wait_ns, slices = handle.read().split()
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
        counts[int(tid)] = (int(run_ns), int(slices))
    return counts


class Process:
    """One kvm-telegraf of one tree under newlines."""

    def __init__(self, name: str, tree: str, args: Sequence[str]) -> None:
        self.name = name
        env = dict(os.environ, PYTHONPATH=tree)
        argv = [sys.executable, "-m", "kvm_telegraf", *args]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=tree, env=env)
        self.lines = 0

    def gather(self) -> int:
        """One newline; the batch's lines (the first batch: until 0.5 s pass with no more)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        os.write(self.proc.stdin.fileno(), b"\n")
        got, deadline = 0, time.monotonic() + BATCH_TIMEOUT_S
        while not self.lines or got < self.lines:
            wait = 0.5 if not self.lines else max(0.0, deadline - time.monotonic())
            if not select.select([self.proc.stdout], [], [], wait)[0]:
                break
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not chunk:
                raise RuntimeError(f"{self.name} ended (exit code {self.proc.wait()})")
            got += chunk.count(b"\n")
        self.lines = self.lines or got
        return got

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def per_gather(before: Threads, after: Threads, gathers: int) -> List[Tuple[float, float]]:
    """(us, slices) per gather of each thread, in the order the threads started."""
    rows = []
    for tid in sorted(after):
        run_ns, slices = before.get(tid, (0, 0))
        rows.append(((after[tid][0] - run_ns) / gathers / 1000, (after[tid][1] - slices) / gathers))
    return rows


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=DIR, a checkout to run (repeatable)")
    parser.add_argument("--newlines", type=int, default=20)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between one tree's newlines")
    parser.add_argument("--warmup", type=int, default=3, help="newlines before the count starts")
    parser.add_argument("args", nargs="*", help="kvm-telegraf's options, after --")
    options = parser.parse_args(argv)
    processes = [Process(*spec.split("=", 1), options.args) for spec in options.tree]
    try:
        for process in processes:
            process.gather()
        before: Dict[str, Threads] = {}
        started, slot = time.monotonic(), options.interval / len(processes)
        for gather in range(options.warmup + options.newlines):
            for index, process in enumerate(processes):
                time.sleep(max(0.0, started + gather * options.interval + index * slot - time.monotonic()))
                if gather == options.warmup:
                    before[process.name] = thread_counts(process.proc.pid)
                if process.gather() != process.lines:
                    print(f"{process.name}: a batch of another length than the first", file=sys.stderr)
        time.sleep(max(0.0, started + (options.warmup + options.newlines) * options.interval - time.monotonic()))
        for process in processes:
            rows = per_gather(before[process.name], thread_counts(process.proc.pid), options.newlines)
            cells = "  ".join(f"{us:7.1f} us/{slices:4.1f}" for us, slices in rows)
            print(f"{process.name:10s} {sum(us for us, _ in rows):8.1f} us per gather; threads: {cells}")
    finally:
        for process in processes:
            process.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
