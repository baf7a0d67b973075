"""The wiring: parsed options in, a snapshot source and a pipeline out.

Like httpie's ``core``, this does the work that ``cli.py`` only names: the CLI
defines and checks options and maps errors to exit codes; everything that
builds stages from them is here, importing the libvirt-facing modules only
when a run starts (``--help`` stays instant).
"""

from __future__ import annotations

from functools import partial
from typing import Any, BinaryIO, Callable, FrozenSet, Mapping, Optional

from kvm_telegraf.collect import Collector, DomainFilter
from kvm_telegraf.connection import Connection, open_read_only
from kvm_telegraf.domain_xml import NOVA_TAGS
from kvm_telegraf.events import EventQueue, start_event_loop, subscribe
from kvm_telegraf.groups import resolve
from kvm_telegraf.guest_agent import GuestAgents
from kvm_telegraf.hosts import HOST_GRACE_S, HostSet
from kvm_telegraf.pipeline import Pipeline, SnapshotSource
from kvm_telegraf.shape import EVENTS_MEASUREMENT, MEASUREMENTS
from kvm_telegraf.trigger import Shutdown
from kvm_telegraf.write import BatchWriter

Options = Mapping[str, Any]  # click's ctx.params of the main command


def measurements_of(options: Options) -> FrozenSet[str]:
    chosen = frozenset(options["measurement"] or MEASUREMENTS)
    return chosen | {EVENTS_MEASUREMENT} if "events" in groups_of(options) else chosen


def groups_of(options: Options) -> FrozenSet[str]:
    """The --collect groups (``all``: every one)."""
    return resolve(options.get("collect") or ())


# Groups that read the domain XML: vcpu's affinity, block_limits' disk names, guest's agent channel state.
XML_GROUPS = frozenset({"vcpu", "block_limits", "guest"})


def build_source(
    options: Options, want_config: Optional[bool] = None, opener: Callable = open_read_only, events: bool = False
) -> SnapshotSource:
    """One Collector per ``--uri``; several (or ``--hypervisor-tag``) make a HostSet.

    want_config: read each domain's XML always (True), never (False), or when
    vm_features, vm_devices (a NIC's MAC) or a metadata tag needs it (None).
    events: run libvirt's event loop, so each Collector's cache follows the
    domains' changes and ``--collect events`` has its events (the long-running
    modes; the operator tools read once and need neither).
    """
    metadata_tags = tuple(options["metadata_tag"]) + (NOVA_TAGS if options["nova"] else ())
    if want_config is None:
        want_config = (
            bool(measurements_of(options) & {"vm_features", "vm_devices"})
            or bool(metadata_tags)
            or bool(groups_of(options) & XML_GROUPS)
        )
    events = events and start_event_loop()  # before any connection opens, as libvirt requires
    queue_events = events and "events" in groups_of(options)
    collectors = []
    for uri in options["uri"]:
        collector = Collector(
            connection=Connection(uri, opener),
            domain_filter=DomainFilter(tuple(options["domain"]), tuple(options["exclude_domain"])),
            features_refresh_s=options["features_refresh"],
            timeout_s=options["timeout"],
            want_config=want_config,
            metadata_tags=metadata_tags,
            groups=groups_of(options),
            events=EventQueue() if queue_events else None,
        )
        if "guest" in groups_of(options):
            collector.guest_agents = GuestAgents(Connection(uri, opener), options["guest_refresh"])
        if events:
            collector.connection.subscriber = partial(_subscribe, collector)
        collectors.append(collector)
    if len(collectors) > 1 or options["hypervisor_tag"]:
        return HostSet(collectors, deadline_s=options["timeout"] + HOST_GRACE_S)
    return collectors[0]


def _subscribe(collector: Collector, conn: Any, died: Callable[[], None]) -> Callable[[], None]:
    """The collector's events on each of its connections (connection.Subscriber)."""
    return subscribe(conn, collector, collector.clock, died)


def build_pipeline(
    options: Options, stdout: BinaryIO, opener: Callable = open_read_only, events: bool = True
) -> Pipeline:
    """The source, the writer on *stdout* and the signals, for the measurements asked for.

    events: False for ``--once``, whose one read needs no event loop: subscribing costs
    libvirtd round trips before the first call, outside the batch deadline.
    """
    source = build_source(options, opener=opener, events=events)
    # A group the daemon lacks reads no data, so shape makes nothing of it.
    return Pipeline(source, BatchWriter(stdout), Shutdown(), measurements_of(options), groups_of(options))
