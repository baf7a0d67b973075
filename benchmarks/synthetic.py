"""Shape + encode on their own, on a synthetic host of 1,000 domains: the reference path and compiled layouts.

The domains are the recorded real ones (tests/snapshots/*.json), replicated
with new names and UUIDs. Three consecutive cycles: the two recorded ones and
a third one interval on with the second's keys, as a long-running process sees
a host; the third is timed, so cpu_percent and the disk latencies are computed
as on a live host. The encoder (and the layout cache) are kept across
batches, as in the long-running process. The --collect groups add cardinality:
with ``vcpu`` and 8 vCPUs per domain, 7 more lines per running domain.

    python -m benchmarks.synthetic              # both variants, groups off, vcpu, all
    python -m benchmarks.synthetic --callgrind  # instructions per batch (valgrind)
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import re
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.group import Group
from kvm_telegraf.groups import GROUPS
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


def reference_variant(cycles: Sequence[Snapshot], groups: Sequence[Group]) -> Batch:
    """shape_snapshot + LineEncoder.encode of the last cycle; history and encoder caches from the cycles before."""
    encoder, history = LineEncoder(), {}
    for snapshot in cycles[:-1]:
        points, history = shape_snapshot(snapshot, history, groups=groups)
        encoder.encode(points, snapshot.timestamp_ns)
    last = cycles[-1]

    def batch() -> str:
        points, _ = shape_snapshot(last, history, groups=groups)
        return encoder.encode(points, last.timestamp_ns)

    return batch


VARIANTS: Dict[str, Callable[[Sequence[Snapshot], Sequence[Group]], Batch]] = {
    "reference": reference_variant,
}
# The cardinality the --collect groups add: every group on, and 8 vCPUs per running domain (vm_vcpus).
GROUPS_ON = GROUPS
GROUPS_ON_VCPUS = 8


def time_shape_encode(
    count: int = 1000, repeats: int = 20, groups: Sequence[Group] = frozenset(), vcpus: Optional[int] = None
) -> Dict[str, Any]:
    """Seconds per batch (median) for shape + encode of the synthetic host's third cycle, each variant.

    The variants run in interleaved rounds, so the machine's load drifts over
    both alike; their batches must be byte-identical.
    """
    cycles = steady_host(count, vcpus)
    batches = {name: make(cycles, groups) for name, make in VARIANTS.items()}
    texts = {name: batch() for name, batch in batches.items()}  # and a warm-up for the encoder's caches
    timings: Dict[str, List[float]] = {name: [] for name in batches}
    for _ in range(repeats):
        for name, batch in batches.items():
            started = time.perf_counter()
            batch()
            timings[name].append(time.perf_counter() - started)
    reference = texts["reference"]
    points, _ = shape_snapshot(cycles[-1], shape_snapshot(cycles[-2], {}, groups=groups)[1], groups=groups)
    floor = statistics.median(formatting_floor_s(points, cycles[-1].timestamp_ns) for _ in range(repeats))
    result: Dict[str, Any] = {
        "domains": count,
        "groups": "all" if groups == GROUPS_ON else ",".join(sorted(group.name for group in groups)) or "none",
        "vcpus": vcpus,
        "floor_per_domain_us": floor / count * 1e6,
        "lines": reference.count("\n"),
        "bytes": len(reference.encode("utf-8")),
        "identical": all(text == reference for text in texts.values()),
    }
    for name, values in timings.items():
        median = statistics.median(values)
        result[f"{name}_batch_s"] = median
        result[f"{name}_per_domain_us"] = median / count * 1e6
    result["batch_s"], result["per_domain_us"] = result["reference_batch_s"], result["reference_per_domain_us"]
    return result


def formatting_floor_s(points, timestamp_ns: int) -> float:
    """Seconds to print the same points as bare ``key=value`` text: no escaping, no type checks, no caches.

    No Python encoder can do less per field; it shows what CPython costs on this machine.
    """
    started = time.perf_counter()
    "".join([f"{m} {','.join([f'{k}={v}' for k, v in fields.items()])} {timestamp_ns}\n" for m, _, fields, _ in points])
    return time.perf_counter() - started


CALLGRIND_COLLECTED = re.compile(r"Collected : (\d+)")


def run_batches(variant: str, groups: Sequence[Group], vcpus: Optional[int], batches: int, count: int = 1000) -> None:
    """Set up the synthetic host and one variant, then run *batches* batches (what callgrind counts)."""
    batch = VARIANTS[variant](steady_host(count, vcpus), groups)
    batch()  # the encoder's caches, as in a long-running process
    for _ in range(batches):
        batch()


def callgrind_instructions(variant: str, groups: Sequence[Group], vcpus: Optional[int], count: int = 1000) -> int:
    """Instructions of one batch under valgrind's callgrind: a run with 2 batches minus one with none, halved.

    Repeatable to a few parts in a million, where timings on a shared machine are not.
    """
    totals = []
    for batches in (0, 2):
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks.synthetic",
            "--run",
            variant,
            "--groups",
            ",".join(sorted(groups)) or "none",
            "--vcpus",
            str(vcpus or 0),
            "--batches",
            str(batches),
            "--domains",
            str(count),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO)
        match = CALLGRIND_COLLECTED.search(done.stderr)
        if match is None:
            raise RuntimeError(f"no callgrind total in: {done.stderr[-500:]}")
        totals.append(int(match.group(1)))
    return (totals[1] - totals[0]) // 2


# The comparisons of benchmarks/README.md: groups off, vcpu with 8 vCPUs, every group with 8 vCPUs.
SETUPS = (("none", frozenset(), None), ("vcpu", frozenset({"vcpu"}), 8), ("all", GROUPS_ON, GROUPS_ON_VCPUS))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--callgrind", action="store_true", help="instructions per batch, each variant and setup")
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--run", choices=sorted(VARIANTS), help=argparse.SUPPRESS)  # what --callgrind runs
    parser.add_argument("--groups", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--vcpus", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        groups = frozenset() if args.groups == "none" else frozenset(args.groups.split(","))
        run_batches(args.run, groups, args.vcpus or None, args.batches, args.domains)
        return 0
    for name, groups, vcpus in SETUPS:
        if args.callgrind:
            counts = {variant: callgrind_instructions(variant, groups, vcpus, args.domains) for variant in VARIANTS}
            figures = ", ".join(f"{variant} {count / 1e6:,.0f} M" for variant, count in counts.items())
            print(f"--collect {name}, vCPUs {vcpus or 'as recorded'}: instructions per batch: {figures}")
        else:
            timed = time_shape_encode(args.domains, args.repeats, groups, vcpus)
            figures = ", ".join(f"{variant} {timed[f'{variant}_per_domain_us']:.1f} us" for variant in VARIANTS)
            print(
                f"--collect {name}, vCPUs {vcpus or 'as recorded'}: {timed['lines']:,} lines, per domain: {figures}; "
                f"byte-identical: {timed['identical']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
