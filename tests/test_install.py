"""The install paths of the README, each run for real: pip into a fresh venv, then kvm-telegraf on the lab.

(a) a plain venv: pip builds libvirt-python from PyPI's source package (BUILD_DEBS in the Makefile);
(b) Debian's /usr/bin/python3 with apt's python3-libvirt and python3-click in a
    ``--system-site-packages`` venv: nothing is compiled, and the unprivileged ``telegraf`` user
    runs the result.
The package is built from a copy of the checkout, so no build/ or *.egg-info lands in the tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

import pytest

from kvm_telegraf import __version__
from tests.conftest import need

pytestmark = [pytest.mark.lab, pytest.mark.install]

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, the one apt's python3-libvirt serves
MEASUREMENTS = ("vm_metrics", "vm_features", "vm_devices", "vm_totals")
PIP_TIMEOUT = 600


def run(argv: List[str], env: Optional[Dict[str, str]] = None, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def only(names: List[str]) -> List[str]:
    return [arg for name in names for arg in ("--domain", name)]


def measurements_per_guest(batch: str) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for line in batch.splitlines():
        vm = line.split(",vm=", 1)[1].split(" ", 1)[0]  # vm is the last tag; lab names need no unescaping
        out.setdefault(vm, []).append(line.split(",", 1)[0])
    return {vm: sorted(set(found)) for vm, found in out.items()}


@pytest.fixture()
def world_readable_dir() -> Iterator[Path]:
    """A directory under /tmp that the telegraf user can enter (pytest's tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="kvm-telegraf-install-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    """What the sdist holds, copied out of the checkout: pip may build in it and leave files behind."""
    copy = tmp_path / "src"
    copy.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, copy / name)
    shutil.copytree(ROOT / "kvm_telegraf", copy / "kvm_telegraf", ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def build_leftovers() -> Set[str]:
    return {p.name for p in (ROOT / "build", ROOT / "dist", *ROOT.glob("*.egg-info")) if p.exists()}


@pytest.fixture()
def checkout_untouched() -> Iterator[None]:
    """The checkout gains no build/, dist/ or *.egg-info from the install."""
    before = build_leftovers()
    yield
    assert build_leftovers() == before


def libvirt_sdist_reachable(tmp_path: Path) -> bool:
    """pip download of libvirt-python's source package through this machine's pip configuration."""
    argv = [SYSTEM_PYTHON, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", tmp_path / "sdist"]
    done = subprocess.run([str(a) for a in [*argv, "libvirt-python"]], capture_output=True, timeout=PIP_TIMEOUT)
    return done.returncode == 0


def installed_version(venv: Path) -> str:
    probe = "import importlib.metadata as m; print(m.version('kvm-telegraf'))"
    return run([venv / "bin" / "python", "-c", probe]).stdout.strip()


def libvirt_module(venv: Path) -> Path:
    return Path(run([venv / "bin" / "python", "-c", "import libvirt; print(libvirt.__file__)"]).stdout.strip())


def test_pip_into_a_plain_venv_builds_libvirt_python_and_reads_the_lab(lab, source, tmp_path, checkout_untouched):
    need(libvirt_sdist_reachable(tmp_path), "libvirt-python's source package is not reachable through pip")
    venv = tmp_path / "venv"
    run([SYSTEM_PYTHON, "-m", "venv", venv])
    pip = run([venv / "bin" / "pip", "install", "--no-cache-dir", source], timeout=PIP_TIMEOUT)
    assert "Building wheel for libvirt-python" in pip.stdout, "a plain venv has no libvirt: pip must build it"
    assert libvirt_module(venv).is_relative_to(venv)
    assert installed_version(venv) == __version__

    version = run([venv / "bin" / "kvm-telegraf", "--version"])
    assert version.stdout.strip() == f"kvm-telegraf, version {__version__}"
    once = run([venv / "bin" / "kvm-telegraf", "--once", *only(lab)], timeout=60)
    assert measurements_per_guest(once.stdout) == {name: sorted(MEASUREMENTS) for name in lab}


def test_the_hosts_python_with_apt_libvirt_compiles_nothing_and_serves_the_telegraf_user(
    lab, source, world_readable_dir, checkout_untouched
):
    need(os.geteuid() == 0, "needs root to switch to the telegraf user")
    venv = world_readable_dir / "venv"
    run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", venv])
    no_compiler = {**os.environ, "CC": "/bin/false", "CXX": "/bin/false", "LDSHARED": "/bin/false"}
    pip = run([venv / "bin" / "pip", "install", "--no-cache-dir", source], env=no_compiler, timeout=PIP_TIMEOUT)
    assert "Building wheel for libvirt-python" not in pip.stdout
    assert "Requirement already satisfied: libvirt-python" in pip.stdout
    assert "Requirement already satisfied: click" in pip.stdout
    assert list(venv.rglob("*.so")) == [], "something was compiled into the venv"
    assert libvirt_module(venv).is_relative_to("/usr/lib/python3/dist-packages")
    check = subprocess.run([venv / "bin" / "pip", "check"], capture_output=True, text=True, timeout=120)
    # Debian's own site packages have gaps of their own (pygobject without pycairo): only ours count.
    assert [line for line in check.stdout.splitlines() if line.startswith("kvm-telegraf ")] == []

    once = run(["runuser", "-u", "telegraf", "--", venv / "bin" / "kvm-telegraf", "--once", *only(lab)], timeout=60)
    assert measurements_per_guest(once.stdout) == {name: sorted(MEASUREMENTS) for name in lab}
    assert once.stderr == ""
