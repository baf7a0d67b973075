"""A libvirt source that replays recorded snapshots: the connection the CLI tests pass in.

It answers exactly the calls the collector makes, with what real guests
returned when ``kvm-telegraf record`` ran.
"""

from __future__ import annotations

from typing import List

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


class ReplayConnection:
    """Each bulk call returns the next recorded cycle, the last one repeating."""

    def __init__(self, snapshots: List[Snapshot], hostname: str = "lab-host") -> None:
        self._snapshots = snapshots
        self._hostname = hostname
        self.calls: List[tuple] = []
        self.closed = False

    def getAllDomainStats(self, stats: int, flags: int):  # noqa: N802 - libvirt's API
        snapshot = self._snapshots[min(len(self.calls), len(self._snapshots) - 1)]
        self.calls.append((stats, flags))
        return [(ReplayDomain(d), dict(d.stats)) for d in snapshot.domains]

    def isAlive(self) -> bool:  # noqa: N802 - libvirt's API
        return True

    # The versions of the lab that recorded the snapshots (Debian 12): libvirt 9.0.0, QEMU 7.2.22.
    def getLibVersion(self) -> int:  # noqa: N802 - libvirt's API
        return 9_000_000

    def getType(self) -> str:  # noqa: N802 - libvirt's API
        return "QEMU"

    def getVersion(self) -> int:  # noqa: N802 - libvirt's API
        return 7_002_022

    def getHostname(self) -> str:  # noqa: N802 - libvirt's API
        return self._hostname

    def close(self) -> int:
        self.closed = True
        return 0
