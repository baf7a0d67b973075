"""Live on the sid flavour (libvirt 12.8, QEMU 11.1): disk_latency and latency_histogram against QEMU's own figures.

One guest of the lab's stats variant (both disks with timed statistics over 1 s and 10 s and latency
histograms), its I/O loop as the load. kvm-telegraf reads it in process over the flavour's URI, three cycles
3 s apart, and records them; each cycle is bracketed by the tree's own ``virsh domstats`` just before and just
after, and where the two agree (no request in between) the points must hold exactly what virsh shows.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator, List, Mapping, Tuple

import pytest

from kvm_telegraf.collect import Collector
from kvm_telegraf.connection import Connection, open_read_only
from kvm_telegraf.domain_filter import DomainFilter
from kvm_telegraf.groups import resolve
from kvm_telegraf.points import Point
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import Snapshot, snapshot_to_json, snapshots_from_json
from tests.conftest import need
from tests.harness.flavour_guests import flavour_guests, flavours, tree_domstats

pytestmark = pytest.mark.lab

FLAVOUR = "sid"
PREFIX = "ktlat-"
GROUPS = resolve(["disk_latency", "latency_histogram"])
CYCLES, EVERY_S, TRIES = 3, 3.0, 20  # a bracket fails when a request or a window's turn falls inside
KINDS = (("read", "rd"), ("write", "wr"), ("flush", "flush"))
Virsh = Dict[str, str]
Bracket = Tuple[Virsh, Virsh]  # virsh just before and just after one cycle's read


@pytest.fixture(scope="module")
def guest() -> Iterator[str]:
    try:
        with flavour_guests(FLAVOUR, PREFIX, 1, "stats") as names:
            time.sleep(10)  # the 10 s interval's window holds a full turn of the guest's loop
            yield names[0]
    except (RuntimeError, flavours.FlavourError) as exc:
        need(False, f"the {FLAVOUR} flavour could not start a guest: {exc}")


def counted(stats: Virsh) -> Virsh:
    """What only a request moves: the latencies, the bins, the request counters (a queue depth is an average over
    time, so it drifts between two readings without any request)."""
    return {
        k: v
        for k, v in stats.items()
        if (".timed_group." in k or ".latency_histogram." in k or "reqs" in k) and "queue_depth" not in k
    }


def depths_between(before: Virsh, stats: Mapping[str, Any], after: Virsh) -> bool:
    """Whether each queue depth the cycle's read saw lies between virsh's just before and just after.

    QEMU's queue depth is a window's latency sum over the window's elapsed time (``block_acct_queue_depth``):
    between requests it only falls, so a bracket without a request holds the read's figure, unless the window
    turned inside it (every half interval: each 0.5 s for the 1 s one), which moves it by a jump; such a bracket
    is taken again. A field read from the wrong key would miss the bracket every time.
    """
    for key, value in stats.items():
        if "queue_depth" in key:
            low, high = sorted(float(reading[key]) for reading in (before, after))
            if not low - 1e-6 <= float(value) <= high + 1e-6:
                return False
    return True


@pytest.fixture(scope="module")
def cycles(guest: str, tmp_path_factory: pytest.TempPathFactory) -> List[Tuple[Snapshot, Bracket]]:
    """Each cycle's snapshot, recorded to a file and read back, with the virsh reading that bracketed it."""
    connection = Connection(flavours.uri(FLAVOUR, read_only=True), open_read_only)
    collector = Collector(connection, domain_filter=DomainFilter((guest,), ()), groups=GROUPS)
    taken: List[Tuple[Snapshot, Bracket]] = []
    for index in range(CYCLES):
        if index:
            time.sleep(EVERY_S)
        for _ in range(TRIES):  # until no request and no window's turn fell between the two virsh readings
            before = tree_domstats(FLAVOUR, guest, "block")
            snapshot = collector.collect()
            after = tree_domstats(FLAVOUR, guest, "block")
            if counted(before) == counted(after) and depths_between(before, snapshot.domains[0].stats, after):
                break
        else:
            pytest.fail(f"virsh never read the same figures twice around a cycle in {TRIES} tries")
        taken.append((snapshot, (before, after)))
    collector.close()
    recorded = tmp_path_factory.mktemp("sid") / "latency.json"
    recorded.write_text(snapshot_to_json([snapshot for snapshot, _ in taken]))
    return list(zip(snapshots_from_json(recorded.read_text()), (bracket for _, bracket in taken)))


def shaped(cycles: List[Tuple[Snapshot, Bracket]]) -> List[List[Point]]:
    history: Dict = {}
    out = []
    for snapshot, _ in cycles:
        points, history = shape_snapshot(snapshot, history, groups=GROUPS)
        out.append(points)
    return out


def index_of(virsh: Virsh, disk: str) -> int:
    return next(int(k.split(".")[1]) for k, v in virsh.items() if k.endswith(".name") and v == disk)


def test_every_disk_and_interval_has_qemus_figures_as_virsh_shows_them_at_the_same_moment(cycles):
    for (_, (before, virsh)), points in zip(cycles, shaped(cycles)):
        latency = [p for p in points if p.measurement == "vm_disk_latency"]
        assert sorted((dict(p.tags)["device"], dict(p.tags)["interval"]) for p in latency) == [
            ("vda", "10s"),
            ("vda", "1s"),
            ("vdb", "10s"),
            ("vdb", "1s"),
        ]
        for point in latency:
            tags = dict(point.tags)
            n = index_of(virsh, tags["device"])
            (j,) = [
                j
                for j in range(int(virsh[f"block.{n}.timed_group.count"]))
                if f"{virsh[f'block.{n}.timed_group.{j}.interval']}s" == tags["interval"]
            ]
            group = f"block.{n}.timed_group.{j}."
            for kind, key in KINDS:
                if int(virsh[f"{group}{key}_latency_max"]):
                    for stat in ("min", "max", "avg"):
                        assert point.fields[f"{kind}_latency_{stat}_ns"] == int(virsh[f"{group}{key}_latency_{stat}"])
                else:
                    assert f"{kind}_latency_avg_ns" not in point.fields
            for kind, key in KINDS[:2]:  # an average over time: between the readings just before and just after
                depths = sorted(float(v[f"{group}{key}_queue_depth_avg"]) for v in (before, virsh))
                assert depths[0] - 1e-6 <= point.fields[f"{kind}_queue_depth_avg"] <= depths[1] + 1e-6


def test_min_avg_max_are_ordered_in_every_point_and_the_10s_window_saw_the_loops_reads_and_writes(cycles):
    points = [p for cycle in shaped(cycles) for p in cycle if p.measurement == "vm_disk_latency"]
    for point in points:
        for kind, _ in KINDS:
            if f"{kind}_latency_avg_ns" in point.fields:
                low, avg, high = (point.fields[f"{kind}_latency_{s}_ns"] for s in ("min", "avg", "max"))
                assert 0 < low <= avg <= high, point  # type: ignore[operator]
    ten = [p for p in points if dict(p.tags)["interval"] == "10s"]
    assert ten and all("read_latency_avg_ns" in p.fields and "write_latency_avg_ns" in p.fields for p in ten)


def test_the_bins_are_virshs_counts_and_the_percentiles_lie_in_the_bins_of_the_cycles_requests(cycles):
    rounds = shaped(cycles)
    for (_, (_, virsh)), points in zip(cycles, rounds):
        for point in (p for p in points if p.measurement == "vm_disk_latency_histogram"):
            n = index_of(virsh, dict(point.tags)["device"])
            for kind in ("read", "write", "flush"):
                prefix = f"block.{n}.latency_histogram.{kind}.bin."
                for j in range(int(virsh[prefix + "count"])):
                    assert point.fields[f"{kind}_bin_{virsh[f'{prefix}{j}.start']}"] == int(virsh[f"{prefix}{j}.value"])
    seen = 0
    for (before, _), (now, (_, virsh)), points in zip(cycles, cycles[1:], rounds[1:]):
        for point in (p for p in points if p.measurement == "vm_disk_latency_histogram"):
            n = index_of(virsh, dict(point.tags)["device"])
            for kind, key in KINDS[:2]:
                prefix = f"block.{n}.latency_histogram.{kind}.bin."
                count = int(virsh[prefix + "count"])
                starts = [int(virsh[f"{prefix}{j}.start"]) for j in range(count)]
                bins = [
                    now.domains[0].stats[f"{prefix}{j}.value"] - before.domains[0].stats[f"{prefix}{j}.value"]
                    for j in range(count)
                ]
                requests = (
                    now.domains[0].stats[f"block.{n}.{key}.reqs"] - before.domains[0].stats[f"block.{n}.{key}.reqs"]
                )
                assert sum(bins) == requests, "QEMU's histogram counts the requests the block stats count"
                values = [point.fields.get(f"{kind}_latency_p{p}_ns") for p in (50, 90, 99)]
                if not requests:
                    assert values == [None] * 3
                    continue
                assert values[0] <= values[1] <= values[2]  # type: ignore[operator]
                for p, value in zip((50, 90, 99), values):
                    rank = -(-p * requests // 100)
                    j = next(j for j in range(count) if sum(bins[: j + 1]) >= rank)
                    assert starts[j] <= value and (j + 1 == count or value < starts[j + 1])  # type: ignore[operator]
                    seen += 1
    assert seen >= 12, "the guest's loop reads and writes both disks every second"
