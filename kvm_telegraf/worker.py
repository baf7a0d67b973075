"""A persistent worker thread that runs one call at a time, so that nobody waits for a call past a deadline.

A libvirt call can block for as long as a hung QEMU or a starved libvirtd takes.
On a worker, the caller stops waiting at its deadline while the call goes on.
The rule, for every user (the bulk-stats tiers, the XML reads, each host of a
HostSet): a worker whose call is still out takes no new one, and none is queued,
so each worker adds at most one outstanding call. What a late call returns is
its owner's to use or drop.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Optional, Tuple


class CallTimeoutError(Exception):
    """The call's answer was not in by the caller's deadline (the call goes on).

    Our own, not concurrent.futures' TimeoutError: that module keeps 3 modules and some 0.1 MiB in the process.
    """


class Call:
    """One call's outcome, handed back through a C queue: None, then (True, result) or (False, exception).

    A concurrent.futures.Future did the same for 47.5 us of the process's CPU per call and answer (its
    Condition allocates a lock per wait, and wakes the caller twice); this does it for 13.6 us
    (benchmarks/handoff.py), once per cycle for the bulk read alone.
    """

    __slots__ = ("_box", "_outcome")

    def __init__(self) -> None:
        self._box: queue.SimpleQueue[Tuple[bool, Any]] = queue.SimpleQueue()
        self._outcome: Optional[Tuple[bool, Any]] = None  # taken from the box by result(); only the caller reads it

    def done(self) -> bool:
        return self._outcome is not None or not self._box.empty()

    def result(self, timeout: Optional[float] = None) -> Any:
        """The call's result within *timeout* seconds; CallTimeoutError if not in by then; its exceptions."""
        if self._outcome is None:
            try:
                self._outcome = self._box.get(timeout=timeout)
            except queue.Empty:
                raise CallTimeoutError from None
        answered, value = self._outcome
        if answered:
            return value
        raise value

    def settle(self, answered: bool, value: Any) -> None:
        """The worker's side: hand the result (answered) or the exception over, once."""
        self._box.put((answered, value))


class Worker:
    """One daemon thread, started on the first call and kept for the life of the process."""

    def __init__(self, name: str) -> None:
        self.name = name  # the thread's name: log lines from a host's thread name the host
        self._requests: queue.SimpleQueue[Tuple[Callable[[], Any], Call]] = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._current: Optional[Call] = None

    @property
    def busy(self) -> bool:
        """Whether the last call is still out (it missed its caller's deadline, or is being waited for)."""
        return self._current is not None and not self._current.done()

    def start(self) -> None:
        """Start the thread now rather than on the first call (the process's thread count then stays level)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()

    def submit(self, call: Callable[[], Any]) -> Optional[Call]:
        """Start *call* and return its Call; None while the previous call still runs."""
        if self.busy:
            return None
        self.start()
        future = Call()
        self._current = future
        self._requests.put((call, future))
        return future

    def _serve(self) -> None:
        while True:
            call, future = self._requests.get()
            try:
                result = call()
            except BaseException as exc:  # handed to the waiting caller
                future.settle(False, exc)
            else:
                future.settle(True, result)


def answer_by(future: Call, deadline: float, monotonic: Callable[[], float] = time.monotonic) -> Any:
    """The call's result if it is in by *deadline* (a monotonic time); CallTimeoutError if not; its exceptions."""
    return future.result(timeout=max(0.0, deadline - monotonic()))
