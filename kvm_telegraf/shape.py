"""Pure functions from one snapshot to the points of the four measurements.

No I/O and no clock: the golden tests pin this module exactly. Two rules run
through it. A stat libvirt does not report is left out, never printed as 0;
and a value that is not a non-negative int64 (libvirt's -1 "unknown", which
the binding hands over as 2**64-1) counts as not reported.
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import is_not, itemgetter, mul
from typing import Dict, FrozenSet, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from kvm_telegraf.encode import INT64_MAX, FieldValue, Point, Tags
from kvm_telegraf.snapshot import DomainSample, Snapshot, StatValue

MEASUREMENTS = ("vm_metrics", "vm_features", "vm_devices", "vm_totals")

KIB = 1024

# (field, stat key suffix) pairs; the prefix is "net.<i>." or "block.<i>.".
INTERFACE_FIELDS = (
    ("rx_bytes", "rx.bytes"),
    ("rx_packets", "rx.pkts"),
    ("rx_errors", "rx.errs"),
    ("rx_drops", "rx.drop"),
    ("tx_bytes", "tx.bytes"),
    ("tx_packets", "tx.pkts"),
    ("tx_errors", "tx.errs"),
    ("tx_drops", "tx.drop"),
)
DISK_FIELDS = (
    ("read_requests", "rd.reqs"),
    ("read_bytes", "rd.bytes"),
    ("read_time_ns", "rd.times"),
    ("write_requests", "wr.reqs"),
    ("write_bytes", "wr.bytes"),
    ("write_time_ns", "wr.times"),
    ("flush_requests", "fl.reqs"),
    ("flush_time_ns", "fl.times"),
    ("errors", "errors"),
    ("allocation_bytes", "allocation"),
    ("capacity_bytes", "capacity"),
    ("physical_bytes", "physical"),
)
# vm_totals fields summed over devices: (total field, device field).
INTERFACE_TOTALS = tuple((f"net_{name}", name) for name, _ in INTERFACE_FIELDS)
DISK_TOTALS = (
    ("disk_read_requests", "read_requests"),
    ("disk_read_bytes", "read_bytes"),
    ("disk_write_requests", "write_requests"),
    ("disk_write_bytes", "write_bytes"),
    ("disk_read_time_ns", "read_time_ns"),
    ("disk_write_time_ns", "write_time_ns"),
    ("disk_flush_requests", "flush_requests"),
)
# (field, balloon stat, multiplier): libvirt reports balloon sizes in KiB.
BALLOON_TOTALS = (
    ("memory_actual_bytes", "balloon.current", KIB),
    ("memory_unused_bytes", "balloon.unused", KIB),
    ("memory_available_bytes", "balloon.available", KIB),
    ("memory_usable_bytes", "balloon.usable", KIB),
    ("memory_rss_bytes", "balloon.rss", KIB),
    ("memory_disk_caches_bytes", "balloon.disk_caches", KIB),
    ("memory_swap_in_bytes", "balloon.swap_in", KIB),
    ("memory_swap_out_bytes", "balloon.swap_out", KIB),
    ("memory_major_faults", "balloon.major_fault", 1),
    ("memory_minor_faults", "balloon.minor_fault", 1),
)

# Key and name tuples built once, so a cycle reads each group with one C-level pass.
METRIC_FIELDS = (
    ("state", "state.state", 1),
    ("state_reason", "state.reason", 1),
    ("cpu_time_ns", "cpu.time", 1),
    ("vcpus", "vcpu.current", 1),
    ("memory_bytes", "balloon.current", KIB),
    ("max_memory_bytes", "balloon.maximum", KIB),
)
CPU_SPLIT_FIELDS = (("cpu_user_ns", "cpu.user", 1), ("cpu_system_ns", "cpu.system", 1))
PREBUILT_DEVICES = 16  # device indices whose stat keys are prebuilt; later ones are built per cycle
_INT_ONLY = frozenset((int,))


class StatTable(NamedTuple):
    """Field names, libvirt stat keys and multipliers of one group, read together."""

    names: Tuple[str, ...]
    keys: Tuple[str, ...]
    scales: Optional[Tuple[int, ...]]  # None when every multiplier is 1

    @classmethod
    def of(cls, rows: Sequence[Tuple[str, str, int]], prefix: str = "") -> StatTable:
        scales = tuple(scale for _, _, scale in rows)
        return cls(
            tuple(name for name, _, _ in rows),
            tuple(prefix + key for _, key, _ in rows),
            None if set(scales) == {1} else scales,
        )


METRIC_TABLE = StatTable.of(METRIC_FIELDS)
CPU_SPLIT_TABLE = StatTable.of(CPU_SPLIT_FIELDS)
BALLOON_TABLE = StatTable.of(BALLOON_TOTALS)


def device_table(rows: Sequence[Tuple[str, str]], kind: str, index: int) -> StatTable:
    """The table of device *index* of *kind* (``net`` or ``block``): keys ``<kind>.<index>.<suffix>``."""
    return StatTable.of([(name, suffix, 1) for name, suffix in rows], f"{kind}.{index}.")


NIC_TABLES = tuple(device_table(INTERFACE_FIELDS, "net", i) for i in range(PREBUILT_DEVICES))
DISK_TABLES = tuple(device_table(DISK_FIELDS, "block", i) for i in range(PREBUILT_DEVICES))
NIC_TOTALS_GETTER = itemgetter(*(device for _, device in INTERFACE_TOTALS))
DISK_TOTALS_GETTER = itemgetter(*(device for _, device in DISK_TOTALS))


class CpuReading(NamedTuple):
    """What cpu_percent needs from a domain's previous cycle."""

    domain_id: int
    timestamp_ns: int
    cpu_time_ns: int


CpuHistory = Mapping[str, CpuReading]  # keyed by history_key()


def counter(stats: Mapping[str, StatValue], key: str) -> Optional[int]:
    """The stat as a reportable integer, or None when absent or out of range."""
    value = stats.get(key)
    if type(value) is int and 0 <= value <= INT64_MAX:
        return value
    return None


def read_table(stats: Mapping[str, StatValue], table: StatTable) -> Dict[str, FieldValue]:
    """The reportable counters of *table*, scaled, under their field names.

    Stats libvirt left out are dropped first; when the rest are all in-range
    integers (nearly always) the group is checked, scaled and zipped in C,
    otherwise each stat is checked on its own.
    """
    names, scales = table.names, table.scales
    values = list(map(stats.get, table.keys))
    if None in values:
        present = list(map(is_not, values, repeat(None)))
        names, values = tuple(compress(names, present)), list(compress(values, present))
        scales = tuple(compress(scales, present)) if scales is not None else None
    if not values:
        return {}
    if set(map(type, values)) == _INT_ONLY and min(values) >= 0 and max(values) <= INT64_MAX:
        return dict(zip(names, map(mul, values, scales) if scales is not None else values))
    return {
        name: value * scale
        for name, value, scale in zip(names, values, scales or repeat(1))
        if type(value) is int and 0 <= value <= INT64_MAX
    }


def extra_tags(domain: DomainSample) -> Tags:
    """``hypervisor`` and the metadata tags (``--nova``, ``--metadata-tag``) that this domain has."""
    facts = domain.config.facts if domain.config is not None else None
    metadata = facts.metadata if facts is not None else ()
    return (("hypervisor", domain.hypervisor), *metadata) if domain.hypervisor else metadata


def domain_tags(domain: DomainSample, extra: Tags) -> Tags:
    """``uuid`` and ``vm``, plus any extra tags, sorted by key as InfluxDB prefers."""
    tags = (("uuid", domain.uuid), ("vm", domain.name))
    return tuple(sorted(tags + extra)) if extra else tags


def device_tags(domain: DomainSample, device: str, kind: str, extra: Tags) -> Tags:
    tags = (("device", device), ("type", kind), ("uuid", domain.uuid), ("vm", domain.name))
    return tuple(sorted(tags + extra)) if extra else tags


Device = Tuple[str, Dict[str, FieldValue]]


def interfaces(stats: Mapping[str, StatValue]) -> List[Device]:
    """(device name, fields) per NIC; a NIC without a name (hostdev, SR-IOV) is ``interface<i>``."""
    count = counter(stats, "net.count") or 0
    return [
        (
            stats.get(f"net.{i}.name") or f"interface{i}",
            read_table(stats, NIC_TABLES[i] if i < PREBUILT_DEVICES else device_table(INTERFACE_FIELDS, "net", i)),
        )
        for i in range(count)
    ]


def disks(stats: Mapping[str, StatValue]) -> List[Device]:
    """(device name, fields) per disk, leaving out backing-chain entries.

    With the BACKING flag ``block.count`` also counts backing images, which
    repeat their disk's name after the top image: summing them would count the
    same I/O twice. (``backingIndex`` cannot tell them apart: the top image
    carries one too.)
    """
    count = counter(stats, "block.count") or 0
    seen = set()
    result = []
    for i in range(count):
        name = stats.get(f"block.{i}.name") or f"disk{i}"
        if name in seen:
            continue
        seen.add(name)
        table = DISK_TABLES[i] if i < PREBUILT_DEVICES else device_table(DISK_FIELDS, "block", i)
        result.append((name, read_table(stats, table)))
    return result


def _sum_devices(devices: List[Device], table, getter: itemgetter) -> Dict[str, FieldValue]:
    """Sum each device field over the devices that report it."""
    try:
        rows = [getter(fields) for _, fields in devices]
    except KeyError:  # a device lacks a field: sum field by field
        totals: Dict[str, FieldValue] = {}
        for total_name, device_field in table:
            values = [fields[device_field] for _, fields in devices if device_field in fields]
            if values:
                totals[total_name] = sum(values)
        return totals
    return dict(zip([total for total, _ in table], map(sum, zip(*rows)))) if rows else {}


def vm_metrics(domain: DomainSample, tags: Tags) -> Point:
    """State, CPU time and memory of one domain.

    ``vm_metrics,uuid=1b4e…,vm=web01 state=1i,state_reason=1i,cpu_time_ns=9120000000i,vcpus=1i,memory_bytes=100663296i,max_memory_bytes=100663296i``
    """
    return Point("vm_metrics", tags, read_table(domain.stats, METRIC_TABLE))


def vm_features(domain: DomainSample, tags: Tags) -> Optional[Point]:
    """Configuration facts; None when the domain's config could not be read.

    ``vm_features,uuid=1b4e…,vm=web01 persistent=true,autostart=false,managed_save=false,os_type="hvm",arch="x86_64",machine="pc-i440fx-7.2",firmware="bios",max_vcpus=2i,disk_count=2i,interface_count=2i,feature_acpi=true``
    """
    config = domain.config
    if config is None:
        return None
    fields: Dict[str, FieldValue] = {}
    for name in ("persistent", "autostart", "managed_save"):
        value = getattr(config, name)
        if value is not None:
            fields[name] = value
    facts = config.facts
    if facts is not None:
        for name in ("os_type", "arch", "machine", "firmware", "max_vcpus"):
            value = getattr(facts, name)
            if value is not None:
                fields[name] = value
        fields["disk_count"] = facts.disk_count
        fields["interface_count"] = facts.interface_count
        for feature, enabled in facts.features:
            fields[f"feature_{feature}"] = enabled
    return Point("vm_features", tags, fields)


def vm_devices(domain: DomainSample, nics: List[Device], block_devices: List[Device], extra: Tags) -> List[Point]:
    """One point per NIC and per disk, tagged with its target name.

    ``vm_devices,device=vda,type=disk,uuid=1b4e…,vm=web01 read_requests=1400i,read_bytes=5832704i,…,capacity_bytes=8388608i``
    """
    points = [Point("vm_devices", device_tags(domain, name, "interface", extra), fields) for name, fields in nics]
    points += [Point("vm_devices", device_tags(domain, name, "disk", extra), fields) for name, fields in block_devices]
    return points


def cpu_percent(domain: DomainSample, reading: Optional[CpuReading], previous: Optional[CpuReading]) -> Optional[float]:
    """CPU use over the last cycle, 100 meaning every vCPU busy; None on a first or restarted cycle."""
    vcpus = counter(domain.stats, "vcpu.current")
    if reading is None or previous is None or not vcpus or previous.domain_id != reading.domain_id:
        return None
    elapsed = reading.timestamp_ns - previous.timestamp_ns
    used = reading.cpu_time_ns - previous.cpu_time_ns
    if elapsed <= 0 or used < 0:
        return None
    return round(100.0 * used / (elapsed * vcpus), 2)


def _vcpu_sum(stats: Mapping[str, StatValue], suffix: str, count: int) -> Optional[int]:
    values = [counter(stats, f"vcpu.{n}.{suffix}") for n in range(count)]
    reported = [value for value in values if value is not None]
    return sum(reported) if reported else None


def vm_totals(
    domain: DomainSample, tags: Tags, nics: List[Device], block_devices: List[Device], percent: Optional[float]
) -> Point:
    """Per-VM aggregates: CPU split, summed devices, guest memory, vCPU wait and steal.

    ``vm_totals,uuid=1b4e…,vm=web01 cpu_user_ns=310000000i,cpu_system_ns=1620000000i,net_rx_bytes=0i,…,memory_used_bytes=4419584i,cpu_percent=12.5``
    """
    stats = domain.stats
    fields = read_table(stats, CPU_SPLIT_TABLE)
    fields.update(_sum_devices(nics, INTERFACE_TOTALS, NIC_TOTALS_GETTER))
    fields.update(_sum_devices(block_devices, DISK_TOTALS, DISK_TOTALS_GETTER))
    fields.update(read_table(stats, BALLOON_TABLE))
    vcpu_count = counter(stats, "vcpu.maximum") or 0
    for name, suffix in (("vcpu_wait_ns", "wait"), ("vcpu_delay_ns", "delay")):
        total = _vcpu_sum(stats, suffix, vcpu_count)
        if total is not None:
            fields[name] = total
    if "memory_available_bytes" in fields and "memory_usable_bytes" in fields:
        fields["memory_used_bytes"] = fields["memory_available_bytes"] - fields["memory_usable_bytes"]
    if percent is not None:
        fields["cpu_percent"] = percent
    return Point("vm_totals", tags, fields)


def history_key(domain: DomainSample) -> str:
    """The UUID, qualified by host: a migrating domain exists on two hypervisors at once."""
    return domain.uuid if domain.hypervisor is None else f"{domain.hypervisor}/{domain.uuid}"


def cpu_reading(domain: DomainSample, timestamp_ns: int) -> Optional[CpuReading]:
    cpu_time = counter(domain.stats, "cpu.time")
    if domain.id < 0 or cpu_time is None:
        return None
    return CpuReading(domain.id, timestamp_ns, cpu_time)


def shape_snapshot(
    snapshot: Snapshot,
    history: CpuHistory,
    measurements: FrozenSet[str] = frozenset(MEASUREMENTS),
) -> Tuple[List[Point], Dict[str, CpuReading]]:
    """All points of one cycle, and the CPU history the next cycle needs.

    History is keyed by UUID (and host) and rebuilt from this snapshot alone, so a domain
    that vanished leaves nothing behind and a restarted one (new id) starts over.
    """
    points: List[Point] = []
    new_history: Dict[str, CpuReading] = {}
    want_metrics = "vm_metrics" in measurements
    want_features = "vm_features" in measurements
    want_devices = "vm_devices" in measurements
    want_totals = "vm_totals" in measurements
    for domain in snapshot.domains:
        reading = cpu_reading(domain, snapshot.timestamp_ns)
        key = history_key(domain)
        if reading is not None:
            new_history[key] = reading
        extra = extra_tags(domain)
        tags = domain_tags(domain, extra)
        if want_metrics:
            points.append(vm_metrics(domain, tags))
        if want_features:
            features = vm_features(domain, tags)
            if features is not None:
                points.append(features)
        if want_devices or want_totals:
            nics, block_devices = interfaces(domain.stats), disks(domain.stats)
            if want_devices:
                points += vm_devices(domain, nics, block_devices, extra)
            if want_totals:
                percent = cpu_percent(domain, reading, history.get(key))
                points.append(vm_totals(domain, tags, nics, block_devices, percent))
    return points, new_history
