"""When a cycle runs: on a stdin newline (Telegraf's ``signal = "STDIN"``), on a timer, or once.

This module owns the edges that are not libvirt: reading stdin's newlines and
the signal handlers. A SIGTERM that lands while a batch is being written waits
until the batch is out, so Telegraf never reads a partial line.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
import time
from typing import BinaryIO, Callable, Iterator, Optional

from kvm_telegraf.log import get_logger

log = get_logger(__name__)


class StdinTrigger:
    """Counts newlines on stdin, read by the caller between cycles; while a cycle runs, at most one more waits.

    Newlines that pile up because a collection was slower than Telegraf's
    interval coalesce into one: the cycle after a slow one reports fresh data,
    instead of a backlog of cycles reporting the same moment.

    No reader thread: a thread that read stdin and woke the main one cost 60-70 us of
    CPU per newline (the thread's wake-up, a Condition's lock per wait, the GIL passed
    twice), 5 % of a 4-guest cycle under Telegraf; select() and os.read() in the caller
    cost no thread switch at all.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        try:
            self._fd: Optional[int] = stream.fileno()
        except (OSError, ValueError, AttributeError):  # an in-memory stream (click's CliRunner)
            self._fd = None
        self._pending = 0
        self._running = False  # a cycle has been handed out and next() not asked since
        self._eof = False

    def _ready(self, timeout: Optional[float]) -> bool:
        """Whether a read would not block, within *timeout* seconds (None: wait for it)."""
        if self._fd is None:  # an in-memory stream never blocks
            return True
        try:
            readable, _, _ = select.select([self._fd], [], [], timeout)
        except (OSError, ValueError):  # stdin closed under us: same as EOF
            return True
        return bool(readable)

    def _take(self, cap: int) -> None:
        """Read what is there; its newlines count up to *cap* pending cycles."""
        try:
            chunk = self._stream.readline() if self._fd is None else os.read(self._fd, 65536)
        except (OSError, ValueError):  # stdin closed under us: same as EOF
            chunk = b""
        if not chunk:
            self._eof = True
            return
        newlines = chunk.count(b"\n")
        if newlines:
            self._pending = min(self._pending + newlines, cap)

    def next(self, timeout: Optional[float] = None) -> Optional[bool]:
        """True: run a cycle. False: stdin closed and nothing is pending. None: timeout."""
        if self._running:
            self._running = False
            # The newlines that came while the cycle ran are one cycle, however many.
            while not self._eof and self._ready(0):
                self._take(1)
                if self._fd is None:
                    break
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._pending and not self._eof:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            if self._ready(remaining):
                self._take(2)
        if self._pending:
            self._pending -= 1
            self._running = True
            return True
        return False


# After SIGTERM, how long a blocked batch write may still take before the process exits anyway.
WRITE_GRACE_S = 2.0
# Signals Telegraf never sends but operators' tools do: their default action stays, with a last line first.
FATAL_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT)


class Shutdown:
    """The process's signals.

    SIGTERM and SIGINT end the process at once, except inside a batch write, which
    may finish within WRITE_GRACE_S: a reader that stopped reading loses nothing by
    a line it never reads. SIGHUP asks for the domain configurations to be read
    again at the next cycle. SIGUSR1, SIGUSR2 and SIGQUIT keep their default
    action, after one line saying so.
    """

    def __init__(self) -> None:
        self._writing = False
        self._requested: Optional[int] = None
        self._reload = False

    def install(self) -> Callable[[], None]:
        """Take over the signals; returns a function that gives them back."""
        handlers = {signal.SIGTERM: self._handle, signal.SIGINT: self._handle, signal.SIGHUP: self._hangup}
        handlers.update({signum: self._fatal for signum in FATAL_SIGNALS})
        previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
        previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._write_overdue)

        def restore() -> None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        return restore

    def _handle(self, signum: int, _frame: object) -> None:
        self._requested = signum
        if not self._writing:
            raise SystemExit(self.exit_code)
        signal.setitimer(signal.ITIMER_REAL, WRITE_GRACE_S)

    def _write_overdue(self, _signum: int, _frame: object) -> None:
        log.warning("stdout took none of the batch for %gs after the stop signal; exiting without it", WRITE_GRACE_S)
        raise SystemExit(self.exit_code)

    def _hangup(self, _signum: int, _frame: object) -> None:
        self._reload = True
        log.info("SIGHUP: the domain configurations are read again at the next cycle")

    def _fatal(self, signum: int, _frame: object) -> None:
        log.error("%s received: ending with its default action", signal.Signals(signum).name)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def take_reload(self) -> bool:
        """Whether a SIGHUP came since the last call."""
        reload, self._reload = self._reload, False
        return reload

    @property
    def exit_code(self) -> int:
        return 130 if self._requested == signal.SIGINT else 0

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        self._writing = True
        try:
            yield
        finally:
            self._writing = False
            signal.setitimer(signal.ITIMER_REAL, 0)
        if self._requested is not None:
            raise SystemExit(self.exit_code)


def stdin_is_pipe(stream: BinaryIO) -> bool:
    """Under Telegraf stdin is a pipe that closes on stop; a terminal or /dev/null is not watched."""
    try:
        return stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


def run_on_newlines(trigger: StdinTrigger, cycle: Callable[[], None]) -> None:
    """One cycle per newline until stdin closes."""
    while trigger.next():
        cycle()


def run_every(interval_s: float, cycle: Callable[[], None], trigger: Optional[StdinTrigger]) -> None:
    """Self-timed cycles on a fixed grid (no drift); stops when a watched stdin closes."""
    next_tick = time.monotonic()
    while True:
        cycle()
        next_tick += interval_s
        now = time.monotonic()
        if next_tick < now:  # a slow cycle: skip the ticks it overran
            next_tick = now + interval_s - (now - next_tick) % interval_s
        if trigger is None:
            time.sleep(next_tick - now)
            continue
        while (remaining := next_tick - time.monotonic()) > 0:
            if trigger.next(remaining) is False:  # newlines are ignored in this mode
                return
