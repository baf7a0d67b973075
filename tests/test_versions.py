"""What differs between libvirt versions, pinned on snapshots recorded from each (tests/snapshots).

libvirt 12.8 (sid) no longer sends ``cpu.cache.monitor.count``; 11.3 and 12.8 send ``block.<i>.allocation=0`` for
a raw disk; 12.8 adds ``block.<i>.limits.*`` and ``iothread.<i>.poll-weight``. Whatever key a version drops or
renames, its field must go missing: never a 0, never a crash (docs/compatibility.md lists every difference).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Tuple

import pytest

from kvm_telegraf.groups import every_group, group
from kvm_telegraf.points import Point
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import Snapshot
from tests.conftest import load_snapshots

ALL_GROUPS = tuple(found for found in every_group() if found.name != "guest")


def fields_of(points: List[Point]) -> Dict[Tuple[str, Tuple], Dict[str, object]]:
    return {(p.measurement, p.tags): dict(p.fields) for p in points}


def shaped(previous: Snapshot, snapshot: Snapshot) -> Dict[Tuple[str, Tuple], Dict[str, object]]:
    """The second cycle's points (the first one's readings give the rates), every group but guest on."""
    _, history = shape_snapshot(previous, {}, groups=ALL_GROUPS)
    points, _ = shape_snapshot(snapshot, history, groups=ALL_GROUPS)
    return fields_of(points)


def without(snapshot: Snapshot, domain: int, key: str) -> Snapshot:
    samples = list(snapshot.domains)
    stats = {k: v for k, v in samples[domain].stats.items() if k != key}
    samples[domain] = dataclasses.replace(samples[domain], stats=stats)
    return dataclasses.replace(snapshot, domains=tuple(samples))


@pytest.mark.parametrize("recorded", ["lab-running.json", "trixie-groups.json", "sid-groups.json"])
def test_every_key_a_version_may_drop_leaves_fields_out_and_never_turns_one_into_zero(recorded):
    previous, snapshot = load_snapshots(recorded)[:2]
    full = shaped(previous, snapshot)
    for index, domain in enumerate(snapshot.domains):
        for key in sorted(domain.stats):
            dropped = shaped(previous, without(snapshot, index, key))  # never raises
            for point, fields in dropped.items():
                if point not in full:  # a device whose name key went is named by its index (disk0, interface1)
                    continue
                before = full[point]
                zeros = [f for f, v in fields.items() if v == 0 and before.get(f) not in (0, None)]
                assert zeros == [], (recorded, domain.name, key, point[0], zeros)
                assert set(fields) <= set(before), (recorded, domain.name, key, point[0])


def test_sid_sends_no_cache_monitor_count_and_11_3_sends_0_and_neither_gives_a_cache_monitor_point():
    for recorded, count in (("trixie-groups.json", 0), ("sid-groups.json", None)):
        snapshot = load_snapshots(recorded)[-1]
        assert {d.stats.get("cpu.cache.monitor.count") for d in snapshot.domains} == {count}
        points, _ = shape_snapshot(snapshot, {}, groups=(group("cache_monitor"),))
        assert [p for p in points if p.measurement == "vm_cache_monitor"] == []


def test_a_raw_disk_on_libvirt_11_and_12_has_allocation_0_in_the_bulk_stats_and_its_physical_as_allocation_bytes():
    for recorded in ("trixie-groups.json", "sid-groups.json"):
        snapshot = load_snapshots(recorded)[-1]
        points, _ = shape_snapshot(snapshot, {})
        for domain in snapshot.domains:
            stats = domain.stats
            for i in range(stats["block.count"]):
                assert stats[f"block.{i}.allocation"] == 0 < stats[f"block.{i}.physical"]
            disks = [p for p in points if p.measurement == "vm_devices" and dict(p.tags)["type"] == "disk"]
            for point in disks:
                fields = dict(point.fields)
                assert fields["allocation_bytes"] == fields["physical_bytes"] > 0
