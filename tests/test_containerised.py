"""Containerised libvirt (docs/configuration.md): a daemon whose sockets are not the default ones, reached by
naming its read-only socket, as Telegraf's user.

The matrix's tree daemons (tests/lab/flavours.py) are set up as a container's: sockets under their own root,
``auth_unix_ro = "none"``, the read-only socket at mode 0777, no polkit, and a user database of their own that
does not know the host's ``telegraf`` user. The host's daemon is named by its socket path too, so the recipe is
checked on every flavour.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
from typing import Iterator

import pytest

from tests.harness.cli import KVM_TELEGRAF, only, parse_line
from tests.harness.matrix import HOST, Daemon, flavours

pytestmark = pytest.mark.lab

TELEGRAF = "telegraf"


def read_only_uri(daemon: Daemon) -> str:
    return f"qemu+unix:///system?socket={flavours.socket_path(daemon.flavour, read_only=True)}"


def as_telegraf(*argv: str) -> subprocess.CompletedProcess:
    runuser = shutil.which("runuser")
    assert runuser, "runuser is part of util-linux"
    return subprocess.run([runuser, "-u", TELEGRAF, "--", *argv], capture_output=True, text=True, timeout=180)


@contextlib.contextmanager
def known_to_the_daemon(daemon: Daemon) -> Iterator[None]:
    """The host's telegraf user and group, by their numbers, in the tree's /etc/passwd and /etc/group for the
    block (as an operator adds them in the container: libvirt 7.0 looks the group up too); the files as they
    were afterwards. The host's daemon knows them already."""
    if daemon.flavour == HOST:
        yield
        return
    entry = pwd.getpwnam(TELEGRAF)
    records = {
        "/etc/passwd": f"{TELEGRAF}:x:{entry.pw_uid}:{entry.pw_gid}::/nonexistent:/usr/sbin/nologin\n",
        "/etc/group": f"{TELEGRAF}:x:{entry.pw_gid}:\n",
    }
    before = {}
    for name, record in records.items():
        path = flavours.root(daemon.flavour) + name
        with open(path, encoding="utf-8") as f:
            before[path] = f.read()
        with open(path, "a", encoding="utf-8") as f:
            f.write(record)
    try:
        yield
    finally:
        for path, text in before.items():
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)


def test_telegrafs_user_reads_the_daemon_over_its_named_read_only_socket(daemon):
    uri = read_only_uri(daemon)
    with known_to_the_daemon(daemon):
        done = as_telegraf(KVM_TELEGRAF, "--uri", uri, "--timeout", "30s", "--once", *only(daemon.guests))
        doctor = as_telegraf(KVM_TELEGRAF, "--uri", uri, "--timeout", "30s", *only(daemon.guests), "doctor")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    lines = [parse_line(line) for line in done.stdout.splitlines()]
    assert sorted(tags["vm"] for measurement, tags, _, _ in lines if measurement == "vm_metrics") == sorted(
        daemon.guests
    )
    first = doctor.stdout.splitlines()[0]
    socket = flavours.socket_path(daemon.flavour, read_only=True)
    assert first.startswith("ok") and f"read-only over {socket}, as user telegraf" in first, doctor.stdout
    assert doctor.returncode == 0, doctor.stdout


@pytest.mark.trees
def test_a_daemon_that_has_no_user_record_for_telegrafs_uid_refuses_it_and_doctor_says_what_to_add(daemon):
    uri = read_only_uri(daemon)
    done = as_telegraf(KVM_TELEGRAF, "--uri", uri, "--once", *only(daemon.guests))
    user = pwd.getpwnam(TELEGRAF)
    assert done.returncode == 1 and done.stdout == ""
    # libvirt 7.0 looks the client's group up first, later ones its user.
    assert done.stderr in (
        f"E! cannot connect to {uri}: Failed to find user record for uid '{user.pw_uid}'\n",
        f"E! cannot connect to {uri}: Failed to find group record for gid '{user.pw_gid}'\n",
    ), done.stderr
    doctor = as_telegraf(KVM_TELEGRAF, "--uri", uri, *only(daemon.guests), "doctor")
    (line,) = doctor.stdout.splitlines()
    assert doctor.returncode == 1 and line.startswith("FAIL") and "add a group and a user with those numbers" in line


@contextlib.contextmanager
def socket_mode(path: str, mode: int) -> Iterator[None]:
    """The socket's mode changed for the block, and given back after it."""
    before = stat.S_IMODE(os.stat(path).st_mode)
    os.chmod(path, mode)
    try:
        yield
    finally:
        os.chmod(path, before)


@pytest.mark.trees
def test_a_read_only_socket_closed_to_others_fails_doctor_with_the_permission_hint(daemon):
    socket = flavours.socket_path(daemon.flavour, read_only=True)
    with known_to_the_daemon(daemon), socket_mode(socket, 0o700):
        doctor = as_telegraf(KVM_TELEGRAF, "--uri", read_only_uri(daemon), *only(daemon.guests), "doctor")
    (line,) = doctor.stdout.splitlines()
    assert doctor.returncode == 1 and line.startswith("FAIL") and "Permission denied" in line, doctor.stdout
    assert "the socket does not let user telegraf in" in line
