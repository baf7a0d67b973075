"""Reading only the selected domains (virDomainListGetStats) against reading all and filtering (issue #25, section 8).

On N paused lab guests of this run's own prefix, with a ``--domain`` glob that selects some:
each way is called REPS times, interleaved, and each call's cost is read from counters, not
clocks: libvirtd's CPU (its threads' schedstat run time), the QEMUs' (a bulk call asks each
selected guest's monitor), and this process's own (``time.process_time_ns``, the Python
binding's unpacking included, plus the filter). Medians, printed as a Markdown table.

    flock /tmp/kvm-lab.lock .venv/bin/python -m benchmarks.domain_list [--guests 20] [--select 5] [--reps 25]
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

from benchmarks.procstat import schedstat_cpu_ns
from kvm_telegraf.libvirt_facts import DEFAULT_STATS

REPO = Path(__file__).resolve().parent.parent
PREFIX = os.environ.get("KVM_TELEGRAF_BENCH_PREFIX", "ktlist-")
LIBVIRTD_PID = "/run/libvirtd.pid"

Way = Callable[[Any, Sequence[str]], List[Tuple[Any, Dict[str, Any]]]]


def read_all(conn: Any, globs: Sequence[str]) -> List[Tuple[Any, Dict[str, Any]]]:
    """What kvm-telegraf did before: every domain's stats in one call, then the filter."""
    return [(dom, st) for dom, st in conn.getAllDomainStats(DEFAULT_STATS, 0) if _chosen(dom.name(), globs)]


def read_listed(conn: Any, globs: Sequence[str]) -> List[Tuple[Any, Dict[str, Any]]]:
    """The domain list (one call), the filter, then the stats of the chosen ones only."""
    chosen = [dom for dom in conn.listAllDomains(0) if _chosen(dom.name(), globs)]
    return conn.domainListGetStats(chosen, DEFAULT_STATS, 0) if chosen else []


def _chosen(name: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for glob in globs)


def qemu_pids(names: Sequence[str]) -> List[int]:
    """The QEMU processes of these guests (libvirt names each ``guest=NAME,``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        guests = [arg[6:].split(b",")[0].decode() for arg in cmdline if arg.startswith(b"guest=")]
        if cmdline and cmdline[0].endswith(b"qemu-system-x86_64") and any(guest in names for guest in guests):
            pids.append(int(entry))
    return pids


def costs(conn: Any, way: Way, globs: Sequence[str], daemon: int, qemus: Sequence[int]) -> Tuple[int, int, int, int]:
    """One call: (libvirtd ns, QEMUs ns, our ns, domains returned)."""
    daemon_before, qemu_before = schedstat_cpu_ns(daemon), sum(schedstat_cpu_ns(pid) for pid in qemus)
    ours_before = time.process_time_ns()
    records = way(conn, globs)
    ours = time.process_time_ns() - ours_before
    time.sleep(0.05)  # let libvirtd's worker threads account for their last slice
    daemon_ns = schedstat_cpu_ns(daemon) - daemon_before
    qemu_ns = sum(schedstat_cpu_ns(pid) for pid in qemus) - qemu_before
    return daemon_ns, qemu_ns, ours, len(records)


def split_costs(conns: Sequence[Any], halves: Sequence[Sequence[str]], daemon: int) -> Tuple[int, int]:
    """Two readers at once, each on its own connection and thread, each reading its half: (wall ns until both
    are done, libvirtd ns)."""
    daemon_before = schedstat_cpu_ns(daemon)
    started = time.monotonic_ns()
    threads = [threading.Thread(target=read_listed, args=(conn, half)) for conn, half in zip(conns, halves)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic_ns() - started
    time.sleep(0.05)
    return wall, schedstat_cpu_ns(daemon) - daemon_before


def one_reader_costs(conn: Any, daemon: int) -> Tuple[int, int]:
    """One reader of every domain (no filter: one getAllDomainStats): (wall ns, libvirtd ns)."""
    daemon_before = schedstat_cpu_ns(daemon)
    started = time.monotonic_ns()
    conn.getAllDomainStats(DEFAULT_STATS, 0)
    wall = time.monotonic_ns() - started
    time.sleep(0.05)
    return wall, schedstat_cpu_ns(daemon) - daemon_before


def lab(*args: str) -> List[str]:
    env = {**os.environ, "KVM_TELEGRAF_LAB_PREFIX": PREFIX}
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "lab" / "lab.py"), *args], env=env, check=True, stdout=subprocess.PIPE
    )
    return done.stdout.decode().split()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guests", type=int, default=20)
    parser.add_argument("--select", type=int, default=5)
    parser.add_argument("--reps", type=int, default=25)
    parser.add_argument("--keep-guests", action="store_true")
    args = parser.parse_args(argv)
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    names = lab("up", str(args.guests))
    try:
        lab("pause")
        conn = libvirt.openReadOnly("qemu:///system")
        daemon = int(Path(LIBVIRTD_PID).read_text().split()[0])
        qemus = qemu_pids(names)
        cases = {
            f"{args.select} of {args.guests}": list(names[: args.select]),
            f"{args.guests - 1} of {args.guests}": list(names[1:]),
        }
        rows = []
        for label, chosen in cases.items():
            globs = chosen  # one glob per name, as --domain NAME would be
            results: Dict[str, List[Tuple[int, int, int, int]]] = {"all, then filter": [], "list, then chosen": []}
            for way in (read_all, read_listed):  # warm both up: the first call of each pays for caches
                way(conn, globs)
            for _ in range(args.reps):
                for name, way in (("all, then filter", read_all), ("list, then chosen", read_listed)):
                    results[name].append(costs(conn, way, globs, daemon, qemus))
            for name, samples in results.items():
                medians = [statistics.median(sample[i] for sample in samples) / 1e6 for i in range(3)]
                rows.append((label, name, *medians, samples[0][3]))
        print(f"{args.guests} paused guests (libvirt {conn.getLibVersion()}), median of {args.reps} interleaved calls:")
        print("| selected | way | libvirtd ms | QEMUs ms | ours ms | domains |")
        print("|---|---|---|---|---|---|")
        for label, name, daemon_ms, qemu_ms, ours_ms, count in rows:
            print(f"| {label} | {name} | {daemon_ms:.2f} | {qemu_ms:.2f} | {ours_ms:.2f} | {count} |")
        # Splitting the host over two readers (even and odd names), each on its own connection, at once.
        halves = [names[0::2], names[1::2]]
        second = libvirt.openReadOnly("qemu:///system")
        split: List[Tuple[int, int]] = []
        single: List[Tuple[int, int]] = []
        for _ in range(args.reps):
            single.append(one_reader_costs(conn, daemon))
            split.append(split_costs((conn, second), halves, daemon))
        print("| readers | wall ms (both done) | libvirtd ms |")
        print("|---|---|---|")
        for label, samples in (("one, all domains", single), ("two, half each, at once", split)):
            wall, spent = (statistics.median(sample[i] for sample in samples) / 1e6 for i in range(2))
            print(f"| {label} | {wall:.2f} | {spent:.2f} |")
    finally:
        if not args.keep_guests:
            lab("down")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
