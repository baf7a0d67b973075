"""CPU the garbage collector spends, from ``gc.callbacks``: each collection timed in the thread it runs in.

Standard library only: same_process.py imports it from its own directory, with the kvm-telegraf
installed for the bench.
"""

from __future__ import annotations

import gc
import time
from typing import Dict


class GcClock:
    """Nanoseconds spent in collections, and how many, since it was made; remove() stops counting."""

    def __init__(self) -> None:
        self.ns = 0
        self.runs = 0
        self._started = 0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, _info: Dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time_ns()
        else:
            self.ns += time.thread_time_ns() - self._started
            self.runs += 1

    def remove(self) -> None:
        gc.callbacks.remove(self._callback)
