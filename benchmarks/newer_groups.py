"""What the groups for newer libvirt cost: the bulk call with and without each, and kvm-telegraf's own shaping.

    python -m benchmarks.newer_groups URI STATS_GLOB PLAIN_GLOB [ROUNDS]

Run against a daemon with a guest of the lab's stats variant (STATS_GLOB) and a plain one (PLAIN_GLOB),
e.g. the sid flavour (``tests/lab/lab.py flavour uri sid``). Per round, interleaved and in rotating order:

- the one bulk call kvm-telegraf makes, for the stats guest, with no group and with each new group alone
  (``getAllDomainStats`` with ``DEFAULT_STATS`` | the group's bits and its flags, over ``domainListGetStats``);
- the same call for the plain guest, whose disks have no ``<statistics>``: what the statistics cost QEMU and
  libvirt, which no group can avoid once a disk has them;
- shape and encode of one cycle of the stats guest with no group and with each group (``process_time_ns``).

Prints a table of medians over ROUNDS (default 25), in ms: wall time for the calls, CPU for shape + encode.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Callable, Dict, List, Sequence

import libvirt

from kvm_telegraf.collect import Collector
from kvm_telegraf.connection import Connection, open_read_only
from kvm_telegraf.domain_filter import DomainFilter
from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.group import stats_bits, stats_flags
from kvm_telegraf.groups import resolve
from kvm_telegraf.libvirt_facts import DEFAULT_STATS
from kvm_telegraf.shape import shape_snapshot

NEW_GROUPS = ("disk_latency", "latency_histogram", "queue_limits", "energy")


def medians(rounds: int, contenders: Dict[str, Callable[[], float]]) -> Dict[str, float]:
    """Each contender's median in ms over *rounds*, run interleaved in an order that rotates every round."""
    samples: Dict[str, List[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for index in range(rounds):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            samples[name].append(contenders[name]())
    return {name: statistics.median(values) / 1e6 for name, values in samples.items()}


def timed(clock: Callable[[], int], work: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        start = clock()
        work()
        return float(clock() - start)

    return run


def main(argv: Sequence[str]) -> int:
    uri, stats_glob, plain_glob = argv[:3]
    rounds = int(argv[3]) if len(argv) > 3 else 25
    conn = libvirt.openReadOnly(uri)
    domains = {dom.name(): dom for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}
    stats_doms = [dom for name, dom in domains.items() if DomainFilter((stats_glob,), ())(name)]
    plain_doms = [dom for name, dom in domains.items() if DomainFilter((plain_glob,), ())(name)]

    def call(doms: list, bits: int, flags: int) -> Callable[[], object]:
        return lambda: conn.domainListGetStats(doms, bits, flags)

    calls = {"no group": timed(time.perf_counter_ns, call(stats_doms, DEFAULT_STATS, 0))}
    for name in NEW_GROUPS:
        group = resolve([name])
        bits, flags = DEFAULT_STATS | stats_bits(group), stats_flags(group)
        calls[name] = timed(time.perf_counter_ns, call(stats_doms, bits, flags))
    calls["plain guest"] = timed(time.perf_counter_ns, call(plain_doms, DEFAULT_STATS, 0))
    call_ms = medians(rounds, calls)

    collector = Collector(Connection(uri, open_read_only), DomainFilter((stats_glob,), ()), groups=resolve(NEW_GROUPS))
    first, second = collector.collect(), collector.collect()
    collector.close()
    encoder = LineEncoder()

    def shaping(groups: tuple) -> Callable[[], object]:
        def cycle() -> None:
            _, history = shape_snapshot(first, {}, groups=groups)
            points, _ = shape_snapshot(second, history, groups=groups)
            encoder.encode(points, second.timestamp_ns)

        return cycle

    shapes = {"no group": timed(time.process_time_ns, shaping(()))}
    shapes.update({name: timed(time.process_time_ns, shaping(resolve([name]))) for name in NEW_GROUPS})
    shape_ms = medians(rounds, shapes)

    print(f"{'':20} {'bulk call (wall, ms)':>22} {'shape+encode, 2 cycles (CPU, ms)':>34}")
    for name in calls:
        shaped = f"{shape_ms[name]:.3f}" if name in shape_ms else ""
        print(f"{name:20} {call_ms[name]:22.3f} {shaped:>34}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
