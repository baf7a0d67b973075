"""End to end on live lab guests: the installed command with ``--collect``, as Telegraf runs it.

Guests of their own (ktgrp-: two pinned vCPUs, two IOThreads; ktgrpk-: type='kvm'; ktgrpc-: vdb a
qcow2 overlay on a raw backing file), a dir storage pool, an I/O limit set with virsh blkdeviotune,
a write threshold set with virsh domblkthreshold, and a dump slowed down by its reader.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Tuple

import pytest

from tests.conftest import TESTS, need, run_lab
from tests.harness.cli import KVM_TELEGRAF, only, parse_line

pytestmark = pytest.mark.lab

PREFIX, KVM_PREFIX, CHAIN_PREFIX = "ktgrp-", "ktgrpk-", "ktgrpc-"


@pytest.fixture(scope="module")
def guests() -> Iterator[Dict[str, str]]:
    try:
        (name,) = run_lab(PREFIX, "up", "1", "--variant", "groups")
        (kvm,) = run_lab(KVM_PREFIX, "up", "1", "--kvm", "--no-wait")
        run_lab(PREFIX, "pool-up")
    except Exception as exc:  # no libvirt, no QEMU, no root
        need(False, f"lab could not start: {exc}")
    subprocess.run(["virsh", "-q", "blkdeviotune", name, "vdb", "--total-iops-sec", "500", "--live"], check=True)
    yield {"tcg": name, "kvm": kvm}
    if not os.environ.get("KVM_TELEGRAF_KEEP_LAB"):
        run_lab(PREFIX, "pool-down")
        run_lab(KVM_PREFIX, "down")
        run_lab(PREFIX, "down")


def once(names: List[str], *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [KVM_TELEGRAF, "--once", *only(names), *options], capture_output=True, text=True, timeout=60, check=False
    )


def lines_of(output: str, measurement: str) -> list:
    return [parse_line(line) for line in output.splitlines() if line.startswith((measurement + ",", measurement + " "))]


def test_collect_all_on_live_guests_gives_every_group_the_lab_can_produce_and_no_warning(guests):
    done = once(list(guests.values()), "--collect", "all")
    assert done.returncode == 0 and not done.stderr, done.stderr
    vcpus = [fields for _, tags, fields, _ in lines_of(done.stdout, "vm_vcpus") if tags["vm"] == guests["tcg"]]
    assert [(f["pcpu"] in (0, 1), f["affinity"]) for f in vcpus] == [(True, '"0"'), (True, '"1"')]
    assert len([t for _, t, _, _ in lines_of(done.stdout, "vm_iothreads") if t["vm"] == guests["tcg"]]) == 2
    disks = {t["device"]: f for _, t, f, _ in lines_of(done.stdout, "vm_devices") if t["vm"] == guests["tcg"]}
    vdb = disks["vdb"]
    assert vdb["limit_total_iops_per_s"] == 500
    kvm_totals = [f for _, t, f, _ in lines_of(done.stdout, "vm_totals") if t["vm"] == guests["kvm"]]
    assert any(name.startswith("kvm_") for name in kvm_totals[0])  # KVM's counters, however far the guest booted
    (host,) = lines_of(done.stdout, "vm_host")
    assert host[2]["domains"] == 2 and host[2]["nowait_fallback"] == "false"
    pools = [t["pool"] for _, t, _, _ in lines_of(done.stdout, "vm_storage_pools")]
    assert PREFIX + "pool" in pools


def test_perf_events_this_vm_cannot_enable_leave_the_run_quiet_and_doctor_says_how_to_enable_them(guests):
    enable = subprocess.run(
        ["virsh", "perf", guests["tcg"], "--enable", "cpu_cycles", "--live"], capture_output=True, text=True
    )
    if enable.returncode == 0:  # a host with perf events: the unsupported path is not what this lab shows
        subprocess.run(["virsh", "perf", guests["tcg"], "--disable", "cpu_cycles", "--live"], check=True)
        pytest.skip("perf events can be enabled on this host")
    assert "perf event" in enable.stderr
    done = once([guests["tcg"]], "--collect", "perf")
    assert done.returncode == 0 and not done.stderr
    assert not [name for _, _, f, _ in lines_of(done.stdout, "vm_totals") for name in f if name.startswith("perf_")]
    doctor = subprocess.run(
        [KVM_TELEGRAF, *only([guests["tcg"]]), "--collect", "perf", "doctor"], capture_output=True, text=True
    )
    (perf,) = [line for line in doctor.stdout.splitlines() if " group perf: " in line]
    assert perf.startswith("warn  group perf: on (--collect); supported (needs libvirt 1.3.3, found ")
    assert "enabled on 0 of 1 domain(s) (to enable: virsh perf DOMAIN --enable" in perf
    assert "so it adds nothing until one has it" in perf
    assert "group kvm: off; supported (needs libvirt 8.9.0, found " in doctor.stdout


def two_batches_during_a_slow_dump(name: str, live: bool, *collect: str) -> Tuple[str, str]:
    """stdout and stderr of kvm-telegraf asked for two batches, 2 s apart, while lab.py dumps *name* slowly."""
    sys.path.insert(0, str(TESTS / "lab"))
    import lab

    process = subprocess.Popen(
        [KVM_TELEGRAF, *only([name]), *[arg for group in collect for arg in ("--collect", group)]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    dump = lab.dump_slowly(name, live=live)
    try:
        time.sleep(1.0)
        for _ in range(2):
            process.stdin.write("\n")
            process.stdin.flush()
            time.sleep(2.0)
    finally:
        dump.wait(timeout=120)
    return process.communicate("", timeout=30)


def test_a_dump_in_progress_shows_its_progress_in_consecutive_batches(guests):
    out, err = two_batches_during_a_slow_dump(guests["tcg"], True, "jobs")
    jobs = [fields for _, tags, fields, _ in lines_of(out, "vm_jobs") if tags["operation"] == "dump"]
    assert not err and len(jobs) == 2
    assert jobs[0]["data_processed_bytes"] < jobs[1]["data_processed_bytes"]
    assert jobs[0]["completed"] == "false" and jobs[0]["type"] == '"unbounded"'


def test_a_dump_that_pauses_its_guest_shows_its_job_and_each_vcpus_pcpu_while_paused(guests):
    out, err = two_batches_during_a_slow_dump(guests["tcg"], False, "jobs", "vcpu")  # no --live: the guest pauses
    assert not err
    states = [fields["state"] for _, _, fields, _ in lines_of(out, "vm_metrics")]
    assert states == [3, 3]  # paused, in both batches
    jobs = [fields for _, tags, fields, _ in lines_of(out, "vm_jobs") if tags["operation"] == "dump"]
    assert len(jobs) == 2 and jobs[0]["completed"] == "false"
    assert jobs[0]["data_processed_bytes"] < jobs[1]["data_processed_bytes"]
    vcpus = [fields for _, _, fields, _ in lines_of(out, "vm_vcpus")]
    assert len(vcpus) == 4 and all(fields["pcpu"] in (0, 1) for fields in vcpus)  # two vCPUs, two batches


def test_a_suspended_guest_keeps_each_vcpus_pcpu_and_shows_no_running_job(guests):
    name = guests["tcg"]
    subprocess.run(["virsh", "-q", "suspend", name], check=True, capture_output=True)
    try:
        done = once([name], "--collect", "vcpu", "--collect", "jobs")
    finally:
        subprocess.run(["virsh", "-q", "resume", name], check=True, capture_output=True)
    assert done.returncode == 0 and not done.stderr, done.stderr
    ((_, _, metrics, _),) = lines_of(done.stdout, "vm_metrics")
    assert metrics["state"] == 3
    vcpus = [fields for _, _, fields, _ in lines_of(done.stdout, "vm_vcpus")]
    assert len(vcpus) == 2 and all(fields["pcpu"] in (0, 1) for fields in vcpus)
    jobs = [fields for _, _, fields, _ in lines_of(done.stdout, "vm_jobs")]
    assert all(fields["completed"] == "true" for fields in jobs)  # at most an earlier test's dump, once


@pytest.fixture(scope="module")
def chain_guest() -> Iterator[str]:
    try:
        (name,) = run_lab(CHAIN_PREFIX, "up", "1", "--variant", "chain")
    except Exception as exc:  # no libvirt, no QEMU, no root
        need(False, f"lab could not start: {exc}")
    subprocess.run(["virsh", "-q", "domblkthreshold", name, "vdb", "64M"], check=True)
    yield name
    if not os.environ.get("KVM_TELEGRAF_KEEP_LAB"):
        run_lab(CHAIN_PREFIX, "down")


def test_backing_and_balloon_on_a_live_overlay_give_each_image_and_the_stats_update_time(chain_guest):
    before = time.time()
    done = once([chain_guest], "--collect", "backing", "--collect", "balloon")
    assert done.returncode == 0 and not done.stderr, done.stderr
    images = [
        (t["device"], t["depth"], f["path"].strip('"').rsplit("/", 1)[1], f)
        for _, t, f, _ in lines_of(done.stdout, "vm_block_chain")
    ]
    assert [image[:3] for image in images] == [
        ("vda", "0", "vda.img"),
        ("vdb", "0", "vdb.qcow2"),
        ("vdb", "1", "vdb.img"),
    ]
    assert len({image[3]["index"] for image in images}) == 3  # libvirt's own index, a field
    assert images[1][3]["threshold_bytes"] == 64 * 1024 * 1024 and "read_requests" not in images[2][3]
    disks = [t["device"] for _, t, _, _ in lines_of(done.stdout, "vm_devices") if t["type"] == "disk"]
    assert disks == ["vda", "vdb"]  # the backing image is no disk of its own
    (totals,) = lines_of(done.stdout, "vm_totals")
    assert before - 60 < totals[2]["memory_stats_updated_s"] <= time.time() + 5  # the guest sends stats every 2 s
    assert totals[2]["memory_hugetlb_pgfail"] == 0
