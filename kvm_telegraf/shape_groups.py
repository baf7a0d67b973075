"""Pure functions from a snapshot to the points and fields of the ``--collect`` groups.

Like shape.py: no I/O, no clock; a stat libvirt does not report is left out.
Each measurement has one function; the fields a group adds to vm_totals or
vm_devices come from one function each, which shape.py merges in.
"""

from __future__ import annotations

import re
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence

from kvm_telegraf.libvirt_facts import JOB_OPERATIONS, JOB_TYPES, POOL_STATES, STATE_RUNNING
from kvm_telegraf.points import INT64_MAX, FieldValue, Point, Tags
from kvm_telegraf.snapshot import DomainSample, Snapshot, StatValue

GROUP_MEASUREMENTS = (
    "vm_vcpus",
    "vm_iothreads",
    "vm_memory_bandwidth",
    "vm_jobs",
    "vm_host",
    "vm_storage_pools",
    "vm_cache_monitor",
    "vm_block_chain",
)
GUEST_MEASUREMENTS = ("vm_guest", "vm_filesystems")  # --collect guest, which needs --read-write
# virDomainGetGuestInfo keys -> vm_guest string fields, and the load averages (libvirt 11.2 and later).
GUEST_STRING_FIELDS = (
    ("os_id", "os.id"),
    ("os_version_id", "os.version-id"),
    ("kernel_release", "os.kernel-release"),
    ("hostname", "hostname"),
    ("timezone", "timezone.name"),
)
GUEST_LOAD_FIELDS = (("load1", "load.1m"), ("load5", "load.5m"), ("load15", "load.15m"))

# KVM's binary stats as libvirt names them: vm.<name>.<kind>, vcpu.<n>.<name>.<kind>. A cumulative one (sum)
# is a counter and keeps its bare name; an instant (cur) or peak (max) one keeps its suffix.
_KVM_STAT = re.compile(r"([a-z0-9_]+)\.(sum|cur|max)\Z")
_IOTHREAD_KEY = re.compile(r"iothread\.(\d+)\.poll-max-ns\Z")
IOTHREAD_FIELDS = (("poll_max_ns", "poll-max-ns"), ("poll_grow", "poll-grow"), ("poll_shrink", "poll-shrink"))
VCPU_FIELDS = (("state", "state"), ("time_ns", "time"), ("wait_ns", "wait"), ("delay_ns", "delay"))
# virDomainGetJobStats keys -> vm_jobs fields.
JOB_FIELDS = (
    ("time_elapsed_ms", "time_elapsed"),
    ("time_remaining_ms", "time_remaining"),
    ("data_total_bytes", "data_total"),
    ("data_processed_bytes", "data_processed"),
    ("data_remaining_bytes", "data_remaining"),
    ("memory_dirty_rate_pages_per_s", "memory_dirty_rate"),
    ("memory_iteration", "memory_iteration"),
    ("downtime_ms", "downtime"),
)
# virDomainGetBlockIoTune keys -> vm_devices disk fields; only limits that are set (non-zero) come back.
BLOCK_LIMIT_FIELDS = (
    ("limit_total_bytes_per_s", "total_bytes_sec"),
    ("limit_read_bytes_per_s", "read_bytes_sec"),
    ("limit_write_bytes_per_s", "write_bytes_sec"),
    ("limit_total_iops_per_s", "total_iops_sec"),
    ("limit_read_iops_per_s", "read_iops_sec"),
    ("limit_write_iops_per_s", "write_iops_sec"),
    ("limit_total_bytes_per_s_max", "total_bytes_sec_max"),
    ("limit_read_bytes_per_s_max", "read_bytes_sec_max"),
    ("limit_write_bytes_per_s_max", "write_bytes_sec_max"),
    ("limit_total_iops_per_s_max", "total_iops_sec_max"),
    ("limit_read_iops_per_s_max", "read_iops_sec_max"),
    ("limit_write_iops_per_s_max", "write_iops_sec_max"),
    ("limit_total_bytes_max_length_s", "total_bytes_sec_max_length"),
    ("limit_read_bytes_max_length_s", "read_bytes_sec_max_length"),
    ("limit_write_bytes_max_length_s", "write_bytes_sec_max_length"),
    ("limit_total_iops_max_length_s", "total_iops_sec_max_length"),
    ("limit_read_iops_max_length_s", "read_iops_sec_max_length"),
    ("limit_write_iops_max_length_s", "write_iops_sec_max_length"),
    ("limit_size_iops_bytes", "size_iops_sec"),
)
# block.<i>.* keys -> vm_block_chain fields; the names are vm_devices' own. A backing image has no I/O counters.
CHAIN_FIELDS = (
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
# balloon.* keys the default vm_totals leaves out -> their fields (balloon group).
BALLOON_EXTRA_FIELDS = (
    ("memory_hugetlb_pgalloc", "balloon.hugetlb_pgalloc"),
    ("memory_hugetlb_pgfail", "balloon.hugetlb_pgfail"),
)
MIB = 1024 * 1024
KIB = 1024
STATE_PAUSED, STATE_SHUTOFF = 3, 5


def _int(value: Any) -> Optional[int]:
    return value if type(value) is int and 0 <= value <= INT64_MAX else None


def kvm_fields(stats: Mapping[str, StatValue], prefix: str) -> Dict[str, FieldValue]:
    """``kvm_<name>`` (cumulative) and ``kvm_<name>_cur`` / ``_max`` from the keys under *prefix*."""
    fields: Dict[str, FieldValue] = {}
    for key, value in stats.items():
        if not key.startswith(prefix):
            continue
        match = _KVM_STAT.match(key, len(prefix))
        if match is None:
            continue
        name = f"kvm_{match.group(1)}" if match.group(2) == "sum" else f"kvm_{match.group(1)}_{match.group(2)}"
        if type(value) is bool or _int(value) is not None:
            fields[name] = value
    return fields


def perf_fields(stats: Mapping[str, StatValue]) -> Dict[str, FieldValue]:
    """``perf_<event>`` for each perf event enabled on the domain (``perf.cpu_cycles``)."""
    return {
        "perf_" + key[5:]: value for key, value in stats.items() if key.startswith("perf.") and _int(value) is not None
    }


def dirtyrate_fields(stats: Mapping[str, StatValue]) -> Dict[str, FieldValue]:
    """The last dirty-rate calculation, once one has been started (calc_status 0 is "never")."""
    status = _int(stats.get("dirtyrate.calc_status"))
    if not status:
        return {}
    fields: Dict[str, FieldValue] = {"dirtyrate_calc_status": status}
    rate = _int(stats.get("dirtyrate.megabytes_per_second"))
    if rate is not None:
        fields["dirtyrate_mib_per_s"] = rate
    return fields


def balloon_fields(stats: Mapping[str, StatValue]) -> Dict[str, FieldValue]:
    """When the guest last sent balloon statistics (unix seconds; 0, "never", is left out) and its huge page
    allocations through the balloon, successful and failed."""
    fields: Dict[str, FieldValue] = {}
    updated = _int(stats.get("balloon.last-update"))
    if updated:
        fields["memory_stats_updated_s"] = updated
    for name, key in BALLOON_EXTRA_FIELDS:
        value = _int(stats.get(key))
        if value is not None:
            fields[name] = value
    return fields


def totals_fields(domain: DomainSample, groups: FrozenSet[str]) -> Dict[str, FieldValue]:
    """What perf, dirtyrate, kvm and balloon add to vm_totals."""
    stats = domain.stats
    fields: Dict[str, FieldValue] = {}
    if "perf" in groups:
        fields.update(perf_fields(stats))
    if "dirtyrate" in groups:
        fields.update(dirtyrate_fields(stats))
    if "kvm" in groups:
        fields.update(kvm_fields(stats, "vm."))
    if "balloon" in groups:
        fields.update(balloon_fields(stats))
    return fields


def block_limit_fields(domain: DomainSample, disk: str) -> Dict[str, FieldValue]:
    """The I/O limits set on one disk (block_limits), read with virDomainGetBlockIoTune."""
    tune = domain.calls.get("iotune", {}).get(disk)
    if not tune:
        return {}
    fields: Dict[str, FieldValue] = {}
    for name, key in BLOCK_LIMIT_FIELDS:
        value = _int(tune.get(key))
        if value:
            fields[name] = value
    group = tune.get("group_name")
    if isinstance(group, str) and group:
        fields["limit_group"] = group
    return fields


def affinity(domain: DomainSample, vcpu: int) -> Optional[str]:
    """The vCPU's cpuset from the XML: its <vcpupin>, else <vcpu cpuset>; None when unpinned."""
    facts = domain.config.facts if domain.config is not None else None
    if facts is None:
        return None
    for number, cpuset in facts.vcpu_pins:
        if number == vcpu:
            return cpuset
    return facts.vcpu_cpuset


def vm_vcpus(domain: DomainSample, tags: Tags, groups: FrozenSet[str]) -> List[Point]:
    """One point per vCPU of a running domain: state, times, current pCPU, affinity (and KVM's stats with kvm).

    ``vm_vcpus,uuid=1b4e…,vcpu=0,vm=web01 state=1i,time_ns=312000000i,wait_ns=0i,delay_ns=13915i,pcpu=0i,affinity="0"``
    """
    if domain.id < 0:
        return []
    stats = domain.stats
    pcpus = domain.calls.get("pcpus", {})
    points = []
    for n in range(_int(stats.get("vcpu.maximum")) or 0):
        prefix = f"vcpu.{n}."
        if prefix + "state" not in stats:
            continue  # offline beyond vcpu.current, or a hole after hot-unplug
        fields: Dict[str, FieldValue] = {}
        for name, key in VCPU_FIELDS:
            value = _int(stats.get(prefix + key))
            if value is not None:
                fields[name] = value
        halted = stats.get(prefix + "halted")
        if type(halted) is bool:
            fields["halted"] = halted
        pcpu = _int(pcpus.get(str(n)))
        if pcpu is not None:
            fields["pcpu"] = pcpu
        cpuset = affinity(domain, n)
        if cpuset:
            fields["affinity"] = cpuset
        if "kvm" in groups:
            fields.update(kvm_fields(stats, prefix))
        vcpu_tags = tuple(sorted((*tags, ("vcpu", str(n)))))
        points.append(Point("vm_vcpus", vcpu_tags, fields))
    return points


def vm_iothreads(domain: DomainSample, tags: Tags) -> List[Point]:
    """One point per IOThread, tagged with its id: its adaptive polling settings.

    ``vm_iothreads,iothread=1,uuid=1b4e…,vm=web01 poll_max_ns=32768i,poll_grow=0i,poll_shrink=0i``
    """
    ids = sorted(int(m.group(1)) for m in map(_IOTHREAD_KEY.match, domain.stats) if m)
    points = []
    for thread in ids:
        fields: Dict[str, FieldValue] = {}
        for name, key in IOTHREAD_FIELDS:
            value = _int(domain.stats.get(f"iothread.{thread}.{key}"))
            if value is not None:
                fields[name] = value
        points.append(Point("vm_iothreads", tuple(sorted((*tags, ("iothread", str(thread))))), fields))
    return points


def vm_memory_bandwidth(domain: DomainSample, tags: Tags) -> List[Point]:
    """One point per resctrl monitor and NUMA node: local and total memory bandwidth used, cumulative bytes.

    ``vm_memory_bandwidth,monitor=vcpus_1,node=0,uuid=1b4e…,vm=web01 local_bytes=4818688i,total_bytes=5054464i``
    """
    stats = domain.stats
    points = []
    for i in range(_int(stats.get("memory.bandwidth.monitor.count")) or 0):
        prefix = f"memory.bandwidth.monitor.{i}."
        monitor = stats.get(prefix + "name") or str(i)
        for j in range(_int(stats.get(prefix + "node.count")) or 0):
            node = _int(stats.get(f"{prefix}node.{j}.id"))
            fields: Dict[str, FieldValue] = {}
            for name, key in (("local_bytes", "bytes.local"), ("total_bytes", "bytes.total")):
                value = _int(stats.get(f"{prefix}node.{j}.{key}"))
                if value is not None:
                    fields[name] = value
            node_tag = str(node if node is not None else j)
            points.append(
                Point(
                    "vm_memory_bandwidth", tuple(sorted((*tags, ("monitor", str(monitor)), ("node", node_tag)))), fields
                )
            )
    return points


def vm_cache_monitor(domain: DomainSample, tags: Tags) -> List[Point]:
    """One point per resctrl cache monitor and cache bank: the last-level cache the monitored vCPUs occupy.

    ``vm_cache_monitor,bank=0,monitor=vcpus_0-1,uuid=1b4e…,vcpus=0-1,vm=web01 bytes=5406720i``
    """
    stats = domain.stats
    points = []
    for i in range(_int(stats.get("cpu.cache.monitor.count")) or 0):
        prefix = f"cpu.cache.monitor.{i}."
        monitor = stats.get(prefix + "name") or str(i)
        vcpus = stats.get(prefix + "vcpus")
        for j in range(_int(stats.get(prefix + "bank.count")) or 0):
            used = _int(stats.get(f"{prefix}bank.{j}.bytes"))
            if used is None:
                continue
            bank = _int(stats.get(f"{prefix}bank.{j}.id"))
            point_tags = [*tags, ("monitor", str(monitor)), ("bank", str(bank if bank is not None else j))]
            if isinstance(vcpus, str) and vcpus:
                point_tags.append(("vcpus", vcpus))
            points.append(Point("vm_cache_monitor", tuple(sorted(point_tags)), {"bytes": used}))
    return points


def vm_block_chain(domain: DomainSample, tags: Tags) -> List[Point]:
    """One point per disk image, the backing chain included (BACKING): its path, sizes and write threshold.

    Tagged with the disk's target and libvirt's index of the image (``vdb[3]`` in virsh, ``index`` in the
    XML); ``depth`` is its place in the chain, 0 for the image the guest writes to. libvirt reports I/O
    counters for that top image only.

    ``vm_block_chain,backing_index=3,device=vdb,uuid=1b4e…,vm=web01 depth=1i,path="/images/base.raw",…``
    """
    stats = domain.stats
    depths: Dict[str, int] = {}
    points = []
    for i in range(_int(stats.get("block.count")) or 0):
        prefix = f"block.{i}."
        device = stats.get(prefix + "name") or f"disk{i}"
        depth = depths.get(device, 0)
        depths[device] = depth + 1
        fields: Dict[str, FieldValue] = {"depth": depth}
        path = stats.get(prefix + "path")
        if isinstance(path, str) and path:
            fields["path"] = path
        for name, key in CHAIN_FIELDS:
            value = _int(stats.get(prefix + key))
            if value is not None:
                fields[name] = value
        threshold = _int(stats.get(prefix + "threshold"))
        if threshold:
            fields["threshold_bytes"] = threshold
        index = _int(stats.get(prefix + "backingIndex"))
        point_tags = [*tags, ("device", str(device))]
        if index is not None:
            point_tags.append(("backing_index", str(index)))
        points.append(Point("vm_block_chain", tuple(sorted(point_tags)), fields))
    return points


def _job_point(job: Mapping[str, Any], tags: Tags, completed: bool) -> Point:
    operation = JOB_OPERATIONS.get(job.get("operation", 0), "unknown")
    fields: Dict[str, FieldValue] = {"type": JOB_TYPES.get(job.get("type", 0), "unknown")}
    for name, key in JOB_FIELDS:
        value = _int(job.get(key))
        if value is not None:
            fields[name] = value
    fields["completed"] = completed
    return Point("vm_jobs", tuple(sorted((*tags, ("operation", operation)))), fields)


def vm_jobs(domain: DomainSample, tags: Tags) -> List[Point]:
    """The domain's running job, and a job that finished since the last cycle (once).

    ``vm_jobs,operation=dump,uuid=1b4e…,vm=web01 type="unbounded",time_elapsed_ms=1200i,…,completed=false``
    """
    points = []
    if domain.calls.get("job"):
        points.append(_job_point(domain.calls["job"], tags, False))
    if domain.calls.get("completed_job"):
        points.append(_job_point(domain.calls["completed_job"], tags, True))
    return points


def _host_tags(host: Mapping[str, Any]) -> Tags:
    hypervisor = host.get("hypervisor")
    return (("hypervisor", hypervisor),) if hypervisor else ()


def _ratio(part: int, whole: Any) -> Optional[float]:
    return round(part / whole, 3) if type(whole) is int and whole > 0 else None


def vm_host(host: Mapping[str, Any], domains: Sequence[DomainSample], cycle_ns: Optional[int]) -> Point:
    """The hypervisor: its size and free memory, what its domains allocate, and this collector's own health.

    ``vm_host cpus=2i,memory_total_bytes=25275990016i,memory_free_bytes=21824688128i,domains=2i,…,collect_ns=41230000i``
    """
    fields: Dict[str, FieldValue] = {}
    node = host.get("node") or {}
    if _int(node.get("cpus")) is not None:
        fields["cpus"] = node["cpus"]
    memory = host.get("memory") or {}
    for name, key in (("memory_total_bytes", "total"), ("memory_free_bytes", "free")):
        value = _int(memory.get(key))
        if value is not None:
            fields[name] = value * KIB  # virNodeGetMemoryStats reports KiB
    states = [d.stats.get("state.state") for d in domains]
    running = [d for d in domains if d.stats.get("state.state") == STATE_RUNNING]
    fields["domains"] = len(domains)
    fields["domains_running"] = len(running)
    fields["domains_paused"] = states.count(STATE_PAUSED)
    fields["domains_shutoff"] = states.count(STATE_SHUTOFF)
    vcpus = sum(_int(d.stats.get("vcpu.current")) or 0 for d in running)
    allocated = sum((_int(d.stats.get("balloon.maximum")) or 0) * KIB for d in running)
    fields["vcpus_allocated"] = vcpus
    overcommit = _ratio(vcpus, node.get("cpus"))
    if overcommit is not None:
        fields["vcpu_overcommit"] = overcommit
    fields["memory_allocated_bytes"] = allocated
    if "memory_total_bytes" in fields:
        memory_overcommit = _ratio(allocated, fields["memory_total_bytes"])
        if memory_overcommit is not None:
            fields["memory_overcommit"] = memory_overcommit
    for name in ("libvirt_version", "hypervisor_version"):
        number = _int(node.get(name))
        if number is not None:
            fields[name] = f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"
    health = host.get("health") or {}
    for name in ("collect_ns", "nowait_fallback", "domains_not_responding", "config_reads"):
        if name in health:
            fields[name] = health[name]
    if cycle_ns is not None:
        fields["cycle_ns"] = cycle_ns
    return Point("vm_host", _host_tags(host), fields)


def vm_storage_pools(host: Mapping[str, Any]) -> List[Point]:
    """One point per storage pool: state, capacity, allocation, available space and volume count.

    ``vm_storage_pools,pool=default state="running",capacity_bytes=…,allocation_bytes=…,available_bytes=…,volumes=3i``
    """
    points = []
    for pool in host.get("pools") or ():
        fields: Dict[str, FieldValue] = {"state": POOL_STATES.get(pool.get("state"), "unknown")}
        for name, key in (
            ("capacity_bytes", "capacity"),
            ("allocation_bytes", "allocation"),
            ("available_bytes", "available"),
            ("volumes", "volumes"),
        ):
            value = _int(pool.get(key))
            if value is not None:
                fields[name] = value
        points.append(Point("vm_storage_pools", tuple(sorted((*_host_tags(host), ("pool", pool["name"])))), fields))
    return points


def host_points(snapshot: Snapshot, groups: FrozenSet[str], cycle_ns: Optional[int]) -> List[Point]:
    """vm_host and vm_storage_pools for each hypervisor in the snapshot."""
    points: List[Point] = []
    for host in snapshot.hosts:
        hypervisor = host.get("hypervisor")
        if "host" in groups:
            domains = [d for d in snapshot.domains if d.hypervisor == hypervisor]
            points.append(vm_host(host, domains, cycle_ns))
        if "pools" in groups:
            points += vm_storage_pools(host)
    return points


def vm_guest(domain: DomainSample, tags: Tags) -> List[Point]:
    """The guest's own view through its agent, for a domain whose agent channel is connected.

    ``vm_guest,uuid=1b4e…,vm=web01 os_id="debian",os_version_id="12",…,users=2i,agent_responding=true``
    An agent that did not answer by the deadline, or failed, gives ``agent_responding=false`` alone.
    """
    guest = domain.calls.get("guest")
    if not guest:
        return []
    info = guest.get("info") or {}
    fields: Dict[str, FieldValue] = {}
    for name, key in GUEST_STRING_FIELDS:
        value = info.get(key)
        if isinstance(value, str) and value:
            fields[name] = value
    users = _int(info.get("user.count"))
    if users is not None:
        fields["users"] = users
    for name, key in GUEST_LOAD_FIELDS:
        value = info.get(key)
        if type(value) in (int, float):
            fields[name] = float(value)
    fields["agent_responding"] = bool(guest.get("responding"))
    return [Point("vm_guest", tags, fields)]


def vm_filesystems(domain: DomainSample, tags: Tags) -> List[Point]:
    """One point per filesystem the guest has mounted, tagged with its mount point and type.

    ``vm_filesystems,fstype=ext4,mountpoint=/,uuid=1b4e…,vm=web01 total_bytes=…,used_percent=41.07,disks="vda"``
    """
    guest = domain.calls.get("guest") or {}
    info = guest.get("info") or {}
    points = []
    for i in range(_int(info.get("fs.count")) or 0):
        prefix = f"fs.{i}."
        mountpoint, fstype = info.get(prefix + "mountpoint"), info.get(prefix + "fstype")
        if not isinstance(mountpoint, str) or not mountpoint:
            continue
        fields: Dict[str, FieldValue] = {}
        total, used = _int(info.get(prefix + "total-bytes")), _int(info.get(prefix + "used-bytes"))
        if total is not None:
            fields["total_bytes"] = total
        if used is not None:
            fields["used_bytes"] = used
        if total and used is not None:
            fields["used_percent"] = round(100.0 * used / total, 2)
        disks = [info.get(f"{prefix}disk.{j}.alias") for j in range(_int(info.get(prefix + "disk.count")) or 0)]
        fields["disks"] = ",".join(disk for disk in disks if isinstance(disk, str) and disk)
        fs_tags = [*tags, ("mountpoint", mountpoint)]
        if isinstance(fstype, str) and fstype:
            fs_tags.append(("fstype", fstype))
        points.append(Point("vm_filesystems", tuple(sorted(fs_tags)), fields))
    return points


def domain_points(domain: DomainSample, tags: Tags, groups: FrozenSet[str]) -> List[Point]:
    """The per-domain measurements of the groups asked for."""
    points: List[Point] = []
    if "vcpu" in groups:
        points += vm_vcpus(domain, tags, groups)
    if "iothread" in groups:
        points += vm_iothreads(domain, tags)
    if "memory_bandwidth" in groups:
        points += vm_memory_bandwidth(domain, tags)
    if "jobs" in groups:
        points += vm_jobs(domain, tags)
    if "cache_monitor" in groups:
        points += vm_cache_monitor(domain, tags)
    if "backing" in groups:
        points += vm_block_chain(domain, tags)
    if "guest" in groups:
        points += vm_guest(domain, tags) + vm_filesystems(domain, tags)
    return points
