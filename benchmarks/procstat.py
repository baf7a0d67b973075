"""What a process costs, read from /proc: CPU time, peak resident memory and where the resident memory sits.

``utime + stime`` in ``/proc/<pid>/stat`` counts in clock ticks (10 ms here),
too coarse for one cycle of a few milliseconds; the per-thread
``schedstat`` run time counts in nanoseconds. The bench takes per-cycle
medians from the latter and checks them against the former over the whole run.
"""

from __future__ import annotations

import os
from typing import Dict

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


# Where resident memory can sit, by the mapping smaps names: the kinds resident_by_kind() sums it into.
KINDS = ("anonymous", "heap", "stacks", "interpreter", "libraries")


def resident_by_kind(pid: int) -> Dict[str, int]:
    """The process's resident KiB by kind of mapping, from /proc/<pid>/smaps: anonymous maps (pymalloc's
    arenas, threads' stacks and malloc arenas, large buffers), the brk heap, the main thread's stack, the
    interpreter's own binary and every other file (shared libraries, extension modules). The kinds sum to VmRSS.
    """
    executable = os.path.realpath(f"/proc/{pid}/exe")
    kinds = dict.fromkeys(KINDS, 0)
    kind = "anonymous"
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            head, _, rest = line.partition(" ")
            if head == "Rss:":
                kinds[kind] += int(rest.split()[0])
            elif "-" in head and not head.endswith(":"):  # a mapping's first line: range perms offset dev inode [path]
                parts = rest.split(None, 4)
                path = parts[4].strip() if len(parts) == 5 else ""
                if path == "[heap]":
                    kind = "heap"
                elif path == "[stack]":
                    kind = "stacks"
                elif path.startswith("/"):
                    kind = "interpreter" if os.path.realpath(path) == executable else "libraries"
                else:  # no path, [anon:...], [vvar], [vdso]
                    kind = "anonymous"
    return kinds
