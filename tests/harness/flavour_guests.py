"""Guests under a flavour's libvirtd (tests/lab/flavours.py: Debian's newer and older libvirt beside the host's).

A test brings its own guests up under a name prefix of its own, reads them with kvm-telegraf over the flavour's
URI and with the tree's own ``virsh``, and takes them down; the daemon is stopped only if the test started it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List

LAB_DIR = Path(__file__).resolve().parents[1] / "lab"
if str(LAB_DIR) not in sys.path:
    sys.path.insert(0, str(LAB_DIR))

import flavours  # noqa: E402 - tests/lab/flavours.py, stdlib only


def lab_on(flavour: str, prefix: str, *args: str) -> List[str]:
    """tests/lab/lab.py under the flavour's daemon and a name prefix of its own; the names it prints."""
    env = {**os.environ, "KVM_TELEGRAF_LAB_FLAVOUR": flavour, "KVM_TELEGRAF_LAB_PREFIX": prefix}
    done = subprocess.run(
        [sys.executable, str(LAB_DIR / "lab.py"), *args], env=env, capture_output=True, text=True, timeout=1800
    )
    if done.returncode:
        raise RuntimeError(f"lab.py {' '.join(args)} on {flavour}: {done.stderr.strip()[-2000:]}")
    return done.stdout.split()


@contextlib.contextmanager
def flavour_guests(flavour: str, prefix: str, count: int, variant: str) -> Iterator[List[str]]:
    """*count* guests of *variant* under the flavour's daemon (its tree built and started first if need be)."""
    running = flavours.ns_pid(flavour) is not None and flavours.answers(flavour)
    try:
        yield lab_on(flavour, prefix, "up", str(count), "--variant", variant)
    finally:
        if not os.environ.get("KVM_TELEGRAF_KEEP_LAB"):
            lab_on(flavour, prefix, "down")
            if not running:
                flavours.stop(flavour)


def tree_domstats(flavour: str, name: str, *groups: str) -> Dict[str, str]:
    """``virsh domstats`` by the tree's own virsh (its libvirt's client), read-only, as key -> text."""
    socket = "/run/libvirt/libvirt-sock-ro"
    argv = ["chroot", flavours.root(flavour), "virsh", "-q", "-r", "-c", f"qemu+unix:///system?socket={socket}"]
    done = subprocess.run(
        [*argv, "domstats", *(f"--{g}" for g in groups), name], capture_output=True, text=True, timeout=60, check=True
    )
    return dict(line.strip().split("=", 1) for line in done.stdout.splitlines() if "=" in line)
