"""The registry of ``--collect`` groups: one line per group module, in the order their output appears.

Collect, shape, doctor, ``--collect --help`` and the config check iterate over
GROUPS; a new group is one module (kvm_telegraf/group.py says what it may fill
in) and one line here.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Iterable, Tuple

from kvm_telegraf.group import Group
from kvm_telegraf.groups import (
    backing,
    balloon,
    block_limits,
    cache_monitor,
    device_info,
    dirtyrate,
    disk_errors,
    disk_latency,
    energy,
    events,
    guest,
    host,
    hostdevs,
    iothread,
    jobs,
    kvm,
    latency_histogram,
    memory_bandwidth,
    perf,
    pools,
    queue_limits,
    vcpu,
)

GROUPS: Tuple[Group, ...] = (
    vcpu.GROUP,
    perf.GROUP,
    iothread.GROUP,
    memory_bandwidth.GROUP,
    dirtyrate.GROUP,
    kvm.GROUP,
    jobs.GROUP,
    block_limits.GROUP,
    host.GROUP,
    pools.GROUP,
    events.GROUP,
    cache_monitor.GROUP,
    backing.GROUP,
    balloon.GROUP,
    disk_latency.GROUP,
    latency_histogram.GROUP,
    queue_limits.GROUP,
    energy.GROUP,
    device_info.GROUP,
    disk_errors.GROUP,
    hostdevs.GROUP,
    guest.GROUP,
)
ALL = "all"  # every group that a read-only connection serves
BY_NAME: Dict[str, Group] = {group.name: group for group in GROUPS}


def implied(names: Iterable[str]) -> FrozenSet[str]:
    """The groups that only ``all`` brought in, none of them named: a daemon that lacks one leaves it out quietly."""
    chosen = set(names)
    return frozenset(group.name for group in resolve(chosen) if group.name not in chosen)


def resolve(names: Iterable[str]) -> Tuple[Group, ...]:
    """The groups of ``--collect`` values, in registry order; ``all`` stands for every one but the read-write ones."""
    chosen = set(names)
    return tuple(group for group in GROUPS if group.name in chosen or (ALL in chosen and not group.read_write))
