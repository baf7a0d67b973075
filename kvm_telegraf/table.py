"""``--format table``: the shaped records as a table for a person, one row per VM, like virt-top.

Built from the same points the line-protocol output carries, so the table and
the metrics cannot disagree. Pure, readings in and text out, except
read_samples(), which takes the readings.
"""

from __future__ import annotations

import time
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence

from kvm_telegraf.libvirt_facts import STATE_NAMES
from kvm_telegraf.points import FieldValue, Point, Tags
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import Snapshot, SnapshotSource

TABLE_MEASUREMENTS = frozenset({"vm_metrics", "vm_totals"})
# (column, vm_totals counter) for the per-second rates, shown when two readings exist.
RATE_COLUMNS = (
    ("NET RX", "net_rx_bytes"),
    ("NET TX", "net_tx_bytes"),
    ("DISK READ", "disk_read_bytes"),
    ("DISK WRITE", "disk_write_bytes"),
)
MISSING = "-"


def read_samples(source: SnapshotSource, sample_s: Optional[float]) -> List[Snapshot]:
    """One reading, or two *sample_s* apart (``--sample``) so the table can show rates."""
    snapshots = [source.collect()]
    if sample_s is not None:
        time.sleep(sample_s)
        snapshots.append(source.collect())
    return snapshots


class Shaped(NamedTuple):
    """The shaped points of one collection and the moment its stats were read."""

    timestamp_ns: int
    points: Sequence[Point]


def human_bytes(value: float) -> str:
    """Binary units, as free(1) -h and virt-top print them: ``512 B``, ``1.5 KiB``, ``96.0 MiB``."""
    if abs(value) < 1024:
        return f"{value:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def state_name(code: Optional[FieldValue]) -> str:
    if not isinstance(code, int):
        return MISSING
    return STATE_NAMES.get(code, str(code))


def _by_vm(points: Sequence[Point]) -> Dict[Tags, Dict[str, Dict[str, FieldValue]]]:
    """{domain tags: {measurement: fields}} for the measurements the table shows."""
    rows: Dict[Tags, Dict[str, Dict[str, FieldValue]]] = {}
    for measurement, tags, fields, _ in points:
        if measurement in TABLE_MEASUREMENTS:
            rows.setdefault(tags, {})[measurement] = dict(fields)
    return rows


def _memory(metrics: Mapping[str, FieldValue], totals: Mapping[str, FieldValue]) -> str:
    used = totals.get("memory_used_bytes")
    actual = totals.get("memory_actual_bytes", metrics.get("memory_bytes"))
    if actual is None:
        return MISSING
    return f"{human_bytes(used) if used is not None else MISSING} / {human_bytes(actual)}"


def _rate(now: Mapping[str, FieldValue], before: Mapping[str, FieldValue], key: str, seconds: float) -> str:
    """Bytes per second between two readings; ``-`` when either lacks it or the counter went back (a restart)."""
    current, previous = now.get(key), before.get(key)
    if not isinstance(current, int) or not isinstance(previous, int) or current < previous or seconds <= 0:
        return MISSING
    return f"{human_bytes((current - previous) / seconds)}/s"


def render(current: Shaped, previous: Optional[Shaped] = None) -> str:
    """One row per VM, sorted by name; rate columns only when a previous reading gives a time span.

    CPU % comes from vm_totals' cpu_percent, which needs two readings: ``-`` without one.
    With several hypervisors (a ``hypervisor`` tag) a HOST column tells same-named VMs apart.
    """
    current_vms = _by_vm(current.points)
    hosts = any(key == "hypervisor" for tags in current_vms for key, _ in tags)
    header = ["NAME", "HOST", "STATE"] if hosts else ["NAME", "STATE"]
    left_aligned = len(header)
    header += ["CPU%", "VCPUS", "MEMORY USED / ACTUAL"]
    seconds = 0.0
    earlier: Dict[Tags, Dict[str, Dict[str, FieldValue]]] = {}
    if previous is not None:
        header += [f"{column}/s" for column, _ in RATE_COLUMNS]
        seconds = (current.timestamp_ns - previous.timestamp_ns) / 1e9
        earlier = _by_vm(previous.points)
    rows: List[List[str]] = [header]
    for tags, measurements in sorted(current_vms.items(), key=lambda item: (dict(item[0])["vm"], item[0])):
        tag = dict(tags)
        metrics = measurements.get("vm_metrics", {})
        totals = measurements.get("vm_totals", {})
        percent = totals.get("cpu_percent")
        vcpus = metrics.get("vcpus")
        row = [tag["vm"], tag.get("hypervisor", MISSING)] if hosts else [tag["vm"]]
        row += [
            state_name(metrics.get("state")),
            f"{percent:.1f}" if isinstance(percent, float) else MISSING,
            str(vcpus) if vcpus is not None else MISSING,
            _memory(metrics, totals),
        ]
        if previous is not None:
            before = earlier.get(tags, {}).get("vm_totals", {})
            row += [_rate(totals, before, counter, seconds) for _, counter in RATE_COLUMNS]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if i < left_aligned else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def table_from_snapshots(snapshots: Sequence[Snapshot]) -> str:
    """Shape consecutive snapshots and render the last, with rates against the one before it."""
    history: Dict = {}
    readings = []
    for snapshot in snapshots:
        points, history = shape_snapshot(snapshot, history, TABLE_MEASUREMENTS)
        readings.append(Shaped(snapshot.timestamp_ns, points))
    return render(readings[-1], readings[-2] if len(readings) > 1 else None)
