"""Fault tests on the live lab: a frozen guest, libvirtd going away, domains that change, a SIGTERM mid-write.

They use guests of their own (the ``fault_lab`` fixture, ktfault-*) because they freeze,
destroy and rename them, and the real process driven as Telegraf's execd drives it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import tempfile
import termios
import time
from typing import Dict, Iterator, List

import pytest

from kvm_telegraf.trigger import WRITE_GRACE_S
from tests.harness.cli import KVM_TELEGRAF, only, parse_line
from tests.harness.execd import ExecdDriver
from tests.harness.faults import frozen, start_libvirtd, stop_libvirtd

pytestmark = pytest.mark.lab

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, named in the fcntl module only from Python 3.10


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", *args], capture_output=True, text=True, check=True).stdout


@contextlib.contextmanager
def driven(*args: str) -> Iterator[ExecdDriver]:
    driver = ExecdDriver([KVM_TELEGRAF, *args])
    driver.start()
    try:
        yield driver
    finally:
        driver.stop()


def timed_batch(driver: ExecdDriver, timeout: float = 15) -> tuple[List[str], float]:
    """Tick once; the batch, and the seconds from the newline to its last line."""
    started = time.monotonic()
    driver.tick()
    batch = driver.read_batch(timeout=timeout, settle=0.5)
    last_line_at = driver.stdout_log[-1][0] if batch else float("inf")
    return batch, last_line_at - started


def by_vm(batch: List[str], measurement: str) -> Dict[str, dict]:
    return {tags["vm"]: fields for m, tags, fields, _ in map(parse_line, batch) if m == measurement}


def logged(driver: ExecdDriver, level: str) -> List[str]:
    return [message for lvl, message in driver.stderr if lvl == level]


def test_a_frozen_guest_delays_one_batch_by_the_deadline_at_most_and_only_costs_its_own_stats(fault_lab):
    healthy, stuck = fault_lab
    with driven(*only(fault_lab), "--timeout", "2s") as driver:
        batch, _ = timed_batch(driver)
        assert len(batch) == 7 * len(fault_lab)
        with frozen(stuck):
            runs = [timed_batch(driver) for _ in range(3)]
            for batch, _ in runs:
                assert set(by_vm(batch, "vm_metrics")) == {healthy, stuck}, "the frozen guest keeps its vm_metrics"
                assert "memory_usable_bytes" in by_vm(batch, "vm_totals").get(healthy, {}), driver.stderr
            first, *later = [seconds for _, seconds in runs]
            assert first <= 2 + 1, f"first batch after the freeze took {first:.2f}s"
            assert all(seconds < 1 for seconds in later), f"later batches took {later}"
        warnings = logged(driver, "W")
        assert len(warnings) == 1 and stuck in warnings[0], warnings
        for _ in range(5):  # the stuck call returns once QEMU runs again
            batch, _ = timed_batch(driver)
            if "memory_usable_bytes" in by_vm(batch, "vm_totals").get(stuck, {}):
                break
            time.sleep(1)
        assert "memory_usable_bytes" in by_vm(batch, "vm_totals")[stuck], "full stats are back after the thaw"
        assert len(by_vm(batch, "vm_devices")) == len(fault_lab)
    assert logged(driver, "E") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="stops and starts the system libvirtd")
def test_libvirtd_down_or_restarting_costs_one_error_per_outage_and_never_the_process(fault_lab):
    stop_libvirtd()
    try:
        once = subprocess.run([KVM_TELEGRAF, "--once", *only(fault_lab)], capture_output=True, text=True, timeout=30)
        assert once.returncode == 1 and once.stdout == ""
        assert len(once.stderr.splitlines()) == 1 and once.stderr.startswith("E! cannot connect to qemu:///system")
        with driven(*only(fault_lab)) as driver:
            for _ in range(3):  # down at start
                assert timed_batch(driver, timeout=3)[0] == []
            start_libvirtd()
            assert len(timed_batch(driver)[0]) == 7 * len(fault_lab), "full batches on the first cycle after it is back"
            stop_libvirtd()  # and a restart while running
            for _ in range(3):
                assert timed_batch(driver, timeout=3)[0] == []
            assert driver.running
            start_libvirtd()
            assert len(timed_batch(driver)[0]) == 7 * len(fault_lab)
        errors = logged(driver, "E")
        assert len(errors) == 2, errors
        assert all("no metrics until it recovers" in error for error in errors)
        assert len([m for m in logged(driver, "I") if "answers again" in m]) == 2
    finally:
        if subprocess.run(["virsh", "list"], capture_output=True).returncode:
            start_libvirtd()


def test_domains_restarted_renamed_and_undefined_between_cycles_leave_no_stale_data(fault_lab):
    steady, changing = fault_lab
    renamed = changing + "-renamed"
    xml = virsh("dumpxml", "--inactive", changing)
    with driven(*only(fault_lab), "--domain", renamed) as driver:
        timed_batch(driver)
        time.sleep(1)
        batch, _ = timed_batch(driver)
        assert {"cpu_percent"} <= set(by_vm(batch, "vm_totals")[changing])

        virsh("destroy", changing)
        virsh("domrename", changing, renamed)
        batch, _ = timed_batch(driver)
        assert f"vm={changing}," not in "".join(batch) and f"vm={changing} " not in "".join(batch)
        assert by_vm(batch, "vm_metrics")[renamed]["state"] == 5
        assert by_vm(batch, "vm_features")[renamed]["persistent"] == "true"

        virsh("undefine", renamed)
        batch, _ = timed_batch(driver)
        assert set(by_vm(batch, "vm_metrics")) == {steady}

        with open_temp(xml) as path:
            virsh("define", path)
        virsh("start", changing)
        batch, _ = timed_batch(driver)
        assert by_vm(batch, "vm_metrics")[changing]["state"] == 1
        assert "cpu_percent" not in by_vm(batch, "vm_totals")[changing], "a new boot has no previous cycle"
        assert "cpu_percent" in by_vm(batch, "vm_totals")[steady]
        time.sleep(1)
        batch, _ = timed_batch(driver)
        assert "cpu_percent" in by_vm(batch, "vm_totals")[changing]
    assert [lvl for lvl, _ in driver.stderr if lvl in "EW"] == []


@contextlib.contextmanager
def open_temp(text: str) -> Iterator[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as handle:
        handle.write(text)
        handle.flush()
        yield handle.name


def test_sigterm_while_a_batch_is_being_written_still_ends_the_output_on_a_whole_line(lab):
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)  # smaller than one batch: the write blocks half way
    proc = subprocess.Popen([KVM_TELEGRAF, *only(lab)], stdin=subprocess.PIPE, stdout=write_end)
    os.close(write_end)
    proc.stdin.write(b"\n")
    proc.stdin.flush()
    time.sleep(3)  # collected, and stuck in the write
    proc.send_signal(signal.SIGTERM)
    time.sleep(1)
    assert proc.poll() is None, "it must finish the batch it is writing"
    with os.fdopen(read_end, "rb") as reader:
        output = reader.read()
    assert proc.wait(timeout=10) == 0
    assert len(output) > 4096 and output.endswith(b"\n")
    lines = output.decode().splitlines()
    assert len(lines) == 7 * len(lab) and all(parse_line(line) for line in lines)


def pipe_bytes(read_end: int) -> int:
    """What sits unread in a pipe (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(read_end, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_sigterm_while_stdout_is_never_read_ends_the_process_within_the_write_grace(lab):
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)  # smaller than one batch, and nobody reads it
    proc = subprocess.Popen([KVM_TELEGRAF, *only(lab)], stdin=subprocess.PIPE, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    try:
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while pipe_bytes(read_end) < 4096:  # collected, and stuck in the write
            assert time.monotonic() < deadline, "no batch came"
            time.sleep(0.1)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - signalled < WRITE_GRACE_S + 1
        assert b"W! stdout took none of the batch for 2s after the stop signal" in proc.stderr.read()
    finally:
        os.close(read_end)


def test_a_uri_with_credentials_never_reaches_the_log():
    uri = "qemu+tcp://admin:s3cret@127.0.0.1:1/system"
    result = subprocess.run(
        [KVM_TELEGRAF, "--once", "--uri", uri, "--log-level", "debug"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert "s3cret" not in result.stderr and "admin" not in result.stderr
    assert result.stderr.startswith("E! cannot connect to qemu+tcp://***@127.0.0.1:1/system")
