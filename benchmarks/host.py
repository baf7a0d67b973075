"""The machine and the lab under the bench: its guests, kvm-telegraf installed as documented, the load.

The host is shared with other work (other test labs, package builds): every part of the run
records how busy both cores were while it ran (from /proc/stat, all processes, ours included)
and the load average, so each figure can be read with its load.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Tuple

from benchmarks.contenders import SYSTEM_PYTHON, URI
from benchmarks.peers import COLLECTD, EXPORTER
from tests.harness.telegraf import find_telegraf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = os.environ.get("KVM_TELEGRAF_BENCH_PREFIX", "ktbench-")


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def lab(*args: str) -> None:
    """tests/lab/lab.py with this bench's prefix, so the shared test lab (ktlab-*) is never touched."""
    env = {**os.environ, "KVM_TELEGRAF_LAB_PREFIX": PREFIX}
    subprocess.run([sys.executable, os.path.join(REPO, "tests", "lab", "lab.py"), *args], env=env, check=True)


def install_as_documented(workdir: str) -> str:
    """kvm-telegraf as README's Install section has it: a venv on the host's Python, a plain pip install.

    The development venv's editable install loads an import hook at every start
    (about 2 MiB), which a real install does not have. Returns the entry point's path.
    """
    source, venv = os.path.join(workdir, "src"), os.path.join(workdir, "venv")
    shutil.copytree(
        os.path.join(REPO, "kvm_telegraf"),
        os.path.join(source, "kvm_telegraf"),
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), source)
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", venv], check=True)
    pip = [os.path.join(venv, "bin", "pip"), "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*pip, source], check=True)
    return os.path.join(venv, "bin", "kvm-telegraf")


def ensure_peers() -> None:
    missing = [path for path in (COLLECTD, EXPORTER) if not os.path.exists(path)]
    if missing:
        log(f"missing {' '.join(missing)}: installing collectd-core prometheus-libvirt-exporter")
        subprocess.run(
            [os.path.join(REPO, "scripts", "apt-ensure"), "collectd-core", "prometheus-libvirt-exporter"], check=True
        )


def machine_info() -> Dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def version(number: int) -> str:
        return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"

    import libvirt

    conn = libvirt.openReadOnly(URI)
    try:
        libvirt_version, qemu_version = version(conn.getLibVersion()), version(conn.getVersion())
    finally:
        conn.close()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "libvirt": libvirt_version,
        "qemu": qemu_version,
        "python": platform.python_version(),
        "telegraf": telegraf_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def telegraf_version() -> str:
    binary = find_telegraf()
    if binary is None:
        return "not built"
    return subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.split()[-1]


def cpu_times() -> Tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat's first line."""
    with open("/proc/stat", encoding="ascii") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def busy_share(before: Tuple[int, int], after: Tuple[int, int]) -> float:
    """Share of all cores busy between two cpu_times() readings (0..1)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


@dataclass
class PartLoad:
    """One part of the run: how long it took, how busy the machine was meanwhile, the load average at its end."""

    part: str
    seconds: float
    busy: float  # share of both cores, every process counted
    loadavg: float


class LoadLog:
    """The parts of a run, each with its duration and the machine's load."""

    def __init__(self) -> None:
        self.parts: List[PartLoad] = []
        self._part = ""
        self._started = 0.0
        self._times = (0, 0)

    def begin(self, part: str) -> None:
        log(part)
        self._part, self._started, self._times = part, time.monotonic(), cpu_times()

    def end(self) -> None:
        with open("/proc/loadavg", encoding="ascii") as handle:
            loadavg = float(handle.read().split()[0])
        self.parts.append(
            PartLoad(self._part, time.monotonic() - self._started, busy_share(self._times, cpu_times()), loadavg)
        )
