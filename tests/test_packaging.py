"""Packaging facts that the README promises: one version, the minimum Python, completion, a changelog."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # the distros' 3.9 and 3.10
    import tomli as tomllib

from kvm_telegraf import __version__
from tests.harness.cli import KVM_TELEGRAF, bash_completions

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
README = (ROOT / "README.md").read_text()
CHANGELOG = (ROOT / "CHANGELOG.md").read_text()


def test_the_version_lives_only_in_the_package_and_pyproject_reads_it_from_there():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "kvm_telegraf.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_the_installed_command_prints_the_package_version():
    done = subprocess.run([KVM_TELEGRAF, "--version"], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"kvm-telegraf, version {__version__}\n", "")


def test_python_3_9_is_the_minimum_everywhere_it_is_stated():
    assert PYPROJECT["project"]["requires-python"] == ">=3.9"
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py39"
    assert "vermin --no-tips --target=3.9- --violations kvm_telegraf" in (ROOT / "Makefile").read_text()
    assert "needs Python >= 3.9" in README


def test_tomli_is_required_only_where_tomllib_is_missing():
    assert "tomli>=1.1; python_version < '3.11'" in PYPROJECT["project"]["dependencies"]


README_COMPLETION = 'eval "$(_KVM_TELEGRAF_COMPLETE=bash_source kvm-telegraf)"'
PACKAGED_COMPLETION = f"source {ROOT / 'completions' / 'kvm-telegraf'}"


@pytest.mark.parametrize("setup", [README_COMPLETION, PACKAGED_COMPLETION], ids=["readme", "packages"])
@pytest.mark.parametrize(
    ("words", "offered"),
    [
        (["kvm-telegraf", "--log-level", ""], ["error", "warn", "info", "debug"]),
        (["kvm-telegraf", "--measurement", "vm_d"], ["vm_devices"]),
        (["kvm-telegraf", "--coll"], ["--collect"]),
        (["kvm-telegraf", "--timeout", "5s", "doc"], ["doctor"]),
    ],
)
def test_bash_completes_options_their_values_and_subcommands_on_this_click(setup, words, offered):
    assert README_COMPLETION in README
    env = {**os.environ, "PATH": f"{Path(KVM_TELEGRAF).parent}{os.pathsep}{os.environ['PATH']}"}
    argv = ["bash", "-c", bash_completions(setup, words)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout.split()) == (0, offered), done.stderr


def test_the_changelog_opens_with_the_current_version_in_keep_a_changelog_form():
    versions = re.findall(r"^## \[([^\]]+)\]", CHANGELOG, re.M)
    assert versions and versions[0] == __version__
    assert re.search(r"^### (Added|Changed|Fixed|Removed)$", CHANGELOG, re.M)
    assert "tests/goldens/" in CHANGELOG, "the changelog says how schema changes are recorded"
