"""The ``--collect`` groups: the option, the one bulk call, their calls, and the groups the lab cannot produce.

Most tests replay tests/snapshots/lab-groups.json, recorded on the lab with ``--collect all``
(tests/record_snapshots.py groups), and lab-backing.json (record_snapshots.py backing: a qcow2
overlay on a raw backing file, read with BACKING). perf, memory_bandwidth and cache_monitor
cannot be produced here (perf events are not available inside this VM, resctrl is absent):
their tests add keys named as libvirt's documentation of virConnectGetAllDomainStats names
them, so they are not verified on live hardware.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from typing import Any, Dict, List

import pytest

from kvm_telegraf.cli import main
from kvm_telegraf.collect import Collector
from kvm_telegraf.connection import Connection
from kvm_telegraf.groups import NAMES, every_group, resolve
from kvm_telegraf.libvirt_facts import DEFAULT_STATS, STATS_BACKING, STATS_ENFORCE, STATS_VM
from kvm_telegraf.points import Point
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import DomainSample, snapshot_to_json
from tests.conftest import load_snapshots
from tests.harness.cli import runner
from tests.harness.loglines import log_lines
from tests.replay import ReplayConnection

ALL = resolve(["all"])


@pytest.fixture(scope="module")
def recorded() -> List:
    return load_snapshots("lab-groups.json")


def domain_named(snapshot, prefix: str) -> DomainSample:
    return next(d for d in snapshot.domains if d.name.startswith(prefix))


def points_of(domain: DomainSample, snapshot, groups=ALL) -> List[Point]:
    points, _ = shape_snapshot(dataclasses.replace(snapshot, domains=(domain,), hosts=()), {}, groups=groups)
    return points


def only(points: List[Point], measurement: str) -> List[Point]:
    return [p for p in points if p.measurement == measurement]


def names(groups) -> List[str]:
    return [group.name for group in groups]


def test_collect_all_stands_for_every_group_a_read_only_connection_serves():
    every = names(every_group())
    assert names(resolve(["all"])) == [name for name in every if name != "guest"]
    assert names(resolve(["vcpu", "vcpu"])) == ["vcpu"]
    assert names(resolve(["all", "guest"])) == every


def test_each_registry_name_is_a_group_module_whose_group_has_that_name():
    assert names(every_group()) == list(NAMES)
    assert len(set(NAMES)) == len(NAMES)


def test_groups_come_in_registry_order_whatever_the_order_asked_in():
    assert names(resolve(["guest", "backing", "vcpu"])) == ["vcpu", "backing", "guest"]


def test_a_config_file_lists_groups_and_an_unknown_one_is_one_usage_line(tmp_path, recorded):
    config = tmp_path / "kvm-telegraf.toml"
    config.write_text('collect = ["vcpu", "host"]\n')
    result = runner().invoke(
        main, ["--config", str(config), "--once"], obj={"opener": lambda _: ReplayConnection(recorded)}
    )
    assert result.exit_code == 0, result.stderr
    measurements = {line.split(",", 1)[0].split(" ", 1)[0] for line in result.stdout.splitlines()}
    assert {"vm_vcpus", "vm_host"} <= measurements and "vm_iothreads" not in measurements
    config.write_text('collect = ["vcpus"]\n')
    result = runner().invoke(
        main, ["--config", str(config), "--once"], obj={"opener": lambda _: ReplayConnection(recorded)}
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("E! ") and "vcpus" in result.stderr and len(result.stderr.splitlines()) == 1


def test_without_collect_the_recorded_groups_snapshot_gives_only_the_four_measurements(recorded):
    points, _ = shape_snapshot(recorded[0], {})
    assert {p.measurement for p in points} == {"vm_metrics", "vm_features", "vm_devices", "vm_totals"}
    assert not any(name.startswith(("kvm_", "limit_", "perf_")) for p in points for name in p.fields)


class CountingReplay(ReplayConnection):
    """Counts every libvirt call, on the connection and on each domain, by name."""

    def __init__(self, snapshots: List) -> None:
        super().__init__(snapshots)
        self.counted: Counter = Counter()

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name[0].isupper() or name[:3] in ("get", "lis") or name == "getAllDomainStats":
            counted = super().__getattribute__("counted")

            def call(*args: Any) -> Any:
                counted[name] += 1
                result = attribute(*args)
                if name == "getAllDomainStats":
                    return [(CountingDomain(dom, counted), stats) for dom, stats in result]
                return result

            return call
        return attribute


class CountingDomain:
    def __init__(self, dom: Any, counted: Counter) -> None:
        self._dom, self._counted = dom, counted

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._dom, name)
        if name in ("vcpus", "jobStats", "blockIoTune", "XMLDesc", "diskErrors"):
            self._counted[f"dom.{name}"] += 1
        return attribute


def test_a_batch_is_one_bulk_call_plus_the_documented_per_domain_and_per_host_calls(recorded):
    source = CountingReplay(recorded)
    collector = Collector(Connection("replay:///", lambda _uri: source), groups=ALL)
    collector.collect()  # the first cycle also probes support and reads the XML
    source.counted.clear()
    snapshot = collector.collect()
    running = [d for d in snapshot.domains if d.stats.get("state.state") == 1]
    paused = [d for d in snapshot.domains if d.stats.get("state.state") == 3]
    disks = sum(len(d.config.facts.disks) for d in running)
    assert source.counted == {
        "getAllDomainStats": 1,  # the one bulk call, with every group's bits
        "dom.vcpus": len(running),  # vcpu: the current pCPU
        "dom.jobStats": 2 * len(running),  # jobs: the running job and the completed one
        "dom.blockIoTune": disks,  # block_limits: one per disk
        "dom.diskErrors": len(running) + len(paused),  # disk_errors: paused domains too
        "getMemoryStats": 1,  # host; virNodeGetInfo is cached, the pools and node devices once per --features-refresh
        "getCPUStats": 1,  # host
    }
    # cache_monitor and balloon read keys of the default groups; backing adds a flag, not a call
    assert source.calls[-1] == (DEFAULT_STATS | 64 | 128 | 256 | 512 | 1024, STATS_BACKING)


def test_the_backing_flag_goes_into_the_bulk_call_only_with_collect_backing(recorded):
    flags = {}
    for groups in (resolve(["vcpu", "balloon", "cache_monitor"]), resolve(["backing"])):
        source = CountingReplay(recorded)
        Collector(Connection("replay:///", lambda _uri, source=source: source), groups=groups).collect()
        flags[groups] = {flags for _stats, flags in source.calls if not flags & 64}  # 64: the no-domain probe
    assert list(flags.values()) == [{0}, {STATS_BACKING}]


class NoKvmStats(ReplayConnection):
    """A daemon older than libvirt 8.9: the vm group does not exist (error 74 with ENFORCE_STATS)."""

    def getAllDomainStats(self, stats: int, flags: int):  # noqa: N802 - libvirt's API
        if stats & STATS_VM and flags & STATS_ENFORCE:
            raise UnsupportedError()
        return super().getAllDomainStats(stats, flags)


class UnsupportedError(Exception):
    def get_error_code(self) -> int:
        return 74


def test_a_group_the_daemon_lacks_is_one_warning_naming_the_version_then_nothing(recorded):
    source = NoKvmStats(recorded)
    collector = Collector(Connection("replay:///", lambda _uri: source), groups=resolve(["kvm", "vcpu"]))
    with log_lines() as lines:
        for _ in range(3):
            collector.collect()
    assert lines == [
        "W! --collect kvm: libvirt on replay:/// does not support it (it needs libvirt 8.9.0 or later and a driver "
        "that offers it); not collected"
    ]
    assert all(not stats & STATS_VM for stats, flags in source.calls)


@pytest.mark.parametrize(
    "collect,warned",
    [(["all"], []), (["all", "kvm"], ["kvm"]), (["kvm", "vcpu"], ["kvm"])],
    ids=["all-alone", "all-and-named", "named"],
)
def test_a_group_only_all_asked_for_is_left_out_quietly_where_the_daemon_lacks_it(recorded, collect, warned):
    args = [arg for name in collect for arg in ("--collect", name)]
    result = runner().invoke(main, [*args, "--once"], obj={"opener": lambda _uri: NoKvmStats(recorded)})
    assert result.exit_code == 0
    assert [line.split()[2] for line in result.stderr.splitlines() if "does not support it" in line] == [
        f"{name}:" for name in warned
    ]


def test_each_vcpu_gets_its_state_times_pcpu_and_affinity_from_the_pinning(recorded):
    vcpus = only(points_of(domain_named(recorded[0], "ktgroups-"), recorded[0]), "vm_vcpus")
    assert [dict(p.tags)["vcpu"] for p in vcpus] == ["0", "1"]
    assert [(p.fields["pcpu"], p.fields["affinity"]) for p in vcpus] == [(0, "0"), (1, "1")]
    assert {"state", "time_ns", "wait_ns", "delay_ns"} <= set(vcpus[0].fields)


def test_kvm_counters_keep_bare_names_and_instant_ones_their_suffix(recorded):
    points = points_of(domain_named(recorded[0], "ktkvm-"), recorded[0])
    (totals,) = only(points, "vm_totals")
    (vcpu,) = only(points, "vm_vcpus")
    assert isinstance(totals.fields["kvm_mmu_pte_write"], int) and "kvm_pages_4k_cur" in totals.fields
    assert "kvm_max_mmu_rmap_size_max" in totals.fields
    assert vcpu.fields["kvm_exits"] > 0 and vcpu.fields["kvm_blocking_cur"] in (True, False)


def test_each_of_eleven_vcpus_gets_its_own_kvm_counters_and_no_other_vcpus(recorded):
    domain = domain_named(recorded[0], "ktkvm-")
    own = {k[len("vcpu.0.") :]: v for k, v in domain.stats.items() if k.startswith("vcpu.0.")}
    stats = dict(domain.stats, **{"vcpu.current": 11, "vcpu.maximum": 11})
    for n in range(11):  # vcpu.1. is a prefix of vcpu.10.'s keys as text, not as libvirt's numbering
        stats.update({f"vcpu.{n}.{key}": value for key, value in own.items()})
        stats[f"vcpu.{n}.exits.sum"] = 1000 + n
    points = points_of(dataclasses.replace(domain, stats=stats), recorded[0], groups=resolve(["kvm", "vcpu"]))
    vcpus = only(points, "vm_vcpus")
    assert [p.fields["kvm_exits"] for p in vcpus] == [1000 + n for n in range(11)]
    kvm_names = [sorted(name for name in p.fields if name.startswith("kvm_")) for p in vcpus]
    assert kvm_names == [kvm_names[0]] * 11 and len(kvm_names[0]) == len([k for k in own if k.endswith(".sum")]) + 2


def test_kvm_counters_go_on_vm_vcpus_only_when_vcpu_is_on_too(recorded):
    points = points_of(domain_named(recorded[0], "ktkvm-"), recorded[0], groups=resolve(["kvm"]))
    assert not only(points, "vm_vcpus") and "kvm_exits" not in only(points, "vm_totals")[0].fields


def test_an_io_limit_set_with_blkdeviotune_shows_on_that_disk_only(recorded):
    devices = only(points_of(domain_named(recorded[0], "ktgroups-"), recorded[0]), "vm_devices")
    limits = {dict(p.tags)["device"]: {k: v for k, v in p.fields.items() if k.startswith("limit_")} for p in devices}
    assert limits["vdb"]["limit_total_iops_per_s"] == 500 and limits["vdb"]["limit_read_bytes_per_s"] == 1048576
    assert not any(k.startswith("limit_") and k != "limit_group" for k in limits["vda"])


def test_a_dump_in_progress_shows_its_progress_between_cycles(recorded):
    processed = []
    for snapshot in recorded:
        (job,) = [p for p in points_of(domain_named(snapshot, "ktgroups-"), snapshot) if p.measurement == "vm_jobs"]
        assert dict(job.tags)["operation"] == "dump" and job.fields["completed"] is False
        processed.append(job.fields["data_processed_bytes"])
    assert processed == sorted(processed) and processed[0] < processed[-1]


def test_a_completed_job_is_reported_once(recorded):
    finished = {"type": 3, "operation": 8, "time_elapsed": 368, "data_total": 101720064, "data_processed": 63206002}
    domain = domain_named(recorded[0], "ktgroups-")
    snapshots = [
        dataclasses.replace(
            s, domains=(dataclasses.replace(domain, calls={**domain.calls, "completed_job": finished}),)
        )
        for s in recorded
    ]
    source = ReplayConnection(snapshots)
    pipeline_groups = resolve(["jobs"])
    collector = Collector(Connection("replay:///", lambda _uri: source), groups=pipeline_groups)
    history: dict = {}
    completed = []
    for _ in range(3):
        points, history = shape_snapshot(collector.collect(), history, groups=pipeline_groups)
        completed.append([p.fields["time_elapsed_ms"] for p in only(points, "vm_jobs") if p.fields["completed"]])
    assert completed == [[368], [], []]


def test_the_next_job_that_completes_is_reported_too(recorded):
    domain = domain_named(recorded[0], "ktgroups-")
    jobs = ({"type": 3, "operation": 8, "time_elapsed": 368}, {"type": 3, "operation": 2, "time_elapsed": 90})
    history: dict = {}
    completed = []
    for job in (jobs[0], jobs[0], jobs[1], jobs[1]):
        snapshot = dataclasses.replace(
            recorded[0], domains=(dataclasses.replace(domain, calls={"completed_job": job}),), hosts=()
        )
        points, history = shape_snapshot(snapshot, history, groups=resolve(["jobs"]))
        completed.append([dict(p.tags)["operation"] for p in only(points, "vm_jobs") if p.fields["completed"]])
    assert completed == [["dump"], [], ["save"], []]


def test_iothreads_are_one_point_each_tagged_with_their_id(recorded):
    threads = only(points_of(domain_named(recorded[0], "ktgroups-"), recorded[0]), "vm_iothreads")
    assert [dict(p.tags)["iothread"] for p in threads] == ["1", "2"]
    assert threads[0].fields == {"poll_max_ns": 32768, "poll_grow": 0, "poll_shrink": 0}


def test_libvirt_12_adds_each_iothreads_poll_weight():
    sid = load_snapshots("sid-stats.json")  # tests/record_snapshots.py sid-stats: libvirt 12.8, QEMU 11.1
    domain = domain_named(sid[0], "ktsidgr-")
    threads = only(points_of(domain, sid[0], groups=resolve(["iothread"])), "vm_iothreads")
    assert [(dict(p.tags)["iothread"], p.fields) for p in threads] == [
        (str(n), {"poll_max_ns": 32768, "poll_grow": 2, "poll_shrink": 2, "poll_weight": 3}) for n in (1, 2)
    ]
    assert domain.stats["iothread.1.poll-weight"] == 3  # QEMU's default shift: the newest interval counts 1/8


def test_perf_events_become_perf_fields_from_the_documented_keys(recorded):
    # Not verified on live hardware: perf events cannot be enabled in this VM (virsh perf --enable fails).
    domain = domain_named(recorded[0], "ktgroups-")
    stats = {**domain.stats, "perf.cpu_cycles": 1200000, "perf.instructions": 900000, "perf.cache_misses": 4000}
    (totals,) = only(points_of(dataclasses.replace(domain, stats=stats), recorded[0]), "vm_totals")
    assert {k: v for k, v in totals.fields.items() if k.startswith("perf_")} == {
        "perf_cpu_cycles": 1200000,
        "perf_instructions": 900000,
        "perf_cache_misses": 4000,
    }


def test_memory_bandwidth_is_one_point_per_monitor_and_node_from_the_documented_keys(recorded):
    # Not verified on live hardware: the lab has no resctrl (Intel RDT MBM).
    domain = domain_named(recorded[0], "ktgroups-")
    documented: Dict[str, Any] = {
        "memory.bandwidth.monitor.count": 1,
        "memory.bandwidth.monitor.0.name": "vcpus_1",
        "memory.bandwidth.monitor.0.vcpus": "1",
        "memory.bandwidth.monitor.0.node.count": 2,
        "memory.bandwidth.monitor.0.node.0.id": 0,
        "memory.bandwidth.monitor.0.node.0.bytes.local": 4818688,
        "memory.bandwidth.monitor.0.node.0.bytes.total": 5054464,
        "memory.bandwidth.monitor.0.node.1.id": 1,
        "memory.bandwidth.monitor.0.node.1.bytes.local": 0,
        "memory.bandwidth.monitor.0.node.1.bytes.total": 1048576,
    }
    points = points_of(dataclasses.replace(domain, stats={**domain.stats, **documented}), recorded[0])
    bandwidth = only(points, "vm_memory_bandwidth")
    assert [(dict(p.tags)["monitor"], dict(p.tags)["node"], p.fields) for p in bandwidth] == [
        ("vcpus_1", "0", {"local_bytes": 4818688, "total_bytes": 5054464}),
        ("vcpus_1", "1", {"local_bytes": 0, "total_bytes": 1048576}),
    ]


def test_dirtyrate_shows_only_once_a_calculation_has_run(recorded):
    domain = domain_named(recorded[0], "ktgroups-")
    (never,) = only(points_of(domain, recorded[0]), "vm_totals")
    assert not any(k.startswith("dirtyrate_") for k in never.fields)  # recorded: calc_status 0
    measured = {**domain.stats, "dirtyrate.calc_status": 2, "dirtyrate.megabytes_per_second": 12}
    (totals,) = only(points_of(dataclasses.replace(domain, stats=measured), recorded[0]), "vm_totals")
    assert totals.fields["dirtyrate_calc_status"] == 2 and totals.fields["dirtyrate_mib_per_s"] == 12


def test_the_host_point_counts_the_batch_and_reports_the_collectors_own_health(recorded):
    points, _ = shape_snapshot(recorded[0], {}, groups=resolve(["host"]), cycle_ns=1234)
    (host,) = only(points, "vm_host")
    fields = host.fields
    assert host.tags == () and fields["domains"] == 2 and fields["domains_running"] == 2
    assert fields["vcpus_allocated"] == 3 and fields["vcpu_overcommit"] == 3 / fields["cpus"]
    assert fields["memory_total_bytes"] > fields["memory_free_bytes"] > 0
    assert fields["libvirt_version"] == "9.0.0" and fields["cycle_ns"] == 1234
    assert fields["nowait_fallback"] is False and fields["domains_not_responding"] == 0 and fields["collect_ns"] > 0
    assert "memory_available_bytes" not in fields  # libvirt 9.0 reports total, free, buffers and cached only


@pytest.mark.parametrize(
    "snapshot_file", ["lab-groups.json", "lab-backing.json", "sid-stats.json", "trixie-groups.json"]
)
def test_the_overcommit_ratios_are_the_exact_quotients_not_rounded(snapshot_file):
    for snapshot in load_snapshots(snapshot_file):
        points, _ = shape_snapshot(snapshot, {}, groups=resolve(["host"]))
        (host,) = only(points, "vm_host")
        fields = host.fields
        assert fields["memory_overcommit"] == fields["memory_allocated_bytes"] / fields["memory_total_bytes"]
        assert fields["vcpu_overcommit"] == fields["vcpus_allocated"] / fields["cpus"]
        assert fields["memory_overcommit"] != round(fields["memory_overcommit"], 3)  # 100 MiB guests on 24 GiB


def test_a_daemon_that_reports_the_hosts_available_memory_gets_it_on_the_host_point():
    sid = load_snapshots("sid-stats.json")  # libvirt 12.8's virNodeGetMemoryStats has "available" (KiB)
    points, _ = shape_snapshot(sid[0], {}, groups=resolve(["host"]))
    (host,) = only(points, "vm_host")
    assert host.fields["memory_available_bytes"] == sid[0].hosts[0]["memory"]["available"] * 1024
    assert host.fields["memory_free_bytes"] < host.fields["memory_available_bytes"] < host.fields["memory_total_bytes"]
    assert host.fields["libvirt_version"] == "12.8.0"


def test_a_storage_pool_is_one_point_tagged_with_its_name(recorded):
    points, _ = shape_snapshot(recorded[0], {}, groups=resolve(["pools"]))
    (pool,) = only(points, "vm_storage_pools")
    assert dict(pool.tags) == {"pool": "ktgroups-pool"} and pool.fields["state"] == "running"
    assert pool.fields["volumes"] == 1 and pool.fields["capacity_bytes"] >= pool.fields["allocation_bytes"]


@pytest.fixture(scope="module")
def lifecycle() -> List:
    """One chain guest, a cycle each: running, vdb re-plugged, paused, shut off, started (record_snapshots.py)."""
    return load_snapshots("lab-lifecycle.json")


def test_an_inactive_storage_pool_has_its_state_and_no_sizes_and_a_running_one_has_them(lifecycle):
    for snapshot in lifecycle:
        points, _ = shape_snapshot(snapshot, {}, groups=resolve(["pools"]))
        pools = {dict(p.tags)["pool"]: p.fields for p in only(points, "vm_storage_pools")}
        assert pools["ktlife-idle"] == {"state": "inactive"}  # libvirt answered 0 for each size
        running = pools["ktlife-pool"]
        assert running["state"] == "running" and running["volumes"] == 1
        assert running["capacity_bytes"] >= running["available_bytes"] > 0 and running["allocation_bytes"] > 0


@pytest.mark.parametrize("state", [0, 1, 4])  # inactive, building, inaccessible: libvirt knows no sizes
def test_a_pool_in_a_state_without_sizes_leaves_them_out_whatever_libvirt_answered(lifecycle, state):
    host = dict(lifecycle[0].hosts[0])
    host["pools"] = [{**pool, "state": state} for pool in host["pools"]]
    snapshot = dataclasses.replace(lifecycle[0], hosts=(host,))
    points, _ = shape_snapshot(snapshot, {}, groups=resolve(["pools"]))
    for pool in only(points, "vm_storage_pools"):
        assert not any(name in pool.fields for name in ("capacity_bytes", "allocation_bytes", "available_bytes"))


def chain_tags(snapshot: Any) -> Dict[str, Any]:
    """Per image path: its vm_block_chain tags and fields."""
    points, _ = shape_snapshot(snapshot, {}, groups=resolve(["backing"]))
    return {p.fields["path"]: (p.tags, p.fields) for p in only(points, "vm_block_chain")}


def test_each_chain_image_keeps_its_series_across_replug_pause_stop_and_start(lifecycle):
    running, replugged, paused, shut_off, started = (chain_tags(snapshot) for snapshot in lifecycle)
    indexes = {path: fields.get("index") for path, (_, fields) in running.items()}
    assert indexes != {path: fields.get("index") for path, (_, fields) in replugged.items()}  # libvirt renumbered
    for cycle in (replugged, paused, started):
        assert {path: tags for path, (tags, _) in cycle.items()} == {path: tags for path, (tags, _) in running.items()}
    assert shut_off and all(tags == running[path][0] for path, (tags, _) in shut_off.items())
    assert not any("index" in fields for _, fields in shut_off.values())  # libvirt numbers no image of a stopped VM
    assert sorted(dict(tags)["depth"] for tags, _ in running.values()) == ["0", "0", "1"]


def test_record_saves_the_groups_calls_and_a_file_without_them_stays_as_it_was(recorded):
    assert '"calls"' in snapshot_to_json(recorded) and '"hosts"' in snapshot_to_json(recorded)
    plain = load_snapshots("lab-running.json")
    assert '"calls"' not in snapshot_to_json(plain) and '"hosts"' not in snapshot_to_json(plain)


class HangingReplay(ReplayConnection):
    """The recorded lab, where one domain's vcpus() call blocks until released: its QEMU hangs."""

    def __init__(self, snapshots: List, hangs: str, release: threading.Event) -> None:
        super().__init__(snapshots)
        self._hangs, self._release = hangs, release

    def getAllDomainStats(self, stats: int, flags: int):  # noqa: N802 - libvirt's API
        result = super().getAllDomainStats(stats, flags)
        return [(HangingDomain(dom, self._release) if dom.name() == self._hangs else dom, s) for dom, s in result]


class HangingDomain:
    def __init__(self, dom: Any, release: threading.Event) -> None:
        self._dom, self._release = dom, release

    def vcpus(self) -> tuple:
        self._release.wait(30)
        return self._dom.vcpus()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dom, name)


def test_a_guest_whose_call_hangs_costs_the_next_cycles_only_its_own_group_points(recorded):
    release = threading.Event()
    source = HangingReplay(recorded, "ktkvm-01", release)
    collector = Collector(Connection("replay:///", lambda _uri: source), groups=resolve(["vcpu"]), timeout_s=0.05)
    try:
        collector.collect()  # the hung guest comes first: its call and the rest of this cycle's miss the deadline
        later = [collector.collect() for _ in range(2)]
    finally:
        release.set()
    for snapshot in later:
        calls = {d.name: d.calls for d in snapshot.domains}
        assert calls["ktkvm-01"] == {} and calls["ktgroups-01"]["pcpus"] == {"0": 0, "1": 1}


@pytest.fixture(scope="module")
def chain() -> List:
    return load_snapshots("lab-backing.json")


def without_backing_images(domain: DomainSample) -> DomainSample:
    """The domain as a call without BACKING reads it: each disk's first block entry only, renumbered."""
    stats = {key: value for key, value in domain.stats.items() if not key.startswith("block.")}
    names: List[str] = []
    for i in range(domain.stats["block.count"]):
        name = domain.stats[f"block.{i}.name"]
        if name in names:
            continue
        prefix = f"block.{i}."
        stats.update(
            {f"block.{len(names)}.{k[len(prefix) :]}": v for k, v in domain.stats.items() if k.startswith(prefix)}
        )
        names.append(name)
    stats["block.count"] = len(names)
    return dataclasses.replace(domain, stats=stats)


def test_a_backing_chain_read_with_backing_leaves_the_default_measurements_as_without_it(chain):
    for snapshot in chain:
        (domain,) = snapshot.domains
        assert domain.stats["block.count"] == 3  # vda, vdb's overlay, vdb's backing file
        plain = dataclasses.replace(snapshot, domains=(without_backing_images(domain),))
        with_chain, _ = shape_snapshot(snapshot, {})
        without, _ = shape_snapshot(plain, {})
        assert with_chain == without
        assert [dict(p.tags)["device"] for p in only(with_chain, "vm_devices") if dict(p.tags)["type"] == "disk"] == [
            "vda",
            "vdb",
        ]


def test_backing_gives_one_point_per_image_with_its_path_and_the_threshold_on_the_overlay(chain):
    points = points_of(chain[0].domains[0], chain[0], groups=resolve(["backing"]))
    images = [
        (dict(p.tags)["device"], dict(p.tags)["depth"], p.fields["path"].rsplit("/", 1)[1])
        for p in only(points, "vm_block_chain")
    ]
    assert images == [("vda", "0", "vda.img"), ("vdb", "0", "vdb.qcow2"), ("vdb", "1", "vdb.img")]
    vda, overlay, base = only(points, "vm_block_chain")
    assert overlay.fields["threshold_bytes"] == 64 * 1024 * 1024 and "threshold_bytes" not in vda.fields
    assert len({p.fields["index"] for p in (vda, overlay, base)}) == 3  # libvirt's index (vdb[3]), a field
    assert overlay.fields["write_requests"] > 0 and not any(k.startswith(("read_", "write_")) for k in base.fields)
    assert base.fields["capacity_bytes"] == overlay.fields["capacity_bytes"] == 8 * 1024 * 1024


def test_balloon_adds_the_stats_update_time_and_huge_page_allocations_where_the_guest_reports_them(chain, recorded):
    domain = chain[0].domains[0]
    (totals,) = only(points_of(domain, chain[0], groups=resolve(["balloon"])), "vm_totals")
    assert totals.fields["memory_stats_updated_s"] == domain.stats["balloon.last-update"] > 1_700_000_000
    assert (totals.fields["memory_hugetlb_pgalloc"], totals.fields["memory_hugetlb_pgfail"]) == (0, 0)
    (plain,) = only(points_of(domain, chain[0], groups=()), "vm_totals")
    assert not any(name in plain.fields for name in ("memory_stats_updated_s", "memory_hugetlb_pgalloc"))
    never = domain_named(recorded[0], "ktkvm-")  # never booted far enough to send balloon stats
    assert never.stats["balloon.last-update"] == 0
    (totals,) = only(points_of(never, recorded[0], groups=resolve(["balloon"])), "vm_totals")
    assert "memory_stats_updated_s" not in totals.fields


def test_the_cache_monitor_is_one_point_per_monitor_and_bank_from_the_documented_keys(recorded):
    # Not verified on live hardware: the lab has no resctrl (Intel RDT CMT); it reports cpu.cache.monitor.count 0.
    domain = domain_named(recorded[0], "ktgroups-")
    assert domain.stats["cpu.cache.monitor.count"] == 0
    assert not only(points_of(domain, recorded[0], groups=resolve(["cache_monitor"])), "vm_cache_monitor")
    documented: Dict[str, Any] = {
        "cpu.cache.monitor.count": 2,
        "cpu.cache.monitor.0.name": "vcpus_0",
        "cpu.cache.monitor.0.vcpus": "0",
        "cpu.cache.monitor.0.bank.count": 2,
        "cpu.cache.monitor.0.bank.0.id": 0,
        "cpu.cache.monitor.0.bank.0.bytes": 5406720,
        "cpu.cache.monitor.0.bank.1.id": 1,
        "cpu.cache.monitor.0.bank.1.bytes": 0,
        "cpu.cache.monitor.1.name": "vcpus_1",
        "cpu.cache.monitor.1.vcpus": "1",
        "cpu.cache.monitor.1.bank.count": 1,
        "cpu.cache.monitor.1.bank.0.id": 0,
        "cpu.cache.monitor.1.bank.0.bytes": 1048576,
    }
    points = points_of(dataclasses.replace(domain, stats={**domain.stats, **documented}), recorded[0])
    assert [
        (dict(p.tags)["monitor"], dict(p.tags)["vcpus"], dict(p.tags)["bank"], p.fields)
        for p in only(points, "vm_cache_monitor")
    ] == [
        ("vcpus_0", "0", "0", {"bytes": 5406720}),
        ("vcpus_0", "0", "1", {"bytes": 0}),
        ("vcpus_1", "1", "0", {"bytes": 1048576}),
    ]


def test_doctor_says_for_the_new_groups_whether_the_domains_have_them_and_how_to_enable_the_cache_monitor(chain):
    result = runner().invoke(
        main, ["--collect", "backing", "doctor"], obj={"opener": lambda _: ReplayConnection(chain)}
    )
    lines = [line for line in result.stdout.splitlines() if " group " in f" {line[6:]}"]
    assert (
        "ok    group backing: on (--collect); supported (needs libvirt 1.2.12, found 9.0.0); "
        "enabled on 1 of 1 domain(s); no extra call (a flag on the bulk call)" in lines
    )
    assert (
        "ok    group balloon: off; supported (needs libvirt 2.1.0, found 9.0.0); enabled on 1 of 1 domain(s); "
        "no extra call" in lines
    )
    assert (
        "ok    group cache_monitor: off; supported (needs libvirt 4.10.0, found 9.0.0); enabled on 0 of 1 domain(s) "
        "(to enable: <cputune><cachetune> "
        "with a <monitor> in the domain XML (resctrl, Intel RDT CMT)); no extra call" in lines
    )
