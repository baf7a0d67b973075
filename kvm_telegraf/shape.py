"""Shape: one snapshot in, the batch's points out, in batch order.

No I/O and no clock: the golden tests pin this stage exactly. The four default
measurements come from kvm_telegraf/measurements.py, each ``--collect`` group's
points and fields from its own module (kvm_telegraf/groups/); this module only
puts them in order and hands each domain's reading on to its next cycle.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

from kvm_telegraf.domain_filter import DeviceFilter
from kvm_telegraf.fields import extra_tags
from kvm_telegraf.group import DomainView, Group
from kvm_telegraf.measurements import (
    MEASUREMENTS,
    History,
    Reading,
    add_disk_latency,
    cpu_percent,
    disks,
    domain_tags,
    interfaces,
    reading_of,
    vm_devices,
    vm_features,
    vm_metrics,
    vm_totals,
)
from kvm_telegraf.plans import ShapePlans
from kvm_telegraf.points import Batch, Point, Tags, each_point
from kvm_telegraf.snapshot import DomainSample, Snapshot

EVERY_DEVICE = DeviceFilter()  # no --device or --exclude-device: a frozen value, shared as a default
DEFAULT_MEASUREMENTS = frozenset(MEASUREMENTS)


def history_key(domain: DomainSample) -> str:
    """The UUID, qualified by host: a migrating domain exists on two hypervisors at once."""
    return domain.uuid if domain.hypervisor is None else f"{domain.hypervisor}/{domain.uuid}"


def shape_domain(
    domain: DomainSample,
    snapshot: Snapshot,
    previous: Optional[Reading],
    measurements: FrozenSet[str] = frozenset(MEASUREMENTS),
    groups: Sequence[Group] = (),
    devices: DeviceFilter = EVERY_DEVICE,
) -> Tuple[List[Point], Optional[Reading]]:
    """One domain's points, field by field, in batch order, and the reading its next cycle starts from (None: not
    running).

    devices: which devices get points of their own (vm_devices, and the groups' points tagged ``device``);
    vm_totals sums every device all the same.
    """
    extra = extra_tags(domain)
    tags = domain_tags(domain, extra)
    points: List[Point] = []
    nics, block_devices = interfaces(domain), disks(domain.stats)
    reading = reading_of(domain, snapshot, block_devices)
    if reading is None or (previous is not None and previous.domain_id != reading.domain_id):
        previous = None
    if reading is not None:
        add_disk_latency(block_devices, previous)
    views = group_views(domain, tags, extra, tuple(groups), previous) if groups else ()
    for group, group_view in views:
        if group.disk_fields is not None:
            for name, fields in block_devices:
                fields.update(group.disk_fields(group_view, name))
    if "vm_metrics" in measurements:
        points.append(vm_metrics(domain, tags))
    if "vm_features" in measurements:
        features = vm_features(domain, tags)
        if features is not None:
            points.append(features)
    if "vm_devices" in measurements:
        points += vm_devices(domain, nics, block_devices, extra)
    if "vm_totals" in measurements:
        percent = cpu_percent(reading, previous) if reading is not None else None
        totals = vm_totals(domain, tags, nics, block_devices, percent)
        added: Dict = {}
        for group, group_view in views:
            if group.totals_fields is not None:
                added.update(group.totals_fields(group_view))
        points.append(totals._replace(fields={**totals.fields, **added}) if added else totals)
    for group, group_view in views:
        if group.points is not None:
            points += group.points(group_view)
    if reading is not None and views:
        kept = {group.name: group.carry(group_view) for group, group_view in views if group.carry is not None}
        if kept:
            reading = reading._replace(carried=kept)
    if devices.active:
        points = [point for point in points if _device_chosen(point, devices)]
    return points, reading


def group_views(
    domain: DomainSample, tags: Tags, extra: Tags, groups: Tuple[Group, ...], previous: Optional[Reading]
) -> List[Tuple[Group, DomainView]]:
    """Each group with the view of the domain it gets: with what it carried from the previous cycle, if it carries.

    Built only with groups on: the default four measurements need none (callgrind, one recorded running domain's
    shape: 266.4 K -> 260.5 K instructions).
    """
    carried = previous.carried if previous is not None else {}
    view = DomainView(domain, tags, extra, groups)
    return [
        (group, DomainView(domain, tags, extra, groups, carried.get(group.name)) if group.carry else view)
        for group in groups
    ]


def _device_chosen(point: Point, devices: DeviceFilter) -> bool:
    """Whether a point is not a device's, or its device passes ``--device`` / ``--exclude-device``."""
    for key, value in point.tags:
        if key == "device":
            return devices(value)
    return True


def batch_points(snapshot: Snapshot, groups: Sequence[Group], cycle_ns: Optional[int]) -> List[Point]:
    """The points after every domain's: each host's (vm_host, vm_storage_pools), then the batch's own (vm_events)."""
    points: List[Point] = []
    per_host = [group for group in groups if group.host_points is not None]
    for host in snapshot.hosts if per_host else ():
        hypervisor = host.get("hypervisor")
        domains = [d for d in snapshot.domains if d.hypervisor == hypervisor]
        for group in per_host:
            points += group.host_points(host, domains, cycle_ns)
    for group in groups:
        if group.batch_points is not None:
            points += group.batch_points(snapshot)
    return points


def shape_snapshot(
    snapshot: Snapshot,
    history: History,
    measurements: FrozenSet[str] = frozenset(MEASUREMENTS),
    groups: Sequence[Group] = (),
    cycle_ns: Optional[int] = None,
    devices: DeviceFilter = EVERY_DEVICE,
    plans: Optional[ShapePlans] = None,
) -> Tuple[Batch, Dict[str, Reading]]:
    """All points of one cycle (a planned domain's as one Lines), and the history the next cycle needs.

    groups: the ``--collect`` groups on this run, in registry order;
    cycle_ns: how long the previous cycle took, newline to flush (vm_host);
    devices: ``--device`` / ``--exclude-device``;
    plans: the long-running process's plans (kvm_telegraf/plans.py), used for the default four measurements
    without groups; None: every domain field by field.

    History is keyed by UUID (and host) and rebuilt from this snapshot alone, so a domain
    that vanished leaves nothing behind and a restarted one (new id) starts over.
    """
    points: Batch = []
    new_history: Dict[str, Reading] = {}
    planned = plans if plans is not None and not groups and measurements == DEFAULT_MEASUREMENTS else None
    for domain in snapshot.domains:
        key = history_key(domain)
        previous = history.get(key)
        # The plan of the domain's shape, its lines as one Lines; else the plain path, field by field
        shaped = planned.shape(domain, snapshot, previous) if planned is not None else None
        if shaped is None:
            of_domain, reading = shape_domain(domain, snapshot, previous, measurements, groups, devices)
        else:
            of_domain, reading = shaped
            if devices.active:
                of_domain = [point for point in each_point(of_domain) if _device_chosen(point, devices)]
        points += of_domain
        if reading is not None:
            new_history[key] = reading
    if groups:
        points += batch_points(snapshot, groups, cycle_ns)
    if plans is not None:
        plans.end_batch()
    return points, new_history
