"""A CPU-accounting cgroup around one process and every child it starts: their CPU in nanoseconds, at once.

A Telegraf with ``inputs.execd`` is two processes; its execd child is restarted with a new pid after
an exit. A cgroup counts both, whatever their pids, and a child forked after its parent joined is in
it from its first instruction. cgroup v1 (this machine: hybrid, ``cpuacct`` mounted on its own)
gives ``cpuacct.usage`` in ns; cgroup v2 gives ``usage_usec`` in ``cpu.stat`` in every group, with
no controller to enable.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import List, Optional, Sequence

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Where a new group may go, the first that exists wins: cgroup v1's cpuacct hierarchy, v2 under a hybrid
# host's unified mount, a pure v2 host's root.
HIERARCHIES = ("cpuacct", "cpu,cpuacct", "unified", "")


def usage_ns(group: Path) -> int:
    """CPU of every task that was ever in *group*, in ns: cpuacct.usage (v1), or cpu.stat's usage_usec (v2)."""
    v1 = group / "cpuacct.usage"
    if v1.exists():
        return int(v1.read_text().split()[0])
    for line in (group / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) * 1000
    raise ValueError(f"{group}/cpu.stat has no usage_usec")


def hierarchy(root: Path = CGROUP_ROOT) -> Path:
    """The directory under which a CPU-accounting group can be made."""
    for name in HIERARCHIES:
        path = root / name if name else root
        if (path / "cpuacct.usage").exists() or (path / "cgroup.controllers").exists():
            return path
    raise RuntimeError(f"no cpuacct (cgroup v1) or cgroup v2 hierarchy under {root}")


class CpuGroup:
    """A cgroup of our own, its tasks and their CPU; removed (once empty) on close."""

    def __init__(self, name: str, root: Path = CGROUP_ROOT) -> None:
        self.path = hierarchy(root) / name
        self.path.mkdir(exist_ok=True)

    def add(self, pids: Sequence[int]) -> None:
        """Move *pids* in; a pid that has just exited is skipped."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def pids(self) -> List[int]:
        return [int(line) for line in (self.path / "cgroup.procs").read_text().split()]

    def usage_ns(self) -> int:
        return usage_ns(self.path)

    def close(self) -> Optional[str]:
        """Remove the group; returns why not when tasks are still in it."""
        try:
            os.rmdir(self.path)
        except OSError as exc:
            return f"{self.path}: {exc.strerror}"
        return None
