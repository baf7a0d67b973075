"""The benchmark's compiled layouts print every batch byte for byte as shape + encode, stepping aside on any change.

Not shipped (benchmarks/layout_cache.py says why); these keep its side-by-side figures a fair comparison.

The reference is shape_snapshot + LineEncoder.encode (pinned by the goldens in
test_shape and test_encode). The cycles come from the recorded lab snapshots,
continued as a long-running process sees them: the same keys, counters moving on.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence

import pytest

from benchmarks import layout_cache as layout
from benchmarks.layout_cache import LayoutCache
from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.groups import GROUP_NAMES
from kvm_telegraf.points import INT64_MAX
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import DomainConfig, DomainSample, Snapshot
from tests.conftest import SNAPSHOTS, load_snapshots

INTERVAL_NS = 10_000_000_000
NOT_REPORTED = 2**64 - 1  # libvirt's -1, as the binding hands it over
RECORDINGS = sorted(path.name for path in SNAPSHOTS.glob("*.json"))
GROUP_SETS = {"none": frozenset(), "vcpu": frozenset({"vcpu"}), "all": frozenset(GROUP_NAMES)}


def moved_on(snapshot: Snapshot, step: int, before: Optional[Snapshot] = None) -> Snapshot:
    """The snapshot *step* intervals later, the keys unchanged: each counter that grew since *before* grows as much.

    Without *before*, every stat that is neither a count nor a state grows by a step of its own.
    """
    earlier = {domain.uuid: domain.stats for domain in before.domains} if before is not None else {}

    def grown(uuid: str, index: int, key: str, value: object) -> object:
        if type(value) is not int or not 0 < value < 2**40:
            return value
        if uuid in earlier:
            old = earlier[uuid].get(key)
            return value + step * (value - old) if type(old) is int and value > old else value
        if key.endswith((".count", "maximum", "current", "state", "reason", "name")):
            return value
        return value + step * (7 + index)

    domains = tuple(
        dataclasses.replace(
            domain,
            stats={key: grown(domain.uuid, i, key, value) for i, (key, value) in enumerate(domain.stats.items())},
        )
        for domain in snapshot.domains
    )
    shift = step * INTERVAL_NS
    started = snapshot.started_ns + shift if snapshot.started_ns is not None else None
    return dataclasses.replace(
        snapshot, timestamp_ns=snapshot.timestamp_ns + shift, domains=domains, started_ns=started
    )


def steady(snapshots: Sequence[Snapshot], extra: int = 3) -> List[Snapshot]:
    """The recording, then *extra* cycles more of its last one, moving on as its last two cycles did."""
    before = snapshots[-2] if len(snapshots) > 1 else None
    return [*snapshots, *(moved_on(snapshots[-1], step, before) for step in range(1, extra + 1))]


def changed(snapshot: Snapshot, change: Callable[[DomainSample], DomainSample]) -> Snapshot:
    return dataclasses.replace(snapshot, domains=tuple(change(domain) for domain in snapshot.domains))


def with_stats(domain: DomainSample, **updates: object) -> DomainSample:
    """The domain with stats set (a value) or removed (None); keys written with ``__`` for ``.``."""
    stats = dict(domain.stats)
    for key, value in updates.items():
        key = key.replace("__", ".")
        if value is None:
            stats.pop(key, None)
        else:
            stats[key] = value
    return dataclasses.replace(domain, stats=stats)


def reference_batches(cycles: Sequence[Snapshot], groups: FrozenSet[str]) -> List[str]:
    encoder, history, batches = LineEncoder(), {}, []
    for snapshot in cycles:
        points, history = shape_snapshot(snapshot, history, groups=groups)
        batches.append(encoder.encode(points, snapshot.timestamp_ns))
    return batches


def layout_batches(cycles: Sequence[Snapshot], groups: FrozenSet[str], monkeypatch) -> List[Dict]:
    """Each cycle's batch, and the domains it shaped on the reference path."""
    shaped: List[str] = []
    real = layout.shape_domain

    def spy(domain, *args, **kwargs):
        shaped.append(domain.name)
        return real(domain, *args, **kwargs)

    monkeypatch.setattr(layout, "shape_domain", spy)
    cache, encoder, result = LayoutCache(), LineEncoder(), []
    for snapshot in cycles:
        shaped.clear()
        result.append({"batch": cache.encode(snapshot, encoder, groups=groups), "shaped": list(shaped)})
    return result


def running_lab() -> List[Snapshot]:
    return steady(load_snapshots("lab-running.json"))


@pytest.mark.parametrize("groups", sorted(GROUP_SETS))
@pytest.mark.parametrize("recording", RECORDINGS)
def test_every_recorded_host_prints_exactly_what_shape_and_encode_print_cycle_after_cycle(
    recording, groups, monkeypatch
):
    cycles = steady(load_snapshots(recording))
    printed = layout_batches(cycles, GROUP_SETS[groups], monkeypatch)
    assert [cycle["batch"] for cycle in printed] == reference_batches(cycles, GROUP_SETS[groups])


@pytest.mark.parametrize("groups", ["none", "vcpu"])
def test_a_domain_whose_keys_stay_the_same_is_not_shaped_again_once_its_layout_is_compiled(groups, monkeypatch):
    cycles = running_lab()
    printed = layout_batches(cycles, GROUP_SETS[groups], monkeypatch)
    assert printed[0]["shaped"] == ["ktlab-01", "ktlab-02"]
    assert [cycle["shaped"] for cycle in printed[-2:]] == [[], []]
    assert all("cpu_percent=" in line for line in printed[-1]["batch"].splitlines() if line.startswith("vm_totals,"))


def test_groups_that_change_the_default_lines_leave_every_domain_to_shape_and_encode(monkeypatch):
    printed = layout_batches(running_lab(), frozenset({"block_limits"}), monkeypatch)
    assert printed[-1]["shaped"] == ["ktlab-01", "ktlab-02"]


def first_only(change: Callable[[DomainSample], DomainSample]) -> Callable[[DomainSample], DomainSample]:
    return lambda domain: change(domain) if domain.name == "ktlab-01" else domain


CHANGES = {
    "a counter libvirt reports as -1": lambda d: with_stats(d, net__0__rx__bytes=NOT_REPORTED),
    "a counter that vanishes": lambda d: with_stats(d, block__1__wr__bytes=None),
    "a stat that appears as an unread one vanishes": lambda d: with_stats(
        d, balloon__unused=4096, **{"balloon__last-update": None}
    ),
    "a NIC's tap renamed": lambda d: with_stats(d, net__0__name="vnet999"),
    "a disk renamed to its neighbour's name": lambda d: with_stats(d, block__1__name=d.stats["block.0.name"]),
    "a restart (new id)": lambda d: dataclasses.replace(d, id=d.id + 100),
    "a config read again, with new MACs": lambda d: dataclasses.replace(
        d, config=DomainConfig(d.config.xml.replace("52:54:00:", "52:54:01:"), d.config.persistent)
    ),
    "a QEMU that stopped answering": lambda d: dataclasses.replace(d, responding=False),
    "a device sum past int64": lambda d: with_stats(d, net__0__tx__bytes=INT64_MAX, net__1__tx__bytes=INT64_MAX),
    "a KiB value past int64 once scaled": lambda d: with_stats(d, balloon__rss=INT64_MAX // 2),
    "a string where a counter was": lambda d: with_stats(d, block__0__rd__reqs="7"),
    "a vCPU hot-plugged": lambda d: with_stats(d, vcpu__1__time=5, vcpu__1__wait=0, vcpu__1__delay=3, vcpu__1__state=1),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_domain_that_changes_is_shaped_and_encoded_that_cycle_and_printed_as_the_reference_does(change, monkeypatch):
    base = running_lab()
    mutated = [changed(snapshot, first_only(CHANGES[change])) for snapshot in base[3:]]
    cycles = [*base[:3], mutated[0], *base[4:]]  # the change for one cycle, then back
    cycles += [mutated[-1], moved_on(mutated[-1], 1)]  # and again, for good
    printed = layout_batches(cycles, frozenset(), monkeypatch)
    assert [cycle["batch"] for cycle in printed] == reference_batches(cycles, frozenset())
    assert printed[3]["shaped"] == ["ktlab-01"]
    assert printed[2]["batch"] != printed[3]["batch"]


def test_a_disk_whose_requests_went_back_loses_its_latency_through_its_layout_as_through_shape(monkeypatch):
    base = running_lab()
    went_back = changed(base[4], first_only(lambda d: with_stats(d, block__0__rd__reqs=0)))
    cycles = [*base[:4], went_back]
    printed = layout_batches(cycles, frozenset(), monkeypatch)
    assert [cycle["batch"] for cycle in printed] == reference_batches(cycles, frozenset())
    assert printed[-1]["shaped"] == []
    vda = [line for line in printed[-1]["batch"].splitlines() if "device=vda" in line and "vm=ktlab-01" in line]
    assert "read_latency_ns=" not in vda[0] and "write_latency_ns=" in vda[0]
