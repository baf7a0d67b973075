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
STATS_PERF = 64
STATS_IOTHREAD = 128
STATS_MEMORY = 256
STATS_DIRTYRATE = 512
STATS_VM = 1024
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
    (STATS_PERF, "perf"),
    (STATS_IOTHREAD, "iothread"),
    (STATS_MEMORY, "memory"),
    (STATS_DIRTYRATE, "dirtyrate"),
    (STATS_VM, "vm"),
)

# virConnectGetAllDomainStatsFlags
STATS_NOWAIT = 1 << 29
STATS_BACKING = 1 << 30  # block.<n>.* also for each backing-chain image; block.count counts them
STATS_ENFORCE = 1 << 31
# ACTIVE and SHUTOFF together select no domain: the daemon checks the groups and reads no guest.
STATS_NO_DOMAINS = 1 | 64

# virDomainState, named as virsh names them.
STATE_RUNNING = 1
STATE_PAUSED = 3
STATE_SHUTOFF = 5
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

# virDomainJobType
JOB_TYPES = {0: "none", 1: "bounded", 2: "unbounded", 3: "completed", 4: "failed", 5: "cancelled"}
JOB_RUNNING_TYPES = (1, 2)  # bounded, unbounded: still in progress
# virDomainJobOperation, named for the operation tag
JOB_OPERATIONS = {
    0: "unknown",
    1: "start",
    2: "save",
    3: "restore",
    4: "migration_in",
    5: "migration_out",
    6: "snapshot",
    7: "snapshot_revert",
    8: "dump",
    9: "backup",
    10: "snapshot_delete",
}
# virDomainGetJobStats flags
JOB_STATS_COMPLETED = 1
JOB_STATS_KEEP_COMPLETED = 2
# virConnectListAllNodeDevicesFlags: PCI devices, mediated devices
NODE_DEVICES_PCI = 1 << 1
NODE_DEVICES_MDEV = 1 << 14
# virStoragePoolState
POOL_STATES = {0: "inactive", 1: "building", 2: "running", 3: "degraded", 4: "inaccessible"}

# libvirt reports memory sizes (balloon.*, virNodeGetMemoryStats) in KiB.
KIB = 1024


def version_text(number: int) -> str:
    """libvirt's encoded version (major * 1,000,000 + minor * 1,000 + micro) as text: 9000000 -> 9.0.0."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


# virErrorNumber
ERR_RPC = 39
ERR_NO_DOMAIN = 42
ERR_ARGUMENT_UNSUPPORTED = 74


def error_code(exc: BaseException) -> Optional[int]:
    """libvirt's error number of *exc*, or None when it is not a libvirtError."""
    get = getattr(exc, "get_error_code", None)
    return get() if callable(get) else None


# virDomainEventID: the domain events kvm-telegraf subscribes to.
EVENT_LIFECYCLE = 0
EVENT_REBOOT = 1
EVENT_WATCHDOG = 3
EVENT_IO_ERROR_REASON = 6
EVENT_DEVICE_REMOVED = 15
EVENT_TUNABLE = 17
EVENT_AGENT_LIFECYCLE = 18
EVENT_DEVICE_ADDED = 19
EVENT_MIGRATION_ITERATION = 20
EVENT_JOB_COMPLETED = 21
EVENT_METADATA_CHANGE = 23
# ... and the ones that say more than a name: registered where both the daemon and the binding have them.
EVENT_CONTROL_ERROR = 7
EVENT_BALLOON_CHANGE = 13
EVENT_BLOCK_JOB_2 = 16  # the disk by its target (vda); BLOCK_JOB (8) names it by path
EVENT_BLOCK_THRESHOLD = 24  # libvirt 3.2
EVENT_MEMORY_FAILURE = 25  # libvirt 6.9
EVENT_MEMORY_DEVICE_SIZE_CHANGE = 26  # libvirt 7.9
EVENT_NIC_MAC_CHANGE = 27  # libvirt 11.2

# virDomainEventType, each with its virDomainEvent*DetailType, as the words of vm_events.
LIFECYCLE_EVENTS = (
    ("defined", ("added", "updated", "renamed", "from_snapshot")),
    ("undefined", ("removed", "renamed")),
    ("started", ("booted", "migrated", "restored", "from_snapshot", "wakeup")),
    (
        "suspended",
        (
            "paused",
            "migrated",
            "io_error",
            "watchdog",
            "restored",
            "from_snapshot",
            "api_error",
            "postcopy",
            "postcopy_failed",
        ),
    ),
    ("resumed", ("unpaused", "migrated", "from_snapshot", "postcopy", "postcopy_failed")),
    ("stopped", ("shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from_snapshot")),
    ("shutdown", ("finished", "guest", "host")),
    ("pmsuspended", ("memory", "disk")),
    ("crashed", ("panicked", "crashloaded")),
)
# virDomainEventWatchdogAction and virDomainEventIOErrorAction.
WATCHDOG_ACTIONS = ("none", "pause", "reset", "poweroff", "shutdown", "debug", "inject_nmi")
IO_ERROR_ACTIONS = ("none", "pause", "report")
# virConnectDomainEventAgentLifecycleState (from 1) and its reason.
AGENT_STATES = {1: "agent_connected", 2: "agent_disconnected"}
AGENT_REASONS = ("unknown", "domain_started", "channel")
# virDomainBlockJobType and virConnectDomainEventBlockJobStatus.
BLOCK_JOB_TYPES = ("unknown", "pull", "copy", "commit", "active_commit", "backup")
BLOCK_JOB_STATUSES = ("completed", "failed", "canceled", "ready")
# virDomainMemoryFailureRecipientType, virDomainMemoryFailureActionType and virDomainMemoryFailureFlags.
MEMORY_FAILURE_RECIPIENTS = ("hypervisor", "guest")
MEMORY_FAILURE_ACTIONS = ("ignore", "inject", "fatal", "reset")
MEMORY_FAILURE_ACTION_REQUIRED = 1
MEMORY_FAILURE_RECURSIVE = 2


def word(names: tuple, number: int) -> str:
    """libvirt's number as our word; a number newer than this table stays a number, as text."""
    return names[number] if 0 <= number < len(names) else str(number)


# virDomainGuestInfoTypes: what one virDomainGetGuestInfo call asks the guest agent for.
GUEST_INFO_USERS = 1
GUEST_INFO_OS = 2
GUEST_INFO_TIMEZONE = 4
GUEST_INFO_HOSTNAME = 8
GUEST_INFO_FILESYSTEM = 16
GUEST_INFO_LOAD = 128  # load.1m, load.5m, load.15m: libvirt 11.2 and later
GUEST_INFO_LOAD_SINCE = 11_002_000
