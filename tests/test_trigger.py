"""Trigger: newlines on a real pipe become cycles; a backlog coalesces; EOF ends the run."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Iterator, List, Tuple

import pytest

from kvm_telegraf.trigger import FATAL_SIGNALS, WRITE_GRACE_S, Shutdown, StdinTrigger, run_every, run_on_newlines
from tests.harness.loglines import log_lines


@pytest.fixture
def pipe() -> Iterator[Tuple[StdinTrigger, int]]:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader:
        trigger = StdinTrigger(reader)
        yield trigger, write_end
        with contextlib.suppress(OSError):  # the test may have closed it already
            os.close(write_end)
        # Wait for the reader thread to see EOF before its fd is closed: else the next test's
        # os.pipe() reuses the number and this thread steals that test's newline.
        while trigger.next(timeout=5):
            pass


def settle() -> None:
    time.sleep(0.2)  # let the reader thread take in what was written


def test_newlines_that_pile_up_while_idle_give_two_cycles_not_a_backlog(pipe):
    trigger, writer = pipe
    os.write(writer, b"\n" * 5)
    settle()
    assert [trigger.next(timeout=0.2) for _ in range(3)] == [True, True, None]


def test_while_a_cycle_runs_at_most_one_more_waits(pipe):
    trigger, writer = pipe
    os.write(writer, b"\n")
    assert trigger.next(timeout=2) is True  # a cycle is running now
    os.write(writer, b"\n\n\n")
    settle()
    assert [trigger.next(timeout=0.2) for _ in range(2)] == [True, None]


def test_a_newline_split_across_reads_still_counts_once(pipe):
    trigger, writer = pipe
    os.write(writer, b"x")
    settle()
    assert trigger.next(timeout=0.2) is None
    os.write(writer, b"\n")
    assert trigger.next(timeout=2) is True


def test_eof_ends_the_run_after_the_pending_cycle(pipe):
    trigger, writer = pipe
    os.write(writer, b"\n")
    os.close(writer)
    settle()
    assert [trigger.next(timeout=10), trigger.next(timeout=10)] == [True, False]  # generous: a loaded machine


def test_newlines_are_read_by_the_caller_without_a_thread_to_wake_per_newline():
    read_end, write_end = os.pipe()
    before = threading.active_count()
    with os.fdopen(read_end, "rb") as reader:
        trigger = StdinTrigger(reader)
        os.write(write_end, b"\n")
        assert trigger.next(timeout=2) is True
        assert threading.active_count() == before
        os.close(write_end)
        assert trigger.next(timeout=2) is False


def test_run_on_newlines_runs_one_cycle_per_newline_and_returns_on_eof(pipe):
    trigger, writer = pipe
    cycles = []
    runner = threading.Thread(target=run_on_newlines, args=(trigger, lambda: cycles.append(time.monotonic())))
    runner.start()
    for _ in range(3):
        os.write(writer, b"\n")
        time.sleep(0.1)
    os.close(writer)
    runner.join(timeout=5)
    assert not runner.is_alive() and len(cycles) == 3


def test_the_self_timed_loop_stops_when_a_watched_stdin_closes(pipe):
    trigger, writer = pipe
    cycles = []
    runner = threading.Thread(target=run_every, args=(0.1, lambda: cycles.append(1), trigger))
    runner.start()
    time.sleep(0.35)
    os.close(writer)
    runner.join(timeout=5)
    assert not runner.is_alive() and len(cycles) >= 3


# --- signals, in a process of their own ----------------------------------------------------------------

SIGNALLED = """
import logging, os, signal, sys, time
from kvm_telegraf.log import setup_logging
from kvm_telegraf.trigger import Shutdown
from kvm_telegraf.write import BatchWriter
setup_logging("info")
shutdown = Shutdown()
shutdown.install()
print("ready", flush=True, file=sys.stderr)
if sys.argv[1] == "write":  # one batch far larger than the pipe, which nobody reads
    with shutdown.writing():
        BatchWriter(open(int(sys.argv[2]), "wb", closefd=False)).write("x" * 1_000_000 + "\\n")
elif sys.argv[1] == "chatter":  # the main thread logs without pause, so a signal lands inside a log write
    chatter = logging.getLogger("kvm_telegraf.chatter")
    for _ in range(200_000):
        chatter.info("chatter %s", "x" * 100)
    sys.exit(5)
else:
    time.sleep(30)
    sys.exit(5)
"""


def start_signalled(mode: str, stdout_fd: int = 1) -> subprocess.Popen:
    """The child above, with Telegraf's environment (conftest): stderr buffered, as under Telegraf."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNALLED, mode, str(stdout_fd)],
        stderr=subprocess.PIPE,
        pass_fds=(stdout_fd,) if stdout_fd != 1 else (),
        text=True,
    )
    assert proc.stderr.readline() == "ready\n"
    return proc


def test_the_processes_tests_start_have_telegrafs_environment_so_their_stderr_is_buffered():
    probe = "import os, sys; print(os.environ.get('PYTHONUNBUFFERED'), sys.stderr.write_through)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout == "None False\n"


def test_sigterm_during_a_write_nobody_reads_exits_after_the_grace_period_with_one_warning():
    read_end, write_end = os.pipe()  # never read
    try:
        proc = start_signalled("write", write_end)
        time.sleep(0.3)  # blocked in the write
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        took = time.monotonic() - signalled
        assert WRITE_GRACE_S - 0.1 <= took < WRITE_GRACE_S + 2  # bounded: it did not wait for the reader
        assert (
            proc.stderr.read()
            == f"W! stdout took none of the batch for {WRITE_GRACE_S:g}s after the stop signal; exiting without it\n"
        )
    finally:
        os.close(read_end)
        os.close(write_end)


def test_sighup_logs_one_info_line_and_asks_for_the_configurations_again():
    shutdown = Shutdown()
    restore = shutdown.install()
    try:
        with log_lines(logging.DEBUG) as logged:
            os.kill(os.getpid(), signal.SIGHUP)
        assert logged == ["I! SIGHUP: the domain configurations are read again at the next cycle"]
        assert shutdown.take_reload() is True and shutdown.take_reload() is False
    finally:
        restore()


@pytest.mark.parametrize("signum", FATAL_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_without_a_meaning_here_keeps_its_default_action_after_saying_so(signum):
    proc = start_signalled("sleep")
    proc.send_signal(signum)
    assert proc.wait(timeout=10) == -signum
    assert proc.stderr.read() == f"E! {signal.Signals(signum).name} received: ending with its default action\n"


@pytest.mark.parametrize("signum", (*FATAL_SIGNALS, signal.SIGHUP), ids=lambda s: signal.Signals(s).name)
def test_a_signal_that_lands_while_the_main_thread_logs_still_gets_its_one_line_out_whole(signum):
    name = signal.Signals(signum).name
    expected = (
        "I! SIGHUP: the domain configurations are read again at the next cycle"
        if signum == signal.SIGHUP
        else f"E! {name} received: ending with its default action"
    )
    for _ in range(3):  # each try lands at another point of a write
        proc = start_signalled("chatter")
        read: List[str] = []
        reader = threading.Thread(target=lambda p=proc, r=read: r.extend(p.stderr.read().splitlines()))  # pipe drained
        reader.start()
        time.sleep(0.2)
        proc.send_signal(signum)
        if signum == signal.SIGHUP:
            time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == (0 if signum == signal.SIGHUP else -signum)
        reader.join(timeout=30)
        assert read.count(expected) == 1, [line for line in read if not line.startswith("I! chatter")]
        assert set(read) == {expected, "I! chatter " + "x" * 100}  # no line cut or run into another
