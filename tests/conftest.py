"""Shared fixtures: the Go oracle, the live lab, InfluxDB, recorded snapshots."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
from hypothesis import settings

from tests.go.build import build
from tests.harness import matrix
from tests.harness.environment import adopt_telegraf_environment
from tests.harness.fixtures import influx  # noqa: F401 - re-exported fixture
from tests.harness.goldens import SNAPSHOTS, TESTS, load_snapshots  # noqa: F401 - shared with the tests

IN_CI = os.environ.get("CI") == "true"

# Hypothesis 6.141 (the last for Python 3.9, Debian 11's) asserts inside its default settings' ``database``;
# pytest rewrites all of hypothesis (a plugin's distribution) and, for pytest-golden's assertion-pass hook, reprs
# the settings there, which asks for ``database`` again, until Python 3.9 aborts (a bare @given on the tree).
# A profile of our own, with the same settings, is not the default.
settings.register_profile("kvm-telegraf")
settings.load_profile("kvm-telegraf")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``daemon``: one session-wide instance per flavour of the matrix (tests/harness/matrix.py); a test marked
    ``trees`` runs on the Debian trees only (it runs something inside one)."""
    if "daemon" in metafunc.fixturenames:
        trees = metafunc.definition.get_closest_marker("trees") is not None
        names = matrix.tree_flavours() if trees else matrix.selected()
        metafunc.parametrize("daemon", names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def daemon(request: pytest.FixtureRequest) -> Iterator[matrix.Daemon]:
    """A flavour's libvirtd with its two guests up, for the whole session; a flavour that cannot be built or
    started fails its tests with the reason (never a skip)."""
    try:
        daemon = matrix.bring_up(request.param)
    except Exception as exc:
        pytest.fail(f"flavour {request.param} could not be built or started: {exc}")
    yield daemon
    if not os.environ.get("KVM_TELEGRAF_KEEP_LAB"):
        matrix.take_down(daemon)


def pytest_configure(config: pytest.Config) -> None:
    """Every process a test starts gets Telegraf's environment (tests/harness/environment.py)."""
    adopt_telegraf_environment()


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    """The saturate tests run last: they slow libvirt down, so nothing else should share their minutes."""
    items.sort(key=lambda item: item.get_closest_marker("saturate") is not None)


def need(condition: bool, reason: str) -> None:
    """Skip on a developer box without the part; under CI a missing part is a failure."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI must run this test: {reason}")
        pytest.skip(reason)


class Oracle:
    """InfluxData's Go line-protocol encoder, one JSON metric in, one record out."""

    def __init__(self, binary: Path) -> None:
        self._proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False)

    def encode(self, metric: dict) -> bytes:
        assert self._proc.stdin and self._proc.stdout
        self._proc.stdin.write(json.dumps(metric).encode() + b"\n")
        self._proc.stdin.flush()
        return self._proc.stdout.readline()

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait()


@pytest.fixture(scope="session")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oracle]:
    try:
        binary = build("lpencode", tmp_path_factory.mktemp("go"))
    except RuntimeError as exc:
        need(False, f"Go oracle unavailable: {exc}")
    oracle = Oracle(binary)
    yield oracle
    oracle.close()


@pytest.fixture(scope="session")
def toml_parse(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Dict[str, Any]]:
    """influxdata/toml, the TOML library of Telegraf's config loader (tests/go/tomlcheck), as a function:
    TOML text in, the parsed tables out (as JSON types). Built once per session."""
    try:
        binary = build("tomlcheck", tmp_path_factory.mktemp("go"))
    except RuntimeError as exc:
        need(False, f"influxdata/toml checker unavailable: {exc}")
    workdir = tmp_path_factory.mktemp("toml")

    def parse(text: str) -> Dict[str, Any]:
        source = workdir / "input.toml"
        source.write_text(text)
        done = subprocess.run([str(binary), str(source)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return parse


@pytest.fixture(scope="session")
def lab() -> Iterator[List[str]]:
    """Two live lab guests (tests/lab), up for the whole session and removed after it."""
    sys.path.insert(0, str(TESTS / "lab"))
    import lab as lab_module

    try:
        names = lab_module.up(2)
    except Exception as exc:  # no libvirt, no QEMU, no root
        need(False, f"lab could not start: {exc}")
    yield names
    if not os.environ.get("KVM_TELEGRAF_KEEP_LAB"):
        lab_module.down()


def run_lab(prefix: str, *args: str) -> List[str]:
    """tests/lab/lab.py in a subprocess with its own name prefix; returns the names it prints."""
    env = {**os.environ, "KVM_TELEGRAF_LAB_PREFIX": prefix}
    argv = [sys.executable, str(TESTS / "lab" / "lab.py"), *args]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    return done.stdout.split()


@pytest.fixture(scope="session")
def fault_lab() -> Iterator[List[str]]:
    """Two guests of their own (ktfault-*) for the tests that freeze, restart, rename and destroy them."""
    try:
        names = run_lab("ktfault-", "up", "2")
    except Exception as exc:  # no libvirt, no QEMU, no root
        need(False, f"fault lab could not start: {exc}")
    yield names
    if not os.environ.get("KVM_TELEGRAF_KEEP_LAB"):
        run_lab("ktfault-", "down")


@pytest.fixture(scope="session")
def event_lab() -> Iterator[List[str]]:
    """One guest of its own (kte-*) for the event tests, which destroy, suspend and hot-plug it."""
    try:
        names = run_lab("kte-", "up", "1")
    except Exception as exc:  # no libvirt, no QEMU, no root
        need(False, f"event lab could not start: {exc}")
    yield names
    if not os.environ.get("KVM_TELEGRAF_KEEP_LAB"):
        run_lab("kte-", "down")


@pytest.fixture(autouse=True)
def python_collector_as_it_was() -> Iterator[None]:
    """An in-process run settles the garbage collector for a long run (program.settle_collector): each test after
    it starts with the collector as Python set it."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
