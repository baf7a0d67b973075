"""Each Debian tree's own client side: its Python and libvirt-python, and the .deb installed with its apt.

For every tree of the matrix (bullseye: Python 3.9, libvirt-python 7.0, click 7.1; trixie: 3.13, 11.3;
sid: 3.14, 12.8) this checkout is installed into the tree's venv and the unit suite and the e2e core
(tests/test_matrix.py) run there against the tree's own daemon; the .deb built from this checkout is
installed with the tree's apt, run as the ``telegraf`` user (with a ``--config`` file too), and purged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from tests.conftest import need
from tests.harness.cli import KVM_TELEGRAF, bash_completions, next_batch, parse_line
from tests.harness.execd import ExecdDriver
from tests.harness.matrix import HOST, ROOT, Daemon, flavours, install_checkout, pytest_counts, run_inside, selected

pytestmark = [pytest.mark.lab, pytest.mark.trees]

PYTEST = [f"{flavours.VENV}/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts="]


def record(daemon: Daemon, what: str, counts: Dict[str, int]) -> None:
    """Keep the counts beside the tree, for the compatibility notes (docs/compatibility.md)."""
    path = Path(flavours.tree_dir(daemon.flavour)) / "counts.json"
    seen = json.loads(path.read_text()) if path.exists() else {}
    seen[what] = counts
    path.write_text(json.dumps(seen, indent=1, sort_keys=True))


@pytest.fixture(scope="session")
def installed(daemon: Daemon) -> Daemon:
    install_checkout(daemon.flavour)
    return daemon


def test_the_unit_suite_passes_on_the_trees_own_python_libvirt_python_and_click(installed):
    # The E! line written before a fatal signal's default action is sometimes lost, on every Python here (3.11 on
    # the host too; FACTS.md, "The unit suite inside a tree"): a bug of its own, left to the host's run.
    flaky = "tests/test_trigger.py::test_a_signal_without_a_meaning_here_keeps_its_default_action_after_saying_so"
    argv = [*PYTEST, "-m", "not lab", "--deselect", flaky, "tests"]
    done = run_inside(installed.flavour, argv, {"PYTHONUNBUFFERED": "1"})
    counts = pytest_counts(done.stdout)
    record(installed, "unit", counts)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert counts.get("passed", 0) > 500 and not counts.get("failed"), counts


def test_the_e2e_core_passes_on_the_trees_own_client_against_its_own_daemon(installed):
    env = {"KVM_TELEGRAF_MATRIX_INSIDE": installed.flavour, "KVM_TELEGRAF_MATRIX_GUESTS": " ".join(installed.guests)}
    done = run_inside(installed.flavour, [*PYTEST, "tests/test_matrix.py"], env)
    counts = pytest_counts(done.stdout)
    record(installed, "core", counts)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert counts.get("passed") == 5 and not counts.get("skipped"), counts


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb built once from this checkout, offline, as test_packages builds it."""
    need(os.geteuid() == 0, "needs root: builds offline in a network namespace of its own")
    need(shutil.which("dpkg-buildpackage") is not None, "packaging tools missing (make deps installs them)")
    out = tmp_path_factory.mktemp("matrix-deb")
    argv = ["unshare", "--net", str(ROOT / "scripts" / "build-deb"), str(ROOT), str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(done.stdout.strip())


@pytest.fixture
def deb_in_tree(daemon: Daemon, deb: Path) -> Iterator[str]:
    """The .deb copied into the tree, and purged from it afterwards whatever happened."""
    inside = f"/tmp/{deb.name}"
    shutil.copy(deb, flavours.root(daemon.flavour) + inside)
    yield inside
    run_inside(daemon.flavour, ["dpkg", "--purge", "kvm-telegraf"], cwd="/")
    os.unlink(flavours.root(daemon.flavour) + inside)


# What apt would install for the .deb onto an empty system of each release (its TOML reader where Python < 3.11):
# nothing more. Debian 11 has python3-click 7.1.2, python3-toml and no python3-tomli; 13 and sid have tomllib.
PULLED = {
    "bullseye": {"python3-click", "python3-libvirt", "python3-toml"},
    "trixie": {"python3-click", "python3-libvirt"},
    "sid": {"python3-click", "python3-libvirt"},
}
# The reason each release's reader gives for an unquoted string: python3-toml's on Debian 11, tomllib's after.
NOT_TOML = {
    "bullseye": "This float doesn't have a leading digit (at line 1, column 1)",
    "trixie": "Invalid value (at line 1, column 7)",
    "sid": "Invalid value (at line 1, column 7)",
}


def test_the_deb_installs_with_the_trees_apt_runs_as_telegraf_with_a_config_file_and_purges(daemon, deb_in_tree):
    def inside(*argv: str) -> subprocess.CompletedProcess:
        done = run_inside(daemon.flavour, list(argv), timeout=300, cwd="/")
        assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done

    # An empty dpkg status: apt resolves every dependency, as on a host with none of them installed.
    simulated = inside("apt-get", "install", "-s", "-o", "Dir::State::status=/dev/null", deb_in_tree).stdout
    pulled = set(re.findall(r"^Inst (\S+)", simulated, re.M))
    assert pulled >= PULLED[daemon.flavour] | {"kvm-telegraf"}
    assert pulled.isdisjoint({"python3-toml", "python3-tomli"} - PULLED[daemon.flavour]), "a reader it never uses"

    apt = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-q"]
    inside(*apt, "install", "--no-install-recommends", deb_in_tree)
    if subprocess.run(["chroot", flavours.root(daemon.flavour), "id", "telegraf"], capture_output=True).returncode:
        inside("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "telegraf")
    as_telegraf = ["runuser", "-u", "telegraf", "--", "/usr/bin/kvm-telegraf"]
    selectors = [a for name in daemon.guests for a in ("--domain", name)]
    out = inside(*as_telegraf, "--once", "--timeout", "30s", *selectors).stdout
    lines = [parse_line(line) for line in out.splitlines()]
    per_guest = {name: sorted(m for m, tags, _, _ in lines if tags["vm"] == name) for name in daemon.guests}
    full = sorted(["vm_metrics", "vm_features", "vm_totals"] + ["vm_devices"] * 4)
    assert per_guest == {name: full for name in daemon.guests}

    # --config read by the reader the package brought: python3-toml on Debian 11 (no tomli), tomllib elsewhere.
    config = "/tmp/kvm-telegraf-matrix.toml"
    domains = ", ".join(f'"{name}"' for name in daemon.guests)
    Path(flavours.root(daemon.flavour) + config).write_text(
        f'timeout = "30s"\ndomain = [{domains}]\nmeasurement = ["vm_metrics"]\n'
    )
    out = inside(*as_telegraf, "--config", config, "--once").stdout
    assert sorted((m, tags["vm"]) for m, tags, _, _ in map(parse_line, out.splitlines())) == [
        ("vm_metrics", name) for name in sorted(daemon.guests)
    ]
    Path(flavours.root(daemon.flavour) + config).write_text("uri = qemu:///system\n")
    refused = run_inside(daemon.flavour, [*as_telegraf, "--config", config, "--once"], cwd="/")
    assert (refused.returncode, refused.stdout) == (2, "")
    not_toml = f"{config} is not valid TOML: {NOT_TOML[daemon.flavour]}"
    assert refused.stderr == f"E! Invalid value for --config: {not_toml} (see kvm-telegraf --help)\n"

    # The packaged bash completion, on the tree's own click (7.1.2 on Debian 11).
    words = ["kvm-telegraf", "--log-level", ""]
    script = bash_completions("source /usr/share/bash-completion/completions/kvm-telegraf", words)
    completed = inside("env", "PATH=/usr/bin:/bin", "bash", "-c", script).stdout
    assert completed.split() == ["error", "warn", "info", "debug"]

    os.unlink(flavours.root(daemon.flavour) + config)
    inside(*apt, "purge", "kvm-telegraf")
    assert not os.path.exists(flavours.root(daemon.flavour) + "/usr/bin/kvm-telegraf")
    assert not os.path.exists(flavours.root(daemon.flavour) + "/usr/lib/python3/dist-packages/kvm_telegraf")


TWIN = "ktmat-twin"
TWIN_XML = (
    f"<domain type='qemu'><name>{TWIN}</name><uuid>6b7e3c1a-2f4d-4e8b-9a1c-0d2e3f4a5b6c</uuid>"
    "<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>"
)


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[List[Daemon]]:
    """Two flavours' daemons at once, the second a tree renamed to the first's hostname, each holding a shut-off
    domain of the same name and UUID: what two hypervisors that kept Debian's default hostname look like."""
    names = selected()
    trees = [name for name in names if name != HOST]
    need(len(names) >= 2 and trees, f"needs two flavours, one of them a tree (KVM_TELEGRAF_FLAVOURS={names})")
    second = trees[-1]
    first = next(name for name in names if name != second)
    running = {name: flavours.ns_pid(name) is not None for name in (first, second)}
    pair = [Daemon(name, flavours.uri(name), [TWIN]) for name in (first, second)]
    for name in (first, second):
        if name != HOST:
            flavours.start(name)
    hostname = pair[0].virsh("hostname").strip()
    pid = str(flavours.ns_pid(second))
    subprocess.run(["nsenter", "-t", pid, "-u", "hostname", hostname], check=True)
    try:
        xml = tmp_path / "twin.xml"
        xml.write_text(TWIN_XML)
        for daemon in pair:
            daemon.virsh("define", str(xml))
        yield pair
    finally:
        for daemon in pair:
            daemon.virsh("undefine", TWIN, check=False)
        subprocess.run(["nsenter", "-t", pid, "-u", "hostname", flavours.flavour(second).hostname], check=True)
        for name in (first, second):
            if name != HOST and not running[name]:
                flavours.stop(name)


def test_two_daemons_that_report_one_hostname_never_share_a_series_the_second_is_left_out_with_one_warning(twins):
    first, second = twins
    assert first.virsh("hostname") == second.virsh("hostname")
    argv = [KVM_TELEGRAF, "--uri", first.uri, "--uri", second.uri, "--domain", TWIN, "--measurement", "vm_metrics"]
    with ExecdDriver(argv) as driver:
        batches = [next_batch(driver) for _ in range(3)]
    assert [[(m, tags["vm"]) for m, tags, _, _ in batch] for batch in batches] == [[("vm_metrics", TWIN)]] * 3
    warnings = [message for level, message in driver.stderr if level in "WE"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{second.uri} reports hostname "), warnings
    assert f"as {first.uri} does" in warnings[0]
