"""Several hypervisors from one process.

The lab tests are the evidence: two URIs to the lab's libvirtd, and a "host"
whose socket accepts and never answers. The unit tests above them replay
recorded guests and add a host that blocks, to pin the logging per episode.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from typing import Callable, Dict, Iterator, List

import pytest

from kvm_telegraf.collect import Collector
from kvm_telegraf.connection import Connection, LibvirtUnavailableError
from kvm_telegraf.hosts import HOST_GRACE_S, HostSet
from kvm_telegraf.shape import shape_snapshot
from tests.conftest import load_snapshots
from tests.harness.cli import KVM_TELEGRAF
from tests.harness.execd import ExecdDriver
from tests.harness.loglines import log_lines
from tests.harness.stalling import FULL, NOWAIT, StallingConnection
from tests.replay import ReplayConnection

GOOD, OTHER, BAD = "qemu+ssh://kvm1/system", "qemu+ssh://kvm2/system", "qemu+ssh://ops:s3cret@kvm3/system"


@pytest.fixture
def logged() -> Iterator[List[str]]:
    with log_lines() as lines:
        yield lines


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Holds a blocking opener until the test ends, so its thread finishes."""
    event = threading.Event()
    yield event
    event.set()


def host_set(openers: Dict[str, Callable], deadline_s: float = 5.0) -> HostSet:
    collectors = [Collector(Connection(uri, opener), timeout_s=deadline_s) for uri, opener in openers.items()]
    return HostSet(collectors, deadline_s=deadline_s)


def replay(hostname: str) -> Callable:
    connection = ReplayConnection(load_snapshots("lab-running.json"), hostname=hostname)
    return lambda _uri: connection


def test_each_host_s_domains_carry_libvirt_s_hostname_for_that_host():
    snapshot = host_set({GOOD: replay("kvm1"), OTHER: replay("kvm2")}).collect()
    assert [d.hypervisor for d in snapshot.domains] == ["kvm1", "kvm1", "kvm2", "kvm2"]
    points, _ = shape_snapshot(snapshot, {})
    assert all(dict(p.tags)["hypervisor"] in ("kvm1", "kvm2") for p in points)


def test_a_host_that_reports_a_hostname_another_uri_has_is_left_out_with_one_warning(logged):
    third = "qemu+unix:///system?socket=/srv/kvm1-b/libvirt-sock"
    hosts = host_set({GOOD: replay("kvm1"), BAD: replay("kvm1"), OTHER: replay("kvm2"), third: replay("kvm1")})
    for _ in range(3):
        assert [d.hypervisor for d in hosts.collect().domains] == ["kvm1", "kvm1", "kvm2", "kvm2"]
    assert logged == [
        f"W! {label} reports hostname kvm1, as qemu+ssh://kvm1/system does: their points would share one series "
        "(hypervisor, uuid, vm), so its domains are left out; fix: give each hypervisor a hostname of its own, or "
        "drop one --uri if both reach the same daemon"
        for label in ("qemu+ssh://***@kvm3/system", third)
    ]


def test_the_batch_timestamp_is_the_latest_read_and_its_window_starts_at_the_earliest():
    early = Collector(Connection(GOOD, replay("kvm1")), clock=lambda: 100)
    late = Collector(Connection(OTHER, replay("kvm2")), clock=lambda: 250)
    snapshot = HostSet([late, early], deadline_s=5.0).collect()
    assert (snapshot.started_ns, snapshot.timestamp_ns) == (100, 250)  # every stat was read inside this window


def test_a_host_that_does_not_answer_costs_its_own_points_once_logged(gate, logged):
    def hang(_uri):
        gate.wait()
        raise OSError("gave up")

    hosts = host_set({GOOD: replay("kvm1"), BAD: hang}, deadline_s=0.2)
    for _ in range(3):
        assert {d.hypervisor for d in hosts.collect().domains} == {"kvm1"}
    (line,) = logged
    assert (
        line == "W! qemu+ssh://***@kvm3/system: did not answer within 0.2s; its domains are left out until it answers"
    )


def test_a_host_that_fails_is_logged_once_and_again_when_it_is_back(logged):
    attempts: List[int] = []
    back = ReplayConnection(load_snapshots("lab-running.json"), hostname="kvm3")

    def flaky(uri):
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("Connection refused")
        return back

    hosts = host_set({GOOD: replay("kvm1"), BAD: flaky})
    counts = [len(hosts.collect().domains) for _ in range(4)]
    assert counts == [2, 2, 4, 4]
    assert logged == [
        "E! cannot connect to qemu+ssh://***@kvm3/system: Connection refused; "
        "its domains are left out until it answers",
        "I! qemu+ssh://***@kvm3/system answers again; its domains are back",
    ]


def test_when_no_host_answers_the_cycle_fails_naming_each_host_without_credentials():
    def refuse(uri):
        raise OSError(f"cannot reach {uri}")

    with pytest.raises(LibvirtUnavailableError) as error:
        host_set({OTHER: refuse, BAD: refuse}).collect()
    message = str(error.value)
    assert message.startswith("no hypervisor answered: cannot connect to qemu+ssh://kvm2/system")
    assert "qemu+ssh://***@kvm3/system" in message and "s3cret" not in message


def test_a_saturated_host_still_gives_its_states_in_the_same_batch_by_the_deadline(logged):
    """Each host keeps its own deadline: the batch waits for none past --timeout + HOST_GRACE_S."""
    saturated = StallingConnection(load_snapshots("lab-running.json"), stall={FULL, NOWAIT}, hostname="kvm2")
    collectors = [
        Collector(Connection(uri, opener), timeout_s=0.3)
        for uri, opener in ((GOOD, replay("kvm1")), (OTHER, lambda _uri: saturated))
    ]
    try:
        hosts = HostSet(collectors, deadline_s=0.3 + HOST_GRACE_S)
        for _ in range(3):
            started = time.monotonic()
            snapshot = hosts.collect()
            assert time.monotonic() - started < 0.3 + 1.0
            by_host = {d.hypervisor: d for d in snapshot.domains}
            assert set(by_host["kvm2"].stats) == {"state.state", "state.reason"} and "cpu.time" in by_host["kvm1"].stats
    finally:
        saturated.release()
    (line,) = logged
    assert line.startswith("W! qemu+ssh://kvm2/system: libvirt answered too slowly for the batch deadline")


def test_the_same_domain_on_two_hosts_keeps_a_cpu_history_per_host():
    first, second = (host_set({GOOD: replay("kvm1"), OTHER: replay("kvm2")}) for _ in range(2))
    _, history = shape_snapshot(first.collect(), {})
    assert len(history) == 4  # 2 guests x 2 hosts, not 2


# --- on the lab: real libvirtd, real sockets ----------------------------------------------------


def batch_lines(args: List[str]) -> List[str]:
    result = subprocess.run([KVM_TELEGRAF, "--once", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.fixture
def hanging_socket(tmp_path_factory) -> Iterator[str]:
    """A unix socket that accepts connections and never answers: a hypervisor that hangs."""
    path = str(tmp_path_factory.mktemp("hang") / "libvirt-sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(16)
    held: List[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:  # closed at teardown
                return

    threading.Thread(target=accept, daemon=True).start()
    yield path
    server.close()
    for conn in held:
        conn.close()
    os.unlink(path)


@pytest.mark.lab
def test_two_uris_to_the_lab_tag_every_point_with_libvirt_s_hostname_and_read_the_one_daemon_once(lab):
    hostname = subprocess.run(["virsh", "-r", "hostname"], capture_output=True, text=True, check=True).stdout.strip()
    selectors = [arg for name in lab for arg in ("--domain", name)]
    single = batch_lines(selectors)
    both = batch_lines(
        [*selectors, "--uri", "qemu:///system", "--uri", "qemu+unix:///system?socket=/run/libvirt/libvirt-sock-ro"]
    )
    assert len(both) == len(single), "the second URI reaches the same daemon: its points would repeat the first's"
    assert all(f",hypervisor={hostname}," in line for line in both)
    assert not [line for line in single if "hypervisor=" in line]
    assert all(f",hypervisor={hostname}," in line for line in batch_lines([*selectors, "--hypervisor-tag"]))


@pytest.mark.lab
def test_a_hypervisor_that_hangs_delays_the_others_batch_by_at_most_the_timeout(lab, hanging_socket):
    timeout = 2.0
    hung = f"qemu+unix://ops:s3cret@/system?socket={hanging_socket}"
    selectors = [arg for name in lab for arg in ("--domain", name)]
    argv = [KVM_TELEGRAF, *selectors, "--timeout", f"{timeout:g}s", "--uri", "qemu:///system", "--uri", hung]
    driver = ExecdDriver(argv)
    driver.start()
    try:
        delays, sizes = [], []
        for _ in range(3):
            ticked = time.monotonic()
            assert driver.tick()
            batch = driver.read_batch(timeout=timeout + 5, settle=0.5)
            with driver.lock:
                arrived = max(at for at, line in driver.stdout_log if line in batch)
            delays.append(arrived - ticked)
            sizes.append(len(batch))
    finally:
        result = driver.stop()
    assert result.returncode == 0 and not result.sent_sigterm, result
    assert sizes == [7 * len(lab)] * 3, "the good host's points, every time"
    assert delays[0] <= timeout + 1.0, delays
    assert max(delays[1:]) < timeout, f"a host known to hang is not waited for again: {delays}"
    warnings = [message for level, message in driver.stderr if level in ("W", "E")]
    assert warnings == [
        f"qemu+unix://***@/system?socket={hanging_socket}: did not answer within {timeout + HOST_GRACE_S:g}s; "
        "its domains are left out until it answers"
    ]
