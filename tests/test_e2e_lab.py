"""End to end on the live lab: real guests, real libvirtd, the real process, a real InfluxDB.

The process is driven the way Telegraf's execd input drives it (tests/harness/execd.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from typing import Dict, Iterator, List

import pytest

from tests.harness.cli import KVM_TELEGRAF, only, parse_line
from tests.harness.execd import ExecdDriver

pytestmark = pytest.mark.lab


METRICS_FIELDS = {"state", "state_reason", "cpu_time_ns", "vcpus", "memory_bytes", "max_memory_bytes", "responding"}
FEATURES_FIELDS = {
    "persistent",
    "autostart",
    "managed_save",
    "os_type",
    "arch",
    "machine",
    "firmware",
    "max_vcpus",
    "disk_count",
    "interface_count",
    "feature_acpi",
    "feature_apic",
    "feature_pae",
}
COUNTERS = {f"{d}_{c}" for d in ("rx", "tx") for c in ("bytes", "packets", "errors", "drops")}
INTERFACE_FIELDS = COUNTERS | {"tap"}
DISK_FIELDS = {
    "read_requests",
    "read_bytes",
    "read_time_ns",
    "write_requests",
    "write_bytes",
    "write_time_ns",
    "flush_requests",
    "flush_time_ns",
    "allocation_bytes",
    "capacity_bytes",
    "physical_bytes",
}
TOTALS_FIELDS = (
    {"cpu_user_ns", "cpu_system_ns", "haltpoll_success_ns", "haltpoll_fail_ns", "vcpu_wait_ns", "vcpu_delay_ns"}
    | {"memory_used_bytes"}
    | {f"net_{f}" for f in COUNTERS}
    | {
        f"disk_{f}"
        for f in (
            "read_requests",
            "read_bytes",
            "write_requests",
            "write_bytes",
            "read_time_ns",
            "write_time_ns",
            "flush_requests",
        )
    }
    | {
        f"memory_{f}"
        for f in (
            "actual_bytes",
            "unused_bytes",
            "available_bytes",
            "usable_bytes",
            "rss_bytes",
            "disk_caches_bytes",
            "swap_in_bytes",
            "swap_out_bytes",
            "major_faults",
            "minor_faults",
        )
    }
)


def virsh_domstats(name: str) -> Dict[str, str]:
    out = subprocess.run(["virsh", "-r", "domstats", name], capture_output=True, text=True, check=True).stdout
    return dict(line.strip().split("=", 1) for line in out.splitlines() if "=" in line)


def test_once_prints_all_four_measurements_for_every_guest_with_the_documented_fields(lab):
    result = subprocess.run([KVM_TELEGRAF, "--once", *only(lab)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    points = [parse_line(line) for line in result.stdout.splitlines()]
    assert len({p[3] for p in points}) == 1, "one timestamp per batch"
    for name in lab:
        mine = [p for p in points if p[1]["vm"] == name]
        by_measurement: Dict[str, List] = {}
        for point in mine:
            by_measurement.setdefault(point[0], []).append(point)
        assert set(by_measurement["vm_metrics"][0][2]) == METRICS_FIELDS
        assert set(by_measurement["vm_features"][0][2]) == FEATURES_FIELDS
        devices = {(p[1]["type"], p[1]["device"]): set(p[2]) for p in by_measurement["vm_devices"]}
        assert sorted(kind for kind, _ in devices) == ["disk", "disk", "interface", "interface"]
        for (kind, _), fields in devices.items():
            assert fields == (DISK_FIELDS if kind == "disk" else INTERFACE_FIELDS)
        assert set(by_measurement["vm_totals"][0][2]) == TOTALS_FIELDS  # no cpu_percent on a first cycle
        nics = [p[1] for p in by_measurement["vm_devices"] if p[1]["type"] == "interface"]
        assert all(tags["device"] == tags["mac"] for tags in nics), "a NIC is named by its MAC"


def test_telegraf_style_driving_gives_one_batch_per_newline_and_exits_on_eof(lab):
    driver = ExecdDriver([KVM_TELEGRAF, *only(lab)])
    driver.start()
    try:
        time.sleep(0.5)
        assert driver.drain() == [], "nothing before the first newline"
        sizes, stamps = [], []
        for _ in range(3):
            assert driver.tick()
            batch = driver.read_batch(timeout=15, settle=0.5)
            sizes.append(len(batch))
            stamps.append({parse_line(line)[3] for line in batch})
        assert sizes == [7 * len(lab)] * 3
        assert all(len(s) == 1 for s in stamps) and len(set().union(*stamps)) == 3
    finally:
        result = driver.stop()
    assert result.returncode == 0 and not result.sent_sigterm, result
    assert [level for level, _ in driver.stderr if level == "E"] == []


def test_the_second_batch_adds_cpu_percent(lab):
    driver = ExecdDriver([KVM_TELEGRAF, *only(lab), "--measurement", "vm_totals"])
    driver.start()
    try:
        driver.tick()
        first = driver.read_batch(timeout=15, settle=0.5)
        time.sleep(1)
        driver.tick()
        second = driver.read_batch(timeout=15, settle=0.5)
    finally:
        driver.stop()
    assert not [line for line in first if "cpu_percent=" in line]
    percents = [float(line.split("cpu_percent=")[1].split(" ")[0].split(",")[0]) for line in second]
    assert len(percents) == len(lab) and all(0 <= p <= 100 for p in percents)


def test_sigterm_ends_a_waiting_process_at_once_with_exit_0(lab):
    proc = subprocess.Popen([KVM_TELEGRAF, *only(lab)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    time.sleep(1)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 1


def test_a_closed_stdout_ends_the_process_quietly(lab):
    proc = subprocess.Popen(
        [KVM_TELEGRAF, *only(lab)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()
    proc.stdin.write(b"\n")
    proc.stdin.flush()
    assert proc.wait(timeout=15) == 0
    assert proc.stderr.read() == b""


def test_influxdb_accepts_every_line_and_each_counter_lies_between_two_virsh_readings(lab, influx):
    influx.create_database("e2e")
    driver = ExecdDriver([KVM_TELEGRAF, *only(lab)])
    driver.start()
    try:
        before = {name: virsh_domstats(name) for name in lab}
        driver.tick()
        batch = driver.read_batch(timeout=15, settle=0.5)
        after = {name: virsh_domstats(name) for name in lab}
    finally:
        driver.stop()
    status, body = influx.write("e2e", "\n".join(batch) + "\n")
    assert status == 204, body
    counts = {m: influx.count("e2e", m) for m in ("vm_metrics", "vm_features", "vm_devices", "vm_totals")}
    assert counts == {
        "vm_metrics": len(lab),
        "vm_features": len(lab),
        "vm_devices": 4 * len(lab),
        "vm_totals": len(lab),
    }

    for row in influx.rows("e2e", "SELECT * FROM vm_devices"):
        low, high = before[row["vm"]], after[row["vm"]]
        name = row["tap"] if row["type"] == "interface" else row["device"]  # libvirt names a NIC by its tap
        prefix = next(k[: -len("name")] for k, v in low.items() if k.endswith(".name") and v == name)
        pairs = (
            [("rx_bytes", "rx.bytes"), ("tx_packets", "tx.pkts")]
            if row["type"] == "interface"
            else [("read_requests", "rd.reqs"), ("write_bytes", "wr.bytes")]
        )
        for field, key in pairs:
            assert int(low[prefix + key]) <= row[field] <= int(high[prefix + key]), (row["device"], field)
    for row in influx.rows("e2e", "SELECT * FROM vm_metrics"):
        low, high = before[row["vm"]], after[row["vm"]]
        assert int(low["cpu.time"]) <= row["cpu_time_ns"] <= int(high["cpu.time"])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to the telegraf user")
def test_the_unprivileged_telegraf_user_gets_full_batches_over_the_read_only_socket(lab):
    runuser = shutil.which("runuser")
    result = subprocess.run(
        [runuser, "-u", "telegraf", "--", KVM_TELEGRAF, "--once", *only(lab)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    measurements = [line.split(",", 1)[0] for line in result.stdout.splitlines()]
    assert measurements.count("vm_devices") == 4 * len(lab)
    assert measurements.count("vm_totals") == len(lab)


NOVA_NS = "http://openstack.org/xmlns/libvirt/nova/1.1"


@pytest.fixture(scope="module")
def nova_guest(lab) -> Iterator[str]:
    """A shut-off domain (no CPU cost) whose metadata libvirt holds in Nova's layout."""
    name = "ktnova-e2e"
    xml = f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>"
    subprocess.run(["virsh", "-q", "define", "/dev/stdin"], input=xml, text=True, check=True, capture_output=True)
    instance = (
        '<instance><package version="25.1.0"/><name>db primary</name><flavor name="m1.small"><vcpus>1</vcpus>'
        '</flavor><owner><user uuid="6f1e0c3c4b2a4d0e9a7b5c3d1e2f4a6b">admin</user>'
        '<project uuid="0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f">billing</project></owner></instance>'
    )
    metadata = ["virsh", "-q", "metadata", name, "--config", "--uri", NOVA_NS, "--key", "nova", "--set", instance]
    try:
        subprocess.run(metadata, check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["virsh", "-q", "undefine", name], capture_output=True)


def test_nova_names_tag_every_point_of_an_openstack_guest_read_from_two_uris(nova_guest):
    uris = ["--uri", "qemu:///system", "--uri", "qemu+unix:///system?socket=/run/libvirt/libvirt-sock-ro"]
    argv = [KVM_TELEGRAF, "--once", "--nova", "--domain", nova_guest, *uris]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    points = [parse_line(line) for line in result.stdout.splitlines()]
    measurements = sorted(p[0] for p in points)  # no devices; vm_totals holds the balloon size
    assert measurements == ["vm_features", "vm_metrics", "vm_totals"], "both URIs reach one daemon: read once"
    assert result.stderr.startswith("W! qemu+unix:///system?socket=/run/libvirt/libvirt-sock-ro reports hostname")
    for _, tags, _, _ in points:
        assert (tags["nova_name"], tags["nova_project"], tags["nova_flavor"]) == ("db\\ primary", "billing", "m1.small")
        assert tags["hypervisor"] and tags["vm"] == nova_guest
