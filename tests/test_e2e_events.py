"""libvirt events on the live lab: what happens between two newlines reaches the next batch.

The guest is one of its own (the ``event_lab`` fixture, kte-*): these tests destroy,
suspend and hot-plug it, driven as Telegraf's execd drives the process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from tests.conftest import run_lab
from tests.harness.cli import KVM_TELEGRAF, Line, next_batch, only
from tests.harness.execd import ExecdDriver

pytestmark = pytest.mark.lab

HOTPLUG_MAC = "52:54:00:ee:0e:01"
NIC_XML = f"<interface type='ethernet'><mac address='{HOTPLUG_MAC}'/><model type='virtio'/></interface>"
TAG_NS = "http://example.org/kvm-telegraf/e2e"


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-q", *args], capture_output=True, text=True, check=True, timeout=60).stdout


def driven(*args: str) -> ExecdDriver:
    return ExecdDriver([KVM_TELEGRAF, "--collect", "events", *args])


def events_of(lines: List[Line], name: str) -> List[Line]:
    return [line for line in lines if line[0] == "vm_events" and line[1]["vm"] == name]


def wait_for_stats(name: str, key: str, timeout: float = 60) -> None:
    """Until the restarted guest reports *key* again (its virtio drivers loaded)."""
    deadline = time.monotonic() + timeout
    while key not in virsh("domstats", name) and time.monotonic() < deadline:
        time.sleep(0.5)


def test_a_guest_destroyed_and_started_between_two_newlines_shows_both_events_in_order(event_lab):
    name = event_lab[0]
    with driven(*only(event_lab)) as driver:
        first = next_batch(driver)
        previous_stamp = first[0][3]
        assert events_of(first, name) == [], "no event before anything happened"
        before = time.time_ns()
        virsh("destroy", name)
        virsh("start", name)
        after = time.time_ns()
        second = next_batch(driver)
        metrics = [line for line in second if line[0] == "vm_metrics"]
        assert metrics[0][2]["state"] == 1, "the polled series sees it running both times"
        mine = events_of(second, name)
        events = [(tags["event"], fields.get("detail")) for _, tags, fields, _ in mine]
        # libvirt 9.0 also sends shutdown/host before the stop and resumed/unpaused before the start
        stopped, started = events.index(("stopped", '"destroyed"')), events.index(("started", '"booted"'))
        assert stopped < started
        stamps = [stamp for *_, stamp in mine]
        assert stamps == sorted(stamps), "in the order they arrived"
        assert previous_stamp < before <= stamps[stopped] <= stamps[started] <= after < metrics[0][3]
        assert all(fields["count"] == 1 for _, _, fields, _ in events_of(second, name))
        assert events_of(next_batch(driver), name) == [], "each event is reported once"
    wait_for_stats(name, "balloon.usable")


def test_suspend_and_resume_between_two_newlines_are_both_in_the_next_batch(event_lab):
    name = event_lab[0]
    with driven(*only(event_lab)) as driver:
        next_batch(driver)
        virsh("suspend", name)
        virsh("resume", name)
        events = [(tags["event"], fields["detail"]) for _, tags, fields, _ in events_of(next_batch(driver), name)]
        assert events == [("suspended", '"paused"'), ("resumed", '"unpaused"')]


def test_a_nic_attached_and_detached_is_an_event_and_the_next_batch_counts_it(event_lab):
    name = event_lab[0]
    with driven(*only(event_lab)) as driver, tempfile.NamedTemporaryFile("w", suffix=".xml") as nic:
        nic.write(NIC_XML)
        nic.flush()

        def interface_count(lines: List[Line]) -> object:
            return next(fields["interface_count"] for m, _, fields, _ in lines if m == "vm_features")

        assert interface_count(next_batch(driver)) == 2
        virsh("attach-device", name, nic.name, "--live")
        time.sleep(1)
        attached = next_batch(driver)
        assert [tags["event"] for _, tags, _, _ in events_of(attached, name)] == ["device_added"]
        assert interface_count(attached) == 3
        virsh("detach-device", name, nic.name, "--live")
        deadline = time.monotonic() + 30  # the guest acknowledges the unplug through ACPI
        while HOTPLUG_MAC in virsh("domiflist", name) and time.monotonic() < deadline:
            time.sleep(0.5)
        detached = next_batch(driver)
        removed = events_of(detached, name)
        assert [tags["event"] for _, tags, _, _ in removed] == ["device_removed"]
        assert removed[0][2]["device"].startswith('"net')
        assert interface_count(detached) == 2, "the cache was dropped: a removed NIC leaves no tap to notice"


def test_a_metadata_change_is_an_event_and_the_next_batch_carries_the_new_tag(event_lab):
    name = event_lab[0]
    tag = ["--metadata-tag", f"team=metadata/{{{TAG_NS}}}owner/@team"]

    def set_team(team: str) -> None:
        virsh("metadata", name, "--live", "--uri", TAG_NS, "--key", "e2e", "--set", f"<owner team='{team}'/>")

    set_team("blue")
    try:
        with driven(*only(event_lab), *tag) as driver:
            assert {tags.get("team") for _, tags, _, _ in next_batch(driver)} == {"blue"}
            set_team("green")
            second = next_batch(driver)
            assert [tags["event"] for _, tags, _, _ in events_of(second, name)] == ["metadata_changed"]
            assert {tags.get("team") for _, tags, _, _ in second} == {"green"}
    finally:
        virsh("metadata", name, "--live", "--uri", TAG_NS, "--remove")


@contextlib.contextmanager
def full_filesystem() -> Iterator[str]:
    """A 1 MiB tmpfs with no block left, holding an 8 MiB sparse disk image: every new write is ENOSPC."""
    mountpoint = tempfile.mkdtemp(prefix="kte-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", mountpoint], check=True)
    try:
        image = f"{mountpoint}/vdb.img"
        with open(image, "wb") as handle:
            handle.truncate(8 << 20)
        subprocess.run(["dd", "if=/dev/zero", f"of={mountpoint}/ballast", "bs=64k"], capture_output=True)
        yield image
    finally:
        subprocess.run(["umount", "-l", mountpoint], check=False)
        with contextlib.suppress(OSError):
            os.rmdir(mountpoint)


def booted_with(name: str, xml: str) -> None:
    virsh("destroy", name)
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as handle:
        handle.write(xml)
        handle.flush()
        virsh("define", handle.name)
    virsh("start", name)


def test_a_disk_write_that_finds_the_host_filesystem_full_is_an_io_error_event(event_lab):
    """vdb moved onto a full filesystem with error_policy='report': the guest's next write fails with ENOSPC."""
    name = event_lab[0]
    original = virsh("dumpxml", "--inactive", name)
    with full_filesystem() as image:
        vdb = original.split("<target dev='vdb'")[0].rsplit("<disk ", 1)[1]
        source = vdb.split("<source file='")[1].split("'")[0]
        moved = original.replace(source, image).replace(
            "<driver name='qemu' type='raw'/>\n      <source file='" + image,
            "<driver name='qemu' type='raw' error_policy='report'/>\n      <source file='" + image,
        )
        assert "error_policy='report'" in moved
        try:
            with driven(*only(event_lab)) as driver:
                next_batch(driver)
                booted_with(name, moved)
                deadline = time.monotonic() + 60
                errors: List[Line] = []
                while not errors and time.monotonic() < deadline:
                    time.sleep(2)
                    errors = [line for line in events_of(next_batch(driver), name) if line[1]["event"] == "io_error"]
            assert errors, "no io_error within 60 s of the boot"
            fields = errors[0][2]
            assert fields["action"] == '"report"'
            assert "reason" not in fields, "libvirt 9.0 with QEMU 7.2 gives an empty reason for ENOSPC: left out"
            assert fields["device"].startswith('"virtio-disk')
        finally:
            booted_with(name, original)
    wait_for_stats(name, "balloon.usable")


def test_the_event_thread_delays_neither_stdin_eof_nor_sigterm(event_lab):
    for stop in ("eof", "sigterm"):
        driver = ExecdDriver([KVM_TELEGRAF, "--collect", "events", *only(event_lab)])
        driver.start()
        try:
            next_batch(driver)  # connected and subscribed
            virsh("suspend", event_lab[0])  # an event waiting in the queue at exit
            virsh("resume", event_lab[0])
            started = time.monotonic()
            if stop == "sigterm":
                os.kill(driver.pid, signal.SIGTERM)
                while driver.running and time.monotonic() - started < 5:
                    time.sleep(0.01)
                assert not driver.running
                assert time.monotonic() - started < 1.0
        finally:
            result = driver.stop()
        assert result.returncode == 0
        if stop == "eof":
            assert result.returncode == 0 and not result.sent_sigterm
            assert result.elapsed < 1.0, f"{result.elapsed:.2f}s from stdin EOF to exit"


def libvirtd_pid() -> int:
    return int(Path("/run/libvirtd.pid").read_text())


def restart_libvirtd() -> None:
    """SIGTERM and start again, as the fault tests do; the guests' QEMU keeps running meanwhile."""
    pid = libvirtd_pid()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    run_lab("kte-", "daemons")
    while subprocess.run(["virsh", "list"], capture_output=True).returncode and time.monotonic() < deadline + 30:
        time.sleep(0.2)


def test_after_libvirtd_restarts_the_callbacks_are_registered_again(event_lab):
    name = event_lab[0]
    with driven(*only(event_lab)) as driver:
        next_batch(driver)
        try:
            restart_libvirtd()
        finally:
            if subprocess.run(["virsh", "list"], capture_output=True).returncode:
                run_lab("kte-", "daemons")
        time.sleep(1)
        assert [line for line in next_batch(driver) if line[0] == "vm_metrics"], "the first cycle after it is back"
        virsh("suspend", name)
        virsh("resume", name)
        events = [tags["event"] for _, tags, _, _ in events_of(next_batch(driver), name)]
        assert events == ["suspended", "resumed"]
        errors = [message for level, message in driver.stderr if level == "E"]
        assert len(errors) <= 1, errors  # the outage, if a cycle fell into it
