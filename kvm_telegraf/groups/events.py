"""``--collect events``: vm_events, one point per libvirt domain event between two batches.

The events are pushed by libvirt's event loop (kvm_telegraf/events.py) and queued
until the next collect takes them into the snapshot; this module only shapes them.
"""

from __future__ import annotations

from typing import Dict, List

from kvm_telegraf.fields import extra_tags, with_tags
from kvm_telegraf.group import Group
from kvm_telegraf.points import FieldValue, Point
from kvm_telegraf.snapshot import DomainEvent, Snapshot

EVENTS_MEASUREMENT = "vm_events"
EVENT_FIELDS = ("detail", "device", "action", "reason")


def event_fields(event: DomainEvent) -> Dict[str, FieldValue]:
    fields: Dict[str, FieldValue] = {}
    for name in EVENT_FIELDS:
        value = getattr(event, name)
        if value is not None:
            fields[name] = value
    fields.update(event.values)
    fields["count"] = 1  # so sum() counts events in every query language
    return fields


def vm_events(snapshot: Snapshot) -> List[Point]:
    """One point per event, stamped when it arrived, in arrival order; tagged like the domain's other points.

    A domain that is gone from the snapshot (undefined) still gets its ``vm`` and ``uuid``.

    ``vm_events,event=stopped,uuid=1b4e…,vm=web01 detail="destroyed",count=1i 1700000003512000000``
    """
    domains = {(domain.hypervisor, domain.uuid): domain for domain in snapshot.domains}
    points = []
    for event in snapshot.events:
        domain = domains.get((event.hypervisor, event.uuid))
        extra = extra_tags(domain) if domain is not None else ()
        if domain is None and event.hypervisor:
            extra = (("hypervisor", event.hypervisor),)
        tags = with_tags((("event", event.event), ("uuid", event.uuid), ("vm", event.name)), *extra)
        points.append(Point(EVENTS_MEASUREMENT, tags, event_fields(event), event.timestamp_ns))
    return points


GROUP = Group(
    name="events",
    help="vm_events: one point per libvirt domain event between two batches",
    since=5_000,
    events=True,
    measurements=(EVENTS_MEASUREMENT,),
    batch_points=vm_events,
)
