"""The snapshot file: what ``record`` writes and the golden tests read."""

from __future__ import annotations

import dataclasses

import pytest

from kvm_telegraf.domain_xml import NOVA_TAGS
from kvm_telegraf.snapshot import Snapshot, snapshot_to_json, snapshots_from_json
from tests.conftest import SNAPSHOTS


@pytest.mark.parametrize("name", ["lab-running.json", "lab-states.json", "lab-odd-names.json", "nova-metadata.json"])
def test_a_single_host_recording_is_written_back_byte_for_byte(name):
    text = (SNAPSHOTS / name).read_text()
    assert snapshot_to_json(snapshots_from_json(text)) + "\n" == text


def test_a_recording_of_several_hosts_keeps_each_domain_s_hypervisor():
    (first, _) = snapshots_from_json((SNAPSHOTS / "lab-running.json").read_text())
    tagged = Snapshot(first.timestamp_ns, tuple(dataclasses.replace(d, hypervisor="kvm1") for d in first.domains))
    (loaded,) = snapshots_from_json(snapshot_to_json([tagged]))
    assert [d.hypervisor for d in loaded.domains] == ["kvm1", "kvm1"]
    assert [d.hypervisor for d in first.domains] == [None, None]


def test_metadata_tags_are_an_option_of_the_reader_not_part_of_the_file():
    text = (SNAPSHOTS / "nova-metadata.json").read_text()
    (plain, _), (nova, _) = snapshots_from_json(text), snapshots_from_json(text, NOVA_TAGS)
    assert plain.domains[0].config == nova.domains[0].config
    assert plain.domains[0].config.facts.metadata == ()
    assert dict(nova.domains[0].config.facts.metadata)["nova_name"] == "web frontend 01"
    assert snapshot_to_json([nova]) == snapshot_to_json([plain])
