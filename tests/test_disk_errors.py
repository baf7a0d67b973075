"""``--collect disk_errors``: which domains are asked, and what a disk in an error state shows.

lab-states.json holds a running, a paused and a shut-off guest; lab-anchors.json a guest that QEMU paused
when its vdb image ran out of space (tests/record_snapshots.py anchors), recorded with what
virDomainGetDiskErrors answered for it.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, List

import pytest

from kvm_telegraf.collect import Collector
from kvm_telegraf.connection import Connection
from kvm_telegraf.group_calls import GroupCalls
from kvm_telegraf.groups import resolve
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import Snapshot
from tests.conftest import load_snapshots
from tests.replay import ReplayConnection, ReplayDomain

ERROR_NAMES = {0: "none", 1: "unspecified", 2: "no space"}


class AskedDomain(ReplayDomain):
    """A replayed domain that notes which group calls it is asked."""

    def __init__(self, domain: ReplayDomain, asked: Counter) -> None:
        super().__init__(domain._sample)
        self._asked = asked

    def diskErrors(self, flags: int):  # noqa: N802 - libvirt's API
        self._asked["diskErrors", self.name()] += 1
        return super().diskErrors(flags)

    def jobStats(self, flags: int):  # noqa: N802 - libvirt's API
        self._asked["jobStats", self.name()] += 1
        return super().jobStats(flags)

    def vcpus(self):
        self._asked["vcpus", self.name()] += 1
        return super().vcpus()


class AskedReplay(ReplayConnection):
    def __init__(self, snapshots: List[Snapshot]) -> None:
        super().__init__(snapshots)
        self.asked: Counter = Counter()

    def getAllDomainStats(self, stats: int, flags: int) -> List[Any]:  # noqa: N802 - libvirt's API
        return [(AskedDomain(dom, self.asked), st) for dom, st in super().getAllDomainStats(stats, flags)]


def test_every_group_asks_running_and_paused_domains_and_none_asks_a_shut_off_one():
    source = AskedReplay(load_snapshots("lab-states.json"))
    groups = resolve(["disk_errors", "jobs", "vcpu"])
    collector = Collector(Connection("replay:///", lambda _uri: source), groups=groups)
    collector.collect()
    assert source.asked == Counter(
        {
            **{("diskErrors", name): 1 for name in ("ktlab-01", "ktlab-02")},
            **{("jobStats", name): 2 for name in ("ktlab-01", "ktlab-02")},  # the job running, the one completed
            **{("vcpus", name): 1 for name in ("ktlab-01", "ktlab-02")},
        }
    )  # ktlab-02 is paused: its QEMU answers; ktlab-03 is shut off: there is no QEMU to ask


@pytest.mark.parametrize("silent", [("ktlab-01",), ("ktlab-02",), ("ktlab-01", "ktlab-02")])
def test_only_a_domain_whose_qemu_did_not_answer_this_cycle_is_skipped_running_or_paused(silent):
    source = AskedReplay(load_snapshots("lab-states.json"))
    calls = GroupCalls(resolve(["jobs", "vcpu"]), 60.0, lambda: Connection("replay:///", lambda _uri: source))
    records = source.getAllDomainStats(0, 0)
    calls.run(source, records, {}, silent, time.monotonic() + 5)
    asked = {name for _, name in source.asked}
    assert asked == {"ktlab-01", "ktlab-02"} - set(silent)


DISK_ERRORS = resolve(["disk_errors"])


def io_errors(name: str, groups=DISK_ERRORS) -> dict:
    points, _ = shape_snapshot(load_snapshots(name)[-1], {}, groups=groups)
    return {
        (dict(p.tags)["vm"], dict(p.tags)["device"]): p.fields.get("io_error")
        for p in points
        if p.measurement == "vm_devices" and dict(p.tags)["type"] == "disk"
    }


def test_the_guest_paused_by_its_full_disk_shows_no_space_on_that_disk_only():
    errors = {key: value for key, value in io_errors("lab-anchors.json").items() if key[0].startswith("ktancf-")}
    assert {device: ERROR_NAMES[code] for (_, device), code in errors.items()} == {"vda": "none", "vdb": "no space"}


def test_a_domain_libvirt_was_not_asked_about_has_no_io_error_field_rather_than_zero():
    errors = io_errors("lab-anchors.json")
    assert {code for (vm, _), code in errors.items() if vm.startswith("ktanch-")} == {None}  # shut off: not asked
    assert {code for (vm, _), code in errors.items() if vm.startswith("ktanci-")} == {0}  # running, no error


def test_without_the_group_a_recorded_error_adds_no_field():
    assert set(io_errors("lab-anchors.json", groups=()).values()) == {None}
