"""The write stage: one write and one flush per batch, on stdout only."""

from __future__ import annotations

from typing import BinaryIO


class BatchWriter:
    """Writes whole batches; BrokenPipeError means the reader is gone and is left to the caller."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def write(self, batch: str) -> None:
        if batch:
            self._stream.write(batch.encode("utf-8"))
            self._stream.flush()
