"""The opt-in statistics groups of ``--collect``, named once: what each reads and what it needs.

A group either ORs bits into the one bulk call (no extra call) or makes the
per-domain or per-host calls it names; shape turns what it read into its
measurement or fields. ``GROUPS`` is the one list: a new group appends a row.
"""

from __future__ import annotations

from typing import FrozenSet, Iterable, NamedTuple, Tuple

from kvm_telegraf.libvirt_facts import (
    STATS_BACKING,
    STATS_DIRTYRATE,
    STATS_IOTHREAD,
    STATS_MEMORY,
    STATS_PERF,
    STATS_VCPU,
    STATS_VM,
)

ALL = "all"
# Groups whose calls libvirt refuses on a read-only connection: --read-write must be given, and
# ``all`` leaves them out, so it never needs more access than the default.
READ_WRITE_GROUPS = frozenset({"guest"})


class Group(NamedTuple):
    name: str
    bits: int  # the bulk-stats bits it ORs into the one call (0: none)
    since: int  # the libvirt version it needs, as libvirt numbers it (major * 1,000,000 + minor * 1,000 + micro)
    calls: Tuple[str, ...]  # the libvirt calls it makes besides the bulk call, one per running domain or per host
    adds: str  # what it adds, for --help and doctor
    flags: int = 0  # the flags it ORs into the one call (BACKING), not a stats group of its own


GROUPS: Tuple[Group, ...] = (
    Group("vcpu", STATS_VCPU, 1_002_009, ("virDomainGetVcpus",), "vm_vcpus: per-vCPU state, times, pCPU, affinity"),
    Group("perf", STATS_PERF, 1_003_003, (), "perf_<event> on vm_totals (events enabled with virsh perf)"),
    Group("iothread", STATS_IOTHREAD, 4_010_000, (), "vm_iothreads: per-IOThread polling"),
    Group("memory_bandwidth", STATS_MEMORY, 6_000_000, (), "vm_memory_bandwidth: resctrl memory bandwidth"),
    Group("dirtyrate", STATS_DIRTYRATE, 7_002_000, (), "dirtyrate_* on vm_totals, where a calculation was run"),
    Group("kvm", STATS_VM, 8_009_000, (), "kvm_<stat> on vm_totals (and vm_vcpus): KVM's own counters"),
    Group("jobs", 0, 1_000_003, ("virDomainGetJobStats",), "vm_jobs: a running or just-finished job's progress"),
    Group("block_limits", 0, 9_008, ("virDomainGetBlockIoTune",), "limit_* on vm_devices disks: I/O limits"),
    Group(
        "host",
        0,
        9_003,
        ("virNodeGetInfo", "virNodeGetMemoryStats"),
        "vm_host: the hypervisor's size, load, overcommit and our own health",
    ),
    Group(
        "pools",
        0,
        10_002,
        ("virConnectListAllStoragePools",),
        "vm_storage_pools: capacity and use per storage pool",
    ),
    Group("events", 0, 5_000, (), "vm_events: one point per libvirt domain event between two batches"),
    # cpu.cache.monitor.* come with the cpu-total group, which the default call already asks for.
    Group("cache_monitor", 0, 4_010_000, (), "vm_cache_monitor: resctrl cache occupancy per monitor and bank"),
    Group(
        "backing",
        0,
        1_002_012,
        (),
        "vm_block_chain: each disk image, backing files included: path, sizes, write threshold",
        STATS_BACKING,
    ),
    # balloon.* come with the balloon group of the default call; the default measurements leave these out.
    Group("balloon", 0, 2_001_000, (), "memory_stats_updated_s, memory_hugetlb_* on vm_totals"),
    Group(
        "guest",
        0,
        5_007_000,
        ("virDomainGetGuestInfo",),
        "vm_guest, vm_filesystems: the guest's own view through its QEMU agent (needs --read-write)",
    ),
)
GROUP_NAMES: Tuple[str, ...] = tuple(group.name for group in GROUPS)
BY_NAME = {group.name: group for group in GROUPS}


def resolve(names: Iterable[str]) -> FrozenSet[str]:
    """The groups of ``--collect`` values, ``all`` standing for every one that a read-only connection serves."""
    chosen = set(names)
    if ALL in chosen:
        chosen |= set(GROUP_NAMES) - READ_WRITE_GROUPS
        chosen.discard(ALL)
    return frozenset(chosen)


def stats_bits(groups: FrozenSet[str]) -> int:
    """The bulk-stats bits the groups add to the default ones."""
    bits = 0
    for name in groups:
        bits |= BY_NAME[name].bits
    return bits


def stats_flags(groups: FrozenSet[str]) -> int:
    """The call flags the groups add (BACKING for backing)."""
    flags = 0
    for name in groups:
        flags |= BY_NAME[name].flags
    return flags


def version_text(number: int) -> str:
    """``8.9.0`` from libvirt's 8009000."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"
