"""libvirt's event loop: what happens between two cycles, pushed rather than polled.

An edge of its own (docs/architecture.md): one daemon thread runs libvirt's
default event loop, each connection's callbacks turn what arrives into
DomainEvents and hand them to their Collector, which only queues them; the next
collect takes the queue. The thread never keeps the process alive and is never
waited for.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from typing import Any, Callable, Deque, List, Optional, Protocol, Tuple

from kvm_telegraf.libvirt_facts import (
    AGENT_REASONS,
    AGENT_STATES,
    BLOCK_JOB_STATUSES,
    BLOCK_JOB_TYPES,
    EVENT_AGENT_LIFECYCLE,
    EVENT_BALLOON_CHANGE,
    EVENT_BLOCK_JOB_2,
    EVENT_BLOCK_THRESHOLD,
    EVENT_CONTROL_ERROR,
    EVENT_DEVICE_ADDED,
    EVENT_DEVICE_REMOVED,
    EVENT_IO_ERROR_REASON,
    EVENT_JOB_COMPLETED,
    EVENT_LIFECYCLE,
    EVENT_MEMORY_DEVICE_SIZE_CHANGE,
    EVENT_MEMORY_FAILURE,
    EVENT_METADATA_CHANGE,
    EVENT_MIGRATION_ITERATION,
    EVENT_NIC_MAC_CHANGE,
    EVENT_REBOOT,
    EVENT_TUNABLE,
    EVENT_WATCHDOG,
    IO_ERROR_ACTIONS,
    KIB,
    LIFECYCLE_EVENTS,
    MEMORY_FAILURE_ACTION_REQUIRED,
    MEMORY_FAILURE_ACTIONS,
    MEMORY_FAILURE_RECIPIENTS,
    MEMORY_FAILURE_RECURSIVE,
    WATCHDOG_ACTIONS,
    word,
)
from kvm_telegraf.log import get_logger
from kvm_telegraf.points import FieldValue
from kvm_telegraf.snapshot import DomainEvent

log = get_logger(__name__)

# How many events wait for the next batch at most; beyond it the oldest go.
EVENT_QUEUE_SIZE = 10_000
# libvirt's keepalive: a probe after 5 s of silence, the connection dead after 3 unanswered ones.
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3
# Not a vm_events point, only a reason to read the domain's configuration again.
TUNABLES_CHANGED = "tunables_changed"
# After these the cached XML, flags and metadata of the domain are stale (the agent events: the
# guest agent channel's state in it, which says whether --collect guest asks the domain).
CONFIG_CHANGING = frozenset(
    {
        "defined",
        "undefined",
        "started",
        "device_added",
        "device_removed",
        "metadata_changed",
        TUNABLES_CHANGED,
        "agent_connected",
        "agent_disconnected",
    }
)


class EventSink(Protocol):
    """Who receives a connection's events (a Collector): called on the event thread, so it only queues."""

    def domain_event(self, event: DomainEvent) -> None: ...


class EventQueue:
    """Bounded and thread-safe: the event thread puts, the collecting thread takes everything at once."""

    def __init__(self, size: int = EVENT_QUEUE_SIZE) -> None:
        self._events: Deque[DomainEvent] = collections.deque(maxlen=size)
        self._lock = threading.Lock()
        self._dropped = 0

    def put(self, event: DomainEvent) -> None:
        with self._lock:
            if len(self._events) == self._events.maxlen:
                self._dropped += 1  # the deque drops the oldest: the newest say more about now
            self._events.append(event)

    def take(self) -> Tuple[Tuple[DomainEvent, ...], int]:
        """(the events in arrival order, how many were dropped) since the last take."""
        with self._lock:
            events, dropped = tuple(self._events), self._dropped
            self._events.clear()
            self._dropped = 0
        return events, dropped


EVENT_THREAD = "libvirt-events"


def start_event_loop() -> bool:
    """libvirt's default event loop on one daemon thread, once per process; call it before any connection opens.

    libvirt keeps the registered loop process-wide, so the running thread is
    what says it is there (a test process builds many pipelines). False without
    the libvirt binding: connections then fail anyway, with their own message.
    """
    if any(thread.name == EVENT_THREAD for thread in threading.enumerate()):
        return True
    try:
        import libvirt
    except ImportError:
        return False
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=_run, args=(libvirt,), name=EVENT_THREAD, daemon=True).start()
    return True


def _run(libvirt: Any) -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception as exc:  # libvirtError from one iteration: the next may do fine
            log.debug("libvirt event loop: %s", exc)
            time.sleep(0.1)


def _lifecycle(kind: int, detail: int) -> Tuple[str, Optional[str]]:
    if 0 <= kind < len(LIFECYCLE_EVENTS):
        name, details = LIFECYCLE_EVENTS[kind]
        return name, word(details, detail)
    return f"lifecycle_{kind}", str(detail)


def subscribe(conn: Any, sink: EventSink, clock: Callable[[], int], closed: Callable[[], None]) -> Callable[[], None]:
    """Register the domain callbacks, keepalive and the close callback on *conn*; returns how to undo it.

    *closed* is called (on the event thread) when libvirt notices the connection
    died, so the next cycle reconnects at once. A stand-in that is no libvirt
    connection (the tests' replay) has no events to give: nothing is registered.
    """
    import libvirt

    if not isinstance(conn, libvirt.virConnect):
        return lambda: None

    def put(dom: Any, event: str, values: Tuple[Tuple[str, FieldValue], ...] = (), **fields: Optional[str]) -> None:
        try:
            sink.domain_event(DomainEvent(clock(), dom.UUIDString(), dom.name(), event, values=values, **fields))
        except Exception as exc:  # a bug must not reach libvirt's dispatcher, which would print it unprefixed
            log.error("cannot queue a domain event: %s: %s", type(exc).__name__, exc)

    def lifecycle(_conn: Any, dom: Any, kind: int, detail: int, _opaque: Any) -> None:
        name, detail_word = _lifecycle(kind, detail)
        put(dom, name, detail=detail_word)

    def io_error(_conn: Any, dom: Any, _path: str, device: str, action: int, reason: str, _opaque: Any) -> None:
        put(dom, "io_error", device=device or None, action=word(IO_ERROR_ACTIONS, action), reason=reason or None)

    def agent(_conn: Any, dom: Any, state: int, reason: int, _opaque: Any) -> None:
        put(dom, AGENT_STATES.get(state, f"agent_{state}"), reason=word(AGENT_REASONS, reason))

    def block_threshold(_conn: Any, dom: Any, device: str, _path: str, threshold: int, excess: int, _o: Any) -> None:
        put(dom, "block_threshold", (("threshold_bytes", threshold), ("excess_bytes", excess)), device=device or None)

    def block_job(_conn: Any, dom: Any, disk: str, kind: int, status: int, _opaque: Any) -> None:
        values = (("job", word(BLOCK_JOB_TYPES, kind)),)
        put(dom, "block_job", values, device=disk or None, detail=word(BLOCK_JOB_STATUSES, status))

    def memory_failure(_conn: Any, dom: Any, recipient: int, action: int, flags: int, _opaque: Any) -> None:
        values = (
            ("action_required", bool(flags & MEMORY_FAILURE_ACTION_REQUIRED)),
            ("recursive", bool(flags & MEMORY_FAILURE_RECURSIVE)),
        )
        detail, action_word = word(MEMORY_FAILURE_RECIPIENTS, recipient), word(MEMORY_FAILURE_ACTIONS, action)
        put(dom, "memory_failure", values, detail=detail, action=action_word)

    def memory_device_size(_conn: Any, dom: Any, alias: str, kib: int, _opaque: Any) -> None:
        put(dom, "memory_device_resized", (("size_bytes", kib * KIB),), device=alias or None)

    def nic_mac_change(_conn: Any, dom: Any, alias: str, old: str, new: str, _opaque: Any) -> None:
        put(dom, "nic_mac_changed", (("old_mac", old), ("new_mac", new)), device=alias or None)

    callbacks = (
        (EVENT_LIFECYCLE, lifecycle),
        (EVENT_REBOOT, lambda _c, dom, _o: put(dom, "rebooted")),
        (EVENT_WATCHDOG, lambda _c, dom, action, _o: put(dom, "watchdog", action=word(WATCHDOG_ACTIONS, action))),
        (EVENT_IO_ERROR_REASON, io_error),
        (EVENT_DEVICE_ADDED, lambda _c, dom, device, _o: put(dom, "device_added", device=device)),
        (EVENT_DEVICE_REMOVED, lambda _c, dom, device, _o: put(dom, "device_removed", device=device)),
        (EVENT_AGENT_LIFECYCLE, agent),
        (EVENT_JOB_COMPLETED, lambda _c, dom, _params, _o: put(dom, "job_completed")),
        (EVENT_MIGRATION_ITERATION, lambda _c, dom, n, _o: put(dom, "migration_iteration", detail=str(n))),
        (EVENT_METADATA_CHANGE, lambda _c, dom, _type, _ns, _o: put(dom, "metadata_changed")),
        (EVENT_TUNABLE, lambda _c, dom, _params, _o: put(dom, TUNABLES_CHANGED)),
        (EVENT_CONTROL_ERROR, lambda _c, dom, _o: put(dom, "control_error")),
        (EVENT_BALLOON_CHANGE, lambda _c, dom, kib, _o: put(dom, "balloon_changed", (("memory_bytes", kib * KIB),))),
        (EVENT_BLOCK_JOB_2, block_job),
        (EVENT_BLOCK_THRESHOLD, block_threshold),
        (EVENT_MEMORY_FAILURE, memory_failure),
        (EVENT_MEMORY_DEVICE_SIZE_CHANGE, memory_device_size),
        (EVENT_NIC_MAC_CHANGE, nic_mac_change),
        # Not CHANNEL_LIFECYCLE (libvirt 12.4): libvirt-python 12.8 dies of a segfault dispatching it (seen on
        # the sid flavour, while sid's virsh shows the event), and the agent's own events cover its channel.
    )
    ids: List[int] = []
    for event_id, callback in callbacks:
        try:
            ids.append(conn.domainEventRegisterAny(None, event_id, callback, None))
        except libvirt.libvirtError as exc:  # a daemon or binding older than this event: the others still come
            log.debug("cannot subscribe to domain event %d: %s", event_id, exc)
    with contextlib.suppress(libvirt.libvirtError):  # a driver without keepalive (a local test driver)
        conn.setKeepAlive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)
    with contextlib.suppress(libvirt.libvirtError):
        conn.registerCloseCallback(lambda _conn, _reason, _opaque: closed(), None)

    def unsubscribe() -> None:
        """Deregister on a live connection; on a dead one each call fails at once, which is fine."""
        for callback_id in ids:
            with contextlib.suppress(libvirt.libvirtError):
                conn.domainEventDeregisterAny(callback_id)
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()

    return unsubscribe
