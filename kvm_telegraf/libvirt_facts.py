"""What kvm-telegraf relies on from libvirt's API, named once: stats groups, flags, states, error codes.

The numbers are libvirt's own (virDomainStatsTypes, virConnectGetAllDomainStatsFlags,
virDomainState, virErrorNumber); having them here keeps the rest of the package
free of magic numbers and of the ``libvirt`` import, so tests can swap the source.
"""

from __future__ import annotations

from typing import Optional

# virDomainStatsTypes
STATS_STATE = 1
STATS_CPU_TOTAL = 2
STATS_BALLOON = 4
STATS_VCPU = 8
STATS_INTERFACE = 16
STATS_BLOCK = 32
# The groups the four default measurements read.
DEFAULT_STATS = STATS_STATE | STATS_CPU_TOTAL | STATS_BALLOON | STATS_VCPU | STATS_INTERFACE | STATS_BLOCK
# Every group bit and its name, in libvirt's order.
STATS_GROUP_NAMES = (
    (STATS_STATE, "state"),
    (STATS_CPU_TOTAL, "cpu-total"),
    (STATS_BALLOON, "balloon"),
    (STATS_VCPU, "vcpu"),
    (STATS_INTERFACE, "interface"),
    (STATS_BLOCK, "block"),
    (64, "perf"),
    (128, "iothread"),
    (256, "memory"),
    (512, "dirtyrate"),
    (1024, "vm"),
)

# virConnectGetAllDomainStatsFlags
STATS_NOWAIT = 1 << 29
STATS_ENFORCE = 1 << 31

# virDomainState, named as virsh names them.
STATE_RUNNING = 1
STATE_NAMES = {
    0: "no state",
    1: "running",
    2: "idle",
    3: "paused",
    4: "in shutdown",
    5: "shut off",
    6: "crashed",
    7: "pmsuspended",
}

# virErrorNumber
ERR_NO_DOMAIN = 42
ERR_ARGUMENT_UNSUPPORTED = 74


def error_code(exc: BaseException) -> Optional[int]:
    """libvirt's error number of *exc*, or None when it is not a libvirtError."""
    get = getattr(exc, "get_error_code", None)
    return get() if callable(get) else None
