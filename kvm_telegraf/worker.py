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


class FutureTimeoutError(Exception):
    """The call's answer was not in by the caller's deadline (the call goes on)."""


class Future:
    """One call's outcome, set once by its worker and waited for by its caller: the part of
    concurrent.futures.Future we use, which without that module keeps 3 modules and some 0.1 MiB out of the process."""

    def __init__(self) -> None:
        self._set = threading.Event()
        self._result: Any = None
        self._exception: Optional[BaseException] = None

    def done(self) -> bool:
        return self._set.is_set()

    def set_result(self, result: Any) -> None:
        self._result = result
        self._set.set()

    def set_exception(self, exception: BaseException) -> None:
        self._exception = exception
        self._set.set()

    def result(self, timeout: Optional[float] = None) -> Any:
        """The result, or the call's exception raised here; FutureTimeoutError if not in within *timeout* seconds."""
        if not self._set.wait(timeout):
            raise FutureTimeoutError
        if self._exception is not None:
            raise self._exception
        return self._result


class Worker:
    """One daemon thread, started on the first call and kept for the life of the process."""

    def __init__(self, name: str) -> None:
        self.name = name  # the thread's name: log lines from a host's thread name the host
        self._requests: queue.SimpleQueue[Tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._current: Optional[Future] = None

    @property
    def busy(self) -> bool:
        """Whether the last call is still out (it missed its caller's deadline, or is being waited for)."""
        return self._current is not None and not self._current.done()

    def start(self) -> None:
        """Start the thread now rather than on the first call (the process's thread count then stays level)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()

    def submit(self, call: Callable[[], Any]) -> Optional[Future]:
        """Start *call* and return its future; None while the previous call still runs."""
        if self.busy:
            return None
        self.start()
        future: Future = Future()
        self._current = future
        self._requests.put((call, future))
        return future

    def _serve(self) -> None:
        while True:
            call, future = self._requests.get()
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the waiting caller
                future.set_exception(exc)


def answer_by(future: Future, deadline: float, monotonic: Callable[[], float] = time.monotonic) -> Any:
    """The call's result if it is in by *deadline* (a monotonic time); FutureTimeoutError if not; its exceptions."""
    return future.result(timeout=max(0.0, deadline - monotonic()))
