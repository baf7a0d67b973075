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
from concurrent.futures import Future
from typing import Any, Callable, Optional, Tuple


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
    """The call's result if it is in by *deadline* (a monotonic time); FutureTimeout if not, exceptions as raised."""
    return future.result(timeout=max(0.0, deadline - monotonic()))
