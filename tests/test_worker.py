"""The persistent worker: nobody waits for a call past its deadline, and a worker holds at most one call."""

from __future__ import annotations

import threading
import time

import pytest

from kvm_telegraf.worker import CallTimeoutError, Worker, answer_by


def test_an_answer_in_time_is_returned_and_the_worker_is_free_again():
    worker = Worker("test-worker")
    call = worker.submit(lambda: [1, 2, 3])
    assert call is not None
    assert answer_by(call, time.monotonic() + 5) == [1, 2, 3]
    assert not worker.busy


def test_a_call_late_for_its_deadline_is_left_running_and_the_worker_takes_no_other_until_it_answers():
    release = threading.Event()
    worker = Worker("test-worker")
    call = worker.submit(lambda: release.wait(10) and "late")
    assert call is not None
    started = time.monotonic()
    with pytest.raises(CallTimeoutError):
        answer_by(call, started + 0.05)
    assert time.monotonic() - started < 1
    assert worker.busy and worker.submit(lambda: "next") is None
    release.set()
    assert call.result(timeout=5) == "late"  # the owner may still take a late answer
    assert not worker.busy
    following = worker.submit(lambda: "next")
    assert following is not None and answer_by(following, time.monotonic() + 5) == "next"


def test_a_deadline_already_past_gives_up_at_once_without_losing_the_answer():
    worker = Worker("test-worker")
    call = worker.submit(lambda: time.sleep(0.05) or "done")
    assert call is not None
    with pytest.raises(CallTimeoutError):
        answer_by(call, time.monotonic() - 1)
    assert call.result(timeout=5) == "done"
    assert call.result(timeout=0) == "done"  # taken once, kept for later asks


def test_what_the_call_raises_reaches_the_caller_as_raised_and_the_worker_goes_on():
    worker = Worker("test-worker")
    call = worker.submit(lambda: {}["missing"])
    assert call is not None
    with pytest.raises(KeyError, match="missing"):
        answer_by(call, time.monotonic() + 5)
    assert not worker.busy
    after = worker.submit(lambda: "fine")
    assert after is not None and answer_by(after, time.monotonic() + 5) == "fine"


def test_each_worker_runs_its_calls_on_one_thread_of_its_own_name():
    worker = Worker("bulk-stats-test")
    names = []
    for _ in range(3):
        call = worker.submit(lambda: names.append(threading.current_thread().name))
        assert call is not None
        answer_by(call, time.monotonic() + 5)
    assert names == ["bulk-stats-test"] * 3
