"""Shape: recorded lab stats in, measurement records out.

The goldens pin whole snapshots; the tests below take a real recorded domain
and change one thing about it, the way libvirt does on other hosts.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List

import pytest

from kvm_telegraf.domain_xml import NOVA_TAGS
from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.points import Point
from kvm_telegraf.shape import MEASUREMENTS, shape_snapshot
from kvm_telegraf.snapshot import DomainSample, Snapshot, snapshots_from_json
from tests.conftest import SNAPSHOTS, load_snapshots


def as_yaml(points: List[Point]) -> List[dict]:
    return [{"measurement": p.measurement, "tags": dict(p.tags), "fields": dict(p.fields)} for p in points]


def golden_snapshots(golden) -> List[Snapshot]:
    """The golden's snapshot file, read as the options it names (``nova: true`` is ``--nova``)."""
    tags = NOVA_TAGS if golden.get("nova") else ()
    return snapshots_from_json((SNAPSHOTS / golden["snapshot"]).read_text(), tags)


@pytest.mark.golden_test("goldens/shape/*.yml")
def test_recorded_snapshots_shape_into_the_golden_records(golden):
    history: Dict = {}
    cycles = []
    for snapshot in golden_snapshots(golden):
        points, history = shape_snapshot(snapshot, history)
        cycles.append(as_yaml(points))
    assert cycles == golden.out["cycles"]


@pytest.mark.golden_test("goldens/batch/*.yml")
def test_recorded_snapshots_encode_into_the_golden_batches(golden):
    history: Dict = {}
    encoder = LineEncoder()
    batches = []
    for snapshot in golden_snapshots(golden):
        points, history = shape_snapshot(snapshot, history)
        batches.append(encoder.encode(points, snapshot.timestamp_ns))
    assert batches == golden.out["batches"]


# --- one real domain, one change at a time ---------------------------------------------------


@pytest.fixture(scope="module")
def running() -> DomainSample:
    """A running lab guest as recorded: 2 NICs, 2 disks, balloon stats with a period."""
    return load_snapshots("lab-running.json")[0].domains[0]


def with_stats(domain: DomainSample, change) -> DomainSample:
    stats = dict(domain.stats)
    change(stats)
    return dataclasses.replace(domain, stats=stats)


def shape_one(domain: DomainSample, measurements=MEASUREMENTS) -> Dict[str, List[Point]]:
    points, _ = shape_snapshot(Snapshot(1, (domain,)), {}, frozenset(measurements))
    grouped: Dict[str, List[Point]] = {}
    for point in points:
        grouped.setdefault(point.measurement, []).append(point)
    return grouped


def device(points: Dict[str, List[Point]], name: str) -> Point:
    (found,) = [p for p in points["vm_devices"] if dict(p.tags)["device"] == name]
    return found


def test_a_missing_balloon_group_leaves_memory_fields_out_instead_of_zero(running):
    domain = with_stats(running, lambda s: [s.pop(k) for k in list(s) if k.startswith("balloon.")])
    points = shape_one(domain)
    assert "memory_bytes" not in points["vm_metrics"][0].fields
    assert not [f for f in points["vm_totals"][0].fields if f.startswith("memory_")]
    assert points["vm_metrics"][0].fields["cpu_time_ns"] == running.stats["cpu.time"]


def test_a_domain_with_no_stats_groups_but_state_still_gets_vm_metrics(running):
    domain = with_stats(running, lambda s: [s.pop(k) for k in list(s) if not k.startswith("state.")])
    points = shape_one(domain)
    assert points["vm_metrics"][0].fields == {"state": 1, "state_reason": running.stats["state.reason"]}
    assert "vm_devices" not in points
    assert points.get("vm_totals", [Point("", (), {})])[0].fields == {}


def test_a_nic_without_a_name_is_tagged_by_type_and_index(running):
    points = shape_one(with_stats(running, lambda s: s.update({"net.0.name": ""})))
    assert device(points, "interface0").fields["rx_bytes"] == running.stats["net.0.rx.bytes"]


def test_a_counter_beyond_int64_is_dropped_from_the_device_and_from_the_total(running):
    points = shape_one(with_stats(running, lambda s: s.update({"net.0.rx.bytes": 2**64 - 1})))
    name = running.stats["net.0.name"]
    assert "rx_bytes" not in device(points, name).fields
    assert points["vm_totals"][0].fields["net_rx_bytes"] == running.stats["net.1.rx.bytes"]


def test_a_minus_one_sentinel_counts_as_not_reported(running):
    points = shape_one(with_stats(running, lambda s: s.update({"block.0.errors": -1})))
    assert "errors" not in device(points, running.stats["block.0.name"]).fields


def test_devices_keep_their_values_when_libvirt_renumbers_them(running):
    def unplug_first_nic(stats):
        second = {k[len("net.1.") :]: v for k, v in stats.items() if k.startswith("net.1.")}
        for key in [k for k in stats if k.startswith(("net.0.", "net.1."))]:
            del stats[key]
        stats.update({f"net.0.{k}": v for k, v in second.items()})
        stats["net.count"] = 1

    before, after = shape_one(running), shape_one(with_stats(running, unplug_first_nic))
    name = running.stats["net.1.name"]
    assert device(after, name) == device(before, name)


def test_backing_chain_entries_are_not_counted_as_extra_disks(running):
    def add_backing_chain(stats):
        count = stats["block.count"]
        for i in range(count):
            stats.update({f"block.{count + i}.name": stats[f"block.{i}.name"], f"block.{count + i}.rd.reqs": 7})
        stats["block.count"] = 2 * count

    before, after = shape_one(running), shape_one(with_stats(running, add_backing_chain))
    assert after["vm_devices"] == before["vm_devices"]
    assert after["vm_totals"] == before["vm_totals"]


def test_sparse_vcpu_indices_are_summed_over_the_ones_present(running):
    def drop_vcpu_zero(stats):
        for key in [k for k in stats if k.startswith("vcpu.0.")]:
            del stats[key]
        stats.update({"vcpu.maximum": 2, "vcpu.1.state": 1, "vcpu.1.delay": 5, "vcpu.1.wait": 3})

    totals = shape_one(with_stats(running, drop_vcpu_zero))["vm_totals"][0].fields
    assert (totals["vcpu_delay_ns"], totals["vcpu_wait_ns"]) == (5, 3)


def test_cpu_percent_needs_a_previous_cycle_of_the_same_boot():
    first, second = load_snapshots("lab-running.json")
    _, history = shape_snapshot(first, {})
    points, _ = shape_snapshot(second, history)
    assert all("cpu_percent" in p.fields for p in points if p.measurement == "vm_totals")
    restarted = Snapshot(second.timestamp_ns, tuple(dataclasses.replace(d, id=d.id + 100) for d in second.domains))
    points, _ = shape_snapshot(restarted, history)
    assert not [p for p in points if "cpu_percent" in p.fields]


def test_cpu_percent_is_cpu_time_over_wall_time_and_vcpus():
    first, second = load_snapshots("lab-running.json")
    _, history = shape_snapshot(first, {})
    points, _ = shape_snapshot(second, history)
    domain = second.domains[0]
    previous = next(d for d in first.domains if d.uuid == domain.uuid)
    expected = 100 * (domain.stats["cpu.time"] - previous.stats["cpu.time"])
    expected /= (second.timestamp_ns - first.timestamp_ns) * domain.stats["vcpu.current"]
    totals = next(p for p in points if p.measurement == "vm_totals" and dict(p.tags)["uuid"] == domain.uuid)
    assert totals.fields["cpu_percent"] == pytest.approx(expected, abs=0.01)


def test_memory_used_is_available_minus_usable(running):
    totals = shape_one(running)["vm_totals"][0].fields
    expected = (running.stats["balloon.available"] - running.stats["balloon.usable"]) * 1024
    assert totals["memory_used_bytes"] == expected


def test_an_inactive_domain_reports_its_state_configuration_and_disk_sizes_but_no_guest_activity():
    (snapshot, _) = load_snapshots("lab-states.json")
    shut_off = next(d for d in snapshot.domains if d.stats["state.state"] == 5)
    points = shape_one(shut_off)
    assert points["vm_metrics"][0].fields["state"] == 5
    assert points["vm_features"][0].fields["persistent"] is True
    assert {dict(p.tags)["type"] for p in points["vm_devices"]} == {"disk"}
    assert all("read_requests" not in p.fields for p in points["vm_devices"])
    totals = points["vm_totals"][0].fields
    assert "memory_usable_bytes" not in totals and "net_rx_bytes" not in totals and "cpu_percent" not in totals


def test_a_domain_whose_configuration_could_not_be_read_loses_only_vm_features(running):
    points = shape_one(dataclasses.replace(running, config=None))
    assert "vm_features" not in points
    assert points["vm_metrics"] and points["vm_devices"] and points["vm_totals"]


def test_only_the_asked_measurements_are_built(running):
    assert set(shape_one(running, ["vm_devices"])) == {"vm_devices"}


def test_a_host_with_ten_guests_of_two_nics_and_three_disks_gives_eighty_lines(running):
    def third_disk(stats):
        stats.update({k.replace("block.1.", "block.2."): v for k, v in stats.items() if k.startswith("block.1.")})
        stats.update({"block.2.name": "vdc", "block.count": 3})

    guest = with_stats(running, third_disk)
    guests = tuple(dataclasses.replace(guest, uuid=f"uuid-{i}", name=f"vm{i}") for i in range(10))
    points, _ = shape_snapshot(Snapshot(1, guests), {})
    assert len(LineEncoder().encode(points, 1).splitlines()) == 80


def test_the_hypervisor_and_metadata_tags_go_on_every_point_of_the_domain_sorted_by_key():
    (snapshot, _) = snapshots_from_json((SNAPSHOTS / "nova-metadata.json").read_text(), NOVA_TAGS)
    domain = dataclasses.replace(snapshot.domains[0], hypervisor="kvm1")
    points = [p for group in shape_one(domain).values() for p in group]
    assert {p.measurement for p in points} == set(MEASUREMENTS)
    for point in points:
        keys = [key for key, _ in point.tags]
        assert keys == sorted(keys)
        tags = dict(point.tags)
        assert (tags["hypervisor"], tags["nova_name"], tags["nova_project"], tags["nova_flavor"]) == (
            "kvm1",
            "web frontend 01",
            "demo",
            "kt.tiny",
        )
