"""Our log lines exactly as Telegraf reads them from stderr, captured in-process."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator, List

from kvm_telegraf.log import LOGGER_NAME, TelegrafFormatter


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(TelegrafFormatter())
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def log_lines(level: int = logging.INFO) -> Iterator[List[str]]:
    """The lines logged under kvm_telegraf while the block runs, prefix and all."""
    logger = logging.getLogger(LOGGER_NAME)
    handler, previous = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
