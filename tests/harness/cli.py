"""Running kvm-telegraf in tests: in-process through click's CliRunner, or as the installed command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Tuple

from click.testing import CliRunner

KVM_TELEGRAF = str(Path(sys.executable).with_name("kvm-telegraf"))


def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()


def only(names: List[str]) -> List[str]:
    """Selectors for exactly these guests: other lab domains may exist in other states."""
    return [arg for name in names for arg in ("--domain", name)]


def parse_line(line: str) -> Tuple[str, Dict[str, str], Dict[str, object], int]:
    """(measurement, tags, fields, timestamp) of one of our lines (lab names need no unescaping)."""
    head, fields_text, timestamp = line.rsplit(" ", 2)
    measurement, *tag_parts = head.split(",")
    tags = dict(part.split("=", 1) for part in tag_parts)
    fields: Dict[str, object] = {}
    for part in fields_text.split(","):
        key, value = part.split("=", 1)
        fields[key] = int(value[:-1]) if value.endswith("i") else value
    return measurement, tags, fields, int(timestamp)
