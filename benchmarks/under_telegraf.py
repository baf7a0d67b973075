"""Telegraf as the host of both: its own ``inputs.libvirt``, and kvm-telegraf through ``inputs.execd``.

Each setup is one Telegraf (``make telegraf``) writing with ``outputs.file`` to a capture; ``inputs.internal``
adds its gather times to it. The capture gives lines and fields per gather, and, from one Telegraf running
both inputs half an interval apart, whether their counters agree with ours (MAPPING: the table of
docs/migrating-from-inputs-libvirt.md).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

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


def execd_input(argv: Sequence[str]) -> str:
    return f'[[inputs.execd]]\n  command = {json.dumps(list(argv))}\n  signal = "STDIN"\n  data_format = "influx"\n'


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
    """One Telegraf with its input(s), its capture, and the prefix of the measurements it is about."""

    name: str
    telegraf: Telegraf
    capture: Path
    prefix: str  # the input's measurements: libvirt_ or vm_

    def pids(self) -> List[int]:
        assert self.telegraf.proc is not None
        return [self.telegraf.proc.pid, *children_of(self.telegraf.proc.pid)]

    def wait_first_gather(self, timeout: float = 30.0) -> bool:
        return wait_until(lambda: self.capture.exists() and self.prefix.encode() in self.capture.read_bytes(), timeout)


def start_setup(name: str, binary: Path, workdir: Path, interval_s: float, input_block: str, prefix: str) -> Setup:
    workdir.mkdir(parents=True)
    capture = workdir / "capture.lp"
    telegraf = Telegraf(binary, workdir, input_block, agent(interval_s, capture)).start()
    return Setup(name, telegraf, capture, prefix)


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


# Their measurement and field -> our measurement and field, and the factor from theirs to ours.
# vm_devices rows are matched by the device name (their `name` field, our `device` tag).
# Our fields that only grow: the rest are gauges (state, sizes, guest memory), which may move either way.
COUNTERS = {
    "cpu_time_ns", "cpu_user_ns", "cpu_system_ns", "vcpu_wait_ns", "vcpu_delay_ns",
    "memory_swap_in_bytes", "memory_swap_out_bytes", "memory_major_faults", "memory_minor_faults",
    "rx_bytes", "rx_packets", "rx_errors", "rx_drops", "tx_bytes", "tx_packets", "tx_errors", "tx_drops",
    "read_requests", "read_bytes", "read_time_ns", "write_requests", "write_bytes", "write_time_ns",
    "flush_requests", "flush_time_ns",
}  # fmt: skip
MAPPING: List[Tuple[str, str, str, str, int]] = [
    ("libvirt_state", "state", "vm_metrics", "state", 1),
    ("libvirt_state", "reason", "vm_metrics", "state_reason", 1),
    ("libvirt_cpu", "time", "vm_metrics", "cpu_time_ns", 1),
    ("libvirt_cpu", "user", "vm_totals", "cpu_user_ns", 1),
    ("libvirt_cpu", "system", "vm_totals", "cpu_system_ns", 1),
    ("libvirt_vcpu_total", "current", "vm_metrics", "vcpus", 1),
    ("libvirt_balloon", "current", "vm_metrics", "memory_bytes", 1024),
    ("libvirt_balloon", "maximum", "vm_metrics", "max_memory_bytes", 1024),
    ("libvirt_balloon", "current", "vm_totals", "memory_actual_bytes", 1024),
    ("libvirt_balloon", "unused", "vm_totals", "memory_unused_bytes", 1024),
    ("libvirt_balloon", "available", "vm_totals", "memory_available_bytes", 1024),
    ("libvirt_balloon", "usable", "vm_totals", "memory_usable_bytes", 1024),
    ("libvirt_balloon", "disk_caches", "vm_totals", "memory_disk_caches_bytes", 1024),
    ("libvirt_balloon", "rss", "vm_totals", "memory_rss_bytes", 1024),
    ("libvirt_balloon", "swap_in", "vm_totals", "memory_swap_in_bytes", 1024),
    ("libvirt_balloon", "swap_out", "vm_totals", "memory_swap_out_bytes", 1024),
    ("libvirt_balloon", "major_fault", "vm_totals", "memory_major_faults", 1),
    ("libvirt_balloon", "minor_fault", "vm_totals", "memory_minor_faults", 1),
    ("libvirt_vcpu", "wait", "vm_totals", "vcpu_wait_ns", 1),  # summed over the vCPUs
    ("libvirt_vcpu", "delay", "vm_totals", "vcpu_delay_ns", 1),  # summed over the vCPUs
    ("libvirt_net", "rx_bytes", "vm_devices", "rx_bytes", 1),
    ("libvirt_net", "rx_pkts", "vm_devices", "rx_packets", 1),
    ("libvirt_net", "rx_errs", "vm_devices", "rx_errors", 1),
    ("libvirt_net", "rx_drop", "vm_devices", "rx_drops", 1),
    ("libvirt_net", "tx_bytes", "vm_devices", "tx_bytes", 1),
    ("libvirt_net", "tx_pkts", "vm_devices", "tx_packets", 1),
    ("libvirt_net", "tx_errs", "vm_devices", "tx_errors", 1),
    ("libvirt_net", "tx_drop", "vm_devices", "tx_drops", 1),
    ("libvirt_block", "rd_reqs", "vm_devices", "read_requests", 1),
    ("libvirt_block", "rd_bytes", "vm_devices", "read_bytes", 1),
    ("libvirt_block", "rd_times", "vm_devices", "read_time_ns", 1),
    ("libvirt_block", "wr_reqs", "vm_devices", "write_requests", 1),
    ("libvirt_block", "wr_bytes", "vm_devices", "write_bytes", 1),
    ("libvirt_block", "wr_times", "vm_devices", "write_time_ns", 1),
    ("libvirt_block", "fl_reqs", "vm_devices", "flush_requests", 1),
    ("libvirt_block", "fl_times", "vm_devices", "flush_time_ns", 1),
    ("libvirt_block", "allocation", "vm_devices", "allocation_bytes", 1),
    ("libvirt_block", "capacity", "vm_devices", "capacity_bytes", 1),
    ("libvirt_block", "physical", "vm_devices", "physical_bytes", 1),
]


def theirs_by_key(points: List[Point], interval_s: float) -> Dict[Tuple[int, str, str, str], float]:
    """(time, vm, device, our field) -> their value in our unit; per-vCPU values summed per gather.

    inputs.libvirt stamps each point when it adds it, so the points of one gather differ by microseconds:
    a gather's values all get its earliest timestamp.
    """
    slot_ns = int(interval_s * SECOND_NS)
    first: Dict[int, int] = {}
    for point in points:
        if point.measurement.startswith("libvirt_"):
            slot = point.time // slot_ns
            first[slot] = min(first.get(slot, point.time), point.time)
    out: Dict[Tuple[int, str, str, str], float] = {}
    for point in points:
        if not point.measurement.startswith("libvirt_"):
            continue
        vm = point.tags.get("domain_name", "")
        device = str(point.fields.get("name", "")) if point.measurement in ("libvirt_net", "libvirt_block") else ""
        for measurement, theirs, _, ours, factor in MAPPING:
            value = point.fields.get(theirs)
            if measurement == point.measurement and isinstance(value, (int, float)) and not isinstance(value, bool):
                key = (first[point.time // slot_ns], vm, device, ours)
                out[key] = out.get(key, 0) + value * factor
    return out


def ours_by_key(points: List[Point]) -> Dict[Tuple[str, str, str], List[Tuple[int, float]]]:
    """(vm, device, field) -> [(time, value)] of our points, in time order."""
    out: Dict[Tuple[str, str, str], List[Tuple[int, float]]] = {}
    for point in sorted(points, key=lambda p: p.time):
        if not point.measurement.startswith("vm_"):
            continue
        # A NIC is theirs by its tap name: our device tag, or our tap field where the device tag is stable.
        devices = {point.tags.get("device", ""), str(point.fields.get("tap", ""))} - {""}
        for device in devices if point.measurement == "vm_devices" else {""}:
            for name, value in point.fields.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out.setdefault((point.tags["vm"], device, name), []).append((point.time, value))
    return out


@dataclass
class Agreement:
    """Their counters against our two readings that bracket them, and their gauges against the same two."""

    counters: int = 0
    bracketed: int = 0  # between our readings just before and just after their timestamp
    one_further: int = 0  # the others, between our readings one further out on each side
    gauges: int = 0
    gauges_equal: int = 0  # equal to one of our two readings
    unmatched: int = 0  # no reading of ours on both sides: the first and last gathers
    misses: List[str] = field(default_factory=list)


def agreement(points: List[Point], interval_s: float) -> Agreement:
    """Each of their counters must sit between our two readings that bracket it in time.

    Both sides stamp a point when their call has returned, so a reading taken early in a long call can
    fall on the other side of a stamp: those are checked against our readings one further out.
    """
    ours = ours_by_key(points)
    result = Agreement()
    for (stamp, vm, device, name), value in sorted(theirs_by_key(points, interval_s).items()):
        readings = [v for _, v in ours.get((vm, device, name), [])]
        times = [t for t, _ in ours.get((vm, device, name), [])]
        after = next((i for i, t in enumerate(times) if t >= stamp), None)
        if not after:  # None: no reading after it; 0: none before it
            result.unmatched += 1
            continue
        before = after - 1
        if name not in COUNTERS:
            result.gauges += 1
            result.gauges_equal += value in (readings[before], readings[after])
            continue
        result.counters += 1
        if readings[before] <= value <= readings[after]:
            result.bracketed += 1
        elif readings[max(before - 1, 0)] <= value <= readings[min(after + 1, len(readings) - 1)]:
            result.one_further += 1
        else:
            result.misses.append(
                f"{vm} {device or '-'} {name}: theirs {value:g}, ours {readings[before]:g} .. {readings[after]:g}"
            )
    return result
