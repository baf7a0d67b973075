"""What a process costs, read from /proc: CPU time and peak resident memory.

``utime + stime`` in ``/proc/<pid>/stat`` counts in clock ticks (10 ms here),
too coarse for one cycle of a few milliseconds; the per-thread
``schedstat`` run time counts in nanoseconds. The bench takes per-cycle
medians from the latter and checks them against the former over the whole run.
"""

from __future__ import annotations

import os

CLOCK_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def stat_cpu_s(pid: int) -> float:
    """utime + stime of the whole process (all threads, live and exited), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
        text = handle.read()
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S


def schedstat_cpu_ns(pid: int) -> int:
    """Nanoseconds on a CPU, summed over the process's live threads."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as handle:
                total += int(handle.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    return total


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/<pid>/status, e.g. ``VmHWM`` (peak RSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


def peak_rss_mib(pid: int) -> float:
    return status_kib(pid, "VmHWM") / 1024.0
