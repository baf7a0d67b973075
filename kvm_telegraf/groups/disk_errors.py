"""``--collect disk_errors``: ``io_error`` on vm_devices disks, whether a disk is in an I/O error state now.

One virDomainGetDiskErrors per running and per paused domain: a guest whose disk
error policy is ``stop`` (QEMU's default for a full disk) is paused by the error,
and libvirt then says which disk holds it and why. Unlike the ``io_error`` event,
this is the state now, whenever the plugin started.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import counter
from kvm_telegraf.group import DomainView, Fields, Group, or_none


def call(dom: Any, _facts: Optional[DomainFacts]) -> Dict[str, Any]:
    """``{"disk_errors": {"vdb": 2}}``: the disks in an error state, by target (an empty dict: none is)."""
    errors = or_none(lambda: dom.diskErrors(0))
    return {"disk_errors": dict(errors)} if errors is not None else {}


def error_fields(view: DomainView, disk: str) -> Fields:
    """A disk of a domain libvirt answered for: 0 (none), or the virDomainDiskErrorCode it holds."""
    errors = view.domain.calls.get("disk_errors")
    code = counter(errors.get(disk, 0)) if errors is not None else None
    return {"io_error": code} if code is not None else {}


GROUP = Group(
    name="disk_errors",
    help="io_error on vm_devices disks: a disk in an I/O error state now (no space, or another error)",
    since=9_010,
    calls=("virDomainGetDiskErrors",),
    domain_call=call,
    disk_fields=error_fields,
)
