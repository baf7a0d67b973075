"""Shape + encode on their own, on a synthetic host of 1,000 domains: time, memory kept, and how they scale.

The domains are the recorded real ones (tests/snapshots/*.json), replicated
with new names and UUIDs. Three consecutive cycles: the two recorded ones and
a third one interval on with the second's keys, as a long-running process sees
a host; the third is timed, so cpu_percent and the disk latencies are computed
as on a live host. The encoder and the history are kept across batches, as in
the long-running process. The --collect groups add cardinality: with ``vcpu``
and 8 vCPUs per domain, 7 more lines per running domain.

    python -m benchmarks.synthetic              # groups off, vcpu, all; then 100 to 3,000 domains
    python -m benchmarks.synthetic --stages 1   # one batch, stage by stage, between callgrind's markers
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import pathlib
import statistics
import sys
import time
import tracemalloc
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from benchmarks.gc_clock import GcClock
from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.group import Group
from kvm_telegraf.groups import every_group, resolve
from kvm_telegraf.plans import ShapePlans
from kvm_telegraf.points import each_point
from kvm_telegraf.program import settle_collector
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import DomainSample, Snapshot, snapshots_from_json

REPO = pathlib.Path(__file__).resolve().parent.parent
SNAPSHOT_DIR = REPO / "tests" / "snapshots"
REPLICA_NAMESPACE = uuid.UUID("6f1d3c55-0c4e-4f0e-9a57-6b656e636821")


def recorded_pairs(directory: pathlib.Path = SNAPSHOT_DIR) -> List[Tuple[DomainSample, DomainSample]]:
    """(first cycle, second cycle) of every recorded domain seen in both of a file's first two cycles."""
    pairs = []
    for path in sorted(directory.glob("*.json")):
        cycles = snapshots_from_json(path.read_text(encoding="utf-8"))
        if len(cycles) < 2:
            continue
        later = {dom.uuid: dom for dom in cycles[1].domains}
        pairs += [(dom, later[dom.uuid]) for dom in cycles[0].domains if dom.uuid in later]
    if not pairs:
        raise RuntimeError(f"no recorded snapshot with two cycles in {directory}")
    return pairs


def with_vcpus(domain: DomainSample, vcpus: int) -> DomainSample:
    """The domain with *vcpus* online vCPUs, each a copy of its vCPU 0's stats (and its pCPU, for --collect vcpu)."""
    stats = dict(domain.stats)
    first = {key[len("vcpu.0.") :]: value for key, value in stats.items() if key.startswith("vcpu.0.")}
    if not first:  # not running: libvirt reports no vCPU of its own
        return domain
    for n in range(vcpus):
        stats.update({f"vcpu.{n}.{key}": value for key, value in first.items()})
    stats["vcpu.current"] = stats["vcpu.maximum"] = vcpus
    calls = dict(domain.calls)
    if "pcpus" in calls:
        calls["pcpus"] = {str(n): n % 2 for n in range(vcpus)}
    return dataclasses.replace(domain, stats=stats, calls=calls)


def synthetic_host(
    count: int, interval_ns: int = 10_000_000_000, vcpus: Optional[int] = None
) -> Tuple[Snapshot, Snapshot]:
    """Two consecutive snapshots of *count* domains, each a recorded domain under a new name and UUID.

    vcpus: give every running domain that many vCPUs (the groups' cardinality grows with them: vm_vcpus).
    """
    pairs = recorded_pairs()
    if vcpus is not None:
        pairs = [(with_vcpus(before, vcpus), with_vcpus(after, vcpus)) for before, after in pairs]
    first, second = [], []
    for index in range(count):
        before, after = pairs[index % len(pairs)]
        name = f"{before.name}-{index:04d}"
        new_uuid = str(uuid.uuid5(REPLICA_NAMESPACE, f"{before.uuid}/{index}"))
        first.append(dataclasses.replace(before, name=name, uuid=new_uuid))
        second.append(dataclasses.replace(after, name=name, uuid=new_uuid))
    start = 1_800_000_000_000_000_000
    return Snapshot(start, tuple(first)), Snapshot(start + interval_ns, tuple(second))


def next_cycle(before: DomainSample, after: DomainSample, interval_ns: int) -> DomainSample:
    """*after* one interval on: every integer stat moved on by as much as it moved since *before*, the same keys.

    How a long-running process sees a host from its third cycle on: the same
    set of keys as the cycle before (the first cycle of a recording may lack
    some, e.g. the balloon's guest statistics before their first period).
    """
    stats = dict(after.stats)
    for key, value in after.stats.items():
        old = before.stats.get(key)
        if type(value) is int and type(old) is int and value > old:
            stats[key] = value + (value - old)
    return dataclasses.replace(after, stats=stats)


def steady_host(count: int, vcpus: Optional[int] = None, interval_ns: int = 10_000_000_000) -> Tuple[Snapshot, ...]:
    """Three consecutive snapshots of the synthetic host, the third one interval after the second, with its keys."""
    first, second = synthetic_host(count, interval_ns, vcpus)
    third = tuple(next_cycle(a, b, interval_ns) for a, b in zip(first.domains, second.domains))
    return first, second, Snapshot(second.timestamp_ns + interval_ns, third)


Batch = Callable[[], str]


class Steady:
    """The long-running process's state over the synthetic host: the encoder and the history of the cycles before."""

    def __init__(self, cycles: Sequence[Snapshot], groups: Sequence[Group]) -> None:
        self.encoder, self.history, self.groups, self.plans = LineEncoder(), {}, groups, ShapePlans()
        for snapshot in cycles[:-1]:
            points, self.history = shape_snapshot(snapshot, self.history, groups=groups, plans=self.plans)
            self.encoder.encode(points, snapshot.timestamp_ns)
        self.last = cycles[-1]

    def shape(self) -> List:
        return shape_snapshot(self.last, self.history, groups=self.groups, plans=self.plans)[0]

    def encode(self, points: List) -> str:
        return self.encoder.encode(points, self.last.timestamp_ns)

    def batch(self) -> str:
        """shape + encode of the last cycle, from the same state every time."""
        return self.encode(self.shape())


def reference_batch(cycles: Sequence[Snapshot], groups: Sequence[Group]) -> Batch:
    return Steady(cycles, groups).batch


# The cardinality the --collect groups add: every group on, and 8 vCPUs per running domain (vm_vcpus).
GROUPS_ON = every_group()
GROUPS_ON_VCPUS = 8


def time_shape_encode(
    count: int = 1000, repeats: int = 20, groups: Sequence[Group] = (), vcpus: Optional[int] = None
) -> Dict[str, Any]:
    """Seconds per batch (median, CPU time) for shape + encode of the synthetic host's third cycle.

    Also: the same points printed as bare ``key=value`` text (the floor no Python encoder gets under),
    shape alone, the garbage collector's share, and the memory the long-running state keeps per domain.
    """
    settle_collector()  # as the long-running process does at start-up, before any domain's objects exist
    cycles = steady_host(count, vcpus)
    steady = Steady(cycles, groups)
    text = steady.batch()  # and a warm-up for the encoder's caches
    timings: Dict[str, List[float]] = {"batch": [], "shape": [], "floor": [], "gc": [], "gc_runs": []}
    gc_clock = GcClock()
    for _ in range(repeats):
        gc_ns, gc_runs = gc_clock.ns, gc_clock.runs
        started = time.process_time()
        points = steady.shape()
        shaped = time.process_time()
        steady.encode(points)
        timings["batch"].append(time.process_time() - started)
        timings["shape"].append(shaped - started)
        timings["gc"].append((gc_clock.ns - gc_ns) / 1e9)
        timings["gc_runs"].append(gc_clock.runs - gc_runs)
        timings["floor"].append(formatting_floor_s(points, steady.last.timestamp_ns))
    gc_clock.remove()
    medians = {name: statistics.median(values) for name, values in timings.items()}
    return {
        "domains": count,
        "groups": "all" if groups == GROUPS_ON else ",".join(group.name for group in groups) or "none",
        "vcpus": vcpus,
        "lines": text.count("\n"),
        "bytes": len(text.encode("utf-8")),
        "batch_s": medians["batch"],
        "per_domain_us": medians["batch"] / count * 1e6,
        "shape_per_domain_us": medians["shape"] / count * 1e6,
        "floor_per_domain_us": medians["floor"] / count * 1e6,
        "gc_share": statistics.mean(timings["gc"]) / statistics.mean(timings["batch"]),  # the collector's share
        "gc_runs": statistics.mean(timings["gc_runs"]),
        "kept_per_domain_kib": kept_per_domain_kib(cycles, groups),
    }


def formatting_floor_s(points, timestamp_ns: int) -> float:
    """CPU seconds to print the same points as bare ``key=value`` text: no escaping, no type checks, no caches.

    No Python encoder can do less per field; it shows what CPython costs on this machine.
    """
    # plain dicts, each Lines as its points: a plan's Fields reads key by key
    lines = [(m, dict(fields)) for m, _, fields, _ in each_point(points)]
    started = time.process_time()
    "".join([f"{m} {','.join([f'{k}={v}' for k, v in fields.items()])} {timestamp_ns}\n" for m, fields in lines])
    return time.process_time() - started


def kept_per_domain_kib(cycles: Sequence[Snapshot], groups: Sequence[Group]) -> float:
    """KiB the long-running state (history, encoder caches) keeps per domain after a batch (tracemalloc).

    The snapshots are built before tracing starts; the batch's points and text are dropped before the count.
    """
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        steady = Steady(cycles, groups)
        steady.batch()
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del steady
    return kept / len(cycles[-1].domains) / 1024


# How shape + encode grow with the host: the same setup at these sizes.
SCALING_SIZES = (100, 300, 1000, 3000)


def scaling(sizes: Sequence[int] = SCALING_SIZES, repeats: int = 7) -> List[Dict[str, Any]]:
    return [time_shape_encode(size, repeats) for size in sizes]


def callgrind_marker() -> None:
    """Where callgrind.py's ``--dump-before=getpgrp`` cuts the count: nothing else in the run calls getpgrp."""
    os.getpgrp()


def run_stages(batches: int, count: int, groups: Sequence[Group], vcpus: Optional[int]) -> List[str]:
    """Set up the synthetic host, then *batches* batches stage by stage, a marker after each; the parts' names."""
    settle_collector()  # as the long-running process does at start-up
    steady = Steady(steady_host(count, vcpus), groups)
    steady.batch()  # the encoder's caches, as in a long-running process
    sink = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - closed at exit
    callgrind_marker()
    for _ in range(batches):
        points = steady.shape()
        callgrind_marker()
        text = steady.encode(points)
        callgrind_marker()
        sink.write(text)
        sink.flush()
        callgrind_marker()
    return ["setup"] + ["shape", "encode", "write"] * batches


# The comparisons of benchmarks/README.md: groups off, vcpu with 8 vCPUs, every group with 8 vCPUs.
SETUPS = (("none", (), None), ("vcpu", resolve(["vcpu"]), 8), ("all", GROUPS_ON, GROUPS_ON_VCPUS))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--stages", type=int, default=0, help="run this many batches stage by stage (callgrind.py)")
    parser.add_argument("--groups", default="none", help="with --stages: the --collect groups, comma-separated")
    parser.add_argument("--vcpus", type=int, default=0, help="with --stages: vCPUs per running domain")
    args = parser.parse_args(argv)
    if args.stages:
        groups = () if args.groups == "none" else resolve(args.groups.split(","))
        print(json.dumps({"parts": run_stages(args.stages, args.domains, groups, args.vcpus or None)}))
        return 0
    for name, groups, vcpus in SETUPS:
        timed = time_shape_encode(args.domains, args.repeats, groups, vcpus)
        print(
            f"--collect {name}, vCPUs {vcpus or 'as recorded'}: {timed['lines']:,} lines, "
            f"{timed['per_domain_us']:.1f} us per domain (shape {timed['shape_per_domain_us']:.1f} us), "
            f"{timed['kept_per_domain_kib']:.1f} KiB kept per domain"
        )
    for timed in scaling():
        print(f"{timed['domains']:,} domains: {timed['per_domain_us']:.1f} us per domain")
    return 0


if __name__ == "__main__":
    sys.exit(main())
