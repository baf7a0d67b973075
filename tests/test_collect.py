"""Collect: one bulk call per cycle, the configuration cache, the deadline, per-domain isolation.

Most tests replay recorded lab cycles through tests/replay.py; the isolation test uses the
real libvirtd, because only it raises the real error for a domain that vanished mid-cycle.
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from collections import Counter
from typing import Any, List

import pytest

from kvm_telegraf.collect import STATS_NOWAIT, Collector, DomainFilter, StuckCallGuard
from kvm_telegraf.connection import Connection, open_read_only
from kvm_telegraf.snapshot import Snapshot
from tests.conftest import load_snapshots, need
from tests.replay import ReplayConnection


class CountingDomain:
    """A replayed domain that counts configuration reads."""

    def __init__(self, domain: Any, reads: Counter) -> None:
        self._domain, self._reads = domain, reads

    def XMLDesc(self, flags: int) -> str:  # noqa: N802 - libvirt's API
        self._reads[self._domain.name()] += 1
        return self._domain.XMLDesc(flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._domain, name)


class CountingReplay(ReplayConnection):
    def __init__(self, snapshots: List[Snapshot]) -> None:
        super().__init__(snapshots)
        self.xml_reads: Counter = Counter()

    def getAllDomainStats(self, stats: int, flags: int):  # noqa: N802 - libvirt's API
        return [(CountingDomain(dom, self.xml_reads), s) for dom, s in super().getAllDomainStats(stats, flags)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def collector_over(snapshots: List[Snapshot], **options: Any):
    source = CountingReplay(snapshots)
    clock = Clock()
    collector = Collector(Connection("replay:///", lambda _uri: source), monotonic=clock, **options)
    return collector, source, clock


def with_domains(snapshot: Snapshot, keep) -> Snapshot:
    return dataclasses.replace(snapshot, domains=tuple(d for d in snapshot.domains if keep(d)))


def restarted(snapshot: Snapshot, name: str) -> Snapshot:
    return dataclasses.replace(
        snapshot,
        domains=tuple(dataclasses.replace(d, id=d.id + 100) if d.name == name else d for d in snapshot.domains),
    )


def test_each_domains_configuration_is_read_once_then_served_from_the_cache():
    collector, source, _ = collector_over(load_snapshots("lab-running.json"))
    for _ in range(3):
        collector.collect()
    assert set(source.xml_reads.values()) == {1} and len(source.xml_reads) == 2


def test_the_configuration_is_read_again_after_the_refresh_period():
    collector, source, clock = collector_over(load_snapshots("lab-running.json"), features_refresh_s=60)
    collector.collect()
    clock.now = 59
    collector.collect()
    clock.now = 61
    collector.collect()
    assert set(source.xml_reads.values()) == {2}


def test_forgetting_the_configurations_has_the_next_cycle_read_each_one_again():
    collector, source, _ = collector_over(load_snapshots("lab-running.json"))
    collector.collect()
    collector.forget_configs()
    collector.collect()
    collector.collect()
    assert source.xml_reads == Counter({"ktlab-01": 2, "ktlab-02": 2})


def test_a_restarted_domain_has_its_configuration_read_again():
    first, second = load_snapshots("lab-running.json")
    collector, source, _ = collector_over([first, restarted(second, "ktlab-02")])
    collector.collect()
    collector.collect()
    assert source.xml_reads == Counter({"ktlab-01": 1, "ktlab-02": 2})


def test_a_domain_that_goes_away_and_comes_back_is_not_served_a_stale_cache_entry():
    first, second = load_snapshots("lab-running.json")
    gone = with_domains(second, lambda d: d.name != "ktlab-02")
    collector, source, _ = collector_over([first, gone, second])
    for _ in range(3):
        collector.collect()
    assert source.xml_reads == Counter({"ktlab-01": 1, "ktlab-02": 2})


def with_new_tap(snapshot: Snapshot, name: str, tap: str) -> Snapshot:
    """*name*'s first NIC under another tap in the stats only: a hot-plug the cached XML has not seen."""

    def renamed(d):
        return dataclasses.replace(d, stats={**d.stats, "net.0.name": tap}) if d.name == name else d

    return dataclasses.replace(snapshot, domains=tuple(map(renamed, snapshot.domains)))


def test_a_tap_the_cached_configuration_does_not_name_has_the_configuration_read_again_once():
    first, second = load_snapshots("lab-running.json")
    collector, source, _ = collector_over([first, with_new_tap(second, "ktlab-02", "vnet99")])
    for _ in range(3):  # the third cycle does not read it again, although the XML still lacks the tap
        collector.collect()
    assert source.xml_reads == Counter({"ktlab-01": 1, "ktlab-02": 2})


def test_the_batch_window_starts_before_the_bulk_call_and_ends_after_it():
    ticks = iter(range(100, 200))
    collector = Collector(
        Connection("replay:///", lambda _uri: CountingReplay(load_snapshots("lab-running.json"))),
        clock=lambda: next(ticks),
    )
    snapshot = collector.collect()
    assert (snapshot.started_ns, snapshot.timestamp_ns) == (100, 101)


def test_filtered_out_domains_cost_no_configuration_read():
    collector, source, _ = collector_over(
        load_snapshots("lab-running.json"), domain_filter=DomainFilter(exclude=("*-02",))
    )
    snapshot = collector.collect()
    assert [d.name for d in snapshot.domains] == ["ktlab-01"] and set(source.xml_reads) == {"ktlab-01"}


class BlockingSource:
    """A bulk call that hangs until released, as libvirt does for a guest whose QEMU is stopped."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: List[int] = []

    def getAllDomainStats(self, groups: int, flags: int):  # noqa: N802 - libvirt's API
        self.calls.append(flags)
        if not flags & STATS_NOWAIT:
            self.release.wait(30)
        return []


def test_a_stuck_call_is_never_repeated_and_later_calls_use_nowait_until_it_returns():
    source, guard = BlockingSource(), StuckCallGuard(timeout_s=0.2)
    assert guard.call(source, 0) == ([], True)
    assert guard.call(source, 0) == ([], True)
    assert guard.stuck
    assert source.calls == [0, STATS_NOWAIT, STATS_NOWAIT], "one blocking call only, then NOWAIT at once"
    source.release.set()
    time.sleep(0.1)
    assert guard.call(source, 0) == ([], False)
    assert not guard.stuck


@pytest.mark.lab
def test_a_domain_that_vanishes_mid_cycle_loses_only_its_vm_features(lab):
    """The bulk call sees a transient domain; it is destroyed before its XML is read."""
    need(subprocess.run(["virsh", "list"], capture_output=True).returncode == 0, "libvirtd is not reachable")
    name = "ktlab-vanishing"
    xml = (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )
    subprocess.run(["virsh", "create", "/dev/stdin"], input=xml, text=True, check=True, capture_output=True)

    class DestroyAfterStats:
        def __init__(self, conn: Any) -> None:
            self._conn = conn

        def getAllDomainStats(self, groups: int, flags: int):  # noqa: N802 - libvirt's API
            records = self._conn.getAllDomainStats(groups, flags)
            subprocess.run(["virsh", "destroy", name], check=True, capture_output=True)
            return records

        def __getattr__(self, attr: str) -> Any:
            return getattr(self._conn, attr)

    collector = Collector(Connection("qemu:///system", lambda uri: DestroyAfterStats(open_read_only(uri))))
    try:
        snapshot = collector.collect()
    finally:
        subprocess.run(["virsh", "destroy", name], capture_output=True)
        collector.close()
    by_name = {d.name: d for d in snapshot.domains}
    assert by_name[name].config is None, "its XML could not be read: it no longer exists"
    assert by_name[name].stats["state.state"] == 1, "what the bulk call returned for it is kept"
    assert all(by_name[other].config is not None for other in lab)
