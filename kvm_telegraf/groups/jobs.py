"""``--collect jobs``: vm_jobs, a domain's running job and the one that just finished (once).

Two virDomainGetJobStats calls per running or paused domain (a dump, a save, a migration with --suspend
pause it, and their jobs are the ones that matter): the job in progress, and the
completed one, read with KEEP_COMPLETED so that reading takes the finished job's
statistics from nobody else (Nova reads them too).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from kvm_telegraf.domain_xml import DomainFacts
from kvm_telegraf.fields import counter, with_tags
from kvm_telegraf.group import DomainView, Group, or_none
from kvm_telegraf.libvirt_facts import (
    JOB_OPERATIONS,
    JOB_RUNNING_TYPES,
    JOB_STATS_COMPLETED,
    JOB_STATS_KEEP_COMPLETED,
    JOB_TYPES,
)
from kvm_telegraf.points import FieldValue, Point

# virDomainGetJobStats keys -> vm_jobs fields: every number libvirt 9.0 returns (and 10.x's vfio), with its unit.
JOB_FIELDS = (
    ("time_elapsed_ms", "time_elapsed"),
    ("time_elapsed_net_ms", "time_elapsed_net"),
    ("time_remaining_ms", "time_remaining"),
    ("setup_time_ms", "setup_time"),
    ("downtime_ms", "downtime"),
    ("downtime_net_ms", "downtime_net"),
    ("data_total_bytes", "data_total"),
    ("data_processed_bytes", "data_processed"),
    ("data_remaining_bytes", "data_remaining"),
    ("memory_total_bytes", "memory_total"),
    ("memory_processed_bytes", "memory_processed"),
    ("memory_remaining_bytes", "memory_remaining"),
    ("memory_bytes_per_s", "memory_bps"),
    ("memory_constant_pages", "memory_constant"),
    ("memory_normal_pages", "memory_normal"),
    ("memory_normal_bytes", "memory_normal_bytes"),
    ("memory_page_size_bytes", "memory_page_size"),
    ("memory_dirty_rate_pages_per_s", "memory_dirty_rate"),
    ("memory_iteration", "memory_iteration"),
    ("memory_postcopy_requests", "memory_postcopy_requests"),
    ("disk_total_bytes", "disk_total"),
    ("disk_processed_bytes", "disk_processed"),
    ("disk_remaining_bytes", "disk_remaining"),
    ("disk_bytes_per_s", "disk_bps"),
    ("disk_temp_used_bytes", "disk_temp_used"),
    ("disk_temp_total_bytes", "disk_temp_total"),
    ("compression_cache_bytes", "compression_cache"),
    ("compression_bytes", "compression_bytes"),
    ("compression_pages", "compression_pages"),
    ("compression_cache_misses", "compression_cache_misses"),
    ("compression_overflow", "compression_overflow"),
    ("auto_converge_throttle_percent", "auto_converge_throttle"),
    ("vfio_data_transferred_bytes", "vfio_data_transferred"),
)


def call(dom: Any, _facts: Optional[DomainFacts]) -> Dict[str, Any]:
    """``{"job": {...}, "completed_job": {...}}``, each where there is one."""
    calls: Dict[str, Any] = {}
    job = or_none(lambda: dom.jobStats(0))
    # While a dump ends the plain call already answers "completed" (seen on libvirt 9.0): that one is
    # left to the completed read, so it is counted once.
    if job and job.get("type") in JOB_RUNNING_TYPES:
        calls["job"] = job
    completed = or_none(lambda: dom.jobStats(JOB_STATS_COMPLETED | JOB_STATS_KEEP_COMPLETED))
    if completed and completed.get("type"):
        calls["completed_job"] = completed
    return calls


def signature(job: Mapping[str, Any]) -> Tuple[Any, ...]:
    """What tells one finished job from the next."""
    return (job.get("operation"), job.get("time_elapsed"), job.get("type"))


def _job_point(job: Mapping[str, Any], view: DomainView, completed: bool) -> Point:
    operation = JOB_OPERATIONS.get(job.get("operation", 0), "unknown")
    fields: Dict[str, FieldValue] = {"type": JOB_TYPES.get(job.get("type", 0), "unknown")}
    for name, key in JOB_FIELDS:
        value = counter(job.get(key))
        if value is not None:
            fields[name] = value
    success = job.get("success")
    if type(success) is bool:
        fields["success"] = success
    error = job.get("errmsg")
    if isinstance(error, str) and error:
        fields["error"] = error
    fields["completed"] = completed
    return Point("vm_jobs", with_tags(view.tags, ("operation", operation)), fields)


def vm_jobs(view: DomainView) -> List[Point]:
    """The domain's running job, and a job that finished since the last cycle, unless an earlier one reported it.

    ``vm_jobs,operation=dump,uuid=1b4e…,vm=web01 type="unbounded",time_elapsed_ms=1200i,memory_total_bytes=…,completed=false``
    """
    calls = view.domain.calls
    points = []
    if calls.get("job"):
        points.append(_job_point(calls["job"], view, False))
    completed = calls.get("completed_job")
    if completed and signature(completed) != view.carried:
        points.append(_job_point(completed, view, True))
    return points


def reported(view: DomainView) -> Any:
    """The finished job reported so far: the next cycle leaves it out."""
    completed = view.domain.calls.get("completed_job")
    return signature(completed) if completed else view.carried


GROUP = Group(
    name="jobs",
    help="vm_jobs: a running or just-finished job's progress: memory, disk, bandwidth, pages, downtime",
    since=1_000_003,
    calls=("virDomainGetJobStats",),
    measurements=("vm_jobs",),
    domain_call=call,
    points=vm_jobs,
    carry=reported,
)
