"""The libvirt connection: opened once, reopened after an error, credentials never in a message.

``test:///default`` is libvirt's own in-process driver: a real connection, enough for
everything here but the stats (see tests/test_collect.py for those on the lab's libvirtd).
"""

from __future__ import annotations

import libvirt
import pytest

from kvm_telegraf.connection import (
    Connection,
    LibvirtUnavailableError,
    error_message,
    on_live,
    open_read_only,
    redact_uri,
)

UNREACHABLE = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("qemu+ssh://root:secret@kvm1/system", "qemu+ssh://***@kvm1/system"),
        (
            "qemu+tls://monitor@kvm2.example/system?pkipath=/etc/pki",
            "qemu+tls://***@kvm2.example/system?pkipath=/etc/pki",
        ),
        ("qemu+ssh://kvm1/system", "qemu+ssh://kvm1/system"),
        ("qemu:///system", "qemu:///system"),
        ("test:///default", "test:///default"),
    ],
)
def test_a_uri_is_shown_without_its_user_or_password(uri, shown):
    assert redact_uri(uri) == shown


def test_a_libvirt_error_becomes_one_line_without_credentials():
    error = libvirt.libvirtError("unable to connect to qemu+ssh://root:secret@kvm1/system:\n  Connection refused")
    assert error_message(error) == "unable to connect to qemu+ssh://***@kvm1/system: Connection refused"


def test_an_error_without_a_message_is_named_by_its_type():
    assert error_message(RuntimeError()) == "RuntimeError"


def test_the_connection_is_opened_once_and_kept():
    opened = []

    def opener(uri):
        opened.append(uri)
        return open_read_only(uri)

    connection = Connection("test:///default", opener)
    first = connection.get()
    assert connection.get() is first
    assert opened == ["test:///default"]
    assert first.isAlive()
    connection.close()


def test_after_close_the_next_get_opens_a_new_connection_and_asks_the_hostname_again():
    hostnames = []

    class CountingHostname:
        def __init__(self, conn):
            self.conn = conn

        def getHostname(self):  # noqa: N802 - libvirt's name
            hostnames.append(1)
            return self.conn.getHostname()

        def close(self):
            return self.conn.close()

    connection = Connection("test:///default", lambda uri: CountingHostname(open_read_only(uri)))
    first = connection.get()
    assert connection.hostname() == connection.hostname() == first.conn.getHostname()
    assert len(hostnames) == 1
    connection.close()
    assert connection.get() is not first
    connection.hostname()
    assert len(hostnames) == 2
    connection.close()


def test_an_unreachable_daemon_is_one_line_naming_the_uri():
    connection = Connection(UNREACHABLE)
    with pytest.raises(LibvirtUnavailableError) as unavailable:
        connection.get()
    message = str(unavailable.value)
    assert message.startswith(f"cannot connect to {UNREACHABLE}: ")
    assert "/nonexistent/libvirt-sock" in message.split(": ", 1)[1]
    assert "\n" not in message


def test_a_failed_open_is_tried_again_on_the_next_get():
    attempts = []

    def opener(uri):
        attempts.append(uri)
        if len(attempts) == 1:
            raise libvirt.libvirtError("Failed to connect socket to '/run/libvirt/libvirt-sock-ro': Connection refused")
        return open_read_only("test:///default")

    connection = Connection("qemu+ssh://ops:hunter2@kvm1/system", opener)
    with pytest.raises(LibvirtUnavailableError, match=r"^cannot connect to qemu\+ssh://\*\*\*@kvm1/system: Failed"):
        connection.get()
    assert connection.get().isAlive()
    assert len(attempts) == 2
    connection.close()


def test_closing_a_connection_that_already_died_does_not_raise():
    class Dead:
        def close(self):
            raise libvirt.libvirtError("internal error: client socket is closed")

    connection = Connection("test:///default", lambda _uri: Dead())
    connection.get()
    connection.close()
    connection.close()  # and twice is fine too


class DyingAfterOneCall:
    """A connection whose first call finds libvirtd gone: the call fails, and isAlive() says so from then on."""

    def __init__(self, fails: bool) -> None:
        self.fails, self.alive = fails, True

    def isAlive(self) -> bool:  # noqa: N802 - libvirt's API
        return self.alive

    def getHostname(self) -> str:  # noqa: N802 - libvirt's API
        if self.fails:
            self.alive = False
            raise libvirt.libvirtError("End of file while reading data: Input/output error")
        return "kvm1"


@pytest.mark.parametrize("failures", [0, 1])
def test_a_call_on_a_live_connection_is_made_once_and_on_a_dead_one_once_more_on_a_new_connection(failures):
    opened = []

    def opener(_uri):
        opened.append(DyingAfterOneCall(fails=len(opened) < failures))
        return opened[-1]

    connection = Connection("qemu:///system", opener)
    assert on_live(connection, lambda conn: conn.getHostname()) == "kvm1"
    assert len(opened) == failures + 1
    assert connection.get() is opened[-1]


def test_a_call_that_fails_on_a_live_connection_raises_and_keeps_the_connection():
    def refused(conn):
        raise libvirt.libvirtError("Requested operation is not valid: domain is not running")

    connection = Connection("test:///default", open_read_only)
    first = connection.get()
    with pytest.raises(libvirt.libvirtError, match="not running"):
        on_live(connection, refused)
    assert connection.get() is first
    connection.close()
