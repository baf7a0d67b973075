"""``--collect energy``: per-VM energy from resctrl's PERF_PKG_MON (Linux 7.0, libvirt 12.4).

Not verified on live hardware: no host here has PERF_PKG_MON (the sid flavour's libvirt 12.8 reports no
cpu.energy.monitor.* for its guests). The keys are the ones libvirt's headers name
(VIR_DOMAIN_STATS_CPU_ENERGY_MONITOR_COUNT, _PREFIX, _SUFFIX_NAME, _SUFFIX_VCPUS, _SUFFIX_PKG_COUNT,
_SUFFIX_PKG_PREFIX, _SUFFIX_PKG_SUFFIX_ID in libvirt-python 12.8), with the per-package features its
qemu driver reads (``cpu.energy.monitor.%zu.pkg.%zu.%s`` for core_energy and activity, doubles), added to
a domain recorded on the sid flavour.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List

import pytest

from kvm_telegraf.cli import main
from kvm_telegraf.groups import resolve
from kvm_telegraf.points import Point
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import Snapshot
from tests.conftest import load_snapshots
from tests.harness.cli import runner
from tests.replay import ReplayConnection

DOCUMENTED: Dict[str, Any] = {
    "cpu.energy.monitor.count": 2,
    "cpu.energy.monitor.0.name": "vcpus_0-1",
    "cpu.energy.monitor.0.vcpus": "0-1",
    "cpu.energy.monitor.0.pkg.count": 2,
    "cpu.energy.monitor.0.pkg.0.id": 0,
    "cpu.energy.monitor.0.pkg.0.core_energy": 812.25,
    "cpu.energy.monitor.0.pkg.0.activity": 0.031,
    "cpu.energy.monitor.0.pkg.1.id": 1,
    "cpu.energy.monitor.0.pkg.1.core_energy": 0.0,
    "cpu.energy.monitor.0.pkg.1.activity": 0.0,
    "cpu.energy.monitor.1.name": "vcpus_2",
    "cpu.energy.monitor.1.vcpus": "2",
    "cpu.energy.monitor.1.pkg.count": 1,
    "cpu.energy.monitor.1.pkg.0.id": 1,
    "cpu.energy.monitor.1.pkg.0.core_energy": 17,
}


@pytest.fixture(scope="module")
def sid() -> List[Snapshot]:
    return load_snapshots("sid-stats.json")


def energy_points(snapshot: Snapshot, stats: Dict[str, Any]) -> List[Point]:
    domain = dataclasses.replace(snapshot.domains[0], stats={**snapshot.domains[0].stats, **stats})
    points, _ = shape_snapshot(dataclasses.replace(snapshot, domains=(domain,)), {}, groups=resolve(["energy"]))
    return [p for p in points if p.measurement == "vm_energy"]


def test_the_recorded_sid_guests_have_no_energy_monitor_and_get_no_point(sid):
    assert not any(key.startswith("cpu.energy.") for d in sid[0].domains for key in d.stats)
    assert energy_points(sid[0], {}) == []


def test_each_monitor_and_package_is_one_point_with_joules_and_farads_as_floats(sid):
    points = energy_points(sid[0], DOCUMENTED)
    assert [
        (dict(p.tags)["monitor"], dict(p.tags)["vcpus"], dict(p.tags)["package"], dict(p.fields)) for p in points
    ] == [
        ("vcpus_0-1", "0-1", "0", {"core_energy_joules": 812.25, "activity_farads": 0.031}),
        ("vcpus_0-1", "0-1", "1", {"core_energy_joules": 0.0, "activity_farads": 0.0}),
        ("vcpus_2", "2", "1", {"core_energy_joules": 17.0}),
    ]
    assert dict(points[0].tags)["vm"] == sid[0].domains[0].name


def test_a_negative_or_non_numeric_reading_leaves_that_field_out(sid):
    broken = {**DOCUMENTED, "cpu.energy.monitor.0.pkg.0.core_energy": -1.0, "cpu.energy.monitor.0.pkg.0.activity": "x"}
    points = energy_points(sid[0], broken)
    assert [dict(p.tags)["package"] for p in points if dict(p.tags)["monitor"] == "vcpus_0-1"] == ["1"]


def test_doctor_says_what_the_host_and_the_domain_need():
    result = runner().invoke(
        main,
        ["--collect", "energy", "doctor"],
        obj={"opener": lambda _: ReplayConnection(load_snapshots("sid-stats.json"))},
    )
    (line,) = [line for line in result.stdout.splitlines() if "group energy:" in line]
    assert line.startswith("warn  group energy: on (--collect); supported (needs libvirt 12.4.0, found 12.8.0); ")
    assert "enabled on 0 of 2 domain(s) (to enable: <cputune><energytune vcpus='0-1'>" in line
    assert "Linux 7.0 or later" in line and "/sys/fs/resctrl/info/PERF_PKG_MON" in line


def test_with_collect_all_doctor_notes_how_to_enable_it_without_a_warning():
    result = runner().invoke(
        main,
        ["--collect", "all", "doctor"],
        obj={"opener": lambda _: ReplayConnection(load_snapshots("sid-stats.json"))},
    )
    (line,) = [line for line in result.stdout.splitlines() if "group energy:" in line]
    assert line.startswith("ok    group energy: on (--collect); supported (needs libvirt 12.4.0, found 12.8.0); ")
    assert "(to enable: <cputune><energytune" in line and "adds nothing" not in line
