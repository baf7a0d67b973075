"""Running kvm-telegraf in tests: in-process through click's CliRunner, or as the installed command."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Tuple

from click.testing import CliRunner

if TYPE_CHECKING:
    from tests.harness.execd import ExecdDriver

KVM_TELEGRAF = str(Path(sys.executable).with_name("kvm-telegraf"))


def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()


def only(names: List[str]) -> List[str]:
    """Selectors for exactly these guests: other lab domains may exist in other states."""
    return [arg for name in names for arg in ("--domain", name)]


Line = Tuple[str, Dict[str, str], Dict[str, object], int]


def parse_line(line: str) -> Line:
    """(measurement, tags, fields, timestamp) of one of our lines (lab names need no unescaping)."""
    head, fields_text, timestamp = line.rsplit(" ", 2)
    measurement, *tag_parts = head.split(",")
    tags = dict(part.split("=", 1) for part in tag_parts)
    fields: Dict[str, object] = {}
    for part in fields_text.split(","):
        key, value = part.split("=", 1)
        fields[key] = int(value[:-1]) if value.endswith("i") else value
    return measurement, tags, fields, int(timestamp)


def next_batch(driver: ExecdDriver) -> List[Line]:
    """One newline, as one of Telegraf's ticks, and the batch it brings, parsed."""
    assert driver.tick(), (driver.stderr, driver.errors)
    return [parse_line(line) for line in driver.read_batch(timeout=20, settle=1.0)]


def bash_completions(setup: str, words: List[str]) -> str:
    """A bash script that runs *setup* (the README's eval line, or sourcing a completion file), then asks the
    completion function for the last of *words*, as bash would on TAB, and prints what it offers, one a line."""
    quoted = " ".join(shlex.quote(word) for word in words)
    ask = f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _kvm_telegraf_completion kvm-telegraf"
    return f'{setup}\n{ask}; printf "%s\\n" "${{COMPREPLY[@]}}"\n'
