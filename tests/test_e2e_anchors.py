"""End to end on live lab guests: issue #25's groups, each against what libvirt, virsh and /proc say.

Guests of their own: ktid- (the identity variant: a serial, an IDE CD-ROM, a NIC on a libvirt network with an
interfaceid, a NIC with a target dev of its own), ktfull- (its vdb on a 1 MiB tmpfs, error_policy stop: it
pauses itself on a full disk), kthd- (defined only, holding host devices).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Dict, Iterator, List

import pytest

from tests.conftest import TESTS, need, run_lab
from tests.harness.cli import KVM_TELEGRAF, Line, next_batch, only, parse_line
from tests.harness.execd import ExecdDriver

pytestmark = pytest.mark.lab

ID_PREFIX, FULL_PREFIX, HOSTDEVS_PREFIX, RING_PREFIX = "ktid-", "ktfull-", "kthd-", "ktring-"


def lab_module():
    sys.path.insert(0, str(TESTS / "lab"))
    import lab

    return lab


@pytest.fixture(scope="module")
def guests() -> Iterator[Dict[str, str]]:
    try:
        try:
            (identity,) = run_lab(ID_PREFIX, "up", "1", "--variant", "identity", "--no-wait")
            (full,) = run_lab(FULL_PREFIX, "up", "1", "--variant", "full", "--no-wait")
            (hostdevs,) = run_lab(HOSTDEVS_PREFIX, "up", "1", "--variant", "hostdevs", "--define-only")
            (ring,) = run_lab(RING_PREFIX, "up", "1", "--kvm", "--variant", "dirtyring", "--no-wait")
        except Exception as exc:  # no libvirt, no QEMU, no root
            need(False, f"lab could not start: {exc}")
        deadline = time.monotonic() + 90
        while virsh("domstate", full, "--reason").strip() != "paused (I/O error)":
            assert time.monotonic() < deadline, f"{full} did not pause on its full disk"
            time.sleep(1)
        yield {"identity": identity, "full": full, "hostdevs": hostdevs, "ring": ring}
    finally:
        if not os.environ.get("KVM_TELEGRAF_KEEP_LAB"):
            for prefix in (ID_PREFIX, FULL_PREFIX, HOSTDEVS_PREFIX, RING_PREFIX):
                run_lab(prefix, "down")


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-q", *args], capture_output=True, text=True, check=True, timeout=60).stdout


def once(names: List[str], *options: str) -> List[Line]:
    done = subprocess.run(
        [KVM_TELEGRAF, "--once", *only(names), *options], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return [parse_line(line) for line in done.stdout.splitlines()]


def of(lines: List[Line], measurement: str, vm: str) -> List[Line]:
    return [line for line in lines if line[0] == measurement and line[1]["vm"] == vm]


def device(lines: List[Line], measurement: str, vm: str, name: str) -> Dict[str, object]:
    (found,) = [fields for _, tags, fields, _ in of(lines, measurement, vm) if tags["device"] == name]
    return found


def test_each_disk_and_nic_gets_its_identity_with_exactly_its_vm_devices_tags(guests):
    name = guests["identity"]
    lines = once([name], "--collect", "device_info")
    devices = sorted(tuple(sorted(tags.items())) for _, tags, _, _ in of(lines, "vm_devices", name))
    infos = sorted(tuple(sorted(tags.items())) for _, tags, _, _ in of(lines, "vm_device_info", name))
    assert infos == devices and len(devices) == 5  # vda, vdb, hdc, two NICs
    blklist = {row.split()[2]: row.split() for row in virsh("domblklist", name, "--details").splitlines()}
    vda = device(lines, "vm_device_info", name, "vda")
    assert vda == {"source": f'"{blklist["vda"][3]}"', "bus": '"virtio"', "format": '"raw"',
                   "serial": '"KTLAB-VDA-0001"', "kind": '"disk"'}  # fmt: skip
    # an empty CD-ROM: no source, and in a running domain's XML no <driver> either
    assert device(lines, "vm_device_info", name, "hdc") == {"bus": '"ide"', "kind": '"cdrom"'}
    iflist = [row.split() for row in virsh("domiflist", name).splitlines()]  # interface type source model mac
    on_network = next(row for row in iflist if row[1] == "network")
    bridge = virsh("net-info", on_network[2]).split("Bridge:")[1].split()[0]
    assert device(lines, "vm_device_info", name, on_network[4]) == {
        "kind": '"network"',
        "bridge": f'"{bridge}"',
        "network": f'"{on_network[2]}"',
        "model": '"virtio"',
        "mtu": 1400,
        "target": f'"{on_network[0]}"',
    }
    on_bridge = next(row for row in iflist if row[1] == "bridge")  # with a target dev of its own: the device tag
    assert device(lines, "vm_device_info", name, on_bridge[0]) == {
        "kind": '"bridge"',
        "bridge": f'"{bridge}"',
        "model": '"virtio"',
        "target": f'"{on_bridge[0]}"',
    }


def test_exclude_device_leaves_out_the_cd_rom_and_vdb_but_vm_totals_still_counts_every_disk(guests):
    name = guests["identity"]
    lines = once([name], "--collect", "device_info", "--exclude-device", "hd[c-d]", "--exclude-device", "vdb")
    for measurement in ("vm_devices", "vm_device_info"):
        disks = sorted(tags["device"] for _, tags, _, _ in of(lines, measurement, name) if tags["type"] == "disk")
        assert disks == ["vda"]
    ((_, _, totals, _),) = of(lines, "vm_totals", name)
    vda = device(lines, "vm_devices", name, "vda")
    assert totals["disk_write_requests"] > vda["write_requests"]  # vdb's writes are in the sum


def test_a_guest_paused_by_its_full_disk_shows_which_disk_and_why_and_a_running_one_shows_none(guests):
    full, identity = guests["full"], guests["identity"]
    assert "vdb: no space" in virsh("domblkerror", full)
    lines = once([full, identity], "--collect", "disk_errors")
    ((_, _, metrics, _),) = of(lines, "vm_metrics", full)
    assert (metrics["state"], metrics["state_reason"]) == (3, 5)  # paused, I/O error
    assert device(lines, "vm_devices", full, "vdb")["io_error"] == 2  # no space
    assert device(lines, "vm_devices", full, "vda")["io_error"] == 0
    running = [fields for _, tags, fields, _ in of(lines, "vm_devices", identity) if tags["type"] == "disk"]
    assert {fields["io_error"] for fields in running} == {0} and len(running) == 3


def test_each_host_device_a_guest_holds_is_named_with_what_its_node_device_says(guests):
    name = guests["hostdevs"]
    lines = once([name], "--collect", "hostdevs")
    points = {(tags["type"], tags["hostdev"]): fields for _, tags, fields, _ in of(lines, "vm_hostdevs", name)}
    pci = lab_module()._host_pci_addresses()
    node = virsh("nodedev-dumpxml", "pci_" + pci[-1].replace(":", "_").replace(".", "_"))
    vendor = node.split("<vendor id='")[1].split("'")[0]
    gpu = points[("pci", pci[-1])]
    assert (gpu["pci_address"], gpu["vendor_id"], gpu["managed"]) == (f'"{pci[-1]}"', f'"{vendor}"', "false")
    assert gpu["driver"] == '"{}"'.format(node.split("<driver>")[1].split("<name>")[1].split("<")[0])
    assert points[("mdev", lab_module().MDEV_UUID)]["model"] == '"vfio-pci"'
    assert points[("usb", "0x046d:0xc52b")]["product_id"] == '"0xc52b"'
    assert points[("pci", pci[-2])]["mac"] == '"52:54:00:6b:ff:01"'
    assert all(fields["count"] == 1 for fields in points.values()) and len(points) == 4


def test_a_dump_reports_its_memory_progress_in_consecutive_batches_and_its_end_once(guests):
    name = guests["identity"]
    driver = ExecdDriver([KVM_TELEGRAF, *only([name]), "--collect", "jobs"])
    driver.start()
    dump = lab_module().dump_slowly(name)
    jobs: List[Dict[str, object]] = []
    try:
        time.sleep(1.0)
        while dump.poll() is None or len([j for j in jobs if j["completed"] == "true"]) == 0:
            jobs += [fields for _, tags, fields, _ in next_batch(driver) if tags.get("operation") == "dump"]
            time.sleep(1.5)
            assert len(jobs) < 60, "the dump never finished"
    finally:
        dump.wait(timeout=120)
        driver.stop()
    running = [job for job in jobs if job["completed"] == "false"]
    finished = [job for job in jobs if job["completed"] == "true"]
    assert len(running) >= 2 and len(finished) == 1
    processed = [job["memory_processed_bytes"] for job in running]
    remaining = [job["memory_remaining_bytes"] for job in running]
    assert processed == sorted(processed) and processed[0] < processed[-1]
    assert remaining == sorted(remaining, reverse=True) and remaining[0] > remaining[-1]
    for job in running:
        assert job["memory_page_size_bytes"] == 4096 and job["memory_bytes_per_s"] > 0
        assert job["memory_normal_bytes"] == job["memory_normal_pages"] * 4096
    assert finished[0]["type"] == '"completed"' and finished[0]["memory_remaining_bytes"] == 0


def test_a_dirty_rate_calculation_reports_its_mode_period_and_start_on_the_hosts_clock(guests):
    name = guests["identity"]
    subprocess.run(["virsh", "domdirtyrate-calc", name, "--seconds", "1"], check=True, capture_output=True)
    time.sleep(2.5)
    with open("/proc/uptime", encoding="ascii") as f:
        uptime = float(f.read().split()[0])
    ((_, _, totals, _),) = of(once([name], "--collect", "dirtyrate"), "vm_totals", name)
    assert (totals["dirtyrate_calc_status"], totals["dirtyrate_calc_mode"], totals["dirtyrate_calc_period_s"]) == (
        2,
        '"page-sampling"',
        1,
    )
    assert uptime - 10 < totals["dirtyrate_calc_start_s"] <= uptime
    assert totals["dirtyrate_mib_per_s"] >= 0


def test_a_dirty_ring_calculation_gives_each_vcpu_its_rate_on_vm_vcpus(guests):
    name = guests["ring"]  # type='kvm' with KVM's dirty ring on
    subprocess.run(
        ["virsh", "domdirtyrate-calc", name, "--seconds", "1", "--mode", "dirty-ring"], check=True, capture_output=True
    )
    time.sleep(2.5)
    lines = once([name], "--collect", "dirtyrate", "--collect", "vcpu")
    ((_, _, totals, _),) = of(lines, "vm_totals", name)
    assert totals["dirtyrate_calc_mode"] == '"dirty-ring"'
    stats = virsh("domstats", "--dirtyrate", name)
    vcpus = {tags["vcpu"]: fields for _, tags, fields, _ in of(lines, "vm_vcpus", name)}
    assert vcpus and all(f"dirtyrate.vcpu.{n}.megabytes_per_second=" in stats for n in vcpus)
    assert all(isinstance(fields["dirtyrate_mib_per_s"], int) for fields in vcpus.values())


def proc_stat_ns() -> Dict[str, int]:
    """/proc/stat's first line as libvirt sums it for virNodeGetCPUStats, in ns."""
    with open("/proc/stat", encoding="ascii") as f:
        user, nice, system, idle, iowait, irq, softirq = (int(v) for v in f.readline().split()[1:8])
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return {
        "cpu_user_ns": (user + nice) * tick,
        "cpu_system_ns": (system + irq + softirq) * tick,
        "cpu_idle_ns": idle * tick,
        "cpu_iowait_ns": iowait * tick,
    }


def meminfo_bytes() -> Dict[str, int]:
    with open("/proc/meminfo", encoding="ascii") as f:
        values = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    return {"memory_buffers_bytes": values["Buffers"], "memory_cached_bytes": values["Cached"]}


def test_vm_host_cpu_times_lie_between_two_readings_of_proc_stat_and_its_cache_near_meminfo(guests):
    before, memory_before = proc_stat_ns(), meminfo_bytes()
    ((_, _, host, _),) = [line for line in once([guests["identity"]], "--collect", "host") if line[0] == "vm_host"]
    after, memory_after = proc_stat_ns(), meminfo_bytes()
    for name in before:
        assert before[name] <= host[name] <= after[name], name
    total = host["memory_total_bytes"]
    for name in memory_before:
        low, high = sorted((memory_before[name], memory_after[name]))
        assert low - total // 50 <= host[name] <= high + total // 50, name  # within 2 % of the host's memory


DASHBOARDS_DOC = TESTS.parent / "docs" / "dashboards.md"


def grafana_queries() -> Dict[str, str]:
    """The two InfluxQL queries docs/dashboards.md joins in Grafana, by letter."""
    section = DASHBOARDS_DOC.read_text().split("## Joining vm_device_info in InfluxQL and Grafana", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    return {line[0]: line[3:] for line in block.splitlines() if line[1:3] == ": "}


def test_the_documented_grafana_queries_find_each_disks_image_under_the_same_tags_in_influxdb(guests, influx):
    name = guests["identity"]
    driver = ExecdDriver([KVM_TELEGRAF, *only([name]), "--collect", "device_info"])
    driver.start()
    db = "device_info"
    influx.create_database(db)
    try:
        for _ in range(3):
            assert driver.tick()
            batch = driver.read_batch(timeout=20, settle=0.5)
            sent = "\n".join(line.replace(",", ",host=lab,", 1) for line in batch) + "\n"  # Telegraf's host tag
            assert influx.write(db, sent)[0] == 204
            time.sleep(1.0)
    finally:
        driver.stop()
    now_ms = int(time.time() * 1000)
    filled = {
        letter: query.replace("$timeFilter", f"time >= {now_ms - 600_000}ms").replace("$__interval", "1s")
        for letter, query in grafana_queries().items()
    }
    rates = [s for r in influx.query(db, filled["A"]) for s in r.get("series", [])]
    images = {
        tuple(sorted(s["tags"].items())): s["values"][-1][1]
        for r in influx.query(db, filled["B"])
        for s in r.get("series", [])
    }
    blklist = {row.split()[2]: row.split()[3] for row in virsh("domblklist", name, "--details").splitlines()}
    assert sorted(s["tags"]["device"] for s in rates) == ["hdc", "vda", "vdb"]
    joined = {series["tags"]["device"]: images.get(tuple(sorted(series["tags"].items()))) for series in rates}
    assert joined == {"vda": blklist["vda"], "vdb": blklist["vdb"], "hdc": None}  # an empty CD-ROM has no source
    influx.drop_database(db)
