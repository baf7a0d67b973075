"""What handing one call to a worker thread and taking its answer back costs, in the process's CPU.

Not part of ``make bench``, no lab. Every cycle hands its bulk read to a worker (kvm_telegraf.worker)
and waits for the answer by a deadline. Side by side in one run, interleaved, N rounds of an empty
call each way:

- ``call``: kvm_telegraf.worker's Worker and Call (the answer comes back through a C SimpleQueue);
- ``future``: the same thread handed a concurrent.futures.Future, which the worker used before;
- ``direct``: the call made on the caller's thread, for the floor.

    .venv/bin/python -m benchmarks.handoff 2000        # back to back
    .venv/bin/python -m benchmarks.handoff 150 0.2     # 0.2 s idle before each call, as an interval leaves it

It prints the median ``time.process_time_ns()`` per round (every thread of the process counted).
Measured here (2 cores, busy with other labs): call 13.6 us, future 47.5 us, direct 0.8 us back to back.
"""

from __future__ import annotations

import json
import queue
import statistics
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Dict, List, Tuple

from kvm_telegraf.worker import Worker, answer_by


def nothing() -> None:
    return None


class FutureWorker:
    """The worker as it was: one daemon thread, each answer set on a concurrent.futures.Future."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[Tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, daemon=True).start()

    def submit(self, call: Callable[[], Any]) -> Future:
        future: Future = Future()
        self._requests.put((call, future))
        return future

    def _serve(self) -> None:
        while True:
            call, future = self._requests.get()
            future.set_result(call())


def main(argv: List[str]) -> int:
    rounds = int(argv[0]) if argv else 2000
    idle_s = float(argv[1]) if len(argv) > 1 else 0.0  # threads that slept wake slower: the cycle's case
    worker, old = Worker("handoff"), FutureWorker()
    worker.start()
    ways: Dict[str, Callable[[], Any]] = {
        "call": lambda: answer_by(worker.submit(nothing), time.monotonic() + 5),  # type: ignore[arg-type]
        "future": lambda: old.submit(nothing).result(timeout=5),
        "direct": nothing,
    }
    samples: Dict[str, List[int]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            if idle_s:
                time.sleep(idle_s)
            started = time.process_time_ns()
            way()
            samples[name].append(time.process_time_ns() - started)
    print(json.dumps({name: round(statistics.median(ns) / 1e3, 1) for name, ns in samples.items()} | {"unit": "us"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
