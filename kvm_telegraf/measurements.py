"""The four default measurements: vm_metrics, vm_features, vm_devices and vm_totals, one builder each.

Pure, like all of shape: snapshot data in, points out. Counters go through
kvm_telegraf/fields.py's rule: a stat libvirt does not report is left out.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from kvm_telegraf.fields import Rows, counter, read_fields
from kvm_telegraf.libvirt_facts import KIB
from kvm_telegraf.points import INT64_MAX, FieldValue, Point, Tags
from kvm_telegraf.snapshot import DomainSample, Snapshot, StatValue

MEASUREMENTS = ("vm_metrics", "vm_features", "vm_devices", "vm_totals")

METRIC_FIELDS: Rows = (
    ("state", "state.state", 1),
    ("state_reason", "state.reason", 1),
    ("cpu_time_ns", "cpu.time", 1),
    ("vcpus", "vcpu.current", 1),
    ("memory_bytes", "balloon.current", KIB),  # libvirt reports balloon sizes in KiB
    ("max_memory_bytes", "balloon.maximum", KIB),
)
# A domain that is not running reports libvirtd's own CPU time as cpu.* (a libvirt quirk): no cpu field then.
INACTIVE_METRIC_FIELDS: Rows = tuple(row for row in METRIC_FIELDS if not row[1].startswith("cpu."))
CPU_SPLIT_FIELDS: Rows = (
    ("cpu_user_ns", "cpu.user", 1),
    ("cpu_system_ns", "cpu.system", 1),
    ("haltpoll_success_ns", "cpu.haltpoll.success.time", 1),  # KVM's halt-polling, where libvirt reports it
    ("haltpoll_fail_ns", "cpu.haltpoll.fail.time", 1),
)
BALLOON_FIELDS: Rows = (
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
INTERFACE_FIELDS: Rows = (
    ("rx_bytes", "rx.bytes", 1),
    ("rx_packets", "rx.pkts", 1),
    ("rx_errors", "rx.errs", 1),
    ("rx_drops", "rx.drop", 1),
    ("tx_bytes", "tx.bytes", 1),
    ("tx_packets", "tx.pkts", 1),
    ("tx_errors", "tx.errs", 1),
    ("tx_drops", "tx.drop", 1),
)
DISK_FIELDS: Rows = (
    ("read_requests", "rd.reqs", 1),
    ("read_bytes", "rd.bytes", 1),
    ("read_time_ns", "rd.times", 1),
    ("write_requests", "wr.reqs", 1),
    ("write_bytes", "wr.bytes", 1),
    ("write_time_ns", "wr.times", 1),
    ("flush_requests", "fl.reqs", 1),
    ("flush_time_ns", "fl.times", 1),
    ("errors", "errors", 1),
    ("allocation_bytes", "allocation", 1),
    ("capacity_bytes", "capacity", 1),
    ("physical_bytes", "physical", 1),
)


class DeviceKeys(NamedTuple):
    """One device's stat keys: its prefix (``net.<i>.``, ``block.<i>.``), its name's key, its rows' whole keys."""

    prefix: str
    name: str
    rows: Rows


def device_keys(kind: str, rows: Rows, index: int) -> DeviceKeys:
    prefix = f"{kind}.{index}."
    return DeviceKeys(prefix, prefix + "name", tuple((field, prefix + key, scale) for field, key, scale in rows))


# The device keys made once for a domain's first devices: a key made per read (``prefix + key``) is a new string,
# hashed at each lookup. Callgrind, one disk's read_fields: 23.9 K against 17.3 K instructions; shape, 200 synthetic
# domains: 337 K -> 321 K per domain, for 23 KiB of keys (8 NICs, 8 disks); with the prefix and name keys too
# (24.6 KiB), shape of one recorded running domain 279.6 K -> 269.5 K.
KEYED_DEVICES = 8
INTERFACE_KEYS = tuple(device_keys("net", INTERFACE_FIELDS, i) for i in range(KEYED_DEVICES))
DISK_KEYS = tuple(device_keys("block", DISK_FIELDS, i) for i in range(KEYED_DEVICES))
DISK_ROWS = MappingProxyType({keys.prefix: keys.rows for keys in DISK_KEYS})  # for disk_fields, by prefix


# Per-disk average latency: (field, time counter, request counter), Δtime / Δrequests since the previous cycle.
DISK_LATENCIES = (
    ("read_latency_ns", "read_time_ns", "read_requests"),
    ("write_latency_ns", "write_time_ns", "write_requests"),
    ("flush_latency_ns", "flush_time_ns", "flush_requests"),
)
# vm_totals fields summed over devices: (total field, device field).
INTERFACE_TOTALS = tuple((f"net_{name}", name) for name, _, _ in INTERFACE_FIELDS)
DISK_TOTALS = (
    ("disk_read_requests", "read_requests"),
    ("disk_read_bytes", "read_bytes"),
    ("disk_write_requests", "write_requests"),
    ("disk_write_bytes", "write_bytes"),
    ("disk_read_time_ns", "read_time_ns"),
    ("disk_write_time_ns", "write_time_ns"),
    ("disk_flush_requests", "flush_requests"),
)


class Reading(NamedTuple):
    """What the next cycle's rates (cpu_percent, disk latency) need from a running domain's cycle."""

    domain_id: int
    started_ns: int  # the bulk call that read these counters began here ...
    finished_ns: int  # ... and returned here
    vcpu_times: Mapping[int, int]  # vCPU number -> vcpu.<n>.time (ns)
    disks: Mapping[str, Mapping[str, FieldValue]]  # disk target -> its vm_devices fields
    carried: Mapping[str, Any]  # group name -> what that group carries over to the next cycle (Group.carry)


History = Mapping[str, Reading]  # keyed by history_key()
Device = Tuple[str, Dict[str, FieldValue]]


def domain_tags(domain: DomainSample, extra: Tags) -> Tags:
    """``uuid`` and ``vm``, plus any extra tags, sorted by key as InfluxDB prefers."""
    tags = (("uuid", domain.uuid), ("vm", domain.name))
    return tuple(sorted(tags + extra)) if extra else tags


def device_tags(domain: DomainSample, device: str, kind: str, extra: Tags, mac: Optional[str] = None) -> Tags:
    tags = (("device", device), ("type", kind), ("uuid", domain.uuid), ("vm", domain.name))
    if mac:
        tags = (tags[0], ("mac", mac), *tags[1:])
    return tuple(sorted(tags + extra)) if extra else tags


# Tap names libvirt generates (and renumbers host-wide on every start); any other target dev was chosen by the operator.
GENERATED_TAP_PREFIXES = ("vnet", "vif", "macvtap", "macvlan")


class Nic(NamedTuple):
    """One NIC's series identity and its counters."""

    device: str  # the operator's target dev, else the MAC, else the tap name: stable across restarts
    mac: Optional[str]
    tap: Optional[str]  # the host-side name, as a field: it changes on every start
    fields: Dict[str, FieldValue]


def nic_device(tap: Optional[str], mac: Optional[str], index: int) -> str:
    """The ``device`` tag: a name that survives guest restarts, libvirtd restarts and other NICs' hot-plug."""
    if tap and not tap.startswith(GENERATED_TAP_PREFIXES):
        return tap
    return mac or tap or f"interface{index}"


def interfaces(domain: DomainSample) -> List[Nic]:
    """Each NIC, its MAC found through the domain XML's target dev; one without a tap (hostdev) is ``interface<i>``."""
    stats = domain.stats
    facts = domain.config.facts if domain.config is not None else None
    macs = dict(facts.interfaces) if facts is not None else {}
    nics = []
    for i in range(counter(stats.get("net.count")) or 0):
        keys = INTERFACE_KEYS[i] if i < KEYED_DEVICES else device_keys("net", INTERFACE_FIELDS, i)
        tap = stats.get(keys.name) or None
        mac = macs.get(tap) if tap else None
        fields = read_fields(stats, keys.rows)
        if tap:
            fields["tap"] = tap
        nics.append(Nic(nic_device(tap, mac, i), mac, tap, fields))
    return nics


def disk_fields(stats: Mapping[str, StatValue], prefix: str) -> Dict[str, FieldValue]:
    """One disk image's fields; ``allocation_bytes`` is what ``virsh domblkinfo`` calls Allocation.

    The bulk stats' ``allocation`` is QEMU's highest written offset, which libvirt >= 11 no longer has for a raw
    disk (QEMU gets no raw format node): it sends 0. virDomainGetBlockInfo then reports ``physical``, the bytes
    allocated on the host, as the allocation, and so does a disk nothing has written yet on every version
    (checked on 7.0, 9.0, 11.3 and 12.8: tests/test_matrix.py). Read with no extra call; without ``physical``
    libvirt cannot say, and the field is left out.
    """
    rows = DISK_ROWS.get(prefix)
    fields = read_fields(stats, rows) if rows is not None else read_fields(stats, DISK_FIELDS, prefix)
    if fields.get("allocation_bytes") == 0:
        if "physical_bytes" in fields:
            fields["allocation_bytes"] = fields["physical_bytes"]
        else:  # libvirt cannot say: left out rather than a wrong 0
            del fields["allocation_bytes"]
    return fields


def disk_entries(stats: Mapping[str, StatValue]) -> List[Tuple[str, str]]:
    """(device name, key prefix ``block.<i>.``) per disk, leaving out backing-chain entries.

    With the BACKING flag ``block.count`` also counts backing images, which
    repeat their disk's name after the top image: summing them would count the
    same I/O twice. (``backingIndex`` cannot tell them apart: the top image
    carries one too.)
    """
    seen = set()
    entries = []
    for i in range(counter(stats.get("block.count")) or 0):
        keys = DISK_KEYS[i] if i < KEYED_DEVICES else device_keys("block", DISK_FIELDS, i)
        name = stats.get(keys.name) or f"disk{i}"
        if name not in seen:
            seen.add(name)
            entries.append((name, keys.prefix))
    return entries


def disks(stats: Mapping[str, StatValue]) -> List[Device]:
    """(device name, fields) per disk, backing-chain entries left out."""
    return [(name, disk_fields(stats, prefix)) for name, prefix in disk_entries(stats)]


def sum_devices(each: Sequence[Mapping[str, FieldValue]], totals: Sequence[Tuple[str, str]]) -> Dict[str, FieldValue]:
    """Each device field summed over the devices (their fields) that report it."""
    fields: Dict[str, FieldValue] = {}
    for total, name in totals:  # plain loops: 37% fewer instructions than a comprehension per total (callgrind)
        found = False
        summed = 0
        for device_fields in each:
            if name in device_fields:
                summed += device_fields[name]
                found = True
        if found:
            fields[total] = summed
    return fields


def vm_metrics(domain: DomainSample, tags: Tags) -> Point:
    """State, CPU time and memory of one domain, and whether its QEMU answered (running domains).

    ``vm_metrics,uuid=1b4e…,vm=web01 state=1i,state_reason=1i,cpu_time_ns=9120000000i,vcpus=1i,memory_bytes=100663296i,max_memory_bytes=100663296i,responding=true``
    """
    if domain.id < 0:
        return Point("vm_metrics", tags, read_fields(domain.stats, INACTIVE_METRIC_FIELDS))
    fields = read_fields(domain.stats, METRIC_FIELDS)
    fields["responding"] = domain.responding  # false: its QEMU did not answer this cycle (hung, or a saturated host)
    return Point("vm_metrics", tags, fields)


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


def vm_devices(domain: DomainSample, nics: List[Nic], block_devices: List[Device], extra: Tags) -> List[Point]:
    """One point per NIC (tagged with its stable name and MAC) and per disk (tagged with its target name).

    ``vm_devices,device=52:54:00:6b:01:00,mac=52:54:00:6b:01:00,type=interface,uuid=1b4e…,vm=web01 rx_bytes=3180i,…,tap="vnet1"``
    ``vm_devices,device=vda,type=disk,uuid=1b4e…,vm=web01 read_requests=1400i,read_bytes=5832704i,…,capacity_bytes=8388608i``
    """
    points = [
        Point("vm_devices", device_tags(domain, nic.device, "interface", extra, nic.mac), nic.fields) for nic in nics
    ]
    points += [Point("vm_devices", device_tags(domain, name, "disk", extra), fields) for name, fields in block_devices]
    return points


def cpu_percent(reading: Reading, previous: Optional[Reading]) -> Optional[float]:
    """vCPU use over the last interval, 100 meaning every vCPU busy all the time; None on a first or restarted cycle.

    It counts only the vCPUs present in both readings (a hot-plugged one has
    no start, an unplugged one no end), sums their vCPU thread time, and
    divides by the widest window the two readings can span: from the start
    of the previous bulk call to the return of this one. A thread runs on one
    CPU at a time, so the result cannot exceed 100, without any clamping.
    QEMU's own threads (I/O, emulation) are not in it: ``cpu_time_ns`` has them.
    """
    if previous is None:
        return None
    before = previous.vcpu_times
    used = both = 0
    for n, time_ns in reading.vcpu_times.items():  # a loop: 12.2 K -> 7.9 K instructions (callgrind)
        if n in before:
            used += time_ns - before[n]
            both += 1
    window = reading.finished_ns - previous.started_ns
    if not both or window <= 0 or used < 0:
        return None
    return round(100.0 * used / (window * both), 2)


# vcpu.<n>.<suffix> made once for a domain's first vCPUs (6.6 KiB), as the device keys: callgrind, one recorded running
# domain given 8 vCPUs: vcpu_sum 25.9 K -> 13.6 K instructions, reading_of 34.3 K -> 24.0 K (counter() inlined too).
KEYED_VCPUS = 32
VCPU_KEYS = MappingProxyType(
    {suffix: tuple(f"vcpu.{n}.{suffix}" for n in range(KEYED_VCPUS)) for suffix in ("time", "wait", "delay")}
)


def vcpu_keys(stats: Mapping[str, StatValue], suffix: str) -> Sequence[str]:
    """``vcpu.<n>.<suffix>`` of each vCPU up to ``vcpu.maximum``, whether it reports it or not, in vCPU order."""
    count = counter(stats.get("vcpu.maximum")) or 0
    keyed = VCPU_KEYS[suffix]
    if count <= KEYED_VCPUS:
        return keyed[:count]
    return (*keyed, *(f"vcpu.{n}.{suffix}" for n in range(KEYED_VCPUS, count)))


def vcpu_sum(stats: Mapping[str, StatValue], suffix: str) -> Optional[int]:
    """``vcpu.<n>.<suffix>`` summed over the vCPUs that report it (indices are sparse after hot-plug)."""
    total = None  # one loop, not two comprehensions: a third fewer instructions (callgrind)
    for value in map(stats.get, vcpu_keys(stats, suffix)):
        if type(value) is int and 0 <= value <= INT64_MAX:  # counter(), inlined
            total = value if total is None else total + value
    return total


def vm_totals(
    domain: DomainSample, tags: Tags, nics: List[Nic], block_devices: List[Device], percent: Optional[float]
) -> Point:
    """Per-VM aggregates: CPU split, summed devices, guest memory, vCPU wait and steal.

    ``vm_totals,uuid=1b4e…,vm=web01 cpu_user_ns=310000000i,cpu_system_ns=1620000000i,net_rx_bytes=0i,…,memory_used_bytes=4419584i,cpu_percent=12.5``
    """
    stats = domain.stats
    fields = read_fields(stats, CPU_SPLIT_FIELDS) if domain.id >= 0 else {}
    fields.update(sum_devices([nic.fields for nic in nics], INTERFACE_TOTALS))
    fields.update(sum_devices([device_fields for _, device_fields in block_devices], DISK_TOTALS))
    fields.update(read_fields(stats, BALLOON_FIELDS))
    for name, suffix in (("vcpu_wait_ns", "wait"), ("vcpu_delay_ns", "delay")):
        total = vcpu_sum(stats, suffix)
        if total is not None:
            fields[name] = total
    if "memory_available_bytes" in fields and "memory_usable_bytes" in fields:
        fields["memory_used_bytes"] = fields["memory_available_bytes"] - fields["memory_usable_bytes"]
    if percent is not None:
        fields["cpu_percent"] = percent
    return Point("vm_totals", tags, fields)


def add_disk_latency(block_devices: List[Device], previous: Optional[Reading]) -> None:
    """Each disk's average read, write and flush latency since the previous cycle, in ns, where requests were made."""
    if previous is None:
        return
    for name, fields in block_devices:
        before = previous.disks.get(name)
        if before is None:
            continue
        for latency, time_key, requests_key in DISK_LATENCIES:
            if time_key in fields and requests_key in fields and time_key in before and requests_key in before:
                requests = fields[requests_key] - before[requests_key]
                spent = fields[time_key] - before[time_key]
                if requests > 0 and spent >= 0:
                    fields[latency] = round(spent / requests, 1)


def reading_of(domain: DomainSample, snapshot: Snapshot, block_devices: List[Device]) -> Optional[Reading]:
    """The counters of a running domain that the next cycle's rates start from, with the window that read them."""
    if domain.id < 0:
        return None
    stats = domain.stats
    times = {}
    for n, value in enumerate(map(stats.get, vcpu_keys(stats, "time"))):
        if type(value) is int and 0 <= value <= INT64_MAX:  # counter(), inlined
            times[n] = value
    started = snapshot.started_ns if snapshot.started_ns is not None else snapshot.timestamp_ns
    disks = {name: dict(fields) for name, fields in block_devices}
    return Reading(domain.id, started, snapshot.timestamp_ns, times, disks, {})
