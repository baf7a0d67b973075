"""--collect guest beside a hostile guest, on the live lab (the ``flood`` variant, ktgb-*, flooded from inside).

The guest's own loop writes a 4,000,000-byte ``ID=`` into its /etc/os-release and bind-mounts its ext2
filesystem 2,000 times (tests/lab/lab.py ``agent-flood``): its qemu-ga then answers with a 4 MB string, and
libvirt 9.0 refuses the whole answer for its parameters (more than 2,048). Before issue 23 every batch carried
a 4 MB vm_guest line, or, once the mounts were up, no vm_guest at all (the reason only at D!).
"""

from __future__ import annotations

import subprocess
import time
from typing import Iterator, List

import pytest

from kvm_telegraf.guest_agent import GUEST_STRING_MAX_CHARS
from tests.conftest import need, run_lab
from tests.harness.bounds import fields_of
from tests.harness.cli import KVM_TELEGRAF, only
from tests.harness.execd import ExecdDriver

pytestmark = pytest.mark.lab

PREFIX = "ktgb-"
FLOOD_ID_BYTES = 4_000_000  # tests/lab/lab.py AGENT_FLOOD_ID_BYTES


def virsh(*args: str) -> subprocess.CompletedProcess:
    argv = ["virsh", "-q", "-c", "qemu:///system", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def flooded(name: str) -> bool:
    """Whether the guest's agent gives the long ID and libvirt refuses its filesystems, as the flood makes it."""
    os_info = virsh("guestinfo", name, "--os").stdout
    return "x" * 1000 in os_info and "too many parameters" in virsh("guestinfo", name, "--filesystem").stderr


@pytest.fixture(scope="module")
def flooded_guest() -> Iterator[str]:
    try:
        (name,) = run_lab(PREFIX, "up", "1", "--variant", "flood")
    except Exception as exc:  # no libvirt, no QEMU, no root, no apt to fetch qemu-guest-agent
        need(False, f"lab could not start: {exc}")
    try:
        deadline = time.monotonic() + 30  # the agent connects a moment after the guest's loop runs
        while time.monotonic() < deadline and virsh("guestinfo", name, "--hostname").returncode:
            time.sleep(0.5)
        run_lab(PREFIX, "agent-flood", name)
        deadline = time.monotonic() + 180  # 2,000 mounts, one busybox mount each, under TCG
        while time.monotonic() < deadline and not flooded(name):
            time.sleep(2)
        assert flooded(name), "the guest did not flood its agent's answer"
        yield name
    finally:
        run_lab(PREFIX, "down")


def batch(driver: ExecdDriver) -> List[str]:
    assert driver.tick(), (driver.stderr, driver.errors)
    return driver.read_batch(timeout=20, settle=1.0)


def test_a_guest_with_a_4_mb_os_release_id_and_2000_mounts_gives_bounded_lines_a_whole_vm_guest_and_one_warning_each(
    flooded_guest,
):
    """The first refresh's call may pass the agent's 2 s deadline (the guest's qemu-ga reads 2,000 filesystems and
    sends 4 MB twice under TCG): until it answers, vm_guest says agent_responding=false, then it carries the answer."""
    lines: List[str] = []
    answered: List[dict] = []
    with ExecdDriver([KVM_TELEGRAF, "--read-write", "--collect", "guest", *only([flooded_guest])]) as driver:
        deadline = time.monotonic() + 120
        while len(answered) < 3 and time.monotonic() < deadline:
            got = batch(driver)
            lines += got
            guests = [fields_of(line) for line in got if line.startswith("vm_guest,")]
            assert len(guests) == 1, got
            if guests[0]["agent_responding"] == "true":
                answered.append(guests[0])
    assert len(answered) == 3, [message for level, message in driver.stderr if level == "D"]
    assert max(len(line.encode()) for line in lines) < 8192
    cut = f'"{"x" * GUEST_STRING_MAX_CHARS}...({FLOOD_ID_BYTES - GUEST_STRING_MAX_CHARS} more characters)"'
    for guest in answered:
        assert guest["os_id"] == cut
        assert {"os_version_id", "kernel_release", "hostname", "timezone", "users"} <= set(guest)
    assert not [line for line in lines if line.startswith("vm_filesystems,")]  # libvirt cannot carry them
    warnings = [message for level, message in driver.stderr if level in ("E", "W")]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(f"domain {flooded_guest}: its guest agent gave strings longer than 1024 characters")
    assert f"(os.id {FLOOD_ID_BYTES})" in warnings[0]
    assert warnings[1].startswith(f"domain {flooded_guest}: libvirt cannot carry its guest agent's whole answer")
    assert "for limit '2048'" in warnings[1]
    assert warnings[1].endswith("asking without its filesystems, so vm_guest has the rest")
