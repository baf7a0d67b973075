"""``--collect block_limits``: ``limit_*`` on vm_devices disks, the I/O limits set with blkdeviotune.

One virDomainGetBlockIoTune per disk of each running or paused domain, the disks taken from the cached XML.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import counter
from kvm_telegraf.group import DomainView, Fields, Group, or_none

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


def call(dom: Any, facts: Optional[DomainFacts]) -> Dict[str, Any]:
    """``{"iotune": {disk: {key: value}}}``: the limits set on each disk of the XML (0 and "": not set)."""
    if facts is None:
        return {}
    limits = {}
    for disk in facts.disks:
        tune = or_none(lambda disk=disk: dom.blockIoTune(disk, 0))
        if tune:
            limits[disk] = {key: value for key, value in tune.items() if value}
    return {"iotune": limits}


def limit_fields(view: DomainView, disk: str) -> Fields:
    """The I/O limits set on one disk."""
    tune = view.domain.calls.get("iotune", {}).get(disk)
    if not tune:
        return {}
    fields: Fields = {}
    for name, key in BLOCK_LIMIT_FIELDS:
        value = counter(tune.get(key))
        if value:
            fields[name] = value
    group = tune.get("group_name")
    if isinstance(group, str) and group:
        fields["limit_group"] = group
    return fields


GROUP = Group(
    name="block_limits",
    help="limit_* on vm_devices disks: I/O limits",
    since=9_008,
    reads_xml=True,
    calls=("virDomainGetBlockIoTune",),
    domain_call=call,
    disk_fields=limit_fields,
)
