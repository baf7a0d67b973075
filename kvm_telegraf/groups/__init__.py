"""The registry of ``--collect`` groups: one name per group module, in the order their output appears.

Collect, shape, doctor, ``--collect --help`` and the config check go by NAMES; a
new group is one module (kvm_telegraf/group.py says what it may fill in) named
for its ``--collect`` value, and one name here. A group's module is imported
only when a run asks for that group (or doctor reports on every one): the
default run loads none of them.
"""

from __future__ import annotations

import importlib
from typing import FrozenSet, Iterable, Tuple

from kvm_telegraf.group import Group

NAMES: Tuple[str, ...] = (
    "vcpu",
    "perf",
    "iothread",
    "memory_bandwidth",
    "dirtyrate",
    "kvm",
    "jobs",
    "block_limits",
    "host",
    "pools",
    "events",
    "cache_monitor",
    "backing",
    "balloon",
    "disk_latency",
    "latency_histogram",
    "queue_limits",
    "energy",
    "device_info",
    "disk_errors",
    "hostdevs",
    "guest",
)
ALL = "all"  # every group that a read-only connection serves


def group(name: str) -> Group:
    """The group a name of NAMES stands for: its module's ``GROUP``, the module imported on first use."""
    found: Group = importlib.import_module(f"{__name__}.{name}").GROUP
    return found


def every_group() -> Tuple[Group, ...]:
    """Every group, in registry order (doctor's report, the docs' checks): imports every group's module."""
    return tuple(group(name) for name in NAMES)


def implied(names: Iterable[str]) -> FrozenSet[str]:
    """The groups that only ``all`` brought in, none of them named: a daemon that lacks one leaves it out quietly."""
    chosen = set(names)
    return frozenset(found.name for found in resolve(chosen) if found.name not in chosen)


def resolve(names: Iterable[str]) -> Tuple[Group, ...]:
    """The groups of ``--collect`` values, in registry order; ``all`` stands for every one but the read-write ones.

    Only the groups asked for are imported (with ``all``, every one, to learn which are read-write).
    """
    chosen = set(names)
    candidates = (group(name) for name in NAMES if ALL in chosen or name in chosen)
    return tuple(found for found in candidates if found.name in chosen or (ALL in chosen and not found.read_write))
