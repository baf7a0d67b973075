"""The golden files and the recorded snapshots they name, read one way for every test."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

from ruamel.yaml import YAML

from kvm_telegraf.domain_xml import NOVA_TAGS
from kvm_telegraf.group import Group
from kvm_telegraf.groups import resolve
from kvm_telegraf.snapshot import Snapshot, snapshots_from_json

TESTS = Path(__file__).resolve().parent.parent
SNAPSHOTS = TESTS / "snapshots"
GOLDENS = TESTS / "goldens"


def load_snapshots(name: str) -> List[Snapshot]:
    """A snapshot file recorded from live lab guests with ``kvm-telegraf record``."""
    return snapshots_from_json((SNAPSHOTS / name).read_text())


def golden_snapshots(golden: Dict[str, Any]) -> List[Snapshot]:
    """A golden's snapshot file, read as the options it names (``nova: true`` is ``--nova``)."""
    tags = NOVA_TAGS if golden.get("nova") else ()
    return snapshots_from_json((SNAPSHOTS / golden["snapshot"]).read_text(), tags)


def golden_groups(golden: Dict[str, Any]) -> Tuple[Group, ...]:
    """The ``--collect`` groups a golden names (``collect: [all]``); none for the default output."""
    return resolve(golden.get("collect", ()))


def golden_file(stage: str, name: str) -> Dict[str, Any]:
    """``tests/goldens/STAGE/NAME.yml``: the scenario's snapshot file and options, and what that stage made of it."""
    return YAML(typ="safe").load((GOLDENS / stage / f"{name}.yml").read_text())


def batches(name: str) -> List[str]:
    """The pinned batches of one recorded scenario (``tests/goldens/batch/NAME.yml``)."""
    return golden_file("batch", name)["batches"]
