"""--collect guest: the agent calls (kvm_telegraf.guest_agent), their cadence and deadline, and the CLI's refusal.

The calls are driven with stand-in domains whose agent answers, fails or hangs (a threading.Event
holds the call, as libvirt 9.0 holds a call to an agent that does not answer); the shape and the
whole path are driven with the snapshot recorded from two lab guests with a real agent.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from kvm_telegraf import guest_agent, program
from kvm_telegraf.cli import main
from kvm_telegraf.collect import Collector
from kvm_telegraf.connection import Connection
from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.groups import resolve
from kvm_telegraf.guest_agent import GuestAgents, guest_info_types
from kvm_telegraf.libvirt_facts import GUEST_INFO_LOAD
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import DomainSample, Snapshot
from tests.conftest import load_snapshots
from tests.harness.cli import runner
from tests.harness.goldens import batches
from tests.replay import ReplayConnection

ANSWER = {"os.id": "debian", "hostname": "web01", "user.count": 1}
DEADLINE_S = 0.2  # the per-call deadline in these tests: the module's 2 s, shortened


@pytest.fixture(autouse=True)
def short_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guest_agent, "GUEST_CALL_DEADLINE_S", DEADLINE_S)


class Agent:
    """A domain's agent: answers, fails, or hangs until released; counts the calls."""

    def __init__(self, behaviour: str = "answer") -> None:
        self.behaviour = behaviour
        self.calls = 0
        self.release = threading.Event()

    def guestInfo(self, types: int, flags: int) -> Dict[str, Any]:  # noqa: N802 - libvirt's API
        self.calls += 1
        if self.behaviour == "hang":
            self.release.wait(10)
        if self.behaviour == "fail":
            raise RuntimeError("Guest agent is not responding")
        return dict(ANSWER)


class AgentHost:
    def __init__(self, agents: Dict[str, Agent], version: int = 9_000_000) -> None:
        self.agents, self.version = agents, version

    def lookupByUUIDString(self, uuid: str) -> Agent:  # noqa: N802 - libvirt's API
        return self.agents[uuid]

    def getLibVersion(self) -> int:  # noqa: N802 - libvirt's API
        return self.version

    def close(self) -> int:
        return 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def agents() -> Iterator[Dict[str, Agent]]:
    made = {"a": Agent("hang"), "b": Agent(), "c": Agent("fail")}
    yield made
    made["a"].release.set()


def agents_of(agents: Dict[str, Agent], clock: Any = time.monotonic, refresh_s: float = 60.0) -> GuestAgents:
    return GuestAgents(Connection("test:///", lambda _uri: AgentHost(agents)), refresh_s, clock)


def test_a_hung_agent_costs_its_own_answer_only_and_the_domains_behind_it_still_answer(agents):
    calls = agents_of(agents)
    began = time.monotonic()
    calls.ask(["a", "b", "c"], began + 5.0)  # "a" is asked first and hangs
    waited = time.monotonic() - began
    assert calls.results(["a", "b", "c"]) == {
        "a": {"responding": False},
        "b": {"responding": True, "info": ANSWER},
        "c": {"responding": False},
    }
    assert DEADLINE_S <= waited < 2.0  # the wait ends at the hung call's deadline, not at the cycle's


class RecordingHost(AgentHost):
    """A connection that records the agents asked on it and whether it was closed."""

    def __init__(self, agents: Dict[str, Agent]) -> None:
        super().__init__(agents)
        self.asked: List[str] = []
        self.closed = False

    def lookupByUUIDString(self, uuid: str) -> Agent:  # noqa: N802 - libvirt's API
        self.asked.append(uuid)
        return super().lookupByUUIDString(uuid)

    def close(self) -> int:
        self.closed = True
        return 0


def test_each_call_thread_asks_on_a_connection_of_its_own_and_closes_it_when_done(agents):
    """libvirt's client loses the wake-up of a call queued beside another thread's call that holds the connection's
    I/O: a healthy agent's call beside a hung one must not share its connection (tests/test_e2e_guest.py)."""
    opened: List[RecordingHost] = []

    def opener(_uri: str) -> RecordingHost:
        opened.append(RecordingHost(agents))
        return opened[-1]

    calls = GuestAgents(Connection("test:///", opener), 60.0)
    calls.ask(["a", "b"], time.monotonic() + 5.0)  # "a" hangs on one thread; "b" is served by another
    assert calls.results(["b"]) == {"b": {"responding": True, "info": ANSWER}}
    by_agent = {uuid: host for host in opened for uuid in host.asked}
    assert by_agent["a"] is not by_agent["b"] and opened[0].asked == []  # the shared one: the version only
    assert by_agent["b"].closed and not by_agent["a"].closed  # the hung call's thread still waits on its own
    agents["a"].release.set()
    deadline = time.monotonic() + 2.0
    while calls.pending()[1] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert by_agent["a"].closed


def test_a_domain_whose_call_is_still_out_is_not_asked_again_until_it_returns(agents):
    clock = Clock()
    calls = agents_of(agents, lambda: clock(), refresh_s=60.0)
    calls.ask(["a", "b"], time.monotonic() + 1.0)
    clock.now += 60.0
    calls.ask(["a", "b"], time.monotonic() + 1.0)
    assert (agents["a"].calls, agents["b"].calls) == (1, 2)
    agents["a"].release.set()
    deadline = time.monotonic() + 2.0
    while calls.pending()[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls.results(["a"]) == {"a": {"responding": True, "info": ANSWER}}  # its late answer is kept


def test_agents_are_asked_once_per_refresh_and_the_last_answer_is_kept_in_between():
    agent, clock = Agent(), Clock()
    calls = GuestAgents(Connection("test:///", lambda _uri: AgentHost({"b": agent})), 60.0, lambda: clock())
    for _ in range(3):  # three cycles 10 s apart
        calls.ask(["b"], time.monotonic() + 1.0)
        assert calls.results(["b"]) == {"b": {"responding": True, "info": ANSWER}}
        clock.now += 10.0
    assert agent.calls == 1
    clock.now += 30.0
    calls.ask(["b"], time.monotonic() + 1.0)
    assert agent.calls == 2


def test_a_domain_whose_agent_is_no_longer_connected_is_forgotten():
    calls = GuestAgents(Connection("test:///", lambda _uri: AgentHost({"b": Agent()})), 60.0)
    calls.ask(["b"], time.monotonic() + 1.0)
    assert calls.results([]) == {}
    assert calls.results(["b"]) == {}  # not answered since: no point until it is asked again


def test_load_averages_are_asked_for_only_from_libvirt_11_2_on():
    assert not guest_info_types(9_000_000) & GUEST_INFO_LOAD
    assert not guest_info_types(11_001_000) & GUEST_INFO_LOAD
    assert guest_info_types(11_002_000) & GUEST_INFO_LOAD


# --- shape, from the snapshot recorded on two lab guests with a real agent (the second one stopped) -----------


@pytest.fixture(scope="module")
def recorded() -> List[Snapshot]:
    return load_snapshots("lab-guest.json")


def test_the_recorded_agent_guests_have_their_agent_channel_connected_in_the_xml(recorded):
    states = {d.name: d.config.facts.agent_state for d in recorded[0].domains if d.config and d.config.facts}
    assert states == {"ktguest-01": "connected", "ktguest-02": "connected"}
    running = load_snapshots("lab-running.json")[0].domains[0]
    assert running.config is not None and running.config.facts is not None
    assert running.config.facts.agent_state is None  # no agent channel


def test_without_collect_guest_the_recorded_answers_make_no_point(recorded):
    points, _ = shape_snapshot(recorded[0], {})
    assert {p.measurement for p in points} == {"vm_metrics", "vm_features", "vm_devices", "vm_totals"}


def test_load_averages_recorded_on_the_sid_flavour_come_from_the_agent_as_floats():
    # tests/record_snapshots.py sid-guest: libvirt 12.8 asks sid's qemu-ga 11.1 for guest-get-load.
    sid = load_snapshots("sid-guest.json")
    history: dict = {}
    for snapshot in sid:
        points, history = shape_snapshot(snapshot, history, groups=resolve(["guest"]))
        (guest,) = [p for p in points if p.measurement == "vm_guest"]
        info = snapshot.domains[0].calls["guest"]["info"]
        assert [guest.fields[f"load_{m}"] for m in ("1m", "5m", "15m")] == [
            info[f"load.{m}"] for m in ("1m", "5m", "15m")
        ]
        assert all(type(guest.fields[f"load_{m}"]) is float for m in ("1m", "5m", "15m"))
        assert guest.fields["agent_responding"] is True


def test_load_averages_come_from_the_documented_keys_of_libvirt_11_2_as_floats(recorded):
    # The keys are libvirt's VIR_DOMAIN_GUEST_INFO_LOAD_1M/5M/15M (load.1m, load.5m, load.15m), doubles;
    # an integer load (a daemon that sends one) is written as a float too, so the field keeps one type.
    domain = next(d for d in recorded[0].domains if d.calls["guest"]["responding"])
    info = {**domain.calls["guest"]["info"], "load.1m": 0.5, "load.5m": 0.25, "load.15m": 1}
    domain = dataclasses.replace(domain, calls={"guest": {"responding": True, "info": info}})
    points, _ = shape_snapshot(dataclasses.replace(recorded[0], domains=(domain,)), {}, groups=resolve(["guest"]))
    (guest,) = [p for p in points if p.measurement == "vm_guest"]
    assert (guest.fields["load_1m"], guest.fields["load_5m"], guest.fields["load_15m"]) == (0.5, 0.25, 1.0)
    assert type(guest.fields["load_15m"]) is float


def test_a_filesystem_without_sizes_still_has_its_point_with_its_disks(recorded):
    domain = next(d for d in recorded[0].domains if d.calls["guest"]["responding"])
    info = {k: v for k, v in domain.calls["guest"]["info"].items() if not k.endswith(("total-bytes", "used-bytes"))}
    domain = dataclasses.replace(domain, calls={"guest": {"responding": True, "info": info}})
    points, _ = shape_snapshot(dataclasses.replace(recorded[0], domains=(domain,)), {}, groups=resolve(["guest"]))
    (fs,) = [p for p in points if p.measurement == "vm_filesystems"]
    assert fs.fields == {"disks": "vdc"} and dict(fs.tags)["mountpoint"] == "/mnt/data"


# --- the whole path, replayed ---------------------------------------------------------------------------------


def replay(snapshots: List[Snapshot]) -> Dict[str, Any]:
    return {"opener": lambda _uri: ReplayConnection(snapshots)}


def test_collect_guest_without_read_write_refuses_to_start_with_one_error_line(recorded):
    result = runner().invoke(main, ["--once", "--collect", "guest"], obj=replay(recorded))
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("E! --collect guest needs --read-write")


def test_read_write_from_a_config_file_lets_collect_guest_start(tmp_path, recorded):
    config = tmp_path / "kvm-telegraf.toml"
    config.write_text('collect = ["guest"]\nread_write = true\nguest_refresh = "30s"\n')
    result = runner().invoke(main, ["--config", str(config), "--once"], obj=replay(recorded))
    assert result.exit_code == 0, result.stderr
    assert "vm_guest," in result.stdout and "vm_filesystems," in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--read-write"],
        ["--read-write", "--collect", "all"],
        ["--read-write", "--collect", "vcpu", "--collect", "jobs"],
        ["--read-write", "doctor"],
        ["--read-write", "record", "out.json"],
    ],
)
def test_read_write_without_collect_guest_is_one_error_line_naming_both_options_and_exit_2(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # record writes nowhere it should not, should it start
    result = runner().invoke(main, [*args, "--once"] if "doctor" not in args and "record" not in args else args)
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("E! --read-write ") and "--collect guest" in line


@pytest.mark.parametrize("config_text", ["read_write = true\n", 'read_write = true\ncollect = ["all", "vcpu"]\n'])
def test_read_write_from_a_config_file_without_collect_guest_is_one_error_line_and_exit_2(tmp_path, config_text):
    config = tmp_path / "kvm-telegraf.toml"
    config.write_text(config_text)
    result = runner().invoke(main, ["--config", str(config), "--once"])
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("E! --read-write ") and "--collect guest" in line


def test_read_write_opens_the_statistics_connection_read_only_and_only_the_agents_read_write(monkeypatch, recorded):
    """libvirt's two open calls, replaced by ones that say which was used for what (tests/test_e2e_privilege.py
    checks the same on the live lab, every call made)."""
    opened: List[Tuple[str, ReplayConnection]] = []

    def opening(mode: str) -> Callable[[str], ReplayConnection]:
        def opener(_uri: str) -> ReplayConnection:
            opened.append((mode, ReplayConnection(recorded)))
            return opened[-1][1]

        return opener

    monkeypatch.setattr(program, "open_read_only", opening("ro"))
    monkeypatch.setattr(program, "open_read_write", opening("rw"))
    result = runner().invoke(main, ["--once", "--read-write", "--collect", "guest", "--collect", "all"])
    assert result.exit_code == 0, result.stderr
    assert "vm_guest," in result.stdout and opened[0][0] == "ro"
    assert [mode for mode, _ in opened[1:]] and all(mode == "rw" for mode, _ in opened[1:])
    assert opened[0][1].calls and not any(conn.calls for _, conn in opened[1:])  # the bulk reads


def test_a_replayed_run_writes_the_golden_guest_lines_asking_each_agent_once(recorded):
    lab = ReplayConnection(recorded)
    agent_host = CountingReplay(recorded)
    collector = Collector(
        Connection("replay:///", lambda _uri: lab),
        groups=resolve(["guest"]),
        own_connection=lambda: Connection("replay:///", lambda _uri: agent_host),
    )
    encoder, history, written = LineEncoder(), {}, []
    for _ in recorded:
        snapshot = collector.collect()
        snapshot = dataclasses.replace(snapshot, timestamp_ns=recorded[len(written)].timestamp_ns)
        points, history = shape_snapshot(snapshot, history, groups=resolve(["guest"]))
        written.append(encoder.encode(points, snapshot.timestamp_ns))
    guest_lines = [
        [line for line in batch.splitlines() if line.startswith(("vm_guest,", "vm_filesystems,"))] for batch in written
    ]
    golden = [
        [line for line in batch.splitlines() if line.startswith(("vm_guest,", "vm_filesystems,"))]
        for batch in batches("lab-guest")
    ]
    assert guest_lines == golden
    assert agent_host.lookups == 2  # two domains, asked in the first cycle only (--guest-refresh 60s)


class CountingReplay(ReplayConnection):
    def __init__(self, snapshots: List[Snapshot]) -> None:
        super().__init__(snapshots)
        self.lookups = 0

    def lookupByUUIDString(self, uuid: str) -> Any:  # noqa: N802 - libvirt's API
        self.lookups += 1
        return super().lookupByUUIDString(uuid)


def test_a_domain_sample_without_guest_calls_gives_no_guest_point():
    sample = DomainSample(name="x", uuid="u", id=1, stats={"state.state": 1})
    points, _ = shape_snapshot(Snapshot(timestamp_ns=1, domains=(sample,)), {}, groups=resolve(["guest"]))
    assert not [p for p in points if p.measurement in ("vm_guest", "vm_filesystems")]


def test_when_every_thread_waits_on_a_hung_agent_the_cycle_stops_waiting_at_the_calls_deadline(monkeypatch):
    monkeypatch.setattr(guest_agent, "GUEST_MAX_THREADS", 1)
    hung, healthy = Agent("hang"), Agent()
    calls = GuestAgents(Connection("test:///", lambda _uri: AgentHost({"a": hung, "b": healthy})), 60.0)
    try:
        began = time.monotonic()
        calls.ask(["a", "b"], began + 5.0)
        assert time.monotonic() - began < 2.0  # not the cycle's 5 s: "b" has no thread to wait for
        assert calls.results(["a", "b"]) == {"a": {"responding": False}}  # "b" waits, with no answer yet
        assert healthy.calls == 0
    finally:
        hung.release.set()
