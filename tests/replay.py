"""A libvirt source that replays recorded snapshots: the connection the CLI tests pass in.

It answers exactly the calls the collector makes, with what real guests
returned when ``kvm-telegraf record`` ran.
"""

from __future__ import annotations

from typing import Any, Dict, List

from kvm_telegraf.groups.host import NODE_INFO_KEYS
from kvm_telegraf.libvirt_facts import JOB_STATS_COMPLETED, STATS_NO_DOMAINS
from kvm_telegraf.snapshot import DomainSample, Snapshot


class ReplayDomain:
    def __init__(self, sample: DomainSample) -> None:
        self._sample = sample

    def name(self) -> str:
        return self._sample.name

    def UUIDString(self) -> str:  # noqa: N802 - libvirt's API
        return self._sample.uuid

    def ID(self) -> int:  # noqa: N802 - libvirt's API
        return self._sample.id

    def XMLDesc(self, _flags: int) -> str:  # noqa: N802 - libvirt's API
        assert self._sample.config is not None
        return self._sample.config.xml

    def isPersistent(self) -> bool:  # noqa: N802 - libvirt's API
        return bool(self._sample.config and self._sample.config.persistent)

    def autostart(self) -> bool:
        return bool(self._sample.config and self._sample.config.autostart)

    def hasManagedSaveImage(self, _flags: int) -> bool:  # noqa: N802 - libvirt's API
        return bool(self._sample.config and self._sample.config.managed_save)

    # The --collect groups' calls, answered from what the recording's calls read.
    def vcpus(self) -> tuple:
        pcpus = self._sample.calls.get("pcpus", {})
        return [(int(n), 1, 0, cpu) for n, cpu in sorted(pcpus.items())], []

    def jobStats(self, flags: int) -> Dict[str, Any]:  # noqa: N802 - libvirt's API
        key = "completed_job" if flags & JOB_STATS_COMPLETED else "job"
        return dict(self._sample.calls.get(key, {"type": 0}))

    def blockIoTune(self, disk: str, _flags: int) -> Dict[str, Any]:  # noqa: N802 - libvirt's API
        return dict(self._sample.calls.get("iotune", {}).get(disk, {}))

    def diskErrors(self, _flags: int) -> Dict[str, int]:  # noqa: N802 - libvirt's API
        return dict(self._sample.calls.get("disk_errors", {}))

    def guestInfo(self, _types: int, _flags: int) -> Dict[str, Any]:  # noqa: N802 - libvirt's API
        """What the agent answered; an agent recorded as not responding fails, as libvirt's call would."""
        guest = self._sample.calls.get("guest", {})
        if not guest.get("responding"):
            raise RuntimeError("Guest agent is not responding: the recorded call did not answer")
        return dict(guest["info"])


class ReplayPool:
    def __init__(self, pool: Dict[str, Any]) -> None:
        self._pool = pool

    def name(self) -> str:
        return self._pool["name"]

    def info(self) -> list:
        return [self._pool[key] for key in ("state", "capacity", "allocation", "available")]

    def isActive(self) -> bool:  # noqa: N802 - libvirt's API
        return "volumes" in self._pool

    def numOfVolumes(self) -> int:  # noqa: N802 - libvirt's API
        return self._pool["volumes"]


class ReplayConnection:
    """Each cycle (a bulk call, or a domain list and the chosen domains' stats) returns the next recorded one,
    the last one repeating."""

    def __init__(self, snapshots: List[Snapshot], hostname: str = "lab-host") -> None:
        self._snapshots = snapshots
        self._hostname = hostname
        self._cycles = 0  # how many cycles have begun
        self.calls: List[tuple] = []  # (stats, flags) of each stats call
        self.closed = False

    def _next_cycle(self) -> Snapshot:
        self._cycles += 1
        return self._current()

    def _current(self) -> Snapshot:
        return self._snapshots[max(0, min(self._cycles, len(self._snapshots)) - 1)]

    def getAllDomainStats(self, stats: int, flags: int):  # noqa: N802 - libvirt's API
        if flags & STATS_NO_DOMAINS == STATS_NO_DOMAINS:  # a support probe: selects no domain, counts no cycle
            return []
        snapshot = self._next_cycle()
        self.calls.append((stats, flags))
        return [(ReplayDomain(d), dict(d.stats)) for d in snapshot.domains]

    def listAllDomains(self, _flags: int) -> List[ReplayDomain]:  # noqa: N802 - libvirt's API
        """A new cycle's domains: the stats call that follows reads the same cycle."""
        return [ReplayDomain(d) for d in self._next_cycle().domains]

    def domainListGetStats(self, doms: List[ReplayDomain], stats: int, flags: int):  # noqa: N802 - libvirt's API
        """The listed cycle's stats of the domains asked for (one gone meanwhile is skipped, as libvirt does)."""
        self.calls.append((stats, flags))
        wanted = {dom.UUIDString() for dom in doms}
        return [(ReplayDomain(d), dict(d.stats)) for d in self._current().domains if d.uuid in wanted]

    def _host(self) -> Dict[str, Any]:
        snapshot = self._current()
        return snapshot.hosts[0] if snapshot.hosts else {}

    def getInfo(self) -> list:  # noqa: N802 - libvirt's API
        node = self._host().get("node", {})
        return [node.get(key) for key in NODE_INFO_KEYS]

    def getMemoryStats(self, _cell: int, _flags: int) -> Dict[str, int]:  # noqa: N802 - libvirt's API
        return dict(self._host().get("memory", {}))

    def getCPUStats(self, _cpu: int, _flags: int) -> Dict[str, int]:  # noqa: N802 - libvirt's API
        return dict(self._host().get("cpu", {}))

    def listAllDevices(self, _flags: int) -> list:  # noqa: N802 - libvirt's API
        """None: the recording keeps what the node devices said, parsed (hostdevs), not their XML."""
        return []

    def listAllStoragePools(self, _flags: int) -> list:  # noqa: N802 - libvirt's API
        return [ReplayPool(pool) for pool in self._host().get("pools", ())]

    def isAlive(self) -> bool:  # noqa: N802 - libvirt's API
        return True

    def lookupByUUIDString(self, uuid: str) -> ReplayDomain:  # noqa: N802 - libvirt's API
        return ReplayDomain(next(d for d in self._current().domains if d.uuid == uuid))

    # The versions the recording's host group read (libvirt 12.8.0 for the sid flavour's), else the lab's that
    # recorded the snapshots without it (Debian 12): libvirt 9.0.0, QEMU 7.2.22.
    def getLibVersion(self) -> int:  # noqa: N802 - libvirt's API
        return self._host().get("node", {}).get("libvirt_version") or 9_000_000

    def getType(self) -> str:  # noqa: N802 - libvirt's API
        return "QEMU"

    def getVersion(self) -> int:  # noqa: N802 - libvirt's API
        return self._host().get("node", {}).get("hypervisor_version") or 7_002_022

    def getHostname(self) -> str:  # noqa: N802 - libvirt's API
        return self._hostname

    def close(self) -> int:
        self.closed = True
        return 0
