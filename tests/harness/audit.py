"""Every libvirt call a run makes, recorded on the real objects: which connection (read-only or read-write), which
object kind, which method; and whether each is a read.

Audit.install() replaces libvirt's two open functions with ones that open the real connection and hand back a
wrapper around it; each virDomain, virStoragePool or virNodeDevice a call returns is wrapped the same way and
remembers its connection's mode. The wrapper only records and passes the call through: libvirt answers every
call as it would without it (no mock). Non-callable attributes (``_o``, which libvirt-python's own code reads
from the objects) pass through; wrapped objects passed to a call (domainListGetStats' list) go in unwrapped. A
wrapper answers isinstance() as its object would (events.subscribe registers only on a real virConnect). The
event callbacks get libvirt's own objects: what they call (a domain's name and UUID, read in the client) is
not recorded.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Counter, Dict, List, Tuple

# What a method of these names does: read the daemon's state (nothing changes on the host or in any domain).
READS = frozenset(
    {
        # virConnect
        "getAllDomainStats",
        "domainListGetStats",
        "listAllDomains",
        "lookupByUUIDString",
        "getLibVersion",
        "getVersion",
        "getType",
        "getHostname",
        "getInfo",
        "getMemoryStats",
        "getCPUStats",
        "listAllStoragePools",
        "listAllDevices",
        "isAlive",
        # virDomain
        "name",
        "UUIDString",
        "ID",
        "XMLDesc",
        "isPersistent",
        "autostart",
        "hasManagedSaveImage",
        "jobStats",
        "vcpus",
        "blockIoTune",
        "diskErrors",
        "guestInfo",  # a query of the guest agent (guest-get-osinfo, -fsinfo, ...): it changes nothing
        # virStoragePool
        "info",
        "isActive",
        "numOfVolumes",
    }
)
# The client's own session: events and keepalive on this connection, closing it. No object on the host changes.
SESSION = frozenset(
    {
        "close",
        "domainEventRegisterAny",
        "domainEventDeregisterAny",
        "registerCloseCallback",
        "unregisterCloseCallback",
        "setKeepAlive",
    }
)
# The calls the guest agent's own connections are for, and all they may make.
AGENT_CALLS = frozenset({"lookupByUUIDString", "guestInfo", "getLibVersion", "close"})
WRAPPED = ("virConnect", "virDomain", "virStoragePool", "virNodeDevice")

Call = Tuple[str, str, str]  # (mode "ro"/"rw", object kind, method)


class Audit:
    """The calls seen, counted per (mode, kind, method), and the connections opened per mode."""

    def __init__(self, kinds: Tuple[str, ...] = WRAPPED) -> None:
        self.kinds = kinds  # the class names of the objects whose calls are recorded
        self.calls: Counter[Call] = collections.Counter()
        self.opened: Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def note(self, call: Call) -> None:
        with self._lock:
            self.calls[call] += 1

    def opener(self, mode: str, real_open: Callable[[str], Any]) -> Callable[[str], Any]:
        def audited_open(uri: str) -> Any:
            conn = real_open(uri)
            with self._lock:
                self.opened[mode] += 1
            return Audited(conn, mode, self)

        return audited_open

    def install(self, libvirt: Any) -> Callable[[], None]:
        """Wrap libvirt.openReadOnly ("ro") and libvirt.open ("rw"); returns how to put them back."""
        originals = libvirt.openReadOnly, libvirt.open
        libvirt.openReadOnly = self.opener("ro", originals[0])
        libvirt.open = self.opener("rw", originals[1])

        def restore() -> None:
            libvirt.openReadOnly, libvirt.open = originals

        return restore

    def not_reads(self) -> List[Call]:
        """Every call that is neither a read nor the session's own housekeeping."""
        return sorted(call for call in self.calls if call[2] not in READS | SESSION)

    def stats_modes(self) -> List[str]:
        """The modes of the connections the bulk statistics were read on."""
        return sorted({mode for mode, _, method in self.calls if method in ("getAllDomainStats", "domainListGetStats")})

    def read_write_calls(self) -> List[Call]:
        """Every call made on a read-write connection or an object it returned."""
        return sorted(call for call in self.calls if call[0] == "rw")

    def summary(self) -> Dict[str, Any]:
        """Plain figures for a report: connections opened per mode, calls per mode and method."""
        per_mode: Dict[str, Dict[str, int]] = {}
        for (mode, kind, method), count in sorted(self.calls.items()):
            per_mode.setdefault(mode, {})[f"{kind}.{method}"] = count
        return {
            "opened": dict(self.opened),
            "calls": per_mode,
            "total_calls": sum(self.calls.values()),
            "not_reads": [".".join(call) for call in self.not_reads()],
            "stats_modes": self.stats_modes(),
        }


class Audited:
    """A real libvirt object that records each method called on it, with its connection's mode."""

    def __init__(self, target: Any, mode: str, audit: Audit) -> None:
        self._target = target
        self._mode = mode
        self._audit = audit

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(wrapped, libvirt.virConnect) holds, as events.subscribe checks it
        return type(self._target)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr
        kind = type(self._target).__name__

        def call(*args: Any, **kwargs: Any) -> Any:
            self._audit.note((self._mode, kind, name))
            return self._wrap(attr(*[_unwrap(arg) for arg in args], **kwargs))

        return call

    def _wrap(self, value: Any) -> Any:
        kinds = self._audit.kinds
        if type(value).__name__ in kinds:
            return Audited(value, self._mode, self._audit)
        if isinstance(value, list):
            return [self._wrap(item) for item in value]
        if isinstance(value, tuple) and value and type(value[0]).__name__ in kinds:
            return (self._wrap(value[0]), *value[1:])  # getAllDomainStats: (virDomain, stats)
        return value


def _unwrap(arg: Any) -> Any:
    if isinstance(arg, Audited):
        return arg._target
    if isinstance(arg, list):
        return [_unwrap(item) for item in arg]
    return arg
