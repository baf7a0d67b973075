"""The groups that now report all libvirt gives (issue #25 sections 2, 4, 7): jobs, dirtyrate, host.

lab-groups.json holds a live dump in progress; lab-anchors.json another, read until it finished, a page-sampling
dirty-rate calculation, a dirty-ring one on a type='kvm' guest, and the host's CPU and memory statistics
(tests/record_snapshots.py anchors).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List

import pytest

from kvm_telegraf.groups import resolve
from kvm_telegraf.groups.jobs import JOB_FIELDS
from kvm_telegraf.points import Point
from kvm_telegraf.shape import shape_snapshot
from tests.conftest import load_snapshots

JOB_KEYS_NOT_NUMBERS = {"type", "operation", "success", "errmsg"}


def recorded_jobs(name: str) -> List[Dict[str, Any]]:
    return [
        job
        for snapshot in load_snapshots(name)
        for domain in snapshot.domains
        for job in (domain.calls.get("job"), domain.calls.get("completed_job"))
        if job
    ]


def shaped(name: str, groups) -> List[Point]:
    points: List[Point] = []
    history: Dict = {}
    for snapshot in load_snapshots(name):
        cycle, history = shape_snapshot(snapshot, history, groups=groups)
        points += cycle
    return points


@pytest.mark.parametrize("recording", ["lab-groups.json", "lab-anchors.json"])
def test_every_number_a_recorded_job_reports_becomes_a_field(recording):
    jobs = recorded_jobs(recording)
    assert jobs
    mapped = {key for _, key in JOB_FIELDS}
    assert {key for job in jobs for key in job} - JOB_KEYS_NOT_NUMBERS - mapped == set()
    points = [p for p in shaped(recording, resolve(["jobs"])) if p.measurement == "vm_jobs"]
    for point in points:
        for name, value in point.fields.items():
            assert name in ("type", "completed", "success", "error") or isinstance(value, int), name


def test_a_dumps_page_counts_agree_with_its_bytes_and_its_page_size():
    for point in [p for p in shaped("lab-groups.json", resolve(["jobs"])) if p.measurement == "vm_jobs"]:
        fields = point.fields
        assert fields["memory_page_size_bytes"] == 4096
        assert fields["memory_normal_bytes"] == fields["memory_normal_pages"] * fields["memory_page_size_bytes"]
        assert fields["memory_processed_bytes"] <= fields["memory_total_bytes"]


def test_the_recorded_dump_is_reported_running_then_once_as_finished():
    jobs = [p.fields for p in shaped("lab-anchors.json", resolve(["jobs"])) if p.measurement == "vm_jobs"]
    running = [fields for fields in jobs if not fields["completed"]]
    (finished,) = [fields for fields in jobs if fields["completed"]]
    assert running and all(fields["type"] == "unbounded" for fields in running)
    assert finished["type"] == "completed" and finished["memory_remaining_bytes"] == 0
    assert "success" not in finished and "error" not in finished  # libvirt 9.0 gives neither for a dump
    assert finished["memory_processed_bytes"] >= running[-1]["memory_processed_bytes"]


def totals_of(name: str, prefix: str, groups) -> Dict[str, Any]:
    snapshot = load_snapshots(name)[-1]
    points, _ = shape_snapshot(snapshot, {}, groups=groups)
    (totals,) = [p for p in points if p.measurement == "vm_totals" and dict(p.tags)["vm"].startswith(prefix)]
    return totals.fields


def test_a_page_sampling_calculation_gives_its_mode_period_start_and_rate():
    fields = totals_of("lab-anchors.json", "ktanci-", resolve(["dirtyrate"]))
    dirty = {name: value for name, value in fields.items() if name.startswith("dirtyrate_")}
    assert set(dirty) == {
        "dirtyrate_calc_status",
        "dirtyrate_mib_per_s",
        "dirtyrate_calc_period_s",
        "dirtyrate_calc_start_s",
        "dirtyrate_calc_mode",
    }
    assert (dirty["dirtyrate_calc_status"], dirty["dirtyrate_calc_mode"], dirty["dirtyrate_calc_period_s"]) == (
        2,
        "page-sampling",
        1,
    )


def test_a_dirty_ring_calculation_gives_each_vcpu_its_rate_on_vm_vcpus_with_the_vcpu_group():
    snapshot = load_snapshots("lab-anchors.json")[-1]
    (ring,) = [d for d in snapshot.domains if d.name.startswith("ktancd-")]  # type='kvm', KVM's dirty ring on
    rates = {key: value for key, value in ring.stats.items() if key.startswith("dirtyrate.vcpu.")}
    assert ring.stats["dirtyrate.calc_mode"] == "dirty-ring" and rates
    alone = dataclasses.replace(snapshot, domains=(ring,), hosts=())
    points, _ = shape_snapshot(alone, {}, groups=resolve(["vcpu", "dirtyrate"]))
    per_vcpu = {dict(p.tags)["vcpu"]: p.fields["dirtyrate_mib_per_s"] for p in points if p.measurement == "vm_vcpus"}
    assert per_vcpu == {key.split(".")[2]: value for key, value in rates.items()}
    points, _ = shape_snapshot(alone, {}, groups=resolve(["vcpu"]))
    assert not [p for p in points if p.measurement == "vm_vcpus" and "dirtyrate_mib_per_s" in p.fields]


def test_vm_host_carries_the_hosts_cpu_times_and_its_buffers_and_page_cache():
    snapshot = load_snapshots("lab-anchors.json")[-1]
    (host,) = snapshot.hosts
    points, _ = shape_snapshot(snapshot, {}, groups=resolve(["host"]))
    (point,) = [p for p in points if p.measurement == "vm_host"]
    fields = point.fields
    assert (fields["cpu_user_ns"], fields["cpu_system_ns"], fields["cpu_idle_ns"], fields["cpu_iowait_ns"]) == (
        host["cpu"]["user"],
        host["cpu"]["kernel"],
        host["cpu"]["idle"],
        host["cpu"]["iowait"],
    )
    assert fields["memory_buffers_bytes"] == host["memory"]["buffers"] * 1024
    assert fields["memory_total_bytes"] > fields["memory_cached_bytes"] > 0


def test_a_host_call_recorded_before_the_cpu_times_shapes_without_them():
    points, _ = shape_snapshot(load_snapshots("lab-groups.json")[0], {}, groups=resolve(["host"]))
    (point,) = [p for p in points if p.measurement == "vm_host"]
    assert not [name for name in point.fields if name.startswith("cpu_")]
