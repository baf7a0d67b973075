"""Faults on the live lab: a guest whose QEMU stops answering, and the shared libvirtd going away and back."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from tests.harness.matrix import qemu_pid

LAB_PY = Path(__file__).resolve().parents[1] / "lab" / "lab.py"


@contextlib.contextmanager
def frozen(name: str) -> Iterator[None]:
    """The guest's QEMU under SIGSTOP: its monitor stops answering, as in a real hang (whichever daemon runs it)."""
    pid = qemu_pid(name)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def libvirtd_answers() -> bool:
    return subprocess.run(["virsh", "list"], capture_output=True).returncode == 0


def stop_libvirtd() -> None:
    pid = int(Path("/run/libvirtd.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), "libvirtd did not stop"


def start_libvirtd() -> None:
    """Start libvirtd (and dbus, polkitd) as tests/lab does, and wait until it answers."""
    subprocess.run([sys.executable, str(LAB_PY), "daemons"], capture_output=True, timeout=120, check=True)
    deadline = time.monotonic() + 30
    while not libvirtd_answers() and time.monotonic() < deadline:
        time.sleep(0.2)
