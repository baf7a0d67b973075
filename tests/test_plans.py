"""Shape's plans: the plan path gives the very points (and readings, and text) of the plain path.

Every recorded snapshot goes through both; then one recorded domain is changed the
ways libvirt changes a domain (a -1, a missing key, a hot-plug, many devices, a
restart), each change through both paths again.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import pytest

from kvm_telegraf.domain_filter import DeviceFilter
from kvm_telegraf.domain_xml import NOVA_TAGS
from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.groups import resolve
from kvm_telegraf.measurements import DISK_LATENCIES
from kvm_telegraf.plans import Plan, ShapePlans
from kvm_telegraf.points import Batch, each_point
from kvm_telegraf.shape import EVERY_DEVICE, shape_snapshot
from kvm_telegraf.snapshot import DomainSample, Snapshot, snapshots_from_json
from tests.harness.goldens import SNAPSHOTS, load_snapshots

ULLONG_MINUS_ONE = 2**64 - 1  # libvirt's -1 "unknown", as the binding hands it over


def ordered(batch: Batch) -> List[tuple]:
    """The points (a Lines' each) with their fields in printing order (a dict compares equal in any order)."""
    return [(p.measurement, p.tags, list(p.fields.items()), p.timestamp_ns) for p in each_point(batch)]


def rates_read(history: Dict) -> Dict:
    """What the next cycle's rates read of each reading: its window, its vCPUs' times, each disk's (time, requests)
    of each latency it has both for (a plan keeps no more of a domain; the plain path keeps each disk's every field)."""

    def latency_counters(fields: Mapping) -> Dict:
        pairs = [(spent, requests) for _, spent, requests in DISK_LATENCIES if spent in fields and requests in fields]
        return {key: fields[key] for pair in pairs for key in pair}

    return {
        key: (
            reading.domain_id,
            reading.started_ns,
            reading.finished_ns,
            dict(reading.vcpu_times),
            {name: counters for name, fields in reading.disks.items() if (counters := latency_counters(fields))},
            dict(reading.carried),
        )
        for key, reading in history.items()
    }


def assert_both_paths_agree(cycles: Sequence[Snapshot], devices: DeviceFilter = EVERY_DEVICE) -> ShapePlans:
    """Each cycle through the plain path and through plans: the same points, readings and text, cycle by cycle."""
    plans = ShapePlans()
    plain_history: Dict = {}
    planned_history: Dict = {}
    plain_encoder, planned_encoder = LineEncoder(), LineEncoder()
    for number, snapshot in enumerate(cycles):
        plain, plain_history = shape_snapshot(snapshot, plain_history, devices=devices)
        planned, planned_history = shape_snapshot(snapshot, planned_history, devices=devices, plans=plans)
        assert ordered(planned) == ordered(plain), f"cycle {number}"
        assert rates_read(planned_history) == rates_read(plain_history), f"cycle {number}"
        assert planned_encoder.encode(planned, 1) == plain_encoder.encode(plain, 1), f"cycle {number}"
    return plans


@pytest.mark.parametrize("name", sorted(path.name for path in SNAPSHOTS.glob("*.json")))
def test_every_recorded_snapshot_gives_the_same_points_through_its_plans(name):
    cycles = load_snapshots(name)
    # the last cycle twice more: a history made by plans feeds the plans' rates, as in a long run
    plans = assert_both_paths_agree([*cycles, cycles[-1], cycles[-1]])
    assert len(plans) > 0


@pytest.mark.parametrize("name", ["lab-running.json", "lab-states.json"])
def test_a_planned_lines_fields_answer_every_mapping_method_as_the_plain_paths_dict_does(name):
    plans: ShapePlans = ShapePlans()
    plain_history: Dict = {}
    planned_history: Dict = {}
    for snapshot in load_snapshots(name):
        plain, plain_history = shape_snapshot(snapshot, plain_history)
        planned, planned_history = shape_snapshot(snapshot, planned_history, plans=plans)
    assert len(plans) > 0
    for mine, theirs in zip(each_point(planned), plain):
        fields = mine.fields
        assert list(fields.keys()) == list(theirs.fields.keys())
        assert list(fields.values()) == list(theirs.fields.values())  # a Mapping's values(), not an attribute
        assert list(fields.items()) == list(theirs.fields.items())
        assert all(key in fields and fields.get(key) == value for key, value in theirs.fields.items())
        assert fields.get("no such field") is None and len(fields) == len(theirs.fields)


def test_nova_metadata_tags_and_a_hypervisor_tag_are_the_same_through_plans():
    cycles = snapshots_from_json((SNAPSHOTS / "nova-metadata.json").read_text(), NOVA_TAGS)
    assert_both_paths_agree(cycles)
    assert_both_paths_agree(
        [each_domain(cycle, lambda d: dataclasses.replace(d, hypervisor="kvm-07")) for cycle in cycles]
    )


def test_a_device_filter_leaves_out_the_same_devices_through_plans():
    cycles = load_snapshots("lab-running.json")
    assert_both_paths_agree(cycles, DeviceFilter(include=("vda",)))
    assert_both_paths_agree(cycles, DeviceFilter(exclude=("vd*",)))


# --- one recorded running domain, changed the ways libvirt changes a domain ------------------------------


@pytest.fixture(scope="module")
def recorded() -> Tuple[Snapshot, Snapshot]:
    """Two cycles of two running lab guests with 2 NICs, 2 disks and balloon stats."""
    first, second = load_snapshots("lab-running.json")
    return first, second


def each_domain(snapshot: Snapshot, change: Callable[[DomainSample], DomainSample]) -> Snapshot:
    return dataclasses.replace(snapshot, domains=tuple(change(domain) for domain in snapshot.domains))


def with_stats(change: Callable[[dict], None]) -> Callable[[DomainSample], DomainSample]:
    def changed(domain: DomainSample) -> DomainSample:
        stats = dict(domain.stats)
        change(stats)
        return dataclasses.replace(domain, stats=stats)

    return changed


def set_stat(key: str, value) -> Callable[[DomainSample], DomainSample]:
    return with_stats(lambda stats: stats.__setitem__(key, value))


def without_stat(key: str) -> Callable[[DomainSample], DomainSample]:
    return with_stats(lambda stats: stats.pop(key))


CHANGES = {
    "a NIC counter at libvirt's -1": set_stat("net.1.rx.bytes", ULLONG_MINUS_ONE),
    "a disk counter at libvirt's -1": set_stat("block.0.wr.times", ULLONG_MINUS_ONE),
    "a balloon stat at libvirt's -1": set_stat("balloon.usable", ULLONG_MINUS_ONE),
    "a vCPU time at libvirt's -1": set_stat("vcpu.0.time", ULLONG_MINUS_ONE),
    "a negative counter": set_stat("cpu.time", -1),
    "a bool for a counter": set_stat("state.state", True),
    "a float for a counter": set_stat("block.1.rd.bytes", 1.5),
    "an empty tap name": set_stat("net.0.name", ""),
    "a tap named by the operator": set_stat("net.0.name", "ops-uplink"),
    "a memory size out of int64 in bytes": set_stat("balloon.maximum", 2**62),
    "the most memory available in bytes, none usable": with_stats(
        lambda stats: stats.update({"balloon.available": (2**63 - 1) // 1024, "balloon.usable": 0})
    ),
    "none available, the most usable in bytes": with_stats(
        lambda stats: stats.update({"balloon.available": 0, "balloon.usable": (2**63 - 1) // 1024})
    ),
    "an allocation of 0 with physical": set_stat("block.0.allocation", 0),
    "an allocation of 0 without physical": with_stats(
        lambda stats: (stats.__setitem__("block.0.allocation", 0), stats.pop("block.0.physical"))
    ),
    "a NIC counter missing": without_stat("net.0.tx.drop"),
    "a disk counter missing": without_stat("block.1.rd.times"),
    "a balloon stat missing": without_stat("balloon.available"),
    "a tap name missing": without_stat("net.1.name"),
    "a disk name missing": without_stat("block.0.name"),
    "the vCPU maximum missing": without_stat("vcpu.maximum"),
    "the CPU split missing": without_stat("cpu.user"),
}


@pytest.mark.parametrize("change", list(CHANGES.values()), ids=list(CHANGES))
def test_a_changed_value_or_key_gives_the_same_points_through_plans(recorded, change):
    first, second = recorded
    assert_both_paths_agree([first, each_domain(second, change), first, each_domain(second, change)])
    assert_both_paths_agree([each_domain(first, change), second])
    # the same domains and configs, as a long run has them: each tries its plan of the batch before first
    assert_both_paths_agree([first, each_domain(first, change), first, each_domain(first, change)])


def only_the_first_nic(stats: dict) -> None:
    for key in [key for key in stats if key.startswith("net.1.")]:
        del stats[key]
    stats["net.count"] = 1


@pytest.mark.parametrize("count", [True, 1.0], ids=["True", "1.0"])
def test_a_count_that_equals_the_plan_befores_yet_is_no_int_goes_the_plain_path(recorded, count):
    first, _ = recorded
    single = each_domain(first, with_stats(only_the_first_nic))
    odd = each_domain(single, set_stat("net.count", count))  # the same domains, names and configs: their plans first
    assert_both_paths_agree([single, odd, single])


def copy_device(stats: dict, kind: str, source: int, target: int, name: str) -> None:
    prefix = f"{kind}.{source}."
    for key, value in list(stats.items()):
        if key.startswith(prefix):
            stats[f"{kind}.{target}.{key[len(prefix) :]}"] = value
    stats[f"{kind}.{target}.name"] = name


def with_devices(nics: int, disks: int) -> Callable[[DomainSample], DomainSample]:
    """The domain with more NICs and disks, each a copy of its first one under a name of its own."""

    def change(stats: dict) -> None:
        for i in range(stats["net.count"], nics):
            copy_device(stats, "net", 0, i, f"vnet{100 + i}")
        for i in range(stats["block.count"], disks):
            copy_device(stats, "block", 0, i, f"vd{chr(ord('a') + i)}")
        stats["net.count"], stats["block.count"] = nics, disks

    return with_stats(change)


def test_a_nic_hot_plugged_between_cycles_gives_the_same_points_through_plans(recorded):
    first, second = recorded
    plugged = with_devices(3, 2)
    assert_both_paths_agree([first, each_domain(second, plugged), each_domain(second, plugged), second])


def test_more_than_eight_nics_and_disks_give_the_same_points_through_plans(recorded):
    first, second = recorded
    many = with_devices(10, 11)
    assert_both_paths_agree([each_domain(first, many), each_domain(second, many), each_domain(second, many)])


def test_a_backing_entry_that_repeats_its_disk_gives_the_same_points_through_plans(recorded):
    first, second = recorded
    backed = with_stats(lambda stats: (copy_device(stats, "block", 1, 2, "vdb"), stats.__setitem__("block.count", 3)))
    assert_both_paths_agree([each_domain(first, backed), each_domain(second, backed)])


def test_a_restarted_or_stopped_domain_gives_the_same_points_through_plans(recorded):
    first, second = recorded
    restarted = each_domain(second, lambda domain: dataclasses.replace(domain, id=domain.id + 10))
    stopped = load_snapshots("lab-states.json")[1]
    assert_both_paths_agree([first, second, restarted, stopped, first])


def test_a_domain_whose_qemu_did_not_answer_gives_the_same_points_through_plans(recorded):
    first, second = recorded
    silent = each_domain(second, lambda domain: dataclasses.replace(domain, responding=False))
    assert_both_paths_agree([first, silent, second])


# --- what the plans keep ---------------------------------------------------------------------------------


def test_two_domains_of_one_shape_share_one_plan(recorded):
    first, _ = recorded
    domain = first.domains[0]
    twin = dataclasses.replace(domain, name="twin", uuid="00000000-0000-4000-8000-000000000001", id=99)
    plans = ShapePlans()
    assert plans.plan(twin) is plans.plan(domain)
    assert len(plans) == 1


def test_a_domain_of_another_shape_gets_a_plan_of_its_own(recorded):
    first, _ = recorded
    domain = first.domains[0]
    plans = ShapePlans()
    assert plans.plan(with_devices(3, 2)(domain)) is not plans.plan(domain)
    # the same devices and names, another stat reported or not: a plan of its own under the same counts
    assert plans.plan(without_stat("block.1.rd.times")(domain)) is not plans.plan(domain)
    assert plans.plan(set_stat("block.0.errors", 0)(domain)) is not plans.plan(domain)
    assert len(plans) == 4


def test_a_stat_no_measurement_reads_does_not_make_a_shape_of_its_own(recorded):
    first, _ = recorded
    domain = first.domains[0]
    plans = ShapePlans()
    assert plans.plan(set_stat("block.0.threshold", 1)(domain)) is plans.plan(domain)


def test_domains_of_several_shapes_under_the_same_counts_give_the_same_points_through_plans(recorded):
    first, second = recorded
    mixed = [without_stat("block.1.rd.times"), set_stat("block.0.errors", 0), without_stat("net.1.name")]

    def copies(domain: DomainSample) -> List[DomainSample]:
        return [dataclasses.replace(change(domain), uuid=f"{domain.uuid[:-1]}{n}") for n, change in enumerate(mixed)]

    cycles = [
        Snapshot(cycle.timestamp_ns, tuple(copy for d in cycle.domains for copy in copies(d)), cycle.started_ns)
        for cycle in (first, second, second)
    ]
    assert_both_paths_agree(cycles)


def test_a_host_of_ever_new_shapes_keeps_no_more_plans_than_the_bound(recorded):
    first, _ = recorded
    plans = ShapePlans(bound=8)
    kept = []
    for batch in range(4):
        # 10 shapes never seen before in each batch (two domains of each): disks named anew
        shapes = [set_stat("block.1.name", f"sd{batch}{n}")(domain) for n in range(10) for domain in first.domains]
        shaped, _ = shape_snapshot(Snapshot(1, tuple(shapes)), {}, plans=plans)
        plain, _ = shape_snapshot(Snapshot(1, tuple(shapes)), {})
        assert ordered(shaped) == ordered(plain)  # the shapes beyond the bound go down the plain path
        kept.append(len(plans))
    # a batch of new shapes finds the bound taken by the last batch's: it goes plain, and those are dropped after it
    assert kept == [8, 0, 8, 0]


def test_a_shape_that_is_gone_is_dropped_after_one_batch(recorded):
    first, _ = recorded
    plans = ShapePlans()
    shape_snapshot(first, {}, plans=plans)
    assert len(plans) == 1
    shape_snapshot(each_domain(first, with_devices(3, 2)), {}, plans=plans)
    assert len(plans) == 1  # only the three-NIC shape is left


def test_groups_or_fewer_measurements_keep_the_plain_path(recorded):
    first, _ = recorded
    plans = ShapePlans()
    shape_snapshot(first, {}, frozenset({"vm_metrics", "vm_totals"}), plans=plans)
    shape_snapshot(first, {}, groups=resolve(["vcpu"]), plans=plans)
    assert len(plans) == 0


# --- each domain's tags, kept from batch to batch ----------------------------------------------------------


def test_a_domains_tags_are_the_same_tuples_from_batch_to_batch_while_it_is_unchanged(recorded):
    _, second = recorded
    plans = ShapePlans()
    earlier, history = shape_snapshot(second, {}, plans=plans)
    later, _ = shape_snapshot(dataclasses.replace(second, timestamp_ns=second.timestamp_ns + 1), history, plans=plans)
    assert [p.tags for p in each_point(later)] == [p.tags for p in each_point(earlier)]
    assert all(now.tags is then.tags for now, then in zip(later, earlier))


def with_config_xml(change: Callable[[str], str]) -> Callable[[DomainSample], DomainSample]:
    def changed(domain: DomainSample) -> DomainSample:
        config = domain.config
        return dataclasses.replace(domain, config=dataclasses.replace(config, xml=change(config.xml)))

    return changed


RENAMES = {
    "renamed": lambda domain: dataclasses.replace(domain, name=f"{domain.name}-renamed"),
    "a MAC changed in its XML": with_config_xml(lambda xml: xml.replace("52:54:00:6b:01:00", "52:54:00:6b:01:77")),
    "the same XML read again": with_config_xml(lambda xml: xml),
    "new tap names (a restart)": with_stats(lambda stats: stats.update({"net.0.name": "vnet7", "net.1.name": "vnet9"})),
    "on another host": lambda domain: dataclasses.replace(domain, hypervisor="kvm-07"),
    "its config unread": lambda domain: dataclasses.replace(domain, config=None),
}


@pytest.mark.parametrize("change", list(RENAMES.values()), ids=list(RENAMES))
def test_a_domain_whose_names_change_between_batches_gives_the_same_points_through_plans(recorded, change):
    first, second = recorded
    assert_both_paths_agree([first, each_domain(second, change), second, each_domain(second, change)])


def test_one_uuid_on_two_hosts_in_one_batch_gives_the_same_points_through_plans(recorded):
    first, second = recorded

    def on_two_hosts(cycle: Snapshot) -> Snapshot:
        moved = [dataclasses.replace(domain, hypervisor="kvm-07", name=f"{domain.name}-m") for domain in cycle.domains]
        return dataclasses.replace(cycle, domains=(*cycle.domains, *moved))

    assert_both_paths_agree([on_two_hosts(first), on_two_hosts(second), on_two_hosts(second)])


def test_a_gone_domains_tags_are_dropped_after_one_batch(recorded):
    first, _ = recorded
    plans = ShapePlans()
    shape_snapshot(first, {}, plans=plans)
    shape_snapshot(dataclasses.replace(first, domains=first.domains[:1]), {}, plans=plans)
    assert set(plans._names_before) == {first.domains[0].uuid}


def test_a_domain_tries_its_own_plan_of_the_batch_before_first_among_the_plans_under_its_counts(recorded, monkeypatch):
    first, second = recorded
    mixed = [without_stat("block.1.rd.times"), set_stat("block.0.errors", 0), lambda domain: domain]
    domain = second.domains[0]
    cycle = Snapshot(
        second.timestamp_ns,
        tuple(dataclasses.replace(change(domain), uuid=f"{domain.uuid[:-1]}{n}") for n, change in enumerate(mixed)),
    )
    plans = ShapePlans()
    shape_snapshot(cycle, {}, plans=plans)
    assert len(plans) == 3
    tried = []
    real_shape = Plan.shape
    monkeypatch.setattr(Plan, "shape", lambda plan, *args: tried.append(plan) or real_shape(plan, *args))
    assert ordered(shape_snapshot(cycle, {}, plans=plans)[0]) == ordered(shape_snapshot(cycle, {})[0])
    assert len(tried) == 3 and len(set(map(id, tried))) == 3


RATES_BETWEEN = {
    "every counter back at the cycle before's": lambda first, second: [second, first],
    "a vCPU's time back at 0": lambda first, second: [first, each_domain(second, set_stat("vcpu.0.time", 0))],
    "a disk's time back at 0 while its requests go on": lambda first, second: [
        first,
        each_domain(second, set_stat("block.0.wr.times", 0)),
    ],
    "no request between the cycles": lambda first, second: [
        first,
        dataclasses.replace(first, timestamp_ns=first.timestamp_ns + 10**9),
    ],
}


@pytest.mark.parametrize("cycles", list(RATES_BETWEEN.values()), ids=list(RATES_BETWEEN))
def test_counters_that_go_back_or_stand_still_give_the_same_rates_through_plans(recorded, cycles):
    first, second = recorded
    assert_both_paths_agree(cycles(first, second))
