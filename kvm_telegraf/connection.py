"""The libvirt connection: opened once, reopened after libvirtd goes away."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Optional, TypeVar

from kvm_telegraf.log import LIBVIRT_TEXT_MAX_CHARS, clip
from kvm_telegraf.redact import redact

T = TypeVar("T")

# Called with a fresh connection and what to call when libvirt finds it dead; returns how to undo it.
Subscriber = Callable[[Any, Callable[[], None]], Callable[[], None]]


class LibvirtUnavailableError(Exception):
    """libvirt could not be reached; the message is one line, safe to log."""


def redact_uri(uri: str) -> str:
    """The URI as lines show it: without user information or secret query values (kvm_telegraf.redact), clipped.

    >>> redact_uri("qemu+ssh://root:secret@kvm1/system")
    'qemu+ssh://***@kvm1/system'
    """
    return clip(redact(uri, uri, min_chars=1))


def error_message(exc: BaseException, uri: Optional[str] = None) -> str:
    """libvirt's message on one line, clipped to LIBVIRT_TEXT_MAX_CHARS, with every URI's credentials out of it,
    and *uri*'s (the connection's) wherever libvirt or ssh quote them."""
    text = exc.get_error_message() if hasattr(exc, "get_error_message") else None
    # libvirt's last error can be unset (a binding-side failure): then the exception's own text
    return clip(redact(" ".join(str(text or exc).split()) or exc.__class__.__name__, uri), LIBVIRT_TEXT_MAX_CHARS)


def quiet_libvirt_errors(libvirt: Any) -> None:
    """libvirt's default handler prints unprefixed lines to stderr, which Telegraf logs as errors.

    Errors still arrive as exceptions; this only stops the duplicate printing.
    """
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def open_read_only(uri: str) -> Any:
    import libvirt  # lazy: --help and --version must not pay for it

    quiet_libvirt_errors(libvirt)
    return libvirt.openReadOnly(uri)


def open_read_write(uri: str) -> Any:
    """A full connection (--read-write): what the guest agent calls need; see the README's Security section."""
    import libvirt

    quiet_libvirt_errors(libvirt)
    return libvirt.open(uri)


class Connection:
    """A persistent connection that reopens on demand after an error.

    It does not log: the pipeline reports an outage once when it starts and
    once when it ends.
    """

    def __init__(self, uri: str, opener: Callable[[str], Any] = open_read_only) -> None:
        self.uri = uri
        self.opener = opener
        self.subscriber: Optional[Subscriber] = None  # the event callbacks, registered again on every new connection
        self._conn: Optional[Any] = None
        self._hostname: Optional[str] = None
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._dead = False  # set by libvirt's close callback (event thread): keepalive or EOF found it gone

    def another(self) -> Connection:
        """A second connection to the same URI, opened the same way: a caller's own, closed by it."""
        return Connection(self.uri, self.opener)

    def _died(self) -> None:
        self._dead = True

    def get(self) -> Any:
        """The open connection; LibvirtUnavailableError when it cannot be had."""
        if self._dead:  # noticed between cycles: reconnect now rather than fail a stats call first
            self.close()
        if self._conn is None:
            try:
                self._conn = self.opener(self.uri)
            except Exception as exc:  # libvirtError, or ImportError without the binding
                raise LibvirtUnavailableError(
                    f"cannot connect to {redact_uri(self.uri)}: {error_message(exc, self.uri)}"
                ) from None
            if self.subscriber is not None:
                self._unsubscribe = self.subscriber(self._conn, self._died)
        return self._conn

    def hostname(self) -> str:
        """libvirt's name for the host behind the connection, asked once per connection."""
        conn = self.get()
        if self._hostname is None:
            try:
                self._hostname = str(conn.getHostname())
            except Exception as exc:  # libvirtError: the daemon went away
                raise LibvirtUnavailableError(
                    f"cannot get the hostname of {redact_uri(self.uri)}: {error_message(exc, self.uri)}"
                ) from None
        return self._hostname

    def close(self) -> None:
        """Drop the connection (after a failed call, or at exit); the next get() reopens it."""
        conn, self._conn, self._hostname = self._conn, None, None
        unsubscribe, self._unsubscribe, self._dead = self._unsubscribe, None, False
        if unsubscribe is not None:
            unsubscribe()
        if conn is not None:
            with contextlib.suppress(Exception):  # already dead: nothing to release
                conn.close()


def is_alive(conn: Any) -> bool:
    try:
        return bool(conn.isAlive())
    except Exception:
        return False


def on_live(connection: Connection, call: Callable[[Any], T]) -> T:
    """call(conn) on *connection*; once more on a new connection if it failed on a dead one (libvirtd restarted)."""
    conn = connection.get()
    try:
        return call(conn)
    except Exception:
        if is_alive(conn):
            raise
        connection.close()
    return call(connection.get())
