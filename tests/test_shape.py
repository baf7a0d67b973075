"""Shape: recorded lab stats in, measurement records out.

The goldens pin whole snapshots; the tests below take a real recorded domain
and change one thing about it, the way libvirt does on other hosts.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List

import pytest

from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.plans import ShapePlans
from kvm_telegraf.points import Point, each_point
from kvm_telegraf.shape import MEASUREMENTS, shape_snapshot
from kvm_telegraf.snapshot import DomainSample, Snapshot
from tests.conftest import load_snapshots
from tests.harness.goldens import golden_groups, golden_snapshots


def as_yaml(points: List[Point]) -> List[dict]:
    return [{"measurement": p.measurement, "tags": dict(p.tags), "fields": dict(p.fields)} for p in points]


@pytest.mark.golden_test("goldens/shape/*.yml")
def test_recorded_snapshots_shape_into_the_golden_records(golden):
    history: Dict = {}
    cycles = []
    for snapshot in golden_snapshots(golden):
        points, history = shape_snapshot(snapshot, history, groups=golden_groups(golden))
        cycles.append(as_yaml(points))
    assert cycles == golden.out["cycles"]


@pytest.mark.golden_test("goldens/shape/*.yml")
def test_recorded_snapshots_shape_into_the_same_records_through_the_plans_the_process_keeps(golden):
    history: Dict = {}
    plans = ShapePlans()  # as Pipeline keeps them: across cycles
    cycles = []
    for snapshot in golden_snapshots(golden):
        points, history = shape_snapshot(snapshot, history, groups=golden_groups(golden), plans=plans)
        cycles.append(as_yaml(each_point(points)))
    assert cycles == golden.out["cycles"]


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


def nic(points: Dict[str, List[Point]], tap: str) -> Point:
    (found,) = [p for p in points["vm_devices"] if p.fields.get("tap") == tap]
    return found


def with_xml(domain: DomainSample, change) -> DomainSample:
    assert domain.config is not None
    return dataclasses.replace(domain, config=dataclasses.replace(domain.config, xml=change(domain.config.xml)))


def test_a_missing_balloon_group_leaves_memory_fields_out_instead_of_zero(running):
    domain = with_stats(running, lambda s: [s.pop(k) for k in list(s) if k.startswith("balloon.")])
    points = shape_one(domain)
    assert "memory_bytes" not in points["vm_metrics"][0].fields
    assert not [f for f in points["vm_totals"][0].fields if f.startswith("memory_")]
    assert points["vm_metrics"][0].fields["cpu_time_ns"] == running.stats["cpu.time"]


def test_a_domain_with_no_stats_groups_but_state_still_gets_vm_metrics(running):
    domain = with_stats(running, lambda s: [s.pop(k) for k in list(s) if not k.startswith("state.")])
    points = shape_one(domain)
    assert points["vm_metrics"][0].fields == {
        "state": 1,
        "state_reason": running.stats["state.reason"],
        "responding": True,
    }
    assert "vm_devices" not in points
    assert points.get("vm_totals", [Point("", (), {})])[0].fields == {}


def test_a_nic_without_a_name_is_tagged_by_type_and_index(running):
    points = shape_one(with_stats(running, lambda s: s.update({"net.0.name": ""})))
    assert device(points, "interface0").fields["rx_bytes"] == running.stats["net.0.rx.bytes"]


def test_a_counter_beyond_int64_is_dropped_from_the_device_and_from_the_total(running):
    points = shape_one(with_stats(running, lambda s: s.update({"net.0.rx.bytes": 2**64 - 1})))
    assert "rx_bytes" not in nic(points, running.stats["net.0.name"]).fields
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
    tap = running.stats["net.1.name"]
    assert nic(after, tap) == nic(before, tap)


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


def test_cpu_percent_is_vcpu_time_over_the_widest_window_and_vcpus():
    first, second = load_snapshots("lab-running.json")
    _, history = shape_snapshot(first, {})
    points, _ = shape_snapshot(second, history)
    domain = second.domains[0]
    previous = next(d for d in first.domains if d.uuid == domain.uuid)
    expected = 100 * (domain.stats["vcpu.0.time"] - previous.stats["vcpu.0.time"])
    expected /= second.timestamp_ns - first.timestamp_ns  # recorded without started_ns: the window is the stamps
    totals = next(p for p in points if p.measurement == "vm_totals" and dict(p.tags)["uuid"] == domain.uuid)
    assert totals.fields["cpu_percent"] == pytest.approx(expected, abs=0.01)


def two_readings(running: DomainSample, vcpu_stats_after: Dict[str, int], started_ns: int) -> Dict[str, Point]:
    """cpu_percent of *running* between a call over [0, 1 s] and one over [started_ns, 2 s]."""
    before = dataclasses.replace(running, stats={**running.stats, "vcpu.0.time": 0})
    after = with_stats(running, lambda s: s.update(vcpu_stats_after))
    _, history = shape_snapshot(Snapshot(1_000_000_000, (before,), started_ns=0), {})
    points, _ = shape_snapshot(Snapshot(2_000_000_000, (after,), started_ns=started_ns), history)
    return next(p for p in points if p.measurement == "vm_totals")


def test_cpu_percent_stays_at_most_100_when_a_vcpu_ran_the_whole_time_between_two_slow_calls(running):
    # The previous call read vcpu.0.time at its start (0), this one at its end (2 s): 2 s of vCPU time
    # over 1 s between the batch stamps, which a window of stamps would call 200 %.
    totals = two_readings(running, {"vcpu.0.time": 2_000_000_000}, started_ns=1_900_000_000)
    assert totals.fields["cpu_percent"] == 100.0


def test_cpu_percent_across_a_vcpu_hot_plug_counts_only_the_vcpus_present_throughout(running):
    plugged = {"vcpu.0.time": 1_000_000_000, "vcpu.current": 2, "vcpu.1.state": 1, "vcpu.1.time": 900_000_000}
    totals = two_readings(running, plugged, started_ns=1_900_000_000)
    assert totals.fields["cpu_percent"] == 50.0  # vCPU 0 busy half of the 2 s window; vCPU 1 has no start


def test_cpu_percent_is_left_out_without_per_vcpu_times(running):
    no_vcpu_times = with_stats(running, lambda s: s.pop("vcpu.0.time"))
    _, history = shape_snapshot(Snapshot(1, (no_vcpu_times,)), {})
    points, _ = shape_snapshot(Snapshot(2, (no_vcpu_times,)), history)
    assert not [p for p in points if "cpu_percent" in p.fields]


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


def test_an_inactive_domain_carries_no_cpu_field_although_libvirt_reports_its_own_cpu_time():
    (snapshot, _) = load_snapshots("lab-states.json")
    shut_off = next(d for d in snapshot.domains if d.id == -1)
    assert {"cpu.time", "cpu.user", "cpu.system"} <= set(shut_off.stats)  # the quirk, as recorded
    points = shape_one(shut_off)
    fields = {name for p in points["vm_metrics"] + points["vm_totals"] for name in p.fields}
    assert not {"cpu_time_ns", "cpu_user_ns", "cpu_system_ns", "cpu_percent"} & fields


def restarted_with_new_taps(domain: DomainSample) -> DomainSample:
    """The same guest after a restart: libvirt gave its NICs other tap names, host-wide."""
    renamed = {domain.stats["net.0.name"]: "vnet70", domain.stats["net.1.name"]: "vnet71"}

    def rename(xml: str) -> str:
        for old, new in renamed.items():
            xml = xml.replace(f"<target dev='{old}'/>", f"<target dev='{new}'/>")
        return xml

    stats = {key: renamed.get(value, value) if key.endswith(".name") else value for key, value in domain.stats.items()}
    return with_xml(dataclasses.replace(domain, id=domain.id + 1, stats=stats), rename)


def nic_series(points: Dict[str, List[Point]]) -> List[tuple]:
    return [p.tags for p in points["vm_devices"] if dict(p.tags)["type"] == "interface"]


def test_a_nic_keeps_its_series_when_a_restart_renumbers_its_tap(running):
    before, after = shape_one(running), shape_one(restarted_with_new_taps(running))
    assert nic_series(after) == nic_series(before)
    assert [p.fields["tap"] for p in after["vm_devices"] if "tap" in p.fields] == ["vnet70", "vnet71"]


def test_a_nic_is_named_by_its_mac_and_tagged_with_it(running):
    tags = dict(nic(shape_one(running), running.stats["net.0.name"]).tags)
    assert tags["device"] == tags["mac"] == "52:54:00:6b:01:00"


def test_a_nic_whose_target_dev_the_operator_chose_is_named_by_it(running):
    tap = running.stats["net.0.name"]
    pinned = with_xml(
        with_stats(running, lambda s: s.update({"net.0.name": "uplink0"})),
        lambda xml: xml.replace(f"<target dev='{tap}'/>", "<target dev='uplink0'/>"),
    )
    tags = dict(nic(shape_one(pinned), "uplink0").tags)
    assert (tags["device"], tags["mac"]) == ("uplink0", "52:54:00:6b:01:00")


def test_a_nic_missing_from_the_cached_xml_falls_back_to_its_tap_name(running):
    tags = dict(nic(shape_one(with_stats(running, lambda s: s.update({"net.0.name": "vnet99"}))), "vnet99").tags)
    assert tags["device"] == "vnet99" and "mac" not in tags


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
    (snapshot, _) = golden_snapshots({"snapshot": "nova-metadata.json", "nova": True})
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


def disk_fields(points: List[Point], vm: str, disk: str) -> Dict:
    (found,) = [
        p.fields
        for p in points
        if p.measurement == "vm_devices" and dict(p.tags)["device"] == disk and dict(p.tags)["vm"] == vm
    ]
    return found


def test_disk_latency_is_time_over_requests_since_the_previous_cycle():
    first, second = load_snapshots("lab-running.json")
    _, history = shape_snapshot(first, {})
    points, _ = shape_snapshot(second, history)
    before, after = first.domains[0].stats, second.domains[0].stats
    fields = disk_fields(points, "ktlab-01", "vda")
    expected = (after["block.0.rd.times"] - before["block.0.rd.times"]) / (
        after["block.0.rd.reqs"] - before["block.0.rd.reqs"]
    )
    assert fields["read_latency_ns"] == pytest.approx(expected, abs=0.05)
    assert "flush_latency_ns" not in fields  # no flush in between: no latency, not 0


def test_disk_latency_is_absent_on_the_first_cycle_and_after_a_restart():
    first, second = load_snapshots("lab-running.json")
    points, history = shape_snapshot(first, {})
    assert not [p for p in points if "read_latency_ns" in p.fields]
    restarted = Snapshot(second.timestamp_ns, tuple(dataclasses.replace(d, id=d.id + 100) for d in second.domains))
    points, _ = shape_snapshot(restarted, history)
    assert not [p for p in points if "read_latency_ns" in p.fields or "cpu_percent" in p.fields]


def test_halt_polling_times_go_on_vm_totals_of_running_domains_only():
    (snapshot, _) = load_snapshots("lab-states.json")
    points, _ = shape_snapshot(snapshot, {})
    totals = {dict(p.tags)["vm"]: p.fields for p in points if p.measurement == "vm_totals"}
    running = next(d for d in snapshot.domains if d.id >= 0)
    assert totals[running.name]["haltpoll_success_ns"] == running.stats["cpu.haltpoll.success.time"]
    assert "haltpoll_fail_ns" in totals[running.name]
    shut_off = next(d for d in snapshot.domains if d.id < 0)
    assert "haltpoll_success_ns" not in totals[shut_off.name]


def test_a_running_domain_whose_qemu_did_not_answer_is_marked_not_responding_and_a_shut_off_one_not_at_all(running):
    assert shape_one(dataclasses.replace(running, responding=False))["vm_metrics"][0].fields["responding"] is False
    assert shape_one(running)["vm_metrics"][0].fields["responding"] is True
    (snapshot, _) = load_snapshots("lab-states.json")
    shut_off = next(d for d in snapshot.domains if d.id < 0)
    assert "responding" not in shape_one(shut_off)["vm_metrics"][0].fields


def test_a_domain_with_twenty_nics_and_twenty_disks_reports_each_and_sums_all(running):
    def widen(stats):
        for kind, count_key in (("net", "net.count"), ("block", "block.count")):
            template = {k[len(f"{kind}.0.") :]: v for k, v in running.stats.items() if k.startswith(f"{kind}.0.")}
            for i in range(20):
                stats.update({f"{kind}.{i}.{key}": value for key, value in template.items()})
                stats[f"{kind}.{i}.name"] = f"{'vnet' if kind == 'net' else 'vd'}{100 + i}"
            stats[count_key] = 20

    points = shape_one(with_stats(running, widen))
    devices = points["vm_devices"]
    assert len([p for p in devices if dict(p.tags)["type"] == "interface"]) == 20
    assert len([p for p in devices if dict(p.tags)["type"] == "disk"]) == 20
    assert devices[19].fields["rx_bytes"] == running.stats["net.0.rx.bytes"]  # the 20th NIC, past any prebuilt table
    totals = points["vm_totals"][0].fields
    assert totals["net_rx_bytes"] == 20 * running.stats["net.0.rx.bytes"]
    assert totals["disk_write_bytes"] == 20 * running.stats["block.0.wr.bytes"]


def test_a_domain_with_forty_vcpus_sums_and_rates_every_one_of_them(running):
    def forty_vcpus(time_ns):
        def change(stats):
            for n in range(40):
                stats.update(
                    {f"vcpu.{n}.state": 1, f"vcpu.{n}.time": time_ns, f"vcpu.{n}.wait": 3, f"vcpu.{n}.delay": 5}
                )
            stats["vcpu.current"] = stats["vcpu.maximum"] = 40

        return change

    # the 40th vCPU lies past any prebuilt table of keys: every vCPU busy the whole second, 40 vCPUs: 100 %
    before = with_stats(running, forty_vcpus(0))
    after = with_stats(running, forty_vcpus(1_000_000_000))
    _, history = shape_snapshot(Snapshot(1_000_000_000, (before,), started_ns=1_000_000_000), {})
    points, _ = shape_snapshot(Snapshot(2_000_000_000, (after,), started_ns=2_000_000_000), history)
    totals = next(p for p in points if p.measurement == "vm_totals").fields
    assert (totals["vcpu_wait_ns"], totals["vcpu_delay_ns"], totals["cpu_percent"]) == (120, 200, 100.0)
