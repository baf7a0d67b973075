"""A stand-in for kvm-telegraf under ``inputs.execd`` that does nothing but print a recorded batch of its lines.

    python3 replay_lines.py BATCH_FILE

On each newline on stdin it writes the file's lines in one write, their one timestamp replaced by
now. Telegraf's CPU with this command, less this process's own (a few tens of microseconds per
batch) and less Telegraf's baseline, is what Telegraf spends parsing and writing our lines.
Standard library only: Telegraf runs it with the host's Python.
"""

from __future__ import annotations

import os
import sys
import time


def main(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        batch = handle.read()
    stamp = batch.split("\n", 1)[0].rsplit(" ", 1)[1]
    pieces = batch.split(f" {stamp}\n")  # the text between the stamps: the batch has one timestamp
    for _ in iter(sys.stdin.readline, ""):
        data = f" {time.time_ns()}\n".join(pieces).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(1, view) :]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
