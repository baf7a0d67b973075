"""``--collect latency_histogram``: QEMU's latency histograms as counters, and percentiles of each cycle from them.

tests/snapshots/sid-stats.json was recorded on libvirt 12.8 with QEMU 11.1 (tests/record_snapshots.py sid-stats):
ktsidst-01's disks have histograms of every kind with bins starting at 0, 10, 20, 50, 100, 200, 500 µs,
1, 5 and 100 ms; between its second and third cycle vdb's histogram was restarted (virsh update-device).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvm_telegraf.cli import main
from kvm_telegraf.groups import resolve
from kvm_telegraf.groups.latency_histogram import percentile
from kvm_telegraf.points import Point
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import Snapshot
from tests.conftest import load_snapshots
from tests.harness.cli import runner
from tests.replay import ReplayConnection

GROUP = resolve(["latency_histogram"])
BINS = (0, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 5_000_000, 100_000_000)


@pytest.fixture(scope="module")
def sid() -> List[Snapshot]:
    return load_snapshots("sid-stats.json")


def cycles(snapshots: List[Snapshot]) -> List[Dict[str, Dict]]:
    """Per cycle, the histogram points' fields by disk, the cycles shaped in order as the pipeline does."""
    history: Dict = {}
    shaped = []
    for snapshot in snapshots:
        points, history = shape_snapshot(snapshot, history, groups=GROUP)
        shaped.append({dict(p.tags)["device"]: dict(p.fields) for p in points if is_histogram(p)})
    return shaped


def is_histogram(point: Point) -> bool:
    return point.measurement == "vm_disk_latency_histogram"


def percentiles(fields: Dict) -> Dict:
    return {name: value for name, value in fields.items() if "_latency_p" in name}


def bins(stats: Dict, disk: int, kind: str) -> List[int]:
    return [stats[f"block.{disk}.latency_histogram.{kind}.bin.{j}.value"] for j in range(len(BINS))]


def test_the_bin_counts_are_counters_named_by_kind_and_start_in_bin_order(sid):
    stats = sid[0].domains[0].stats
    vda = cycles(sid[:1])[0]["vda"]
    assert [name for name in vda if name.startswith("read_bin_")] == [f"read_bin_{start}" for start in BINS]
    assert [vda[f"read_bin_{start}"] for start in BINS] == bins(stats, 0, "read")
    assert [vda[f"flush_bin_{start}"] for start in BINS] == [0] * len(BINS)  # the loop never flushes
    # QEMU reports a zone append histogram for every disk: all zeros on one that is not zoned, left out
    assert not [name for name in vda if name.startswith("zone_append")]


def test_a_first_cycle_has_the_bins_and_no_percentile(sid):
    first = cycles(sid[:1])[0]
    assert sorted(first) == ["vda", "vdb"] and not any(percentiles(fields) for fields in first.values())


def test_percentiles_from_the_recorded_cycles_worked_out_by_hand(sid):
    second = cycles(sid[:2])[1]
    # vda's reads between the first two cycles: 4 more in [50, 100) µs, none elsewhere. The p50 is the 2nd
    # of them, spread evenly through the bin: 50 µs + (2 - 1/2) / 4 * 50 µs; p90 and p99 the 4th of 4.
    assert bins(sid[1].domains[0].stats, 0, "read")[3] - bins(sid[0].domains[0].stats, 0, "read")[3] == 4
    assert percentiles(second["vda"])["read_latency_p50_ns"] == 50_000 + 1.5 / 4 * 50_000 == 68_750
    assert percentiles(second["vda"])["read_latency_p90_ns"] == 50_000 + 3.5 / 4 * 50_000 == 93_750
    assert percentiles(second["vda"])["read_latency_p99_ns"] == 93_750
    # vdb's reads: one each in [20, 50) µs, [50, 100) µs, [100, 200) µs and [1, 5) ms. The p50 is the 2nd
    # (alone in its bin: the bin's middle), the p90 the 4th, in the middle of 1 to 5 ms.
    assert percentiles(second["vdb"])["read_latency_p50_ns"] == 75_000
    assert percentiles(second["vdb"])["read_latency_p90_ns"] == 3_000_000
    assert percentiles(second["vdb"])["read_latency_p99_ns"] == 3_000_000
    assert {name[: -len("_latency_p50_ns")] for name in second["vda"] if name.endswith("p50_ns")} == {"read", "write"}


def test_a_counter_reset_writes_no_percentile_that_cycle_and_the_next_starts_from_the_new_counts(sid):
    # Between the second and third cycle vdb's histogram was restarted: its counts fell to a few.
    before, after = bins(sid[1].domains[0].stats, 1, "read"), bins(sid[2].domains[0].stats, 1, "read")
    assert sum(after) < sum(before)
    third, fourth = cycles(sid)[2:]
    assert percentiles(third["vdb"]) == {} and third["vdb"]["read_bin_50000"] == after[3]
    assert percentiles(third["vda"]), "the other disk goes on"
    assert percentiles(fourth["vdb"]).keys() == {
        f"{k}_latency_p{p}_ns" for k in ("read", "write") for p in (50, 90, 99)
    }


def reset_without_a_falling_bin(snapshots: List[Snapshot]) -> Snapshot:
    """The third cycle with vdb's histogram restarted long enough ago that no bin is below the second cycle's."""
    stats = dict(snapshots[2].domains[0].stats)
    for j, count in enumerate(bins(snapshots[1].domains[0].stats, 1, "read")):
        stats[f"block.1.latency_histogram.read.bin.{j}.value"] = count + (1 if j == 3 else 0)
    stats["block.1.rd.reqs"] = snapshots[1].domains[0].stats["block.1.rd.reqs"] + 5  # five reads, one counted
    domain = dataclasses.replace(snapshots[2].domains[0], stats=stats)
    return dataclasses.replace(snapshots[2], domains=(domain,))


def test_a_reset_that_no_bin_shows_is_caught_by_the_disks_own_request_counter(sid):
    third = cycles([*sid[:2], reset_without_a_falling_bin(sid)])[2]
    assert not [name for name in percentiles(third["vdb"]) if name.startswith("read_")]


def test_a_cycle_without_requests_of_a_kind_writes_no_percentile_of_it_not_zero(sid):
    again = dataclasses.replace(sid[0], timestamp_ns=sid[0].timestamp_ns + 5_000_000_000)
    second = cycles([sid[0], again])[1]
    assert second["vda"]["read_bin_50000"] == bins(sid[0].domains[0].stats, 0, "read")[3]
    assert percentiles(second["vda"]) == {} and percentiles(second["vdb"]) == {}


def test_bins_reconfigured_between_cycles_write_no_percentile(sid):
    stats = {**sid[1].domains[0].stats, "block.0.latency_histogram.read.bin.1.start": 15_000}
    changed = dataclasses.replace(sid[1], domains=(dataclasses.replace(sid[1].domains[0], stats=stats),))
    second = cycles([sid[0], changed])[1]
    assert second["vda"]["read_bin_15000"] == stats["block.0.latency_histogram.read.bin.1.value"]
    assert not [name for name in percentiles(second["vda"]) if name.startswith("read_")]
    assert percentiles(second["vda"])["write_latency_p50_ns"] == 125_000


def test_a_cycle_whose_qemu_did_not_answer_keeps_the_earlier_counts_for_the_next(sid):
    frozen = dataclasses.replace(
        sid[1].domains[0],
        responding=False,
        stats={k: v for k, v in sid[1].domains[0].stats.items() if ".latency_histogram." not in k},
    )
    shaped = cycles([sid[0], dataclasses.replace(sid[1], domains=(frozen,)), sid[2]])
    assert "vda" not in shaped[1]
    direct = cycles([sid[0], sid[2]])[1]
    assert percentiles(shaped[2]["vda"]) == percentiles(direct["vda"]) != {}


def test_a_histogram_whose_bins_do_not_ascend_is_left_out(sid):
    stats = {**sid[0].domains[0].stats, "block.0.latency_histogram.write.bin.2.start": 5}
    (vda,) = [
        p.fields
        for p in shape_snapshot(
            dataclasses.replace(sid[0], domains=(dataclasses.replace(sid[0].domains[0], stats=stats),)),
            {},
            groups=GROUP,
        )[0]
        if is_histogram(p) and dict(p.tags)["device"] == "vda"
    ]
    assert not [name for name in vda if name.startswith("write_")] and "read_bin_0" in vda


@pytest.mark.parametrize(
    "starts,counts,p,expected",
    [
        ((0, 10, 20), (0, 4, 0), 50, 13),  # the 2nd of 4 in [10, 20): 10 + 1.5 / 4 * 10, rounded down
        ((0, 10, 20), (0, 4, 0), 99, 18),  # the 4th of 4: 10 + 3.5 / 4 * 10
        ((0, 10, 20), (1, 0, 3), 90, 20),  # the open last bin: its start, a lower bound
        ((0, 100), (10, 0), 90, 85),  # 0.9 * 10 is 9.000000000000002 in floats; the 9th of 10 all the same
        ((0, 100), (0, 0), 50, None),  # no request: no percentile
        ((1000,), (7,), 50, 1000),  # one bin: open, its start
    ],
)
def test_percentile_cases_worked_out_by_hand(starts, counts, p, expected):
    assert percentile(starts, counts, p) == expected


@st.composite
def histograms(draw) -> Tuple[List[int], List[int]]:
    widths = draw(st.lists(st.integers(1, 10**9), min_size=0, max_size=15))
    starts = [draw(st.integers(0, 10**6))]
    for width in widths:
        starts.append(starts[-1] + width)
    counts = draw(st.lists(st.integers(0, 10**6), min_size=len(starts), max_size=len(starts)))
    if not sum(counts):
        counts[draw(st.integers(0, len(counts) - 1))] = draw(st.integers(1, 10**6))
    return starts, counts


@given(histograms())
def test_percentiles_are_ordered_and_each_lies_in_the_bin_its_rank_falls_in(histogram):
    starts, counts = histogram
    values = [percentile(starts, counts, p) for p in (50, 90, 99)]
    assert values[0] <= values[1] <= values[2]  # type: ignore[operator]
    total = sum(counts)
    for p, value in zip((50, 90, 99), values):
        rank = -(-p * total // 100)
        j = next(j for j in range(len(counts)) if sum(counts[: j + 1]) >= rank)
        if j + 1 < len(starts):
            assert starts[j] <= value < starts[j + 1]  # type: ignore[operator]
        else:
            assert value == starts[j]


def test_doctor_counts_the_domains_with_a_histogram_and_says_how_to_turn_one_on(sid):
    def doctor(*options: str) -> List[str]:
        result = runner().invoke(main, [*options, "doctor"], obj={"opener": lambda _: ReplayConnection(sid)})
        return [line for line in result.stdout.splitlines() if "group latency_histogram:" in line]

    assert doctor() == [
        "ok    group latency_histogram: off; supported (needs libvirt 12.1.0, found 12.8.0); "
        "enabled on 1 of 2 domain(s); no extra call"
    ]
    assert doctor("--domain", "ktsidgr-*") == [
        "ok    group latency_histogram: off; supported (needs libvirt 12.1.0, found 12.8.0); "
        "enabled on 0 of 1 domain(s) (to enable: <statistics><latency-histogram><bin start='0'/>"
        "<bin start='100000'/>…</latency-histogram></statistics> inside each disk's <driver> in the domain XML "
        "(libvirt 12.1 or later)); no extra call"
    ]
