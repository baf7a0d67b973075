"""The call audit of tests/harness/audit.py, on replayed objects: it must see every call, and name a write.

The live test (tests/test_e2e_guest.py) relies on it failing on a call that is not a read; this shows it does.
"""

from __future__ import annotations

from typing import Any, List

from tests.conftest import load_snapshots
from tests.harness.audit import Audit
from tests.replay import ReplayConnection, ReplayDomain


class WritableDomain(ReplayDomain):
    def suspend(self) -> int:
        return 0


class WritableReplay(ReplayConnection):
    def getAllDomainStats(self, stats: int, flags: int) -> List[Any]:  # noqa: N802 - libvirt's API
        return [(WritableDomain(dom._sample), st) for dom, st in super().getAllDomainStats(stats, flags)]


def test_the_audit_records_each_call_with_its_mode_and_names_a_write_on_a_returned_domain():
    audit = Audit(kinds=("WritableDomain",))
    conn = audit.opener("ro", lambda _uri: WritableReplay(load_snapshots("lab-running.json")))("replay:///")
    records = conn.getAllDomainStats(0, 0)
    for dom, _ in records:
        dom.name()
    assert audit.not_reads() == [] and audit.stats_modes() == ["ro"]
    records[0][0].suspend()
    assert audit.not_reads() == [("ro", "WritableDomain", "suspend")]
    assert audit.calls["ro", "WritableDomain", "name"] == len(records) and audit.opened == {"ro": 1}


def test_the_audit_tells_the_read_write_connections_calls_from_the_read_only_ones():
    audit = Audit()
    snapshots = load_snapshots("lab-guest.json")
    stats = audit.opener("ro", lambda _uri: ReplayConnection(snapshots))("replay:///")
    agent = audit.opener("rw", lambda _uri: ReplayConnection(snapshots))("replay:///")
    stats.getAllDomainStats(0, 0)
    agent.getLibVersion()
    assert audit.stats_modes() == ["ro"] and audit.read_write_calls() == [("rw", "ReplayConnection", "getLibVersion")]
    agent.getAllDomainStats(0, 0)
    assert audit.stats_modes() == ["ro", "rw"]
