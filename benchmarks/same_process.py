"""CPU per cycle against the bare call's own client CPU, in one process, interleaved.

``make bench`` runs this file with the Python of the kvm-telegraf it installed for the bench:

    python same_process.py URI GLOB ROUNDS

Each round makes, one after the other (the order rotates from round to round):
the bare ``getAllDomainStats`` with kvm-telegraf's groups and flags plus the
name filter; one Pipeline cycle (shape_snapshot + encode: what the process
runs); one cycle of a Pipeline whose batch comes from the compiled layouts of
``layout_cache.py`` (the design tried and not shipped). Each
is timed with ``time.process_time_ns()`` (CLOCK_PROCESS_CPUTIME_ID: the
kernel's nanosecond run time, summed over the threads, the same count as
schedstat; the pipelines make their call on a worker thread) and the wall
clock. Prints one JSON object: per contender the per-round samples.

Besides layout_cache.py next to it, only the kvm_telegraf package and libvirt are imported:
it runs with the kvm-telegraf installed for the bench, outside this checkout.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import time
from typing import Callable, Dict, List

import libvirt

from kvm_telegraf.cli import main as cli_main
from kvm_telegraf.libvirt_facts import DEFAULT_STATS
from kvm_telegraf.program import build_pipeline
from kvm_telegraf.settings import Settings


def measure(rounds: int, contenders: Dict[str, Callable[[], None]], pause_s: float = 0.2) -> Dict[str, Dict]:
    samples: Dict[str, Dict[str, List[float]]] = {name: {"cpu_s": [], "wall_s": []} for name in contenders}
    names = list(contenders)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            cpu, wall = time.process_time_ns(), time.perf_counter_ns()
            contenders[name]()
            samples[name]["wall_s"].append((time.perf_counter_ns() - wall) / 1e9)
            samples[name]["cpu_s"].append((time.process_time_ns() - cpu) / 1e9)
            time.sleep(pause_s)
    return samples


def main(argv: List[str]) -> int:
    uri, glob, rounds = argv[0], argv[1], int(argv[2])
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.openReadOnly(uri)

    def bare() -> None:
        records = conn.getAllDomainStats(DEFAULT_STATS, 0)
        [stats for dom, stats in records if fnmatch.fnmatchcase(dom.name(), glob)]

    settings = Settings.from_options(cli_main.make_context("kvm-telegraf", ["--uri", uri, "--domain", glob]).params)
    sink = open(os.devnull, "wb")  # noqa: SIM115 - open for the whole run
    shipped = build_pipeline(settings, sink, libvirt.openReadOnly, events=False)
    contenders = {"bare": bare, "reference": shipped.cycle}
    for _ in range(2):  # warm-up: connections, domain XML, the layouts compiled, the encoders' caches
        for contender in contenders.values():
            contender()
    samples = measure(rounds, contenders)
    print(json.dumps(samples))
    shipped.source.close()
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
