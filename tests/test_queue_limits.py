"""``--collect queue_limits``: the block layer's alignments and transfer sizes on vm_devices disks (libvirt 11.10).

Replayed from tests/snapshots/sid-stats.json, recorded on libvirt 12.8 (tests/record_snapshots.py sid-stats), whose
raw disks report request_alignment, iov_max and the two memory alignments; the other limits QEMU leaves unset
there, so their rows are the keys libvirt's virsh manual names.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List

import pytest

from kvm_telegraf.cli import main
from kvm_telegraf.groups import resolve
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import DomainSample, Snapshot
from tests.conftest import load_snapshots
from tests.harness.cli import runner
from tests.replay import ReplayConnection

GROUP = resolve(["queue_limits"])


@pytest.fixture(scope="module")
def sid() -> List[Snapshot]:
    return load_snapshots("sid-stats.json")


def disks(snapshot: Snapshot, domain: DomainSample, groups=GROUP) -> Dict[str, Dict]:
    points, _ = shape_snapshot(dataclasses.replace(snapshot, domains=(domain,), hosts=()), {}, groups=groups)
    return {dict(p.tags)["device"]: dict(p.fields) for p in points if dict(p.tags).get("type") == "disk"}


def test_each_disk_carries_the_limits_libvirt_reports_for_it_in_bytes(sid):
    domain = sid[0].domains[0]
    vdb = disks(sid[0], domain)["vdb"]
    assert {name: vdb[name] for name in vdb if "align" in name or name.startswith("iov")} == {
        "request_alignment_bytes": domain.stats["block.1.limits.request_alignment"],
        "memory_alignment_minimal_bytes": domain.stats["block.1.limits.memory_alignment_minimal"],
        "memory_alignment_optimal_bytes": domain.stats["block.1.limits.memory_alignment_optimal"],
        "iov_max": domain.stats["block.1.limits.iov_max"],
    }
    assert (vdb["memory_alignment_optimal_bytes"], vdb["iov_max"]) == (4096, 1024)


def test_without_the_group_the_disks_are_as_before(sid):
    domain = sid[0].domains[0]
    plain, limited = disks(sid[0], domain, ()), disks(sid[0], domain)
    assert {disk: {k: v for k, v in fields.items() if k in plain[disk]} for disk, fields in limited.items()} == plain
    assert not [name for fields in plain.values() for name in fields if "align" in name]


def test_the_transfer_and_discard_sizes_show_where_qemu_sets_them(sid):
    domain = sid[0].domains[0]
    documented = {
        "block.0.limits.transfer_optimal": 65536,
        "block.0.limits.transfer_max": 2097152,
        "block.0.limits.transfer_hw_max": 1048576,
        "block.0.limits.iov_hw_max": 256,
        "block.0.limits.discard_max": 1073741824,
        "block.0.limits.discard_alignment": 4096,
        "block.0.limits.write_zeroes_max": 1073741824,
        "block.0.limits.write_zeroes_alignment": 4096,
    }
    vda = disks(sid[0], dataclasses.replace(domain, stats={**domain.stats, **documented}))["vda"]
    assert [vda[name] for name in ("transfer_optimal_bytes", "transfer_max_bytes", "transfer_hw_max_bytes")] == [
        65536,
        2097152,
        1048576,
    ]
    assert (vda["iov_hw_max"], vda["discard_max_bytes"], vda["write_zeroes_alignment_bytes"]) == (256, 1073741824, 4096)


def test_on_libvirt_9_nothing_is_added_and_doctor_says_the_daemon_is_too_old():
    lab = load_snapshots("lab-groups.json")
    domain = lab[0].domains[0]
    assert disks(lab[0], domain) == disks(lab[0], domain, ())
    result = runner().invoke(
        main, ["--collect", "queue_limits", "doctor"], obj={"opener": lambda _: ReplayConnection(lab)}
    )
    assert (
        "warn  group queue_limits: on (--collect); this daemon does not support it (needs libvirt 11.10.0, found "
        "9.0.0)" in result.stdout.splitlines()
    )
