"""The environment every process a test starts gets: Telegraf's, not the test runner's.

Telegraf's execd starts its command with Telegraf's own environment (internal/process leaves ``Cmd.Env`` unset,
or appends the plugin's ``environment`` to ``os.Environ()``), and a Telegraf under systemd has no
``PYTHONUNBUFFERED``. CI sets it: with it stderr is unbuffered, which hid a lost ``E!`` line as long as the tests
ran with it. conftest (and the soak) take these variables out of the test process itself at start-up, so every
child (kvm-telegraf, Telegraf, and Telegraf's own execd children) goes without them.
"""

from __future__ import annotations

import os

# What a test runner may set that Telegraf's environment lacks, and that changes how Python writes to its pipes.
NOT_IN_TELEGRAFS_ENVIRONMENT = ("PYTHONUNBUFFERED",)


def adopt_telegraf_environment() -> None:
    """Take those variables out of this process's environment, so every child started from here on lacks them."""
    for key in NOT_IN_TELEGRAFS_ENVIRONMENT:
        os.environ.pop(key, None)
