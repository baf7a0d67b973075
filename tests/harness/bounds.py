"""Lines made from recorded snapshots with one value made as big as a guest or a domain definition can make it."""

from __future__ import annotations

import dataclasses
import re
from typing import Dict, List, Sequence

from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.groups import resolve
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import Snapshot

# InfluxDB 1.x refuses a point whose series key (measurement and tags) passes 65,535 bytes.
SERIES_KEY_LIMIT = 65_535


def encoded(snapshot: Snapshot, groups: Sequence[str] = ()) -> List[str]:
    """The snapshot's lines, with the ``--collect`` groups of *groups*."""
    points, _ = shape_snapshot(snapshot, {}, groups=resolve(groups))
    return LineEncoder().encode(points, snapshot.timestamp_ns).splitlines()


def series_key(line: str) -> str:
    """The measurement and tags of a line: up to its first space that no backslash escapes."""
    escaped = False
    for i, char in enumerate(line):
        if char == " " and not escaped:
            return line[:i]
        escaped = char == "\\" and not escaped
    return line


def with_guest_info(snapshot: Snapshot, **changed: object) -> Snapshot:
    """The snapshot's first domain whose agent answered, alone, with *changed* in its agent's answer."""
    domain = next(d for d in snapshot.domains if d.calls.get("guest", {}).get("responding"))
    info = {**domain.calls["guest"]["info"], **changed}
    domain = dataclasses.replace(domain, calls={"guest": {"responding": True, "info": info}})
    return dataclasses.replace(snapshot, domains=(domain,))


def _split(text: str, separator: str) -> List[str]:
    """*text* split at each *separator* that no backslash escapes and no string quotes, escapes kept."""
    parts, start, escaped, quoted = [], 0, False, False
    for i, char in enumerate(text):
        if char == separator and not escaped and not quoted:
            parts.append(text[start:i])
            start = i + 1
        quoted = quoted != (char == '"' and not escaped)
        escaped = char == "\\" and not escaped
    return [*parts, text[start:]]


def _unescape(text: str) -> str:
    return re.sub(r"\\([,= \"\\])", r"\1", text)


def tags_of(line: str) -> Dict[str, str]:
    """The tags of a line, unescaped."""
    return {_unescape(k): _unescape(v) for k, v in (_split(part, "=") for part in _split(series_key(line), ",")[1:])}


def fields_of(line: str) -> Dict[str, str]:
    """The fields of a line as written, a string's quotes and escapes kept."""
    fields_text = line[len(series_key(line)) + 1 : line.rindex(" ")]
    return dict(part.split("=", 1) for part in _split(fields_text, ","))
