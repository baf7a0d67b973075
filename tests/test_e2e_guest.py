"""--collect guest on the live lab: two guests with a real QEMU guest agent (the lab's ``agent`` variant, ktga-*).

Each runs Debian's qemu-ga and has an ext2 filesystem on vdc. One test compares vm_filesystems
with ``virsh guestinfo --filesystem``; another stops one guest's agent from inside the guest
(SIGSTOP, so libvirt's call to it hangs) while the process runs as Telegraf's execd runs it.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Dict, Iterator, List, Tuple

import pytest

from kvm_telegraf.cli import main
from kvm_telegraf.connection import Connection, open_read_write
from kvm_telegraf.guest_agent import GuestAgents
from tests.conftest import need, run_lab
from tests.harness.audit import AGENT_CALLS, Audit
from tests.harness.cli import KVM_TELEGRAF, Line, next_batch, only, parse_line, runner
from tests.harness.execd import ExecdDriver

pytestmark = pytest.mark.lab

PREFIX = "ktga-"


@pytest.fixture(scope="module")
def agent_lab() -> Iterator[List[str]]:
    try:
        names = run_lab(PREFIX, "up", "2", "--variant", "agent")
    except Exception as exc:  # no libvirt, no QEMU, no root, no apt to fetch qemu-guest-agent
        need(False, f"lab could not start: {exc}")
    deadline = time.monotonic() + 30  # the agents connect a moment after the stats loop runs
    while time.monotonic() < deadline and not all(agent_answers(name) for name in names):
        time.sleep(0.5)
    yield names
    for name in names:
        run_lab(PREFIX, "agent-resume", name)
    if not os.environ.get("KVM_TELEGRAF_KEEP_LAB"):
        run_lab(PREFIX, "down")


def virsh(*args: str, timeout: float = 30) -> str:
    return subprocess.run(
        ["virsh", "-q", "-c", "qemu:///system", *args], capture_output=True, text=True, check=True, timeout=timeout
    ).stdout


def agent_answers(name: str) -> bool:
    try:
        return "hostname" in virsh("guestinfo", name, "--hostname", timeout=5)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False


def guestinfo(name: str, *kinds: str) -> Dict[str, str]:
    """``virsh guestinfo`` as {key: value}."""
    info = {}
    for line in virsh("guestinfo", name, *kinds).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def lines_of(output: str, measurement: str) -> List[Line]:
    return [parse_line(line) for line in output.splitlines() if line.startswith(measurement + ",")]


def test_every_group_with_guest_and_doctor_make_only_reads_and_read_statistics_on_a_read_only_connection(agent_lab):
    """The real libvirt objects, wrapped (tests/harness/audit.py): each call is recorded with its connection's mode."""
    import libvirt

    pool = run_lab(PREFIX, "pool-up")[0]  # a storage pool, so that --collect pools reads one
    audit = Audit()
    restore = audit.install(libvirt)
    try:
        args = ["--read-write", "--collect", "all", "--collect", "guest", "--domain", PREFIX + "*"]
        run = runner().invoke(main, args, input="\n\n\n")
        doctor = runner().invoke(main, [*args, "doctor"])
    finally:
        restore()
        run_lab(PREFIX, "pool-down")
    assert run.exit_code == 0, run.stderr
    for measurement in ("vm_guest", "vm_vcpus", "vm_storage_pools,pool=" + pool, "vm_host", "vm_metrics"):
        assert measurement in run.stdout
    assert doctor.exit_code in (0, 1) and "guest agent calls: connected to qemu:///system read-write" in doctor.stdout
    assert audit.not_reads() == []
    assert audit.stats_modes() == ["ro"] and audit.opened["ro"] == 2  # the run's and doctor's statistics connections
    made_read_write = {method for _, _, method in audit.read_write_calls()}
    assert "guestInfo" in made_read_write and made_read_write <= AGENT_CALLS
    assert not [call for call in audit.calls if call[0] == "ro" and call[2] == "guestInfo"]


def test_vm_filesystems_says_what_virsh_guestinfo_says_at_the_same_moment(agent_lab):
    name = agent_lab[0]
    before = guestinfo(name, "--filesystem")
    done = subprocess.run(
        [KVM_TELEGRAF, "--once", "--read-write", "--collect", "guest", *only([name])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    after = guestinfo(name, "--filesystem")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    filesystems = lines_of(done.stdout, "vm_filesystems")
    assert int(before["fs.count"]) == len(filesystems) >= 1
    for i, (_, tags, fields, _) in enumerate(sorted(filesystems, key=lambda line: line[1]["mountpoint"])):
        prefix = f"fs.{i}."
        assert (tags["mountpoint"], tags["fstype"]) == (before[prefix + "mountpoint"], before[prefix + "fstype"])
        assert fields["total_bytes"] == int(before[prefix + "total-bytes"])
        assert fields["used_bytes"] in (int(before[prefix + "used-bytes"]), int(after[prefix + "used-bytes"]))
        disks = [before[f"{prefix}disk.{j}.alias"] for j in range(int(before[prefix + "disk.count"]))]
        assert fields["disks"] == '"' + ",".join(disks) + '"'
    assert ("/mnt/data", "ext2") in [(t["mountpoint"], t["fstype"]) for _, t, _, _ in filesystems]
    (guest,) = lines_of(done.stdout, "vm_guest")
    os_info = guestinfo(name, "--os", "--hostname")
    assert guest[2]["kernel_release"] == f'"{os_info["os.kernel-release"]}"'
    assert guest[2]["hostname"] == f'"{os_info["hostname"]}"' and guest[2]["agent_responding"] == "true"


def driven(names: List[str]) -> ExecdDriver:
    """With D! lines: a failed agent call is logged there."""
    argv = [KVM_TELEGRAF, "--log-level", "debug", "--read-write", "--collect", "guest", "--guest-refresh", "1s"]
    return ExecdDriver([*argv, *only(names)])


def by_vm(lines: List[Line], measurement: str) -> Dict[str, Dict[str, object]]:
    return {tags["vm"]: fields for m, tags, fields, _ in lines if m == measurement}


def test_a_stopped_agent_costs_only_its_own_guest_fields_and_comes_back_when_it_answers(agent_lab):
    healthy, stopped = agent_lab
    with driven(agent_lab) as driver:
        first = next_batch(driver)
        assert {vm: f["agent_responding"] for vm, f in by_vm(first, "vm_guest").items()} == {
            healthy: "true",
            stopped: "true",
        }
        run_lab(PREFIX, "agent-stop", stopped)
        time.sleep(3)  # the guest's loop reads the mark within a second
        healthy_answers = []
        for _ in range(6):  # the first of these waits out the hung call's 2 s deadline, the others do not
            began = time.monotonic()
            lines = next_batch(driver)
            took = time.monotonic() - began
            guests = by_vm(lines, "vm_guest")
            assert guests[stopped] == {"agent_responding": "false"}
            healthy_answers.append(guests[healthy])
            assert set(by_vm(lines, "vm_metrics")) == {healthy, stopped}
            assert by_vm(lines, "vm_metrics")[stopped]["responding"] == "true"  # its QEMU answers: only the agent
            assert set(by_vm(lines, "vm_filesystems")) <= {healthy}
            assert took < 10  # within the 5 s --timeout plus the harness's settle time
        # The hung agent does not keep the healthy one from answering, in any batch: each call thread has a
        # connection of its own (test_a_healthy_agent_answers_every_refresh_beside_a_hung_one says why).
        answered = [f for f in healthy_answers if f["agent_responding"] == "true" and "hostname" in f]
        assert len(answered) == len(healthy_answers), (healthy_answers, [m for lvl, m in driver.stderr if lvl == "D"])
        run_lab(PREFIX, "agent-resume", stopped)
        time.sleep(3)  # the hung call returns, then the next refresh asks again
        next_batch(driver)
        back = by_vm(next_batch(driver), "vm_guest")
        assert back[stopped]["agent_responding"] == "true" and back[stopped]["os_id"] == '"ktlab"'
    assert [message for level, message in driver.stderr if level in ("E", "W")] == []


def test_a_healthy_agent_answers_every_refresh_beside_a_hung_one(agent_lab):
    """libvirt 9.0's client loses the wake-up of a call queued while another thread's call holds the connection's
    I/O (its "buck": the hung agent call's thread waits in the connection's event loop, and the new call is not sent
    until that loop wakes for another reason). Two full CI runs in nine, and one run of three here with libvirtd's
    debug log, saw a healthy agent's call reach libvirtd 3.1 s and 4.1 s late, beside a hung one: agent_responding
    flapped to false; and with one connection for every call, the collecting thread's own call on it (the version)
    could wait so too, for as long as the agent hung. A hundred refreshes back to back on the real libvirt client."""
    healthy, stopped = agent_lab
    agents = GuestAgents(Connection("qemu:///system", open_read_write), refresh_s=0.0)
    conn = open_read_write("qemu:///system")
    uuids = [conn.lookupByName(name).UUIDString() for name in agent_lab]
    conn.close()
    slow: List[Tuple[int, float, object]] = []

    def refreshes() -> None:
        agents.ask(uuids, time.monotonic() + 5)  # the stopped agent's call goes out and stays out
        for refresh in range(100):
            began = time.monotonic()
            agents.ask(uuids, began + 5)  # returns once the healthy call has answered, or passed its 2 s
            took = time.monotonic() - began
            answer = agents.results(uuids)[uuids[0]]
            if took > 1.0 or answer.get("responding") is not True:
                slow.append((refresh, round(took, 2), answer.get("responding")))

    run_lab(PREFIX, "agent-stop", stopped)
    try:
        time.sleep(3)  # the guest's loop reads the mark within a second
        loop = threading.Thread(target=refreshes, daemon=True)
        loop.start()
        loop.join(timeout=120)
        assert not loop.is_alive(), f"a refresh is stuck (the slow ones before it: {slow})"
        assert slow == []
    finally:
        run_lab(PREFIX, "agent-resume", stopped)  # a stuck call returns once the agent answers
        agents.close()


def test_stdin_eof_ends_the_process_at_once_while_a_call_to_a_stopped_agent_hangs(agent_lab):
    stopped = agent_lab[1]
    run_lab(PREFIX, "agent-stop", stopped)
    try:
        time.sleep(3)
        with driven([stopped]) as driver:
            lines = next_batch(driver)  # its call is out, and stays out: libvirt waits for the agent
            assert by_vm(lines, "vm_guest")[stopped] == {"agent_responding": "false"}
            result = driver.stop()
        assert result.returncode == 0 and not result.sent_sigterm and result.elapsed < 2.0
    finally:
        run_lab(PREFIX, "agent-resume", stopped)


def test_collect_guest_without_read_write_is_refused_at_start_with_one_error_line():
    done = subprocess.run(
        [KVM_TELEGRAF, "--collect", "guest", "--once"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("E! --collect guest needs --read-write")
