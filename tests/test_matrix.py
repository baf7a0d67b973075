"""The e2e core on every libvirt of the matrix: Debian 11's 7.0, the host's 9.0, Debian 13's 11.3 and sid's 12.8.

Each test runs once per flavour (``daemon``, tests/harness/matrix.py), against that daemon's own guests and
checked against that daemon's own ``virsh``. On the host these run with the host's Python 3.11 and
python3-libvirt 9.0 as a remote client of each daemon; tests/test_matrix_trees.py runs this file again inside each
tree, on its own Python and libvirt-python.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
import subprocess
import sys
import time
from typing import Dict, Iterator, List

import pytest

from tests.harness.cli import KVM_TELEGRAF, Line, next_batch, parse_line
from tests.harness.execd import ExecdDriver
from tests.harness.faults import frozen
from tests.harness.matrix import INSIDE, Daemon, compatibility_row

pytestmark = pytest.mark.lab

KIB = 1024


def once(daemon: Daemon, *options: str) -> subprocess.CompletedProcess:
    argv = [KVM_TELEGRAF, "--once", "--timeout", "30s", *daemon.args(), *options]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def of(lines: List[Line], measurement: str, vm: str) -> List[Line]:
    return [line for line in lines if line[0] == measurement and line[1].get("vm") == vm]


def between(low: Dict[str, str], high: Dict[str, str], key: str, value: object) -> bool:
    return int(low[key]) <= int(value) <= int(high[key])  # type: ignore[arg-type]


def prefix_of(stats: Dict[str, str], group: str, name: str) -> str:
    """``block.1.`` for the disk (or ``net.0.`` for the tap) that libvirt calls *name* in this reading."""
    return next(
        k[: -len("name")] for k, v in stats.items() if k.startswith(group + ".") and k.endswith(".name") and v == name
    )


def test_every_guest_gets_the_four_measurements_with_counters_between_two_virsh_readings_and_gauges_equal(daemon):
    before = {name: daemon.domstats(name) for name in daemon.guests}
    done = once(daemon)
    after = {name: daemon.domstats(name) for name in daemon.guests}
    assert (done.returncode, done.stderr) == (0, "")
    lines = [parse_line(line) for line in done.stdout.splitlines()]
    for name in daemon.guests:
        low, high = before[name], after[name]
        (metrics,) = [fields for _, _, fields, _ in of(lines, "vm_metrics", name)]
        assert between(low, high, "cpu.time", metrics["cpu_time_ns"])
        assert metrics["vcpus"] == int(low["vcpu.current"]) == int(high["vcpu.current"])
        assert metrics["max_memory_bytes"] == int(low["balloon.maximum"]) * KIB
        assert len(of(lines, "vm_features", name)) == 1
        assert metrics["memory_bytes"] == int(low["balloon.current"]) * KIB == int(high["balloon.current"]) * KIB
        assert len(of(lines, "vm_totals", name)) == 1
        devices = of(lines, "vm_devices", name)
        assert sorted(tags["type"] for _, tags, _, _ in devices) == ["disk", "disk", "interface", "interface"]
        for _, tags, fields, _ in devices:
            if tags["type"] == "disk":
                key = prefix_of(low, "block", tags["device"])
                assert between(low, high, key + "rd.reqs", fields["read_requests"]), tags["device"]
                assert between(low, high, key + "wr.bytes", fields["write_bytes"]), tags["device"]
                assert fields["capacity_bytes"] == int(low[key + "capacity"]) == int(high[key + "capacity"])
            else:
                key = prefix_of(low, "net", fields["tap"].strip('"'))
                assert between(low, high, key + "rx.bytes", fields["rx_bytes"]), tags["device"]
                assert between(low, high, key + "tx.pkts", fields["tx_packets"]), tags["device"]


@contextlib.contextmanager
def paused(daemon: Daemon, name: str) -> Iterator[None]:
    daemon.virsh("suspend", name)
    try:
        yield
    finally:
        daemon.virsh("resume", name)


def test_allocation_bytes_is_what_virsh_domblkinfo_calls_allocation_on_every_disk(daemon):
    """libvirt >= 11 gives a raw disk no format node in QEMU, so the bulk stats' allocation is 0 there while
    virDomainGetBlockInfo still says how much is allocated. The guest is paused, and the reading is taken again
    when the host's filesystem moved the disk's allocation while it was read (writeback of the last writes)."""
    name = daemon.guests[0]

    def allocations() -> Dict[str, int]:
        return {disk: daemon.domblkinfo(name, disk)["Allocation"] for disk in ("vda", "vdb")}

    with paused(daemon, name):
        for _ in range(5):
            expected = allocations()
            done = once(daemon)
            if allocations() == expected:
                break
            time.sleep(1)
    assert done.returncode == 0, done.stderr
    lines = [parse_line(line) for line in done.stdout.splitlines()]
    disks = {tags["device"]: fields for _, tags, fields, _ in of(lines, "vm_devices", name)}
    assert {disk: disks[disk].get("allocation_bytes") for disk in expected} == expected
    assert all(allocation > 0 for allocation in expected.values()), "the guest has written to both disks"


def doctor_groups(text: str) -> Dict[str, str]:
    """``group NAME: ...`` lines of doctor: each group, ``supported`` or ``unsupported``."""
    found = {}
    for name, rest in re.findall(r"^\S+\s+group (\w+): (.*)$", text, re.M):
        found[name] = "unsupported" if "does not support" in rest else "supported" if "supported" in rest else rest
    return found


def test_doctor_names_the_daemons_libvirt_and_every_group_it_supports_and_a_run_warns_once_for_each_other(daemon):
    doctor = subprocess.run(
        [KVM_TELEGRAF, *daemon.args(), "--collect", "all", "doctor"], capture_output=True, text=True, timeout=120
    )
    assert "FAIL" not in doctor.stdout, doctor.stdout
    version = re.search(r"^ok\s+libvirt (\d+\.\d+)\.\d+, QEMU (\d+\.\d+)", doctor.stdout, re.M)
    assert version and version.groups() == (daemon.versions.libvirt, daemon.versions.qemu), doctor.stdout
    groups = doctor_groups(doctor.stdout)
    unsupported = sorted(name for name, state in groups.items() if state == "unsupported")
    assert set(groups.values()) <= {"supported", "unsupported"} and "vcpu" in groups, doctor.stdout
    row = compatibility_row(daemon.flavour)  # the table in docs/compatibility.md says what the tests see
    assert (row["libvirt"], row["QEMU"]) == version.groups()
    assert row["Groups the daemon lacks"] == (", ".join(unsupported) or "none")
    if INSIDE:
        assert row["Python"] == "{}.{}".format(*sys.version_info[:2]), "the tree's own Python runs this"
        assert row["click"] == importlib.metadata.version("click"), "and its own click"

    # Each group named on its own: one W! for each the daemon lacks (with ``all`` alone they are left out quietly).
    every = [arg for name in groups if name != "guest" for arg in ("--collect", name)]
    with ExecdDriver([KVM_TELEGRAF, *daemon.args(), *every]) as driver:
        batches = [next_batch(driver) for _ in range(3)]
        time.sleep(0.5)
        warnings = [message for level, message in driver.stderr if level in "WE"]
    named = sorted(re.match(r"--collect (\w+): libvirt on .* does not support it", w).group(1) for w in warnings)
    assert named == unsupported, warnings
    last = batches[-1]
    measurements = {m for m, _, _, _ in last}
    assert {"vm_metrics", "vm_features", "vm_devices", "vm_totals"} <= measurements
    produced = {"vcpu": "vm_vcpus", "iothread": "vm_iothreads", "host": "vm_host", "block_limits": None}
    for group, measurement in produced.items():
        if measurement and groups[group] == "supported":
            assert measurement in measurements, (group, sorted(measurements))
    iothreads = [t for m, t, _, _ in last if m == "vm_iothreads" and t["vm"] == daemon.guests[1]]
    assert len(iothreads) == (2 if groups["iothread"] == "supported" else 0)


def test_a_suspend_and_a_resume_between_two_ticks_are_both_in_the_next_batch(daemon):
    name = daemon.guests[0]
    with ExecdDriver([KVM_TELEGRAF, *daemon.args(), "--collect", "events"]) as driver:
        next_batch(driver)
        daemon.virsh("suspend", name)
        daemon.virsh("resume", name)
        batch = next_batch(driver)
    events = [
        (tags["event"], fields["detail"]) for m, tags, fields, _ in batch if m == "vm_events" and tags["vm"] == name
    ]
    assert events == [("suspended", '"paused"'), ("resumed", '"unpaused"')]


def test_a_frozen_guest_costs_only_its_own_details_and_one_warning(daemon):
    healthy, stuck = daemon.guests

    def by_vm(batch: List[Line], measurement: str) -> Dict[str, Dict[str, object]]:
        return {tags["vm"]: fields for m, tags, fields, _ in batch if m == measurement}

    with ExecdDriver([KVM_TELEGRAF, *daemon.args(), "--timeout", "2s"]) as driver:
        assert len(by_vm(next_batch(driver), "vm_metrics")) == 2
        with frozen(stuck):
            for _ in range(2):
                batch = next_batch(driver)
                assert set(by_vm(batch, "vm_metrics")) == {healthy, stuck}, (
                    "the frozen guest keeps its vm_metrics",
                    driver.stderr,
                )
                assert "memory_usable_bytes" in by_vm(batch, "vm_totals")[healthy], driver.stderr
        for _ in range(10):  # the stuck call returns once QEMU runs again
            batch = next_batch(driver)
            if "memory_usable_bytes" in by_vm(batch, "vm_totals").get(stuck, {}):
                break
            time.sleep(1)
        assert "memory_usable_bytes" in by_vm(batch, "vm_totals")[stuck], "full stats are back after the thaw"
        warnings = [message for level, message in driver.stderr if level == "W"]
        errors = [message for level, message in driver.stderr if level == "E"]
    assert len(warnings) == 1 and stuck in warnings[0], warnings
    assert errors == []
