"""A stand-in for kvm-telegraf under ``inputs.execd`` that does nothing but print a recorded batch of its lines.

    python3 replay_lines.py BATCH_FILE                  # replay: Telegraf's parse of our lines
    python3 replay_lines.py BATCH_FILE URI GLOB STATS   # floor: the bare bulk call first, then the same lines

On each newline on stdin it writes the file's lines in one write, their one timestamp replaced by
now. Telegraf's CPU with this command, less this process's own (a few tens of microseconds per
batch) and less Telegraf's baseline, is what Telegraf spends parsing and writing our lines.

With a URI, each newline first makes the one ``getAllDomainStats`` call kvm-telegraf makes (read-only,
the same stats bits, the names filtered by GLOB) and drops its records: the least CPU any Python
execd input that prints these lines can cost, with no collect, shape or encode of its own. Telegraf
with this command against Telegraf with ``inputs.libvirt`` is the floor of the Telegraf ratio.
Standard library only (and libvirt with a URI): Telegraf runs it with the bench venv's Python.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import time
from typing import Callable, List


def bulk_call(uri: str, glob: str, stats: int) -> Callable[[], int]:
    """One read-only connection, and the call kvm-telegraf makes each cycle: how many domains it kept."""
    import libvirt  # only the floor needs it

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.openReadOnly(uri)
    return lambda: len(
        [stats for dom, stats in conn.getAllDomainStats(stats, 0) if fnmatch.fnmatchcase(dom.name(), glob)]
    )


def main(argv: List[str]) -> int:
    with open(argv[0], encoding="utf-8") as handle:
        batch = handle.read()
    call = bulk_call(argv[1], argv[2], int(argv[3])) if len(argv) > 1 else None
    stamp = batch.split("\n", 1)[0].rsplit(" ", 1)[1]
    pieces = batch.split(f" {stamp}\n")  # the text between the stamps: the batch has one timestamp
    for _ in iter(sys.stdin.readline, ""):
        if call is not None:
            call()
        data = f" {time.time_ns()}\n".join(pieces).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(1, view) :]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
