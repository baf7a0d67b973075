"""Trigger: newlines on a real pipe become cycles; a backlog coalesces; EOF ends the run."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Iterator, Tuple

import pytest

from kvm_telegraf.trigger import StdinTrigger, run_every, run_on_newlines


@pytest.fixture
def pipe() -> Iterator[Tuple[StdinTrigger, int]]:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader:
        yield StdinTrigger(reader), write_end
        with contextlib.suppress(OSError):  # the test may have closed it already
            os.close(write_end)


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
    assert [trigger.next(timeout=1), trigger.next(timeout=1)] == [True, False]


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
