"""One Telegraf (``make telegraf``) with one input block, in a cgroup of its own, writing to a capture file.

Each setup writes with ``outputs.file`` to a capture; ``inputs.internal`` adds its gather times to it.
The capture gives lines and fields per gather; the cgroup gives the CPU of Telegraf and of every
child it starts (our execd process), in ns.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from benchmarks.cgroup import CpuGroup
from tests.harness.telegraf import Telegraf, children_of, wait_until

# What our four measurements cover (issue #11): inputs.libvirt's groups of the same stats.
LIBVIRT_GROUPS = ["state", "cpu_total", "balloon", "vcpu", "interface", "block"]
SECOND_NS = 1_000_000_000


def agent(interval_s: float, capture: Path) -> str:
    """Telegraf's [agent] and outputs: ns precision, the capture, inputs.internal every 5 s."""
    return f"""\
[agent]
  interval = "{interval_s:g}s"
  round_interval = true
  precision = "1ns"
  flush_interval = "1s"
  flush_jitter = "0s"
  collection_jitter = "0s"
  metric_batch_size = 10000
  metric_buffer_limit = 100000
  skip_processors_after_aggregators = true
[[outputs.file]]
  files = ["{capture}"]
  data_format = "influx"
[[inputs.internal]]
  interval = "5s"
"""


def libvirt_input(domains: Sequence[str], offset_s: float = 0.0) -> str:
    return (
        f'[[inputs.libvirt]]\n  domains = {json.dumps(list(domains))}\n  libvirt_uri = "qemu:///system"\n'
        f'  statistics_groups = {json.dumps(LIBVIRT_GROUPS)}\n  collection_offset = "{offset_s:g}s"\n'
    )


def execd_input(argv: Sequence[str], offset_s: float = 0.0) -> str:
    return (
        f'[[inputs.execd]]\n  command = {json.dumps(list(argv))}\n  signal = "STDIN"\n  data_format = "influx"\n'
        f'  collection_offset = "{offset_s:g}s"\n'
    )


class Point(NamedTuple):
    measurement: str
    tags: Dict[str, str]
    fields: Dict[str, object]
    time: int


def parse(line: str) -> Point:
    """One captured line (bench names and values need no unescaping; string values hold no space or comma)."""
    head, fields_text, stamp = line.rsplit(" ", 2)
    measurement, *tags = head.split(",")
    fields: Dict[str, object] = {}
    for part in fields_text.split(","):
        key, value = part.split("=", 1)
        if value.endswith("i") or value.endswith("u"):
            fields[key] = int(value[:-1])
        elif value.startswith('"'):
            fields[key] = value.strip('"')
        elif value in ("true", "false"):
            fields[key] = value == "true"
        else:
            fields[key] = float(value)
    return Point(measurement, dict(tag.split("=", 1) for tag in tags), fields, int(stamp))


def read_capture(path: Path) -> List[Point]:
    return [parse(line) for line in path.read_text().splitlines() if line]


@dataclass
class Setup:
    """One Telegraf with its input(s), its capture, the prefix of the measurements it is about, and its cgroup."""

    name: str
    telegraf: Telegraf
    capture: Path
    prefix: str  # the input's measurements: libvirt_ or vm_ ("" for none)
    group: Optional[CpuGroup] = None

    def pids(self) -> List[int]:
        """Telegraf's pid, then its children's (the execd process)."""
        assert self.telegraf.proc is not None
        return [self.telegraf.proc.pid, *children_of(self.telegraf.proc.pid)]

    def wait_first_gather(self, timeout: float = 30.0) -> bool:
        marker = (self.prefix or "internal_").encode()
        return wait_until(lambda: self.capture.exists() and marker in self.capture.read_bytes(), timeout)

    def stop(self) -> None:
        self.telegraf.stop()
        if self.group is not None:
            self.group.close()


def start_setup(
    name: str, binary: Path, workdir: Path, interval_s: float, input_block: str, prefix: str, cgroup: str = ""
) -> Setup:
    """Telegraf with *input_block*; with *cgroup*, in a new cgroup of that name, before it starts any child.

    Telegraf reads its configuration before it starts an execd child, so the child is forked
    once its parent is in the group; a child already running is moved too.
    """
    workdir.mkdir(parents=True)
    capture = workdir / "capture.lp"
    group = CpuGroup(cgroup) if cgroup else None
    telegraf = Telegraf(binary, workdir, input_block, agent(interval_s, capture)).start()
    setup = Setup(name, telegraf, capture, prefix, group)
    if group is not None:
        group.add(setup.pids()[:1])
        group.add(setup.pids()[1:])
    return setup


def per_gather(points: List[Point], prefix: str, interval_s: float) -> Tuple[float, float]:
    """Median lines and fields per gather of the input whose measurements start with ``prefix``."""
    gathers: Dict[int, List[Point]] = {}
    for point in points:
        if point.measurement.startswith(prefix):
            gathers.setdefault(point.time // int(interval_s * SECOND_NS), []).append(point)
    whole = list(gathers.values())[1:-1] or list(gathers.values())  # the first and last may be cut by start and stop
    return (
        statistics.median(len(g) for g in whole),
        statistics.median(sum(len(p.fields) for p in g) for g in whole),
    )


def gather_time_s(points: List[Point], input_name: str) -> Optional[float]:
    """inputs.internal's gather time of one input: the median of its averages."""
    times = [
        p.fields["gather_time_ns"]
        for p in points
        if p.measurement == "internal_gather" and p.tags.get("input") == input_name and p.fields.get("gather_time_ns")
    ]
    return statistics.median(times) / 1e9 if times else None  # type: ignore[arg-type]
