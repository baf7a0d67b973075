"""stderr lines in Telegraf's convention."""

from __future__ import annotations

import threading

from kvm_telegraf.log import HOST_THREAD_PREFIX, get_logger
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
