"""Issue 23: what a guest's agent or a domain's XML gives is bounded where it becomes a field or a tag.

The data is recorded from the lab's agent and Nova guests (tests/snapshots), with values made as big as a
guest or a domain definition can make them; the agent calls run against stand-in domains that answer or
refuse as libvirt 9.0 does (tests/test_e2e_guest_bounds.py drives a real flooded guest).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict, List, Tuple

import pytest

from kvm_telegraf.cli import main
from kvm_telegraf.collect import Collector
from kvm_telegraf.connection import Connection
from kvm_telegraf.domain_configs import ConfigCache
from kvm_telegraf.domain_xml import (
    METADATA_NAME_MAX_CHARS,
    METADATA_TAGS_MAX,
    METADATA_VALUE_MAX_CHARS,
    NOVA_TAGS,
    parse_domain_xml,
    parse_metadata_tag,
)
from kvm_telegraf.guest_agent import GUEST_STRING_MAX_CHARS, GUEST_WHOLE_RETRY_S, GuestAgents
from kvm_telegraf.libvirt_facts import ERR_RPC, GUEST_INFO_FILESYSTEM, GUEST_INFO_USERS
from kvm_telegraf.snapshot import DomainConfig, Snapshot
from tests.conftest import load_snapshots
from tests.harness.bounds import SERIES_KEY_LIMIT, encoded, fields_of, series_key, tags_of, with_guest_info
from tests.harness.cli import runner
from tests.harness.influxdb import quote_ident
from tests.harness.loglines import log_lines
from tests.replay import ReplayConnection

CRAB = "\U0001f980"  # four bytes of UTF-8, and no escape: the most bytes one character can take in a line
TOO_MANY = "too many parameters '16018' for limit '2048'"  # libvirt 9.0's text, as the lab's flooded guest gave it


@pytest.fixture(scope="module")
def guest_snapshot() -> Snapshot:
    return load_snapshots("lab-guest.json")[0]


def guest_lines(snapshot: Snapshot, measurement: str) -> List[str]:
    return [line for line in encoded(snapshot, ["guest"]) if line.startswith(measurement + ",")]


# --- guest strings, where they become fields and tags -----------------------------------------------------------


@pytest.mark.parametrize(
    "key, field",
    [("os.id", "os_id"), ("os.version-id", "os_version_id"), ("os.kernel-release", "kernel_release")]
    + [("hostname", "hostname"), ("timezone.name", "timezone")],
)
@pytest.mark.parametrize("character", ["x", "é", CRAB, '"'])
def test_each_guest_string_field_keeps_its_first_1024_characters_and_says_how_many_more_it_had(
    guest_snapshot, key, field, character
):
    snapshot = with_guest_info(guest_snapshot, **{key: character * 100_000})
    (line,) = guest_lines(snapshot, "vm_guest")
    value = fields_of(line)[field]
    kept = character * GUEST_STRING_MAX_CHARS
    assert value == '"' + kept.replace('"', '\\"') + f'...({100_000 - GUEST_STRING_MAX_CHARS} more characters)"'
    assert len(line.encode()) < 2 * 4 * GUEST_STRING_MAX_CHARS + 1024  # escaped, multi-byte: still bounded


def test_a_guest_string_of_exactly_the_bound_is_kept_whole(guest_snapshot):
    snapshot = with_guest_info(guest_snapshot, **{"hostname": CRAB * GUEST_STRING_MAX_CHARS})
    (line,) = guest_lines(snapshot, "vm_guest")
    assert fields_of(line)["hostname"] == f'"{CRAB * GUEST_STRING_MAX_CHARS}"'


@pytest.mark.parametrize("key", ["fs.0.mountpoint", "fs.0.fstype"])
@pytest.mark.parametrize("character", ["m", CRAB, ",", " ", "="])
def test_a_long_mountpoint_or_filesystem_type_is_cut_in_its_tag_and_the_series_key_stays_bounded(
    guest_snapshot, key, character
):
    snapshot = with_guest_info(guest_snapshot, **{key: "/" + character * 200_000})
    (line,) = guest_lines(snapshot, "vm_filesystems")
    tag = "mountpoint" if key.endswith("mountpoint") else "fstype"
    value = tags_of(line)[tag]
    assert value.startswith("/" + character * (GUEST_STRING_MAX_CHARS - 1))
    assert value.endswith(f"...({200_001 - GUEST_STRING_MAX_CHARS} more characters)")
    assert len(series_key(line).encode()) < 4 * GUEST_STRING_MAX_CHARS + 1024


def test_the_disks_of_a_filesystem_are_cut_like_any_guest_string(guest_snapshot):
    aliases = {f"fs.0.disk.{i}.alias": f"virtio-disk{i}" for i in range(1000)}
    snapshot = with_guest_info(guest_snapshot, **{"fs.0.disk.count": 1000}, **aliases)
    (line,) = guest_lines(snapshot, "vm_filesystems")
    disks = fields_of(line)["disks"]
    assert isinstance(disks, str) and disks.startswith('"virtio-disk0,virtio-disk1,')
    assert len(disks) < GUEST_STRING_MAX_CHARS + 40


# --- the agent calls: what was cut said once per domain; an answer too big for libvirt asked again without its
# --- growing part, said once per episode --------------------------------------------------------------------


class RpcError(Exception):
    """libvirt's refusal as the binding raises it: libvirtError with VIR_ERR_RPC."""

    def get_error_code(self) -> int:
        return ERR_RPC

    def get_error_message(self) -> str:
        return str(self)


class FloodedAgent:
    """A domain whose agent answers with *answer*; libvirt refuses it for too many parameters while *overflowing*
    (a bit of the info types) is asked for. Records the types of each call."""

    def __init__(self, name: str, answer: Dict[str, Any], overflowing: int = 0) -> None:
        self._name, self.answer, self.overflowing = name, answer, overflowing
        self.asked: List[int] = []

    def name(self) -> str:
        return self._name

    def guestInfo(self, types: int, flags: int) -> Dict[str, Any]:  # noqa: N802 - libvirt's API
        self.asked.append(types)
        if types & self.overflowing:
            raise RpcError(TOO_MANY)
        answer = dict(self.answer)
        if not types & GUEST_INFO_FILESYSTEM:
            answer = {k: v for k, v in answer.items() if not k.startswith("fs.")}
        if not types & GUEST_INFO_USERS:
            answer = {k: v for k, v in answer.items() if not k.startswith("user.")}
        return answer


class Host:
    def __init__(self, agents: Dict[str, Any]) -> None:
        self.agents = agents

    def lookupByUUIDString(self, uuid: str) -> Any:  # noqa: N802 - libvirt's API
        return self.agents[uuid]

    def getLibVersion(self) -> int:  # noqa: N802 - libvirt's API
        return 9_000_000

    def close(self) -> int:
        return 0


ANSWER = {"os.id": "debian", "hostname": "web01", "user.count": 1, "user.0.name": "root", "fs.count": 1}
ANSWER.update({"fs.0.mountpoint": "/", "fs.0.fstype": "ext4"})


def refreshes(agents: Dict[str, Any], count: int) -> Tuple[List[Dict[str, Any]], List[str]]:
    """*count* refreshes of the agents, back to back: each one's results, and the log lines of all."""
    calls = GuestAgents(Connection("test:///", lambda _uri: Host(agents)), refresh_s=0.0)
    results = []
    with log_lines() as lines:
        for _ in range(count):
            calls.ask(list(agents), time.monotonic() + 2.0)
            results.append(calls.results(list(agents)))
    return results, lines


def test_long_strings_from_an_agent_are_said_once_per_domain_with_their_keys_and_lengths():
    strings = {"os.id": "x" * 4_000_000, "fs.0.mountpoint": "/" + "m" * 99_999, "user.0.name": "u" * 2000}
    agents = {"a": FloodedAgent("web01", {**ANSWER, **strings}), "b": FloodedAgent("web02", ANSWER)}
    results, lines = refreshes(agents, 3)
    assert lines == [
        "W! domain web01: its guest agent gave strings longer than 1024 characters (os.id 4000000, user.0.name 2000, "
        "fs.0.mountpoint 100000); vm_guest and vm_filesystems write at most that much of any"
    ]
    assert all(result["a"]["responding"] and result["b"]["responding"] for result in results)


def test_the_warning_of_a_guest_with_thousands_of_long_strings_is_one_bounded_line():
    strings = {f"fs.{i}.mountpoint": "/" + "m" * 5000 for i in range(2000)}
    _, lines = refreshes({"a": FloodedAgent("web01", {**ANSWER, **strings})}, 1)
    (line,) = lines
    assert line.startswith("W! domain web01: its guest agent gave strings longer than 1024 characters")
    assert line.endswith("more characters)); vm_guest and vm_filesystems write at most that much of any")
    assert len(line) < 512


def test_an_answer_with_too_many_parameters_is_asked_again_without_its_filesystems_and_said_once_per_episode():
    agent = FloodedAgent("web01", ANSWER, overflowing=GUEST_INFO_FILESYSTEM)
    results, lines = refreshes({"a": agent}, 3)
    expected = {k: v for k, v in ANSWER.items() if not k.startswith("fs.")}
    assert [result["a"] for result in results] == [{"responding": True, "info": expected}] * 3
    # whole first; then without them, so that no refresh pays for the refused call (1.4 s on the lab)
    assert [bool(types & GUEST_INFO_FILESYSTEM) for types in agent.asked] == [True, False, False, False]
    assert lines == [
        "W! domain web01: libvirt cannot carry its guest agent's whole answer (too many parameters '16018' for "
        "limit '2048'); asking without its filesystems, so vm_guest has the rest"
    ]
    agent.overflowing = 0  # the guest unmounted them: one line, and the whole answer
    results, lines = refreshes({"a": agent}, 1)
    assert results[0]["a"]["info"] == ANSWER and lines == []  # a new GuestAgents: no episode to end


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_whole_answer_is_asked_for_again_every_ten_minutes_and_its_end_said_once_and_a_new_one_warns_again():
    agent, clock = FloodedAgent("web01", ANSWER, overflowing=GUEST_INFO_FILESYSTEM), Clock()
    calls = GuestAgents(Connection("test:///", lambda _uri: Host({"a": agent})), 0.0, clock)
    with log_lines() as lines:
        for overflowing in (GUEST_INFO_FILESYSTEM, GUEST_INFO_FILESYSTEM, 0, 0, GUEST_INFO_FILESYSTEM):
            agent.overflowing = overflowing
            calls.ask(["a"], time.monotonic() + 2.0)
            clock.now += GUEST_WHOLE_RETRY_S - 1
            calls.ask(["a"], time.monotonic() + 2.0)  # within the ten minutes: without the filesystems
            clock.now += 1
    whole = [bool(types & GUEST_INFO_FILESYSTEM) for types in agent.asked]
    # refused, then without; without; whole refused again, without; without; whole (the end); whole x 3;
    # refused, without (a new episode); without
    assert whole == [True, False, False, True, False, False, True, True, True, True, True, False, False]
    assert [line[:60] for line in lines] == [
        "W! domain web01: libvirt cannot carry its guest agent's whol",
        "I! domain web01: libvirt carries its guest agent's whole ans",
        "W! domain web01: libvirt cannot carry its guest agent's whol",
    ]


def test_when_the_users_overflow_too_the_answer_is_asked_again_without_them_as_well():
    agent = FloodedAgent("web01", ANSWER, overflowing=GUEST_INFO_FILESYSTEM | GUEST_INFO_USERS)
    results, lines = refreshes({"a": agent}, 1)
    assert results[0]["a"]["info"] == {"os.id": "debian", "hostname": "web01"}
    assert len(agent.asked) == 3 and lines[0].endswith(
        "asking without its filesystems and users, so vm_guest has the rest"
    )


def test_other_refusals_are_not_asked_again_and_cost_that_refresh_only():
    class Refusing(FloodedAgent):
        def guestInfo(self, types: int, flags: int) -> Dict[str, Any]:  # noqa: N802 - libvirt's API
            self.asked.append(types)
            raise RpcError("Cannot write data: Broken pipe")

    agent = Refusing("web01", ANSWER)
    results, lines = refreshes({"a": agent}, 1)
    assert results[0]["a"] == {"responding": False} and len(agent.asked) == 1 and lines == []


def test_an_agent_that_overflows_with_nothing_left_to_leave_out_fails_as_before():
    agent = FloodedAgent("web01", ANSWER, overflowing=~0)
    results, lines = refreshes({"a": agent}, 1)
    assert results[0]["a"] == {"responding": False} and len(agent.asked) == 3 and lines == []


# --- metadata tags: every value cut where the XML is read, the count and names bounded at start-up --------------


def nova_config(value: str, tags: Tuple[Any, ...] = NOVA_TAGS) -> DomainConfig:
    config = load_snapshots("nova-metadata.json")[0].domains[0].config
    assert config is not None
    xml = config.xml.replace("web frontend 01", value)
    return DomainConfig(xml, config.persistent, config.autostart, config.managed_save, tags)


@pytest.mark.parametrize("character", ["n", CRAB, ",", "&amp;"])
def test_a_long_metadata_value_is_cut_to_256_characters_and_the_cut_is_noted(character):
    facts = parse_domain_xml(nova_config(character * 70_000).xml, NOVA_TAGS)
    value = dict(facts.metadata)["nova_name"]
    kept = "&" if character == "&amp;" else character
    assert value == kept * METADATA_VALUE_MAX_CHARS + f"...({70_000 - METADATA_VALUE_MAX_CHARS} more characters)"
    assert facts.metadata_cut == (("nova_name", 70_000),)
    assert dict(facts.metadata)["nova_project"] == "demo"  # the others as they were


def test_a_metadata_value_of_exactly_the_bound_is_kept_whole_and_not_noted():
    facts = parse_domain_xml(nova_config("n" * METADATA_VALUE_MAX_CHARS).xml, NOVA_TAGS)
    assert dict(facts.metadata)["nova_name"] == "n" * METADATA_VALUE_MAX_CHARS and facts.metadata_cut == ()


class LongMetadataReplay(ReplayConnection):
    """The Nova guest's XML with its display name 64 KiB long, as management software may write it."""

    def getAllDomainStats(self, stats: int, flags: int):  # noqa: N802 - libvirt's API
        return [(LongNameDomain(dom), s) for dom, s in super().getAllDomainStats(stats, flags)]


class LongNameDomain:
    def __init__(self, domain: Any) -> None:
        self._domain = domain

    def XMLDesc(self, flags: int) -> str:  # noqa: N802 - libvirt's API
        return self._domain.XMLDesc(flags).replace("web frontend 01", "n" * 65_536)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._domain, name)


def test_a_cut_metadata_value_is_said_once_per_domain_however_often_its_xml_is_read():
    source = LongMetadataReplay(load_snapshots("nova-metadata.json"))
    configs = ConfigCache(0.0, NOVA_TAGS)  # read again every cycle
    collector = Collector(Connection("replay:///", lambda _uri: source), configs=configs)
    with log_lines() as lines:
        for _ in range(3):
            collector.collect()
    assert lines == [
        "W! domain ktnova-01: --metadata-tag nova_name (65536 characters) cut to 256 characters, so every series "
        "key stays within InfluxDB's limit"
    ]


def test_more_than_32_metadata_tags_are_refused_at_start_with_one_error_line():
    recorded = load_snapshots("lab-running.json")
    args = [arg for i in range(METADATA_TAGS_MAX - 2) for arg in ("--metadata-tag", f"t{i}=metadata/x{i}")]
    opener = {"opener": lambda _uri: ReplayConnection(recorded)}
    result = runner().invoke(main, ["--once", *args, "--nova"], obj=opener)
    (line,) = result.stderr.splitlines()
    assert result.exit_code == 2 and line.startswith(
        "E! --metadata-tag names 33 tags (--nova's included), more than 32"
    )
    assert runner().invoke(main, ["--once", *args[:-2], "--nova"], obj=opener).exit_code == 0


def test_a_metadata_tag_name_longer_than_64_characters_is_refused_at_start():
    with pytest.raises(ValueError, match="longer than 64 characters"):
        parse_metadata_tag("t" * (METADATA_NAME_MAX_CHARS + 1) + "=metadata/x")
    assert parse_metadata_tag("t" * METADATA_NAME_MAX_CHARS + "=metadata/x").name == "t" * METADATA_NAME_MAX_CHARS


# --- everything at its bound at once: the series key still fits, and the real InfluxDB takes the lines ----------


TAG_NAMES = [f"t{i:02d}".ljust(METADATA_NAME_MAX_CHARS, "t") for i in range(METADATA_TAGS_MAX)]


def worst_case(snapshot: Snapshot) -> Snapshot:
    """The agent guest with 32 metadata tags of 64-character names, each reading a 70,000-character value of
    four-byte characters, and a mountpoint and filesystem type of 100,000 such characters."""
    snapshot = with_guest_info(snapshot, **{"fs.0.mountpoint": CRAB * 100_000, "fs.0.fstype": CRAB * 100_000})
    domain = snapshot.domains[0]
    assert domain.config is not None
    big = f"<metadata><kt:big xmlns:kt='urn:kt'>{CRAB * 70_000}</kt:big></metadata></domain>"
    xml = domain.config.xml.replace("</domain>", big)
    tags = tuple(parse_metadata_tag(f"{name}=metadata/{{urn:kt}}big") for name in TAG_NAMES)
    config = DomainConfig(xml, domain.config.persistent, domain.config.autostart, domain.config.managed_save, tags)
    return dataclasses.replace(snapshot, domains=(dataclasses.replace(domain, config=config),))


def test_with_every_guest_and_metadata_value_at_its_bound_each_series_key_keeps_16_kib_of_influxdbs_limit_free(
    guest_snapshot,
):
    lines = encoded(worst_case(guest_snapshot), ["all", "guest"])
    keys = [series_key(line).encode() for line in lines]
    assert {line.split(",", 1)[0] for line in lines} >= {"vm_metrics", "vm_guest", "vm_filesystems", "vm_devices"}
    assert max(len(key) for key in keys) < SERIES_KEY_LIMIT - 16_384  # 44,114 bytes: vm_filesystems


def test_influxdb_takes_every_line_of_the_worst_case_batch_and_reads_the_cut_values_back(influx, guest_snapshot):
    lines = encoded(worst_case(guest_snapshot), ["all", "guest"])
    influx.create_database("bounds")
    status, body = influx.write("bounds", "\n".join(lines) + "\n")
    assert status == 204, body
    (row,) = influx.rows("bounds", f"SELECT total_bytes, mountpoint, {quote_ident(TAG_NAMES[0])} FROM vm_filesystems")
    cut = f"...({100_000 - GUEST_STRING_MAX_CHARS} more characters)"
    assert row["mountpoint"] == CRAB * GUEST_STRING_MAX_CHARS + cut
    assert (
        row[TAG_NAMES[0]]
        == CRAB * METADATA_VALUE_MAX_CHARS + f"...({70_000 - METADATA_VALUE_MAX_CHARS} more characters)"
    )
