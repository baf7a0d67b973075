"""Drive an execd child process the way Telegraf's ``[[inputs.execd]]`` does.

Telegraf cannot be installed on the test machines, so this module mirrors the
parts of Telegraf that touch the child process.  Sources read (influxdata/telegraf):

* ``plugins/inputs/execd/execd.go``       Start / Stop / cmdReadOut(Stream) / cmdReadErr
* ``plugins/inputs/execd/execd_posix.go`` Gather (what one interval tick does)
* ``internal/process/process.go``         New / Start / Stop / cmdStart / cmdLoop / cmdWait
* ``internal/process/process_posix.go``   gracefulStop (SIGTERM after 5 s, SIGKILL 5 s later)
* ``plugins/inputs/execd/README.md``      stderr level prefixes E!/W!/I!/D!/T!

Every section below names the Telegraf function it mirrors.  Where this harness
deliberately differs from Telegraf, the comment says so.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

# bufio.Scanner's default maximum token size (bufio.MaxScanTokenSize = 64 * 1024).
# cmdReadErr uses bufio.NewScanner(out) without a Buffer() call, so a stderr line
# may hold at most 65535 bytes before its "\n" (the buffer must also fit the "\n").
STDERR_MAX_TOKEN = 64 * 1024

# internal/process/process.go cmdWait -> gracefulStop(processCtx, p.Cmd, 5*time.Second)
TELEGRAF_STOP_GRACE = 5.0

# execd_posix.go Gather: osStdin.SetWriteDeadline(time.Now().Add(1 * time.Second))
TICK_WRITE_DEADLINE = 1.0

LEVELS = ("E", "W", "I", "D", "T")


@dataclass
class ExitInfo:
    """How one generation of the child ended (process.cmdWait's return value)."""

    generation: int
    pid: int
    returncode: int  # Python convention: -N when killed by signal N
    during_stop: bool  # True if it ended because stop() was called (isQuitting)

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None

    @property
    def is_error(self) -> bool:
        # Go's cmd.Wait returns a non-nil *ExitError for a non-zero exit code
        # *and* for death by a signal; process.cmdLoop tests `err != nil`.
        return self.returncode != 0


@dataclass
class StopResult:
    """What stop() had to do (process.Stop + gracefulStop)."""

    returncode: int | None  # None if no process was running when stop() was called
    sent_sigterm: bool = False
    sent_sigkill: bool = False
    elapsed: float = 0.0
    already_exited: bool = False  # the child had exited before stop() (waiting for restart)


@dataclass
class _Generation:
    number: int
    proc: subprocess.Popen
    readers: list[threading.Thread] = field(default_factory=list)
    exited: threading.Event = field(default_factory=threading.Event)
    exit_info: ExitInfo | None = None


def _parse_stderr_line(line: str) -> tuple[str, str]:
    # plugins/inputs/execd/README.md (current docs; the older execd.go cmdReadErr
    # logged every line as `e.Log.Errorf("stderr: %q", ...)`): a line starting with
    # "E! ", "W! ", "I! ", "D! " or "T! " is logged at that level with the 3-byte
    # prefix removed; any other line (blank ones included) is logged at error level.
    if len(line) >= 3 and line[0] in LEVELS and line[1:3] == "! ":
        return line[0], line[3:]
    return "E", line


class ExecdDriver:
    """Run ``argv`` as Telegraf's execd input would, and record what it does.

    Typical use::

        d = ExecdDriver([sys.executable, "-m", "kvm_telegraf"], restart_delay=0.5)
        d.start()
        d.tick()
        lines = d.read_batch(timeout=5)
        result = d.stop()
        assert result.returncode == 0 and not result.sent_sigterm

    Attributes tests may read (all appended to under ``self.lock``):

    * ``stdout_log``: list of (monotonic time, generation, line) for every stdout line
    * ``stderr``: list of (level, message) as Telegraf would log them
    * ``errors``: list of str that Telegraf would report as plugin errors
      (failed stdin writes, "bufio.Scanner: token too long" on stderr, ...)
    * ``exits``: list of ExitInfo, one per generation that ended
    * ``restarts``: how many times the supervisor started the command again
    """

    def __init__(
        self,
        argv: Sequence[str],
        signal: str = "STDIN",
        restart_delay: float = 10.0,
        env: Mapping[str, str] | Sequence[str] | None = None,
        user: str | int | None = None,
        *,
        stop_on_error: bool = False,
        restart: bool = True,
        stop_grace: float = TELEGRAF_STOP_GRACE,
        cwd: str | None = None,
    ) -> None:
        # internal/process/process.go New: an empty command is an error.
        if not argv:
            raise ValueError("no command")
        if signal not in ("none", "STDIN", "SIGHUP", "SIGUSR1", "SIGUSR2"):
            # execd_posix.go Gather: `default: return fmt.Errorf("invalid signal: %s")`
            raise ValueError(f"invalid signal: {signal}")
        self.argv = list(argv)
        self.signal = signal
        # execd.go init(): RestartDelay defaults to 10s for inputs.execd.
        self.restart_delay = restart_delay
        # process.go cmdLoop: `if err != nil && p.StopOnError { return err }`.
        self.stop_on_error = stop_on_error
        # Not a Telegraf option: restart=False lets a test watch a single exit.
        self.restart = restart
        self.stop_grace = stop_grace
        self.user = user  # Not a Telegraf option (Telegraf runs as its own user).
        self.cwd = cwd
        self.env = self._build_env(env)

        self.lock = threading.Lock()
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout_log: list[tuple[float, int, str]] = []
        self.stderr: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.exits: list[ExitInfo] = []
        self.restarts = 0
        self.tick_count = 0

        self._gen: _Generation | None = None
        self._generations = 0
        self._quitting = threading.Event()  # process.go: ctx cancelled by Stop()
        self._supervisor: threading.Thread | None = None
        self._loop_done = threading.Event()
        self._changed = threading.Condition(self.lock)

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _build_env(
        env: Mapping[str, str] | Sequence[str] | None,
    ) -> dict[str, str] | None:
        # process.go cmdStart: `if len(p.envs) > 0 { p.Cmd.Env = append(os.Environ(), p.envs...) }`
        # i.e. the configured "KEY=value" pairs are *added* to Telegraf's own
        # environment; with none configured the child inherits it unchanged.
        if not env:
            return None
        merged = dict(os.environ)
        items = env.items() if isinstance(env, Mapping) else (e.split("=", 1) for e in env)
        for key, value in items:
            merged[key] = value
        return merged

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        """process.go Start: start the command once, then run cmdLoop in the background."""
        if self._supervisor is not None:
            raise RuntimeError("an ExecdDriver can only be started once (like process.Process)")
        # execd.go Start -> process.Start -> cmdStart: a failure to start is returned
        # to the caller (Telegraf then fails to start the plugin).
        self._cmd_start()
        self._supervisor = threading.Thread(target=self._cmd_loop, name="execd-cmdLoop", daemon=True)
        self._supervisor.start()

    def _cmd_start(self) -> _Generation:
        # process.go cmdStart: exec.Command(name, args...) with StdinPipe, StdoutPipe
        # and StderrPipe.  Go's os/exec closes every other descriptor in the child and
        # does not start a new session or process group; restore_signals resets
        # SIGPIPE to default in the child as Go does for a fresh exec.
        kwargs: dict = {}
        if self.user is not None:
            kwargs["user"] = self.user
        proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
            bufsize=0,
            close_fds=True,
            restore_signals=True,
            **kwargs,
        )
        with self.lock:
            self._generations += 1
            gen = _Generation(self._generations, proc)
            self._gen = gen
            self._changed.notify_all()
        # process.go cmdWait: ReadStdoutFn and ReadStderrFn run in their own goroutines.
        gen.readers = [
            threading.Thread(target=self._read_stdout, args=(gen,), name="execd-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, args=(gen,), name="execd-stderr", daemon=True),
        ]
        for t in gen.readers:
            t.start()
        return gen

    # ------------------------------------------------------------------ readers
    def _read_stdout(self, gen: _Generation) -> None:
        # execd.go cmdReadOut -> cmdReadOutStream: with data_format = "influx" the
        # stdout pipe feeds influx.NewStreamParser (parsers/influx/machine.go.rl
        # streamMachine), which splits on "\r?\n" and grows its buffer without a
        # limit, so there is no line-length limit on stdout for the influx format.
        # A final line without "\n" is still parsed at EOF (line_without_term).
        # The lines are handed over raw: this harness does not parse them.
        #
        # Difference: Go's Cmd.Wait closes the read end of the stdout pipe as soon
        # as the child has exited, so Telegraf can lose (and report a read error
        # for) output still sitting in the pipe when the child exits.  This harness
        # reads to EOF instead, so it never loses lines.
        assert gen.proc.stdout is not None
        fd = gen.proc.stdout.fileno()
        buf = b""
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
                *complete, buf = buf.split(b"\n")
                for raw in complete:
                    self._emit_stdout(gen, raw)
            if buf:
                self._emit_stdout(gen, buf)
        except OSError as err:
            # cmdReadOutStream: a non-parse error (a failed read) is reported with
            # acc.AddError(err) and the reader returns for good.
            self._error(f"error reading stdout: {err}")
        finally:
            gen.proc.stdout.close()

    def _emit_stdout(self, gen: _Generation, raw: bytes) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]  # machine.go.rl: newline = '\r'? '\n'
        line = raw.decode("utf-8", errors="surrogateescape")
        with self.lock:
            self.stdout_log.append((time.monotonic(), gen.number, line))
            self._changed.notify_all()
        self.lines.put(line)

    def _read_stderr(self, gen: _Generation) -> None:
        # execd.go cmdReadErr: bufio.NewScanner(out) with the default 64 KiB token
        # limit and bufio.ScanLines (drops "\n" and one trailing "\r").  On a line
        # that does not fit, scanner.Scan() stops with ErrTooLong, the error is
        # reported ("error reading stderr: bufio.Scanner: token too long") and
        # stderr is *not read any more*: a child that keeps writing to stderr will
        # then block once the pipe buffer is full.  Mirrored exactly here.
        assert gen.proc.stderr is not None
        fd = gen.proc.stderr.fileno()
        buf = b""
        too_long = False
        try:
            while True:
                nl = buf.find(b"\n")
                if nl >= 0:
                    self._emit_stderr(buf[:nl])
                    buf = buf[nl + 1 :]
                    continue
                if len(buf) >= STDERR_MAX_TOKEN:
                    too_long = True
                    self._error("error reading stderr: bufio.Scanner: token too long")
                    return  # stop reading; the pipe stays open and undrained, as in Telegraf
                chunk = os.read(fd, STDERR_MAX_TOKEN - len(buf))
                if not chunk:
                    if buf:
                        self._emit_stderr(buf)  # ScanLines returns a final unterminated line
                    return
                buf += chunk
        except OSError as err:
            self._error(f"error reading stderr: {err}")
        finally:
            # After ErrTooLong the read end stays open until the child exits
            # (_cmd_wait closes it, as Go's Cmd.Wait does).
            if not too_long:
                gen.proc.stderr.close()

    def _emit_stderr(self, raw: bytes) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        level, msg = _parse_stderr_line(raw.decode("utf-8", errors="replace"))
        with self.lock:
            self.stderr.append((level, msg))
            self._changed.notify_all()

    def _error(self, msg: str) -> None:
        with self.lock:
            self.errors.append(msg)
            self._changed.notify_all()

    # ------------------------------------------------------------------ supervision
    def _cmd_wait(self, gen: _Generation) -> ExitInfo:
        # process.go cmdWait: wait for the process, then for both reader goroutines.
        returncode = gen.proc.wait()
        gen.exited.set()
        for t in gen.readers:
            t.join(timeout=1.0)
        if gen.proc.stderr is not None and not gen.proc.stderr.closed:
            gen.proc.stderr.close()  # Cmd.Wait closes the pipes after exit
        if gen.proc.stdin is not None and not gen.proc.stdin.closed:
            with contextlib.suppress(OSError):
                gen.proc.stdin.close()  # Cmd.Wait closes the stdin pipe too
        info = ExitInfo(gen.number, gen.proc.pid, returncode, self._quitting.is_set())
        with self.lock:
            gen.exit_info = info
            self.exits.append(info)
            self._changed.notify_all()
        return info

    def _cmd_loop(self) -> None:
        # process.go cmdLoop: watch the running process and restart it after it exits.
        try:
            while True:
                gen = self._gen
                assert gen is not None
                info = self._cmd_wait(gen)
                # `if err != nil && p.StopOnError { return err }` (checked before isQuitting)
                if info.is_error and self.stop_on_error:
                    return
                # `if isQuitting(ctx) { Log.Infof("Process %s shut down"); return nil }`
                if self._quitting.is_set():
                    return
                if not self.restart:  # harness-only switch, not in Telegraf
                    return
                # Log.Errorf("Process %s exited: %v"); Log.Infof("Restarting in %s...")
                # then `select { case <-ctx.Done(): return nil; case <-time.After(RestartDelay): }`
                if self._quitting.wait(self.restart_delay):
                    return
                try:
                    self._cmd_start()
                except OSError as err:
                    # cmdLoop returns the cmdStart error: Telegraf logs
                    # "Process quit with message: ..." and never tries again.
                    self._error(f"Process quit with message: error starting process: {err}")
                    return
                with self.lock:
                    self.restarts += 1
                    self._changed.notify_all()
        finally:
            self._loop_done.set()
            with self.lock:
                self._changed.notify_all()

    # ------------------------------------------------------------------ tick
    def tick(self) -> bool:
        """execd_posix.go Gather: signal the child once, as on one interval tick.

        With signal "STDIN" this writes exactly one b"\\n".  Returns False and
        records the error (as Telegraf's accumulator would) if the write or signal
        fails, e.g. a broken pipe after the child exited; Telegraf carries on.
        """
        with self.lock:
            self.tick_count += 1
            gen = self._gen
        # `if e.process == nil || e.process.Cmd == nil { return nil }`
        if gen is None:
            return True
        proc = gen.proc
        if self.signal == "none":
            return True
        if self.signal in ("SIGHUP", "SIGUSR1", "SIGUSR2"):
            # osProcess.Signal(...): fails with "os: process already finished" after exit.
            if gen.exited.is_set() or proc.poll() is not None:
                self._error("os: process already finished")
                return False
            proc.send_signal(getattr(_signal, self.signal))
            return True
        # case "STDIN": SetWriteDeadline(now + 1s) then io.WriteString(Stdin, "\n").
        # (exec.Cmd.StdinPipe returns a wrapper, not an *os.File, so in Telegraf the
        # deadline may well never apply; it is kept here so a stuck child cannot
        # hang the test.)
        stdin = proc.stdin
        if stdin is None or stdin.closed:
            # After the child exited, Cmd.Wait has closed the pipe.
            self._error("writing to stdin failed: write |1: file already closed")
            return False
        try:
            fd = stdin.fileno()
            _, writable, _ = select.select([], [fd], [], TICK_WRITE_DEADLINE)
            if not writable:
                self._error("writing to stdin failed: i/o timeout")
                return False
            os.write(fd, b"\n")
        except (BrokenPipeError, ValueError, OSError) as err:
            # Go ignores SIGPIPE for this pipe and gets EPIPE, just as Python does.
            self._error(f"writing to stdin failed: {err}")
            return False
        return True

    # ------------------------------------------------------------------ reading output
    def read_batch(self, timeout: float = 10.0, settle: float = 0.2) -> list[str]:
        """Return the lines of one batch: wait up to ``timeout`` for a first line,
        then take lines until none arrives for ``settle`` seconds."""
        deadline = time.monotonic() + timeout
        out: list[str] = []
        try:
            out.append(self.lines.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            return out
        while True:
            try:
                out.append(self.lines.get(timeout=settle))
            except queue.Empty:
                return out

    def lines_until(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> list[str]:
        """Take lines until one satisfies ``predicate`` (included) or ``timeout``
        passes.  Check ``predicate(result[-1])`` to tell which happened."""
        deadline = time.monotonic() + timeout
        out: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return out
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                return out
            out.append(line)
            if predicate(line):
                return out

    def drain(self) -> list[str]:
        """Take every line queued so far without waiting."""
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

    def wait_exit(self, timeout: float = 10.0, count: int = 1) -> ExitInfo | None:
        """Wait until ``count`` generations have exited; return the latest ExitInfo."""
        if self.wait_for(lambda: len(self.exits) >= count, timeout):
            return self.exits[count - 1]
        return None

    def wait_restart(self, count: int = 1, timeout: float = 30.0) -> bool:
        """Wait until the supervisor has restarted the command ``count`` times."""
        return self.wait_for(lambda: self.restarts >= count, timeout)

    @property
    def supervising(self) -> bool:
        """False once cmdLoop has returned (stop, stop_on_error, restart=False, start failure)."""
        return self._supervisor is not None and not self._loop_done.is_set()

    @property
    def pid(self) -> int | None:
        gen = self._gen
        return gen.proc.pid if gen else None

    @property
    def running(self) -> bool:
        gen = self._gen
        return gen is not None and gen.proc.poll() is None

    # ------------------------------------------------------------------ stop
    def stop(self) -> StopResult:
        """process.go Stop + process_posix.go gracefulStop.

        Cancel the loop (no more restarts), close stdin, wait ``stop_grace`` (5 s)
        for the child to exit, then SIGTERM, wait another 5 s, then SIGKILL.
        Signals go to the child's pid only, not to a process group.
        """
        t0 = time.monotonic()
        with self.lock:
            self._quitting.set()  # p.cancel(): no restart from now on
            gen = self._gen
        if gen is None:
            return StopResult(returncode=None)
        result = StopResult(returncode=None, already_exited=gen.exited.is_set())
        while True:
            self._stop_generation(gen, result)
            # p.mainLoopWg.Wait()
            if self._supervisor is not None:
                self._supervisor.join(timeout=2 * self.stop_grace + 5.0)
            with self.lock:
                newer = self._gen
            if newer is gen:
                break
            gen = newer  # a restart raced with stop(): stop that one too
            assert gen is not None
        result.returncode = gen.proc.returncode
        result.elapsed = time.monotonic() - t0
        return result

    def _stop_generation(self, gen: _Generation, result: StopResult) -> None:
        proc = gen.proc
        # p.Stdin.Close(): "close stdin so the app can shut down gracefully"
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if self._wait_gen(gen, self.stop_grace):
            return
        # gracefulStop: `case <-time.After(timeout): cmd.Process.Signal(syscall.SIGTERM)`
        result.sent_sigterm = True
        proc.send_signal(_signal.SIGTERM)
        if self._wait_gen(gen, self.stop_grace):
            return
        # gracefulStop: second `case <-time.After(timeout): cmd.Process.Kill()`
        result.sent_sigkill = True
        proc.kill()
        self._wait_gen(gen, None)

    def _wait_gen(self, gen: _Generation, timeout: float | None) -> bool:
        # processCtx is cancelled as soon as Cmd.Wait returns; wait on the same thing.
        if self._supervisor is None or self._loop_done.is_set() and gen.exit_info is None:
            # Nobody is reaping this generation (should not happen): reap it here.
            try:
                gen.proc.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        return gen.exited.wait(timeout)

    def __enter__(self) -> ExecdDriver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._quitting.is_set():
            self.stop()
