r"""Influx line protocol, and nothing else.

Like prometheus_client's exposition module, this knows nothing of libvirt or of
collection: it turns plain points and one explicit timestamp into text.

The escaping is what survives the whole path through Telegraf's influx parser
and serializer into InfluxDB 1.x (seen with Telegraf 1.37 and InfluxDB 1.6):

- Telegraf's parser refuses a raw tab, newline, vertical tab, form feed or CR in
  a name, tag or field key (the line is lost), so those are escaped as ``\t``
  ``\n`` ``\v`` ``\f`` ``\r``; both Telegraf and InfluxDB keep such an escape
  as the two characters. Nothing carries the raw character through.
- Inside a string field Telegraf's parser accepts any raw character but refuses
  ``\t`` and friends, so only ``"`` and ``\`` are escaped, as Telegraf's own
  serializer does; every character then arrives unchanged.

- A backslash at the end of a name, or right before a character that gets
  escaped, cannot be carried (InfluxDB refuses the line): it is dropped.

Everything else is byte-identical to InfluxData's 2018 Go line-protocol encoder
(``tests/go/lpencode`` is the oracle), which differs in just those points:
it leaves ``\v`` raw in keys, escapes control characters in strings, and
writes the dangling backslashes that break the line.
"""

from __future__ import annotations

import math
import re
from typing import Dict, Iterable, Optional, Tuple

from kvm_telegraf.points import INT64_MAX, INT64_MIN, FieldValue, Point, Tags

_CONTROL_ESCAPES = {"\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"}
_NAME_ESCAPES = str.maketrans({**_CONTROL_ESCAPES, ",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({**_CONTROL_ESCAPES, ",": "\\,", " ": "\\ ", "=": "\\="})
_STRING_ESCAPES = str.maketrans({'"': '\\"', "\\": "\\\\"})


# Backslashes at the end, or right before a character the escaping puts a backslash before.
_NAME_DANGLING = re.compile(r"\\+(?=[, \t\n\v\f\r]|\Z)")
_KEY_DANGLING = re.compile(r"\\+(?=[,= \t\n\v\f\r]|\Z)")


def escape_measurement(name: str) -> str:
    """Escape a measurement name; dangling backslashes are dropped (see escape_key)."""
    return _NAME_DANGLING.sub("", name).translate(_NAME_ESCAPES)


def carried_key(key: str) -> str:
    """What of a tag key, tag value or field key line protocol can carry: *key* without its dangling backslashes."""
    return _KEY_DANGLING.sub("", key)


def escape_key(key: str) -> str:
    """Escape a tag key, a tag value or a field key; backslashes that line protocol cannot carry are dropped.

    A backslash at the end would escape the separator after it, and one right before a
    character that gets escaped (``a\\=b``, ``a\\,b``) would make the escape's own
    backslash read as escaped: either way InfluxDB refuses the line (the Go encoder does
    exactly that). Telegraf's serializer trims trailing ones from tag values; we drop both
    kinds everywhere. Any other backslash arrives unchanged.
    """
    return carried_key(key).translate(_KEY_ESCAPES)


def format_float(value: float) -> str:
    """Shortest round-tripping decimal without exponent, as Go's FormatFloat(v, 'f', -1, 64)."""
    text = repr(value)
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        sign = "-" if mantissa.startswith("-") else ""
        digits = mantissa.lstrip("-").replace(".", "")
        point = mantissa.lstrip("-").find(".")
        point = len(mantissa.lstrip("-")) if point < 0 else point
        shift = point + int(exponent)
        if shift <= 0:
            return f"{sign}0.{'0' * -shift}{digits}".rstrip("0").rstrip(".")
        if shift >= len(digits):
            return f"{sign}{digits}{'0' * (shift - len(digits))}"
        return f"{sign}{digits[:shift]}.{digits[shift:]}"
    return text[:-2] if text.endswith(".0") else text


def format_field_value(value: FieldValue) -> Optional[str]:
    """The encoded value, or None when line protocol cannot carry it.

    Integers outside int64 and non-finite floats are dropped, never wrapped
    or clamped: a wrong number is worse than a missing one.
    """
    if type(value) is int:  # the common case first: nearly every field is a counter
        return f"{value}i" if INT64_MIN <= value <= INT64_MAX else None
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return f"{value}i" if INT64_MIN <= value <= INT64_MAX else None
    if isinstance(value, float):
        return format_float(value) if math.isfinite(value) else None
    return f'"{value.translate(_STRING_ESCAPES)}"'


def series_prefix(measurement: str, tags: Tags) -> str:
    """``measurement,tag=value,...`` with empty tag keys or values skipped."""
    parts = [escape_measurement(measurement)]
    for key, value in tags:
        escaped_key, escaped_value = escape_key(key), escape_key(value)
        if escaped_key and escaped_value:
            parts.append(f"{escaped_key}={escaped_value}")
    return ",".join(parts)


class LineEncoder:
    """Encodes batches, caching what repeats from one batch to the next.

    Two caches pay (measured in benchmarks/synthetic.py): each series' escaped
    prefix, and each field key's escaped ``key=``. The prefix cache keeps only
    the prefixes the previous batch used, so renamed or vanished domains fall
    out of it after one batch; field keys are few and fixed, and the key cache
    is cleared should a pathological caller ever make it large.
    """

    def __init__(self) -> None:
        self._prefixes: Dict[Tuple[str, Tags], str] = {}
        self._keys: Dict[str, str] = {}

    def encode(self, points: Iterable[Point], timestamp_ns: int) -> str:
        """Encode *points*, stamped *timestamp_ns* unless one has its own; points left with no field are skipped.

        >>> LineEncoder().encode([Point("vm_metrics", (("uuid", "4f1c"), ("vm", "web 1")),
        ...     {"state": 1, "cpu_time_ns": 4211000000})], 1700000000000000000)
        'vm_metrics,uuid=4f1c,vm=web\\\\ 1 state=1i,cpu_time_ns=4211000000i 1700000000000000000\\n'
        """
        previous, current = self._prefixes, {}
        keys = self._keys
        suffix = f" {timestamp_ns}\n"
        lines = []
        for measurement, tags, fields, own_timestamp in points:
            encoded = []
            for key, value in fields.items():
                prefix = keys.get(key)
                if prefix is None:
                    escaped = escape_key(key)
                    prefix = keys[key] = f"{escaped}=" if escaped else ""
                if type(value) is int:  # nearly every field; inlined (see fields.read_fields for the figures)
                    if INT64_MIN <= value <= INT64_MAX and prefix:
                        encoded.append(f"{prefix}{value}i")
                    continue
                text = format_field_value(value)
                if prefix and text is not None:
                    encoded.append(prefix + text)
            if not encoded:
                continue
            series = (measurement, tags)
            line_prefix = current.get(series) or previous.get(series) or series_prefix(measurement, tags)
            current[series] = line_prefix
            end = suffix if own_timestamp is None else f" {own_timestamp}\n"
            lines.append(f"{line_prefix} {','.join(encoded)}{end}")
        self._prefixes = current
        if len(keys) > 4096:
            keys.clear()
        return "".join(lines)
