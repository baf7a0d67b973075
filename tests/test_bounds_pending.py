"""Issue 23, phase 2: what a guest, a domain definition or an option can still make too big, as expected failures.

Each test is ``xfail(strict=True)``: it fails today for the reason the issue names, and once the fix lands it
passes, which strict mode reports as a failure, so the marker goes with the fix. The data is recorded from the lab's
agent and Nova guests (tests/snapshots), with one value made as big as a guest or an operator can make it.
"""

from __future__ import annotations

import dataclasses

import pytest

from kvm_telegraf.cli import main
from kvm_telegraf.domain_xml import NOVA_TAGS
from kvm_telegraf.snapshot import DomainConfig
from tests.conftest import load_snapshots
from tests.harness.bounds import SERIES_KEY_LIMIT, encoded, series_key, with_guest_info
from tests.harness.cli import runner
from tests.replay import ReplayConnection

PHASE_2 = "issue 23 phase 2: not fixed yet"


@pytest.mark.parametrize("key", ["os.id", "os.version-id", "hostname", "timezone.name", "os.kernel-release"])
def test_a_4_mb_string_from_a_guest_agent_gives_a_vm_guest_line_of_bounded_size(key):
    snapshot = with_guest_info(load_snapshots("lab-guest.json")[0], **{key: "x" * 4_000_000})
    (line,) = [line for line in encoded(snapshot, ["guest"]) if line.startswith("vm_guest,")]
    assert len(line.encode()) < 16_384


def test_a_guest_mountpoint_of_100_kb_keeps_the_filesystems_series_key_within_influxdbs_limit():
    snapshot = with_guest_info(load_snapshots("lab-guest.json")[0], **{"fs.0.mountpoint": "/" + "m" * 100_000})
    (line,) = [line for line in encoded(snapshot, ["guest"]) if line.startswith("vm_filesystems,")]
    assert len(series_key(line).encode()) < SERIES_KEY_LIMIT - 1024


def test_a_64_kib_metadata_value_keeps_every_series_key_within_influxdbs_limit():
    snapshot = load_snapshots("nova-metadata.json")[0]
    domain = snapshot.domains[0]
    assert domain.config is not None
    xml = domain.config.xml.replace("web frontend 01", "n" * 65_536)
    config = DomainConfig(xml, domain.config.persistent, domain.config.autostart, domain.config.managed_save, NOVA_TAGS)
    snapshot = dataclasses.replace(snapshot, domains=(dataclasses.replace(domain, config=config),))
    keys = [series_key(line) for line in encoded(snapshot)]
    assert keys and max(len(key.encode()) for key in keys) < SERIES_KEY_LIMIT - 1024


def test_read_write_without_collect_guest_is_a_usage_error():
    recorded = load_snapshots("lab-running.json")
    result = runner().invoke(main, ["--once", "--read-write"], obj={"opener": lambda _uri: ReplayConnection(recorded)})
    assert result.exit_code == 2 and result.stderr.startswith("E! --read-write")
