"""--format table: shaped records in, one row per VM out; exact text from recorded lab cycles."""

from __future__ import annotations

import dataclasses
import re
import subprocess

import pytest

from kvm_telegraf.points import Point
from kvm_telegraf.table import Shaped, human_bytes, render, table_from_snapshots
from tests.conftest import load_snapshots
from tests.harness.cli import KVM_TELEGRAF


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (100663296, "96.0 MiB"), (2**40, "1.0 TiB")],
)
def test_bytes_read_in_binary_units(value, text):
    assert human_bytes(value) == text


def test_two_recorded_cycles_give_cpu_percent_and_net_and_disk_rates():
    assert table_from_snapshots(load_snapshots("lab-states.json")) == (
        "NAME      STATE     CPU%  VCPUS  MEMORY USED / ACTUAL  NET RX/s  NET TX/s  DISK READ/s  DISK WRITE/s\n"
        "ktlab-01  running    6.0      1   21.4 MiB / 96.0 MiB   235 B/s   318 B/s  127.2 KiB/s   127.2 KiB/s\n"
        "ktlab-02  paused     0.0      1   23.4 MiB / 96.0 MiB    35 B/s     0 B/s        0 B/s         0 B/s\n"
        "ktlab-03  shut off     -      1          - / 96.0 MiB         -         -            -             -\n"
    )


def test_one_reading_shows_no_cpu_percent_and_no_rate_columns():
    assert table_from_snapshots(load_snapshots("lab-states.json")[:1]) == (
        "NAME      STATE     CPU%  VCPUS  MEMORY USED / ACTUAL\n"
        "ktlab-01  running      -      1   21.4 MiB / 96.0 MiB\n"
        "ktlab-02  paused       -      1   23.4 MiB / 96.0 MiB\n"
        "ktlab-03  shut off     -      1          - / 96.0 MiB\n"
    )


def test_rates_are_the_counter_difference_over_the_time_between_readings():
    tags = (("uuid", "u1"), ("vm", "web"))
    before = Shaped(0, [Point("vm_totals", tags, {"net_rx_bytes": 1000, "disk_write_bytes": 0})])
    after = Shaped(2_000_000_000, [Point("vm_totals", tags, {"net_rx_bytes": 4072, "disk_write_bytes": 3 << 20})])
    (row,) = render(after, before).splitlines()[1:]
    assert row.split() == ["web", "-", "-", "-", "-", "1.5", "KiB/s", "-", "-", "1.5", "MiB/s"]


def test_a_counter_that_went_back_a_restart_shows_no_rate():
    tags = (("uuid", "u1"), ("vm", "web"))
    before = Shaped(0, [Point("vm_totals", tags, {"net_tx_bytes": 5000})])
    after = Shaped(1_000_000_000, [Point("vm_totals", tags, {"net_tx_bytes": 10})])
    assert render(after, before).splitlines()[1].split()[6] == "-"


def test_same_named_vms_on_two_hypervisors_get_a_host_column():
    snapshots = load_snapshots("lab-running.json")
    domain = snapshots[0].domains[0]
    two_hosts = dataclasses.replace(
        snapshots[0],
        domains=(dataclasses.replace(domain, hypervisor="kvm2"), dataclasses.replace(domain, hypervisor="kvm1")),
    )
    lines = table_from_snapshots([two_hosts]).splitlines()
    assert lines[0].split()[:3] == ["NAME", "HOST", "STATE"]
    assert [line.split()[:2] for line in lines[1:]] == [["ktlab-01", "kvm1"], ["ktlab-01", "kvm2"]]


@pytest.mark.lab
def test_a_sampled_table_of_the_live_lab_shows_each_guest_running_with_rates(lab):
    selectors = [arg for name in lab for arg in ("--domain", name)]
    result = subprocess.run(
        [KVM_TELEGRAF, "--once", "--format", "table", "--sample", "1s", *selectors],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "STATE", "CPU%", "VCPUS"] and header.endswith("DISK WRITE/s")
    assert [row.split()[0] for row in rows] == sorted(lab)
    for row in rows:
        assert re.fullmatch(r"\S+\s+running\s+\d+\.\d\s+1\s+[\d.]+ \S+ / 96\.0 MiB(\s+[\d.]+ \S+/s){4}", row), row
