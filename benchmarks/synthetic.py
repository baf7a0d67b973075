"""Shape + encode on their own, on a synthetic host of 1,000 domains.

The domains are the recorded real ones (tests/snapshots/*.json), replicated
with new names and UUIDs, two consecutive cycles each so that cpu_percent is
computed as on a live host. The encoder is kept across batches, as in the
long-running process.
"""

from __future__ import annotations

import dataclasses
import pathlib
import statistics
import time
import uuid
from typing import Dict, List, Tuple

from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import DomainSample, Snapshot, snapshots_from_json

SNAPSHOT_DIR = pathlib.Path(__file__).resolve().parent.parent / "tests" / "snapshots"
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


def synthetic_host(count: int, interval_ns: int = 10_000_000_000) -> Tuple[Snapshot, Snapshot]:
    """Two consecutive snapshots of *count* domains, each a recorded domain under a new name and UUID."""
    pairs = recorded_pairs()
    first, second = [], []
    for index in range(count):
        before, after = pairs[index % len(pairs)]
        name = f"{before.name}-{index:04d}"
        new_uuid = str(uuid.uuid5(REPLICA_NAMESPACE, f"{before.uuid}/{index}"))
        first.append(dataclasses.replace(before, name=name, uuid=new_uuid))
        second.append(dataclasses.replace(after, name=name, uuid=new_uuid))
    start = 1_800_000_000_000_000_000
    return Snapshot(start, tuple(first)), Snapshot(start + interval_ns, tuple(second))


def time_shape_encode(count: int = 1000, repeats: int = 20) -> Dict[str, float]:
    """Seconds per batch (median) for shape + encode of the synthetic host's second cycle."""
    first, second = synthetic_host(count)
    encoder = LineEncoder()
    _, history = shape_snapshot(first, {})
    batch = ""
    timings = []
    for _ in range(repeats + 2):  # two warm-up batches fill the encoder's caches
        started = time.perf_counter()
        points, _next_history = shape_snapshot(second, history)
        batch = encoder.encode(points, second.timestamp_ns)
        timings.append(time.perf_counter() - started)
    median = statistics.median(timings[2:])
    floor = statistics.median(formatting_floor_s(points, second.timestamp_ns) for _ in range(repeats))
    return {
        "domains": count,
        "batch_s": median,
        "per_domain_us": median / count * 1e6,
        "floor_per_domain_us": floor / count * 1e6,
        "lines": batch.count("\n"),
        "bytes": len(batch.encode("utf-8")),
    }


def formatting_floor_s(points, timestamp_ns: int) -> float:
    """Seconds to print the same points as bare ``key=value`` text: no escaping, no type checks, no caches.

    No Python encoder can do less per field; it shows what CPython costs on this machine.
    """
    started = time.perf_counter()
    "".join([f"{m} {','.join([f'{k}={v}' for k, v in fields.items()])} {timestamp_ns}\n" for m, _, fields in points])
    return time.perf_counter() - started
