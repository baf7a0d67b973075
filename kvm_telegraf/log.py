"""stderr logging in Telegraf's execd convention.

Telegraf logs a stderr line that starts with ``E! ``, ``W! ``, ``I! `` or
``D! `` at that level and any other line as an error, so every line we print
carries a prefix, and a message never spans two lines.
"""

from __future__ import annotations

import logging
import os
import sys

from kvm_telegraf.redact import redact

LOGGER_NAME = "kvm_telegraf"
LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}
_PREFIXES = {logging.ERROR: "E! ", logging.WARNING: "W! ", logging.INFO: "I! ", logging.DEBUG: "D! "}
# A thread named "kvm-telegraf <host>" (one per hypervisor) starts its lines with "<host>: ".
HOST_THREAD_PREFIX = "kvm-telegraf "
# What a line may echo (README: Security). One value a person, a guest or a file gave (a URI, a path, a name, an
# option's value) is cut to VALUE_MAX_CHARS; libvirt's own error text to LIBVIRT_TEXT_MAX_CHARS; a whole line to
# LINE_MAX_BYTES, under PIPE_BUF (4096), so its one write(2) to Telegraf's pipe never mixes with another's.
VALUE_MAX_CHARS = 256
LIBVIRT_TEXT_MAX_CHARS = 1024
LINE_MAX_BYTES = 4000


def clip(value: str, limit: int = VALUE_MAX_CHARS) -> str:
    """*value* as a line may echo it: its first *limit* characters, and how many were cut.

    >>> clip("x" * 300)[-30:]
    'xxxx...(44 more characters)'
    """
    if len(value) <= limit:
        return value
    return f"{value[:limit]}...({len(value) - limit} more characters)"


def clip_line(line: str, limit: int = LINE_MAX_BYTES) -> str:
    """The line within *limit* bytes of UTF-8: its start and its end (the fix, the hint), the middle cut out."""
    data = line.encode("utf-8", "backslashreplace")
    if len(data) <= limit:
        return line
    keep = limit - len(f" ...({len(data)} bytes cut)... ")
    head = data[: keep * 3 // 4].decode("utf-8", "ignore")  # "ignore": no character cut in two
    tail = data[len(data) - (keep - keep * 3 // 4) :].decode("utf-8", "ignore")
    cut = len(data) - len(head.encode()) - len(tail.encode())
    return f"{head} ...({cut} bytes cut)... {tail}"


def safe_line(line: str) -> str:
    """What any line we print may show: the credentials of every URI in it hidden (kvm_telegraf.redact, a last
    pass over whatever text reached the line, an exception's included), cut to LINE_MAX_BYTES."""
    return clip_line(redact(line))


class TelegrafFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.threadName and record.threadName.startswith(HOST_THREAD_PREFIX):
            message = f"{record.threadName[len(HOST_THREAD_PREFIX) :]}: {message}"
        if record.exc_info and record.levelno <= logging.DEBUG:
            message = f"{message}: {self.formatException(record.exc_info)}"
        prefix = _PREFIXES.get(record.levelno, "E! " if record.levelno > logging.ERROR else "D! ")
        return safe_line(prefix + " | ".join(line for line in message.splitlines() if line.strip()))


class SafeStreamHandler(logging.StreamHandler):
    """Each line in one write(2) to stderr's fd; a closed stderr must not take the collector down with it.

    Python's buffered stderr (line-buffered, as under Telegraf, which sets no PYTHONUNBUFFERED) holds a lock
    during each write: a signal handler that logged while the main thread was inside one got "reentrant call",
    and its line was lost. Any other stream (click's CliRunner, whose stream answers fileno() with the real
    stderr's fd from click 8.2 on) is written as a stream.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            if self.stream is not sys.__stderr__:
                self.stream.write(line)
                self.flush()
                return
            fd = self.stream.fileno()
            data = line.encode("utf-8", "backslashreplace")
            while data:
                data = data[os.write(fd, data) :]
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's API
        pass


def setup_logging(level: str) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = SafeStreamHandler(sys.stderr)
    handler.setFormatter(TelegrafFormatter())
    logger.addHandler(handler)
    logger.setLevel(LEVELS[level])
    logger.propagate = False
    return logger


def get_logger(module: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{module.rsplit('.', 1)[-1]}")
