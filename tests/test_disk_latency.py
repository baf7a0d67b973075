"""``--collect disk_latency``: QEMU's own latency figures per disk and interval, replayed from the sid flavour.

tests/snapshots/sid-stats.json was recorded on libvirt 12.8 with QEMU 11.1 (tests/record_snapshots.py sid-stats):
ktsidst-01's disks have timed statistics over 1 s and 10 s (the lab's stats variant), ktsidgr-01's none.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List

import pytest

from kvm_telegraf.cli import main
from kvm_telegraf.groups import resolve
from kvm_telegraf.points import Point
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import DomainSample, Snapshot
from tests.conftest import load_snapshots
from tests.harness.cli import runner
from tests.replay import ReplayConnection

GROUP = resolve(["disk_latency"])
KINDS = ("read", "write", "flush", "zone_append")


@pytest.fixture(scope="module")
def sid() -> List[Snapshot]:
    return load_snapshots("sid-stats.json")


def named(snapshot: Snapshot, prefix: str) -> DomainSample:
    return next(d for d in snapshot.domains if d.name.startswith(prefix))


def latency_points(snapshot: Snapshot, domain: DomainSample) -> List[Point]:
    points, _ = shape_snapshot(dataclasses.replace(snapshot, domains=(domain,), hosts=()), {}, groups=GROUP)
    return [p for p in points if p.measurement == "vm_disk_latency"]


def keyed(points: List[Point]) -> Dict[tuple, Dict]:
    return {(dict(p.tags)["device"], dict(p.tags)["interval"]): dict(p.fields) for p in points}


def test_each_disk_gets_one_point_per_configured_interval_tagged_like_its_vm_devices_point_plus_interval(sid):
    domain = named(sid[0], "ktsidst-")
    points = latency_points(sid[0], domain)
    assert sorted(keyed(points)) == [("vda", "10s"), ("vda", "1s"), ("vdb", "10s"), ("vdb", "1s")]
    assert dict(points[0].tags) == {
        "device": "vda",
        "interval": "1s",
        "type": "disk",
        "uuid": domain.uuid,
        "vm": domain.name,
    }


def test_the_figures_are_qemus_own_for_that_disk_and_interval_in_ns(sid):
    domain = named(sid[0], "ktsidst-")
    stats = domain.stats
    vdb_10s = keyed(latency_points(sid[0], domain))[("vdb", "10s")]
    assert stats["block.1.name"] == "vdb" and stats["block.1.timed_group.1.interval"] == 10
    assert vdb_10s == {
        "read_latency_min_ns": stats["block.1.timed_group.1.rd_latency_min"],
        "read_latency_max_ns": stats["block.1.timed_group.1.rd_latency_max"],
        "read_latency_avg_ns": stats["block.1.timed_group.1.rd_latency_avg"],
        "write_latency_min_ns": stats["block.1.timed_group.1.wr_latency_min"],
        "write_latency_max_ns": stats["block.1.timed_group.1.wr_latency_max"],
        "write_latency_avg_ns": stats["block.1.timed_group.1.wr_latency_avg"],
        "read_queue_depth_avg": stats["block.1.timed_group.1.rd_queue_depth_avg"],
        "write_queue_depth_avg": stats["block.1.timed_group.1.wr_queue_depth_avg"],
    }
    assert type(vdb_10s["read_latency_avg_ns"]) is int and type(vdb_10s["read_queue_depth_avg"]) is float


def test_min_avg_max_are_ordered_in_every_point_of_every_recorded_cycle(sid):
    seen = 0
    for snapshot in sid:
        for point in latency_points(snapshot, named(snapshot, "ktsidst-")):
            for kind in KINDS:
                if f"{kind}_latency_avg_ns" in point.fields:
                    low, avg, high = (point.fields[f"{kind}_latency_{s}_ns"] for s in ("min", "avg", "max"))
                    assert 0 < low <= avg <= high, point  # type: ignore[operator]
                    seen += 1
    assert seen >= 24  # reads and writes, 2 disks, 2 intervals, 4 cycles, less the 1 s windows without I/O


def test_a_kind_of_request_the_interval_saw_none_of_is_left_out_not_written_as_zero(sid):
    # The guest's loop never flushes; QEMU reports 0 ns for flushes, and for zone appends (no zoned disk).
    domain = named(sid[0], "ktsidst-")
    assert domain.stats["block.0.timed_group.0.flush_latency_max"] == 0
    fields = [name for point in latency_points(sid[0], domain) for name in point.fields]
    assert not [name for name in fields if name.startswith(("flush_", "zone_append_"))]
    # A 1 s window that fell between two turns of the loop: only the (zero) queue depths.
    idle = [
        p.fields for s in sid for p in latency_points(s, named(s, "ktsidst-")) if "read_latency_avg_ns" not in p.fields
    ]
    assert idle and all(f == {"read_queue_depth_avg": 0.0, "write_queue_depth_avg": 0.0} for f in idle)


def test_zone_appends_show_where_the_disk_made_some_with_their_queue_depth(sid):
    domain = named(sid[0], "ktsidst-")
    zoned = {
        "block.0.timed_group.1.zone_append_latency_min": 41000,
        "block.0.timed_group.1.zone_append_latency_max": 93000,
        "block.0.timed_group.1.zone_append_latency_avg": 60500,
        "block.0.timed_group.1.zone_append_queue_depth_avg": 0.25,
    }
    domain = dataclasses.replace(domain, stats={**domain.stats, **zoned})
    vda_10s = keyed(latency_points(sid[0], domain))[("vda", "10s")]
    assert [(k, v) for k, v in vda_10s.items() if k.startswith("zone_append")] == [
        ("zone_append_latency_min_ns", 41000),
        ("zone_append_latency_max_ns", 93000),
        ("zone_append_latency_avg_ns", 60500),
        ("zone_append_queue_depth_avg", 0.25),
    ]


def test_a_value_that_is_not_a_number_in_range_drops_that_kind_only(sid):
    domain = named(sid[0], "ktsidst-")
    broken = {"block.0.timed_group.1.rd_latency_max": 2**64 - 1, "block.0.timed_group.1.wr_queue_depth_avg": "x"}
    vda_10s = keyed(latency_points(sid[0], dataclasses.replace(domain, stats={**domain.stats, **broken})))[
        ("vda", "10s")
    ]
    assert not [name for name in vda_10s if name.startswith("read_latency") or name == "write_queue_depth_avg"]
    assert "write_latency_max_ns" in vda_10s and "read_queue_depth_avg" in vda_10s


def test_a_disk_without_statistics_adds_nothing_and_the_default_measurements_stay_as_they_were(sid):
    plain = named(sid[0], "ktsidgr-")
    assert not latency_points(sid[0], plain)
    history: Dict = {}
    for snapshot in sid:
        without, _ = shape_snapshot(snapshot, history)
        with_group, history = shape_snapshot(snapshot, history, groups=GROUP)
        assert [p for p in with_group if p.measurement != "vm_disk_latency"] == without


def test_doctor_counts_the_domains_with_timed_statistics_and_says_how_to_turn_them_on(sid):
    def doctor(*options: str) -> List[str]:
        result = runner().invoke(
            main, [*options, "--collect", "disk_latency", "doctor"], obj={"opener": lambda _: ReplayConnection(sid)}
        )
        return [line for line in result.stdout.splitlines() if "group disk_latency:" in line]

    assert doctor() == [
        "ok    group disk_latency: on (--collect); supported (needs libvirt 11.10.0, found 12.8.0); "
        "enabled on 1 of 2 domain(s); no extra call"
    ]
    assert doctor("--domain", "ktsidgr-*") == [
        "warn  group disk_latency: on (--collect); supported (needs libvirt 11.10.0, found 12.8.0); "
        "enabled on 0 of 1 domain(s) (to enable: <statistics><statistic interval='10'/></statistics> inside each "
        "disk's <driver> in the domain XML (libvirt 11.9 and QEMU 10.2 or later)), so it adds nothing until one "
        "has it; no extra call"
    ]


def test_on_libvirt_9_doctor_says_the_daemon_is_too_old():
    result = runner().invoke(
        main,
        ["--collect", "disk_latency", "doctor"],
        obj={"opener": lambda _: ReplayConnection(load_snapshots("lab-groups.json"))},
    )
    assert (
        "warn  group disk_latency: on (--collect); this daemon does not support it "
        "(needs libvirt 11.10.0, found 9.0.0)" in result.stdout.splitlines()
    )
