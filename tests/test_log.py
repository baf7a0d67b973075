"""stderr lines in Telegraf's convention."""

from __future__ import annotations

import io
import logging
import os
import sys
import threading

import pytest

from kvm_telegraf.log import (
    HOST_THREAD_PREFIX,
    LINE_MAX_BYTES,
    LOGGER_NAME,
    VALUE_MAX_CHARS,
    clip,
    clip_line,
    get_logger,
    setup_logging,
)
from tests.harness.loglines import log_lines


def test_a_line_logged_on_a_host_s_thread_names_that_host_and_others_do_not():
    logger = get_logger("kvm_telegraf.collect")
    with log_lines() as lines:
        host = threading.Thread(
            target=lambda: logger.warning("stats call did not return within %gs", 5.0),
            name=HOST_THREAD_PREFIX + "qemu+ssh://***@kvm1/system",
        )
        host.start()
        host.join()
        logger.warning("no host here")
    assert lines == [
        "W! qemu+ssh://***@kvm1/system: stats call did not return within 5s",
        "W! no host here",
    ]


def test_a_huge_message_is_one_line_within_the_line_bound_keeping_its_start_and_its_end():
    logger = get_logger("kvm_telegraf.collect")
    with log_lines() as lines:
        logger.warning("cannot read the configuration of domain %s: %s", "web" + "\u00e9" * 5_000_000, "fix: nothing")
    (line,) = lines
    assert len(line.encode()) <= LINE_MAX_BYTES
    assert line.startswith("W! cannot read the configuration of domain web\u00e9\u00e9") and line.endswith(
        ": fix: nothing"
    )
    assert " bytes cut)... " in line


@pytest.mark.parametrize("size", [0, 1, VALUE_MAX_CHARS - 1, VALUE_MAX_CHARS])
def test_a_value_within_its_bound_is_echoed_whole(size):
    assert clip("x" * size) == "x" * size


@pytest.mark.parametrize("size", [VALUE_MAX_CHARS + 1, 50_000_000])
def test_a_value_past_its_bound_is_cut_saying_how_much_was_cut(size):
    assert clip("x" * size) == "x" * VALUE_MAX_CHARS + f"...({size - VALUE_MAX_CHARS} more characters)"


def test_a_line_within_the_bound_is_left_as_it_is():
    line = "E! " + "\u00e9" * ((LINE_MAX_BYTES - 3) // 2)
    assert clip_line(line) == line


def test_a_line_hides_the_credentials_of_any_uri_in_it_whatever_text_brought_it():
    """An unexpected exception's text, say libvirt's, reaches the line through no redact_uri of ours."""
    logger = get_logger("kvm_telegraf.pipeline")
    with log_lines() as lines:
        logger.error("cycle failed: %s", "internal error: Unable to parse URI qemu+ssh://root:s3cr3tPW/x@kvm1/system")
    assert lines == ["E! cycle failed: internal error: Unable to parse URI qemu+ssh://***@kvm1/system"]


def test_a_stream_that_is_not_the_process_stderr_gets_the_line_even_when_it_answers_fileno(monkeypatch):
    """click 8.2's CliRunner stream answers fileno() with fd 2: the line must still go into the stream."""
    read_end, write_end = os.pipe()

    class Capture(io.StringIO):
        def fileno(self) -> int:
            return write_end

    capture = Capture()
    logger = logging.getLogger(LOGGER_NAME)
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(sys, "stderr", capture)
    setup_logging("info")
    get_logger("test").warning("captured")
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        assert pipe.read() == b""
    assert capture.getvalue() == "W! captured\n"
