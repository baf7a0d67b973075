"""pytest fixtures for the test harness.

Use from a conftest.py with ``pytest_plugins = ["tests.harness.fixtures"]`` or
``from tests.harness.fixtures import influx``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .influxdb import InfluxServer, find_influxd


@pytest.fixture(scope="session")
def influx() -> Iterator[InfluxServer]:
    """A running InfluxDB 1.x server for the whole test session.

    Skipped when ``influxd`` is not installed, except under CI (CI=true), where a
    missing server is a failure: CI installs Debian's package ``influxdb``.
    """
    if find_influxd() is None:
        msg = "influxd not found (Debian package 'influxdb')"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    server = InfluxServer().start()
    try:
        yield server
    finally:
        server.stop()
