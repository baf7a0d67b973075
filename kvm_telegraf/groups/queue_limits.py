"""``--collect queue_limits``: the alignments and transfer sizes QEMU's block layer keeps to, on vm_devices disks.

libvirt 11.10 and later report them as ``block.<i>.limits.*`` (QEMU's BlockLimits, what Linux calls a
queue's limits), with the default call's block group: no bits, no call. Not the I/O throttle: that is
``block_limits`` (``limit_*``, set with blkdeviotune). A limit QEMU leaves unset is not reported.
"""

from __future__ import annotations

from typing import Optional

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import Rows, read_fields
from kvm_telegraf.group import DomainView, Fields, Group, Stats
from kvm_telegraf.measurements import disk_entries

# vm_devices disk fields <- block.<i>.limits.<key>
QUEUE_LIMIT_FIELDS: Rows = (
    ("request_alignment_bytes", "limits.request_alignment", 1),
    ("memory_alignment_minimal_bytes", "limits.memory_alignment_minimal", 1),
    ("memory_alignment_optimal_bytes", "limits.memory_alignment_optimal", 1),
    ("iov_max", "limits.iov_max", 1),
    ("iov_hw_max", "limits.iov_hw_max", 1),
    ("transfer_optimal_bytes", "limits.transfer_optimal", 1),
    ("transfer_max_bytes", "limits.transfer_max", 1),
    ("transfer_hw_max_bytes", "limits.transfer_hw_max", 1),
    ("discard_max_bytes", "limits.discard_max", 1),
    ("discard_alignment_bytes", "limits.discard_alignment", 1),
    ("write_zeroes_max_bytes", "limits.write_zeroes_max", 1),
    ("write_zeroes_alignment_bytes", "limits.write_zeroes_alignment", 1),
)


def limit_fields(view: DomainView, disk: str) -> Fields:
    """One disk's queue limits, where libvirt reports them."""
    prefixes = dict(disk_entries(view.domain.stats))
    return read_fields(view.domain.stats, QUEUE_LIMIT_FIELDS, prefixes[disk]) if disk in prefixes else {}


def enabled(stats: Stats, _facts: Optional[DomainFacts]) -> bool:
    """Whether any disk reports its limits (libvirt 11.10 and later, a running domain)."""
    return any(read_fields(stats, QUEUE_LIMIT_FIELDS, prefix) for _, prefix in disk_entries(stats))


GROUP = Group(
    name="queue_limits",
    help="alignments and transfer sizes of each disk's block layer (QEMU's block limits) on vm_devices disks",
    since=11_010_000,
    disk_fields=limit_fields,
    enabled=enabled,
    enable_hint="libvirt 11.10 or later; every disk of a running domain has them",
)
