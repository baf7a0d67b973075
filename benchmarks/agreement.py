"""Do their counters agree with ours? One Telegraf running both inputs, half an interval apart, into one capture.

Each of inputs.libvirt's values that MAPPING (README's migration table) maps onto one of our fields is
taken in our unit; a counter must lie between our two readings that bracket it in time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from benchmarks.under_telegraf import SECOND_NS, Point

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
