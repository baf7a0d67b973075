"""The matrix's libvirt daemons as the tests use them: the host's and each Debian tree's (tests/lab/flavours.py).

A test asks for ``daemon`` (tests/conftest.py parametrizes it with every flavour of $KVM_TELEGRAF_FLAVOURS) and
gets the daemon's URI, its two guests (the default guest and the ``groups`` variant: two pinned vCPUs, two
IOThreads) and a ``virsh`` bound to it. Inside a tree (``run_inside``, KVM_TELEGRAF_MATRIX_INSIDE) the same
tests run on the tree's own Python and libvirt-python against its own daemon, whose guests the host started.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

LAB_DIR = Path(__file__).resolve().parents[1] / "lab"
ROOT = LAB_DIR.parents[1]
if str(LAB_DIR) not in sys.path:
    sys.path.insert(0, str(LAB_DIR))

import flavours  # noqa: E402 - tests/lab/flavours.py, stdlib only

HOST = flavours.HOST
# Set when this session runs inside a flavour's tree (its name), with the guests the host started there.
INSIDE = os.environ.get("KVM_TELEGRAF_MATRIX_INSIDE", "")
INSIDE_GUESTS = os.environ.get("KVM_TELEGRAF_MATRIX_GUESTS", "").split()
# On the host's libvirtd the matrix's guests need a prefix no other test fixture uses.
HOST_PREFIX = "ktmat-"
GUESTS_TIMEOUT_S = 300


def selected() -> List[str]:
    """The flavours this session runs: the tree's own inside it, else $KVM_TELEGRAF_FLAVOURS (all four)."""
    return [INSIDE] if INSIDE else flavours.selected()


def tree_flavours() -> List[str]:
    return [name for name in selected() if name != HOST and not INSIDE]


@dataclass
class Daemon:
    """One flavour's libvirtd, seen from this process."""

    flavour: str
    uri: str
    guests: List[str]  # the default guest, then the groups variant

    @property
    def versions(self) -> flavours.Flavour:
        return flavours.flavour(self.flavour)

    def virsh(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["virsh", "-q", "-c", self.uri, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if check and done.returncode:
            raise AssertionError(f"virsh {' '.join(args)} on {self.flavour}: {done.stderr.strip()}")
        return done.stdout

    def domstats(self, name: str, *groups: str) -> Dict[str, str]:
        out = self.virsh("domstats", *(f"--{g}" for g in groups), name)
        return dict(line.strip().split("=", 1) for line in out.splitlines() if "=" in line)

    def domblkinfo(self, name: str, disk: str) -> Dict[str, int]:
        out = self.virsh("domblkinfo", name, disk)
        return {k.strip(): int(v) for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}

    def args(self) -> List[str]:
        """kvm-telegraf's options for exactly this daemon and its guests."""
        return ["--uri", self.uri, *[a for name in self.guests for a in ("--domain", name)]]


def _lab(flavour: str, *args: str) -> List[str]:
    """tests/lab/lab.py for this flavour in a subprocess; the names it prints."""
    env = {k: v for k, v in os.environ.items() if k not in ("KVM_TELEGRAF_LAB_FLAVOUR", "KVM_TELEGRAF_LAB_PREFIX")}
    if flavour == HOST:
        env["KVM_TELEGRAF_LAB_PREFIX"] = HOST_PREFIX
    else:
        env["KVM_TELEGRAF_LAB_FLAVOUR"] = flavour
    argv = [sys.executable, str(LAB_DIR / "lab.py"), *args]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode:
        raise RuntimeError(f"lab.py {' '.join(args)} ({flavour}): {done.stderr.strip()[-3000:]}")
    return done.stdout.split()


def bring_up(flavour: str) -> Daemon:
    """Build the tree if need be, start its daemons, and start the flavour's two guests."""
    if INSIDE:
        return Daemon(flavour, "qemu:///system", INSIDE_GUESTS)
    (default,) = _lab(flavour, "up", "1", "--timeout", str(GUESTS_TIMEOUT_S))
    names = _lab(flavour, "up", "2", "--variant", "groups", "--timeout", str(GUESTS_TIMEOUT_S))
    return Daemon(flavour, flavours.uri(flavour), [default, names[1]])


def take_down(daemon: Daemon) -> None:
    """The flavour's guests go; a tree's daemons stop (the tree stays cached)."""
    if INSIDE:
        return
    _lab(daemon.flavour, "down")
    if daemon.flavour != HOST:
        flavours.stop(daemon.flavour)


def qemu_pid(name: str) -> int:
    """The pid (in this process's pid namespace) of the QEMU that runs guest *name*, whichever daemon started it."""
    marker = f"guest={name},".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and b"qemu-system" in argv[0] and any(arg.startswith(marker) for arg in argv):
            return int(entry.name)
    raise AssertionError(f"no QEMU process for guest {name}")


def tree_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """A clean environment for a command in a tree: nothing of the host's (no CI: the tree has no Go, no
    InfluxDB and no Telegraf, which the host's run covers), unbuffered as Telegraf's children are not."""
    env = {
        "PATH": f"{flavours.VENV}/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return {**env, **(extra or {})}


def run_inside(
    flavour: str,
    argv: Sequence[str],
    env: Optional[Dict[str, str]] = None,
    timeout: float = 1200,
    cwd: str = flavours.SOURCE,
) -> subprocess.CompletedProcess:
    """argv in the flavour's namespaces, chrooted into its tree (in *cwd* there): its /proc, its daemon at
    qemu:///system."""
    pid = flavours.ns_pid(flavour)
    assert pid, f"the {flavour} daemons are not running"
    command = [
        "nsenter",
        "-t",
        str(pid),
        "-m",
        "-p",
        "-u",
        "-n",
        "--",
        "chroot",
        flavours.root(flavour),
        "env",
        "-i",
        f"--chdir={cwd}",
        *[f"{k}={v}" for k, v in tree_env(env).items()],
        *argv,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".cache",
    "dist",
    "build",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
)


def install_checkout(flavour: str) -> None:
    """This checkout, copied into the tree and installed into its venv (offline: the venv has setuptools)."""
    dest = flavours.root(flavour) + flavours.SOURCE
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE, symlinks=True)
    pip = [f"{flavours.VENV}/bin/pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation"]
    done = run_inside(flavour, [*pip, flavours.SOURCE], timeout=300, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]


def pytest_counts(output: str) -> Dict[str, int]:
    """pytest's closing line as numbers: {"passed": 596, "skipped": 27}."""
    lines = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    if not lines:
        return {}
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", lines[-1])}


COMPATIBILITY = ROOT / "docs" / "compatibility.md"


def compatibility_row(flavour: str) -> Dict[str, str]:
    """The flavour's row of docs/compatibility.md's "Tested flavours" table, by column name."""
    lines = COMPATIBILITY.read_text().split("## Tested flavours", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines if line.startswith("|")]
    header, *body = [row for row in rows if not set("".join(row)) <= set("-")]
    found = [dict(zip(header, row)) for row in body if row[0] == flavour]
    assert len(found) == 1, f"docs/compatibility.md has {len(found)} rows for {flavour}"
    return found[0]
