"""Events: libvirt's numbers as words, the bounded queue, cache invalidation, vm_events points and their timestamps.

The lab tests (test_e2e_events.py) show the real event loop; these pin what it hands on.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from typing import Any, Dict, Iterator, List

import pytest

from kvm_telegraf import libvirt_facts
from kvm_telegraf.collect import Collector
from kvm_telegraf.connection import Connection
from kvm_telegraf.domain_filter import DomainFilter
from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.events import EVENT_THREAD, EventQueue, start_event_loop
from kvm_telegraf.groups import resolve
from kvm_telegraf.hosts import HostSet
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import DomainEvent, Snapshot, snapshot_to_json, snapshots_from_json
from tests.conftest import load_snapshots
from tests.harness.loglines import log_lines
from tests.replay import ReplayConnection

libvirt = pytest.importorskip("libvirt")


class CountingReplay(ReplayConnection):
    def __init__(self, snapshots: List[Snapshot]) -> None:
        super().__init__(snapshots)
        self.xml_reads: Counter = Counter()

    def getAllDomainStats(self, stats: int, flags: int):  # noqa: N802 - libvirt's API
        records = super().getAllDomainStats(stats, flags)
        reads = self.xml_reads

        class Counting:
            def __init__(self, dom: Any) -> None:
                self._dom = dom

            def XMLDesc(self, flags: int) -> str:  # noqa: N802 - libvirt's API
                reads[self._dom.name()] += 1
                return self._dom.XMLDesc(flags)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._dom, name)

        return [(Counting(dom), s) for dom, s in records]


@pytest.fixture
def running() -> List[Snapshot]:
    return load_snapshots("lab-running.json")


def collector_over(snapshots: List[Snapshot], **options: Any):
    source = CountingReplay(snapshots)
    return Collector(Connection("replay:///", lambda _uri: source), **options), source


def event_of(snapshot: Snapshot, event: str, at: int = 5, index: int = 0, **fields: Any) -> DomainEvent:
    domain = snapshot.domains[index]
    return DomainEvent(at, domain.uuid, domain.name, event, **fields)


def test_the_event_numbers_are_libvirts_own():
    for name in ("LIFECYCLE", "REBOOT", "WATCHDOG", "IO_ERROR_REASON", "DEVICE_REMOVED", "TUNABLE"):
        assert getattr(libvirt_facts, f"EVENT_{name}") == getattr(libvirt, f"VIR_DOMAIN_EVENT_ID_{name}")
    for name in ("AGENT_LIFECYCLE", "DEVICE_ADDED", "MIGRATION_ITERATION", "JOB_COMPLETED", "METADATA_CHANGE"):
        assert getattr(libvirt_facts, f"EVENT_{name}") == getattr(libvirt, f"VIR_DOMAIN_EVENT_ID_{name}")
    for number, (kind, details) in enumerate(libvirt_facts.LIFECYCLE_EVENTS):
        assert getattr(libvirt, f"VIR_DOMAIN_EVENT_{kind.upper()}") == number
        named = []
        for detail_number, detail in enumerate(details):
            constant = f"VIR_DOMAIN_EVENT_{kind.upper()}_{detail.upper().replace('_', '')}"
            candidates = [n for n in dir(libvirt) if n.replace("_", "") == constant.replace("_", "")]
            named.append(bool(candidates))
            assert not candidates or getattr(libvirt, candidates[0]) == detail_number, constant
        # An older binding lacks the newest details only (libvirt-python 7.0: resumed/postcopy_failed, from 8.5)
        assert named == sorted(named, reverse=True) and named[0], (kind, named)


def test_the_event_loop_runs_on_one_daemon_thread_however_often_it_is_started():
    assert start_event_loop() and start_event_loop()
    (thread,) = [t for t in threading.enumerate() if t.name == EVENT_THREAD]
    assert thread.daemon, "it must never keep the process alive"


def test_a_number_newer_than_the_table_stays_a_number():
    assert libvirt_facts.word(libvirt_facts.IO_ERROR_ACTIONS, 2) == "report"
    assert libvirt_facts.word(libvirt_facts.IO_ERROR_ACTIONS, 9) == "9"


def test_a_full_queue_keeps_the_newest_events_and_counts_the_dropped_ones(running):
    events = EventQueue(size=3)
    for at in range(5):
        events.put(event_of(running[0], "rebooted", at=at))
    taken, dropped = events.take()
    assert [event.timestamp_ns for event in taken] == [2, 3, 4] and dropped == 2
    assert events.take() == ((), 0), "taking empties it and resets the count"


def test_a_batch_that_dropped_events_says_so_in_one_warning(running):
    collector, _ = collector_over(running, events=EventQueue(size=2))
    for at in range(4):
        collector.domain_event(event_of(running[0], "rebooted", at=at))
    with log_lines() as lines:
        snapshot = collector.collect()
        collector.collect()
    assert len(snapshot.events) == 2
    assert lines == ["W! 2 domain events were dropped since the last batch (more than 2 queued); the newest are kept"]


@pytest.mark.parametrize("event", ["defined", "started", "device_added", "device_removed", "metadata_changed"])
def test_an_event_that_changes_a_domains_configuration_has_only_that_one_read_again(running, event):
    collector, source = collector_over(running)
    collector.collect()
    collector.domain_event(event_of(running[0], event))
    collector.collect()
    assert source.xml_reads == Counter({"ktlab-01": 2, "ktlab-02": 1})


def test_a_tunables_change_has_the_configuration_read_again_but_is_no_point(running):
    collector, source = collector_over(running, events=EventQueue())
    collector.collect()
    collector.domain_event(event_of(running[0], "tunables_changed"))
    assert collector.collect().events == ()
    assert source.xml_reads["ktlab-01"] == 2


def test_a_suspend_changes_no_configuration(running):
    collector, source = collector_over(running)
    collector.collect()
    collector.domain_event(event_of(running[0], "suspended", detail="paused"))
    collector.collect()
    assert set(source.xml_reads.values()) == {1}


def test_without_collect_events_nothing_is_queued(running):
    collector, _ = collector_over(running)
    collector.domain_event(event_of(running[0], "rebooted"))
    assert collector.collect().events == ()


def test_events_of_domains_the_filter_leaves_out_are_left_out_too(running):
    collector, _ = collector_over(running, events=EventQueue(), domain_filter=DomainFilter(("ktlab-02",)))
    collector.domain_event(event_of(running[0], "rebooted"))
    collector.domain_event(event_of(running[0], "rebooted", index=1))
    assert [event.name for event in collector.collect().events] == ["ktlab-02"]


def test_each_event_is_one_point_at_its_own_time_tagged_like_its_domain(running):
    snapshot = dataclasses.replace(
        running[0],
        events=(
            event_of(running[0], "stopped", at=11, detail="destroyed"),
            event_of(running[0], "io_error", at=12, device="virtio-disk1", action="report", reason="enospc"),
        ),
    )
    points, _ = shape_snapshot(snapshot, {}, groups=resolve(["events"]))
    events = [point for point in points if point.measurement == "vm_events"]
    uuid = running[0].domains[0].uuid
    text = LineEncoder().encode(events, snapshot.timestamp_ns)
    assert text == (
        f'vm_events,event=stopped,uuid={uuid},vm=ktlab-01 detail="destroyed",count=1i 11\n'
        f'vm_events,event=io_error,uuid={uuid},vm=ktlab-01 device="virtio-disk1",action="report",'
        f'reason="enospc",count=1i 12\n'
    )


def test_the_other_points_of_the_batch_keep_the_batchs_timestamp(running):
    snapshot = dataclasses.replace(running[0], events=(event_of(running[0], "rebooted", at=11),))
    points, _ = shape_snapshot(snapshot, {}, groups=resolve(["events"]))
    stamps = Counter(line.rsplit(" ", 1)[1] for line in LineEncoder().encode(points, 99).splitlines())
    assert stamps == Counter({"11": 1, "99": len(points) - 1})


def test_an_undefined_domain_gone_from_the_snapshot_still_gets_its_name_and_host(running):
    gone = DomainEvent(
        7, "0b0e7f4c-0000-4000-8000-000000000001", "old", "undefined", detail="removed", hypervisor="kvm1"
    )
    points, _ = shape_snapshot(Snapshot(9, (), events=(gone,)), {}, groups=resolve(["events"]))
    assert [dict(point.tags) for point in points] == [
        {"event": "undefined", "hypervisor": "kvm1", "uuid": gone.uuid, "vm": "old"}
    ]


def test_events_are_not_shaped_unless_asked_for(running):
    snapshot = dataclasses.replace(running[0], events=(event_of(running[0], "rebooted"),))
    points, _ = shape_snapshot(snapshot, {})
    assert "vm_events" not in {point.measurement for point in points}


def test_a_snapshot_file_keeps_its_events_and_one_without_stays_as_it_was(running):
    assert '"events"' not in snapshot_to_json(running)
    with_events = [dataclasses.replace(running[0], events=(event_of(running[0], "watchdog", action="reset"),))]
    assert snapshots_from_json(snapshot_to_json(with_events)) == with_events


@pytest.fixture
def two_hosts(running) -> Iterator[HostSet]:
    collectors = [
        Collector(Connection(uri, lambda _uri, h=host: ReplayConnection(running, h)), events=EventQueue())
        for uri, host in (("qemu+ssh://a/system", "kvm-a"), ("qemu+ssh://b/system", "kvm-b"))
    ]
    hosts = HostSet(collectors, deadline_s=5)
    yield hosts
    hosts.close()


def test_the_events_of_several_hosts_are_merged_in_time_order_each_naming_its_host(running, two_hosts):
    first, second = (host.collector for host in two_hosts.hosts)
    first.domain_event(event_of(running[0], "rebooted", at=30))
    second.domain_event(event_of(running[0], "rebooted", at=20))
    events = two_hosts.collect().events
    assert [(event.timestamp_ns, event.hypervisor) for event in events] == [(20, "kvm-b"), (30, "kvm-a")]


# --- the events libvirt added since 9.0, and the ones not registered before ---------------------------------


@pytest.fixture(scope="module")
def sid_events() -> List[Snapshot]:
    """tests/record_snapshots.py sid-events: kvm-telegraf on sid's Python and libvirt-python 12.8, libvirt 12.8."""
    return load_snapshots("sid-events.json")


def event_points(snapshots: List[Snapshot]) -> List[tuple]:
    history: dict = {}
    rows = []
    for snapshot in snapshots:
        points, history = shape_snapshot(snapshot, history, groups=resolve(["events"]))
        rows += [(dict(p.tags)["event"], dict(p.fields)) for p in points if p.measurement == "vm_events"]
    return rows


def test_the_events_triggered_live_on_libvirt_12_are_points_with_what_they_carry(sid_events):
    rows = event_points(sid_events)
    assert [event for event, _ in rows] == [
        "balloon_changed",  # virsh setmem 94M: the balloon's target, then where the guest got to
        "nic_mac_changed",  # the guest's `ip link set eth0 address`, trustGuestRxFilters='yes'
        "block_threshold",  # virsh domblkthreshold vda 65536, and the guest's loop wrote past it
        "block_threshold",  # the same for the image under its index, as libvirt documents
        "balloon_changed",
        "block_job",  # virsh blockcopy vdb --finish: ready, then ended without a pivot
        "block_job",
    ]
    by_event = {event: fields for event, fields in reversed(rows)}  # the first of each
    assert by_event["nic_mac_changed"] == {
        "device": "net0",
        "old_mac": "52:54:00:6b:01:00",
        "new_mac": "52:54:00:6b:aa:01",
        "count": 1,
    }
    threshold = by_event["block_threshold"]
    assert threshold["device"] == "vda" and threshold["threshold_bytes"] == 65536 and threshold["excess_bytes"] > 0
    assert by_event["balloon_changed"]["memory_bytes"] % 1024 == 0
    assert [fields["detail"] for event, fields in rows if event == "block_job"] == ["ready", "canceled"]
    assert {fields["job"] for event, fields in rows if event == "block_job"} == {"copy"}


def test_a_recorded_events_values_keep_their_order_through_the_snapshot_file(sid_events):
    again = snapshots_from_json(snapshot_to_json(sid_events))
    assert [e.values for s in again for e in s.events] == [e.values for s in sid_events for e in s.events]
    (mac,) = [e for s in sid_events for e in s.events if e.event == "nic_mac_changed"]
    assert [name for name, _ in mac.values] == ["old_mac", "new_mac"]


@pytest.fixture
def callbacks() -> Iterator[Dict[int, Any]]:
    """The callbacks subscribe() registers, taken from a real libvirt connection (the test driver)."""
    from kvm_telegraf.events import subscribe

    conn = libvirt.open("test:///default")
    registered: Dict[int, Any] = {}
    conn.domainEventRegisterAny = lambda _dom, event_id, callback, _opaque: registered.setdefault(event_id, callback)
    queued: List[DomainEvent] = []

    class Sink:
        def domain_event(self, event: DomainEvent) -> None:
            queued.append(event)

    subscribe(conn, Sink(), lambda: 7, lambda: None)
    registered["queued"] = queued
    registered["dom"] = conn.lookupByName("test")
    yield registered
    conn.close()


@pytest.mark.parametrize(
    "event_id,args,expected",
    [
        (libvirt_facts.EVENT_CONTROL_ERROR, (), ("control_error", {})),
        (libvirt_facts.EVENT_BALLOON_CHANGE, (97280,), ("balloon_changed", {"values": (("memory_bytes", 99614720),)})),
        (
            libvirt_facts.EVENT_MEMORY_FAILURE,
            (1, 2, 3),
            (
                "memory_failure",
                {
                    "detail": "guest",
                    "action": "fatal",
                    "values": (("action_required", True), ("recursive", True)),
                },
            ),
        ),
        (
            libvirt_facts.EVENT_MEMORY_DEVICE_SIZE_CHANGE,
            ("virtiomem0", 1048576),
            ("memory_device_resized", {"device": "virtiomem0", "values": (("size_bytes", 1073741824),)}),
        ),
        (
            libvirt_facts.EVENT_BLOCK_JOB_2,
            ("vdb", 4, 1),
            ("block_job", {"device": "vdb", "detail": "failed", "values": (("job", "active_commit"),)}),
        ),
    ],
    ids=["control_error", "balloon_change", "memory_failure", "memory_device_size_change", "block_job_2"],
)
def test_each_new_callback_takes_libvirt_pythons_arguments_and_queues_its_event(callbacks, event_id, args, expected):
    # CONTROL_ERROR, MEMORY_FAILURE and MEMORY_DEVICE_SIZE_CHANGE could not be triggered on the lab (a broken
    # monitor, a host memory error, a virtio-mem guest driver): their arguments are libvirt-python's, as its
    # _dispatchDomainEvent*Callback pass them (conn, dom, ..., opaque).
    callbacks[event_id](None, callbacks["dom"], *args, None)
    (event,) = callbacks["queued"]
    name, fields = expected
    assert event == DomainEvent(7, event.uuid, "test", name, **fields)


def test_the_channel_lifecycle_event_is_not_subscribed_since_its_dispatch_kills_the_process(callbacks):
    # Seen on the sid flavour: libvirt-python 12.8 dies of a segfault dispatching VIR_DOMAIN_EVENT_ID_CHANNEL_LIFECYCLE
    # (29), while sid's virsh shows the event; the agent's own lifecycle events say what it would for the agent.
    assert 29 not in callbacks and libvirt_facts.EVENT_AGENT_LIFECYCLE in callbacks
    assert libvirt_facts.EVENT_NIC_MAC_CHANGE in callbacks and libvirt_facts.EVENT_BLOCK_THRESHOLD in callbacks
