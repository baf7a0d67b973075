"""Drive the plugin the way Telegraf's ``[[inputs.execd]]`` drives it, in-process and fast.

The real Telegraf (``make telegraf``) runs the drop-in end to end in tests/test_telegraf.py: restarts after
``restart_delay``, Telegraf's log, the parser and the outputs are tested there only. This harness is for the
tests that need to time or count one batch per newline closely, hundreds of times (the soak), or watch the
process from the inside. tests/test_telegraf.py checks that it and the real Telegraf agree on how newlines
that pile up coalesce, and on the level each stderr line is logged at.

What it mirrors (influxdata/telegraf v1.37.2, plugins/inputs/execd and internal/process):

* Start: the command as an argv, stdin, stdout and stderr piped, no shell, no new process group.
* Gather with ``signal = "STDIN"``: one ``b"\\n"`` per tick, written under a 1 s deadline. Telegraf's stdin
  is an ``*os.File``, so the deadline does apply; after the child exited, the write fails.
* stderr: ``E! ``, ``W! ``, ``I! ``, ``D! ``, ``T! `` give the level, the prefix removed; any other line is an
  error. Telegraf quotes such a line (``stderr: "text"``); here it is kept bare.
* Stop: close stdin, wait 5 s, SIGTERM, wait 5 s, SIGKILL, to the child's pid only.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal as _signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

# internal/process/process.go cmdWait -> gracefulStop(processCtx, p.Cmd, 5*time.Second)
TELEGRAF_STOP_GRACE = 5.0

# execd_posix.go Gather: osStdin.SetWriteDeadline(time.Now().Add(1 * time.Second))
TICK_WRITE_DEADLINE = 1.0

LEVELS = ("E", "W", "I", "D", "T")


@dataclass
class StopResult:
    """What stop() had to do (process.Stop + gracefulStop)."""

    returncode: int | None  # None if no process was started
    sent_sigterm: bool = False
    sent_sigkill: bool = False
    elapsed: float = 0.0


def _parse_stderr_line(line: str) -> tuple[str, str]:
    # execd.go cmdReadErr: the level prefix is removed; any other line (blank ones too) is an error.
    if len(line) >= 3 and line[0] in LEVELS and line[1:3] == "! ":
        return line[0], line[3:]
    return "E", line


class ExecdDriver:
    """Run ``argv`` as Telegraf's execd input would, once (no restart), and record what it does.

    Typical use::

        with ExecdDriver([sys.executable, "-m", "kvm_telegraf"]) as d:
            d.tick()
            lines = d.read_batch(timeout=5)

    Attributes tests may read (appended to under ``self.lock``):

    * ``stdout_log``: (monotonic time, line) for every stdout line
    * ``stderr``: (level, message) as Telegraf would log them
    * ``errors``: what Telegraf would report as plugin errors (a failed stdin write, a failed read)
    """

    def __init__(self, argv: Sequence[str], *, stop_grace: float = TELEGRAF_STOP_GRACE) -> None:
        if not argv:
            raise ValueError("no command")
        self.argv = list(argv)
        self.stop_grace = stop_grace
        self.lock = threading.Lock()
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout_log: list[tuple[float, str]] = []
        self.stderr: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self._changed = threading.Condition(self.lock)
        self._proc: subprocess.Popen | None = None
        self._readers: list[threading.Thread] = []

    def start(self) -> None:
        """process.go cmdStart: Go's os/exec closes every other descriptor and resets SIGPIPE in the child."""
        if self._proc is not None:
            raise RuntimeError("an ExecdDriver can only be started once")
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            close_fds=True,
            restore_signals=True,
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, name="execd-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="execd-stderr", daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        # cmdReadOutStream: influx.NewStreamParser splits on "\r?\n" with no line-length limit. The lines are
        # handed over raw. Difference: this reads to EOF; Telegraf's Cmd.Wait closes the pipe when the child
        # exits, so it can lose what is still in the pipe (and logs "read |0: file already closed").
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._lines(self._proc.stdout.fileno()):
            line = raw.decode("utf-8", errors="surrogateescape")
            with self.lock:
                self.stdout_log.append((time.monotonic(), line))
                self._changed.notify_all()
            self.lines.put(line)

    def _read_stderr(self) -> None:
        # cmdReadErr: bufio.Scanner with ScanLines, which drops "\n" and one trailing "\r".
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._lines(self._proc.stderr.fileno()):
            level, message = _parse_stderr_line(raw.decode("utf-8", errors="replace"))
            with self.lock:
                self.stderr.append((level, message))
                self._changed.notify_all()

    def _lines(self, fd: int) -> Iterator[bytes]:
        """Each line read from ``fd`` until EOF, without its "\r?\n"; a last unterminated one too."""
        buf = b""
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
                *complete, buf = buf.split(b"\n")
                yield from (raw.removesuffix(b"\r") for raw in complete)
        except OSError as err:
            self._error(f"error reading from the child: {err}")
        if buf:
            yield buf.removesuffix(b"\r")

    def _error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)
            self._changed.notify_all()

    def tick(self) -> bool:
        """execd_posix.go Gather: one newline, as on one interval tick; False (and an error) if it fails."""
        proc = self._proc
        if proc is None:
            return True
        stdin = proc.stdin
        if stdin is None or stdin.closed or proc.poll() is not None:
            self._error("setting write deadline failed: use of closed file")
            return False
        try:
            _, writable, _ = select.select([], [stdin.fileno()], [], TICK_WRITE_DEADLINE)
            if not writable:
                self._error("writing to stdin failed: i/o timeout")
                return False
            os.write(stdin.fileno(), b"\n")
        except (BrokenPipeError, ValueError, OSError) as err:
            self._error(f"writing to stdin failed: {err}")
            return False
        return True

    def read_batch(self, timeout: float = 10.0, settle: float = 0.2) -> list[str]:
        """The lines of one batch: wait up to ``timeout`` for a first line, then take lines until none
        arrives for ``settle`` seconds."""
        out: list[str] = []
        try:
            out.append(self.lines.get(timeout=timeout))
        except queue.Empty:
            return out
        while True:
            try:
                out.append(self.lines.get(timeout=settle))
            except queue.Empty:
                return out

    def drain(self) -> list[str]:
        """Every line queued so far, without waiting."""
        out: list[str] = []
        while True:
            try:
                out.append(self.lines.get_nowait())
            except queue.Empty:
                return out

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until ``condition()`` (evaluated under self.lock) is true."""
        with self._changed:
            return self._changed.wait_for(condition, timeout=timeout)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> StopResult:
        """process.go Stop + process_posix.go gracefulStop: close stdin, then SIGTERM and SIGKILL 5 s apart."""
        started = time.monotonic()
        proc = self._proc
        if proc is None:
            return StopResult(returncode=None)
        result = StopResult(returncode=None)
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if not self._exited_within(self.stop_grace):
            result.sent_sigterm = True
            proc.send_signal(_signal.SIGTERM)
            if not self._exited_within(self.stop_grace):
                result.sent_sigkill = True
                proc.kill()
                proc.wait()
        for reader in self._readers:
            reader.join(timeout=1.0)
        result.returncode = proc.returncode
        result.elapsed = time.monotonic() - started
        return result

    def _exited_within(self, seconds: float) -> bool:
        assert self._proc is not None
        try:
            self._proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def __enter__(self) -> ExecdDriver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
