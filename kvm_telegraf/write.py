"""The write stage: one write per batch, on stdout only, never a partial line.

Batches go straight to the file descriptor. CPython's buffered writer loses the
tail of a batch when a signal lands in the middle of a blocked pipe write (the
partial write is taken as done), which would hand Telegraf half a line.
"""

from __future__ import annotations

import os
from typing import BinaryIO


class BatchWriter:
    """Writes whole batches; BrokenPipeError means the reader is gone and is left to the caller."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        try:
            self._fd = stream.fileno()
        except (OSError, ValueError, AttributeError):  # an in-memory stream (click's CliRunner)
            self._fd = None

    def write(self, batch: str) -> None:
        if not batch:
            return
        data = batch.encode("utf-8")
        if self._fd is None:
            self._stream.write(data)
            self._stream.flush()
            return
        view = memoryview(data)
        while view:  # os.write may take part of it (a full pipe, a signal); the rest follows
            view = view[os.write(self._fd, view) :]
