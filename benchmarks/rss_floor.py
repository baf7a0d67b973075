"""The peak RSS floors under kvm-telegraf's (issue #26): which part of its VmHWM is the design, which is not ours.

    python -m benchmarks.rss_floor [--rounds 6] [--newlines 20] [URI] [GLOB]

Each contender is a fresh process driven as Telegraf's execd drives kvm-telegraf (a newline in, a batch
out), its VmHWM read after the last batch; the contenders take turns, the order reversed every round, and
each figure is the median of the rounds; a second table says where each one's resident memory sits then
(procstat.resident_by_kind: anonymous maps, the heap, the interpreter's own pages, the libraries). From the
bottom up:

- the bare process: the bulk call and the name filter on each newline (benchmarks/contenders.py's BARE_LOOP);
- ``minimal``, ``run-path`` and ``run-path-nolog`` (benchmarks/rss_contenders.py);
- kvm-telegraf itself, ``--domain GLOB``, as README installs it.

All run on the Python of one plain install of this tree (benchmarks/host.py), so every process starts with
the same interpreter, site and libvirt-python.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

from benchmarks.contenders import BARE_LOOP, URI, KvmTelegraf
from benchmarks.host import install_as_documented
from benchmarks.procstat import KINDS, resident_by_kind
from kvm_telegraf.libvirt_facts import DEFAULT_STATS

HERE = os.path.dirname(os.path.abspath(__file__))
RETRY_S = 15.0
Contender = Tuple[str, List[str]]  # its name in the table, its argv


def contenders(entry_point: str, uri: str, glob: str) -> List[Contender]:
    python = os.path.join(os.path.dirname(entry_point), "python")
    script = os.path.join(HERE, "rss_contenders.py")
    return [
        ("bare call", [python, "-c", BARE_LOOP, uri, glob, str(DEFAULT_STATS)]),
        ("minimal printer", [python, script, "minimal", uri, glob]),
        ("run path, no click", [python, script, "run-path", uri, glob]),
        ("run path, no click, no logging", [python, script, "run-path-nolog", uri, glob]),
        ("kvm-telegraf", [entry_point, "--uri", uri, "--domain", glob]),
    ]


def peak_after(argv: Sequence[str], newlines: int, attempts: int = 3) -> Tuple[float, Dict[str, int]]:
    """VmHWM in MiB of a fresh process after *newlines* batches, and its resident KiB by kind then; a run whose
    batch came out short (another lab's test restarting the shared libvirtd) is started again, up to *attempts*
    times."""
    for attempt in range(1, attempts + 1):
        process = KvmTelegraf(argv)
        try:
            process.start()  # the first newline and its batch
            for _ in range(newlines - 1):
                process.cycle()
            assert process.driver.pid is not None
            return process.peak_rss_mib(), resident_by_kind(process.driver.pid)
        except RuntimeError as exc:
            if attempt == attempts:
                raise
            print(f"{argv[-3:]}: {exc}; again in {RETRY_S:g}s", file=sys.stderr)
            time.sleep(RETRY_S)
        finally:
            process.stop()
    raise AssertionError("unreachable")


Resident = Dict[str, List[Dict[str, int]]]  # contender -> its resident KiB by kind, one dict per round


def interleaved(runs: Sequence[Contender], rounds: int, newlines: int) -> Tuple[Dict[str, List[float]], Resident]:
    """Each contender's VmHWM and resident memory by kind per round; the order reversed every other round."""
    peaks: Dict[str, List[float]] = {name: [] for name, _ in runs}
    resident: Resident = {name: [] for name, _ in runs}
    for round_ in range(rounds):
        for name, argv in runs if round_ % 2 == 0 else list(reversed(runs)):
            peak, kinds = peak_after(argv, newlines)
            peaks[name].append(peak)
            resident[name].append(kinds)
    return peaks, resident


def table(peaks: Dict[str, List[float]]) -> str:
    bare = statistics.median(peaks["bare call"])
    rows = ["| Process | VmHWM, median | rounds | above the bare call |", "|---|---|---|---|"]
    for name, values in peaks.items():
        median = statistics.median(values)
        spread = f"{min(values):.2f} to {max(values):.2f}"
        rows.append(f"| {name} | {median:.2f} MiB | {spread} | {median - bare:+.2f} MiB |")
    return "\n".join(rows)


def where_table(resident: Resident) -> str:
    """Each contender's resident memory by kind (median MiB over the rounds), and how much above the bare call's."""
    medians = {
        name: {kind: statistics.median(kinds[kind] for kinds in rounds) / 1024 for kind in KINDS}
        for name, rounds in resident.items()
    }
    bare = medians["bare call"]
    rows = ["| Process | " + " | ".join(KINDS) + " |", "|---|" + "---|" * len(KINDS)]
    for name, kinds in medians.items():
        above = {kind: "" if kinds is bare else f" ({kinds[kind] - bare[kind]:+.2f})" for kind in KINDS}
        cells = [f"{kinds[kind]:.2f}{above[kind]}" for kind in KINDS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uri", nargs="?", default=URI)
    parser.add_argument("glob", nargs="?", default="ktperf-*")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--newlines", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rss-floor-") as workdir:
        runs = contenders(install_as_documented(workdir), args.uri, args.glob)
        peaks, resident = interleaved(runs, args.rounds, args.newlines)
        print(table(peaks))
        print("\nResident MiB by kind after the last batch, medians (above the bare call's):\n")
        print(where_table(resident))


if __name__ == "__main__":
    main()
