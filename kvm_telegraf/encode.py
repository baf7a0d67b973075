"""Influx line protocol, and nothing else.

Like prometheus_client's exposition module, this knows nothing of libvirt or of
collection: it turns plain points and one explicit timestamp into text. The
escaping is byte-identical to InfluxData's Go line-protocol encoder, whose rules
Telegraf's influx serializer shares (``tests/go/lpencode`` is the oracle).
"""

from __future__ import annotations

import math
from operator import itemgetter
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple, Union

FieldValue = Union[bool, int, float, str]
Tags = Tuple[Tuple[str, str], ...]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_NAME_ESCAPES = str.maketrans({"\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", ",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({"\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", ",": "\\,", " ": "\\ ", "=": "\\="})
_STRING_ESCAPES = str.maketrans({"\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"})


class Point(NamedTuple):
    """One measurement record: what shape produces and encode consumes."""

    measurement: str
    tags: Tags
    fields: Mapping[str, FieldValue]


def escape_measurement(name: str) -> str:
    """Escape a measurement name; trailing backslashes are trimmed (see escape_key)."""
    return name.rstrip("\\").translate(_NAME_ESCAPES)


def escape_key(key: str) -> str:
    """Escape a tag key, a tag value or a field key; trailing backslashes are trimmed first.

    An identifier that ends in ``\\`` would escape the separator after it and
    break the line (the Go encoder does exactly that), so Telegraf's
    serializer trims them from tag values; we trim them everywhere.
    """
    return key.rstrip("\\").translate(_KEY_ESCAPES)


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


def format_field_value(value: FieldValue) -> str | None:
    """The encoded value, or None when line protocol cannot carry it.

    Integers outside int64 and non-finite floats are dropped, never wrapped
    or clamped: a wrong number is worse than a missing one.
    """
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return f"{value}i" if INT64_MIN <= value <= INT64_MAX else None
    if isinstance(value, float):
        return format_float(value) if math.isfinite(value) else None
    return f'"{value.translate(_STRING_ESCAPES)}"'


_FORMATTED_PER_LINE = (bool, float, str)  # a plan prints exact ints itself; these go through format_field_value


def _tuple_getter(positions: List[int]) -> Callable[[Tuple[Any, ...]], Tuple[Any, ...]]:
    """itemgetter that always returns a tuple, also for zero or one position."""
    if len(positions) > 1:
        return itemgetter(*positions)
    return lambda values: tuple(values[position] for position in positions)


class FieldPlan(NamedTuple):
    """How to print one recurring field set (same keys, same value types) with one ``%`` format.

    Most lines of a batch repeat the key set of the line before them, so the
    escaping and the type dispatch are done once per key set instead of once
    per field; only the int64 range check and the non-integer values are
    looked at per line.
    """

    template: str  # "rx_bytes=%di,name=%s", with % in keys doubled
    ints: Callable[[Tuple[Any, ...]], Tuple[Any, ...]]  # the integer values, for the range check
    others: Tuple[int, ...]  # positions of the bool, float and str values

    @classmethod
    def build(cls, keys: Tuple[str, ...], types: Tuple[type, ...]) -> Optional[FieldPlan]:
        """None when a key escapes to nothing or a type is unusual: those lines take the careful path."""
        parts, ints, others = [], [], []
        for position, (key, kind) in enumerate(zip(keys, types)):
            escaped = escape_key(key).replace("%", "%%")
            if not escaped:
                return None
            if kind is int:
                parts.append(f"{escaped}=%di")
                ints.append(position)
            elif kind in _FORMATTED_PER_LINE:
                parts.append(f"{escaped}=%s")
                others.append(position)
            else:
                return None
        return cls(",".join(parts), _tuple_getter(ints), tuple(others))

    def render(self, values: Tuple[Any, ...]) -> Optional[str]:
        """The field text, or None when a value must be dropped (the careful path then drops it)."""
        if self.others:
            texts = list(values)
            for position in self.others:
                text = format_field_value(texts[position])
                if text is None:
                    return None
                texts[position] = text
            ints = self.ints(values)
            if ints and (min(ints) < INT64_MIN or max(ints) > INT64_MAX):
                return None
            return self.template % tuple(texts)
        if min(values) < INT64_MIN or max(values) > INT64_MAX:
            return None
        return self.template % values


class LineEncoder:
    """Encodes batches, caching each series' escaped prefix between batches.

    The prefix cache keeps only the prefixes the previous batch used, so renamed
    or vanished domains fall out of it after one batch without any bookkeeping.
    """

    def __init__(self) -> None:
        self._prefixes: Dict[Tuple[str, Tags], str] = {}
        self._plans: Dict[Tuple[Tuple[str, ...], Tuple[type, ...]], Optional[FieldPlan]] = {}

    def series_prefix(self, measurement: str, tags: Tags) -> str:
        """``measurement,tag=value,...`` with empty tag keys or values skipped."""
        parts = [escape_measurement(measurement)]
        for key, value in tags:
            escaped_key, escaped_value = escape_key(key), escape_key(value)
            if escaped_key and escaped_value:
                parts.append(f"{escaped_key}={escaped_value}")
        return ",".join(parts)

    def encode(self, points: Iterable[Point], timestamp_ns: int) -> str:
        """Encode *points*, all stamped *timestamp_ns*; points left with no field are skipped.

        >>> LineEncoder().encode([Point("vm_metrics", (("uuid", "4f1c"), ("vm", "web 1")),
        ...     {"state": 1, "cpu_time_ns": 4211000000})], 1700000000000000000)
        'vm_metrics,uuid=4f1c,vm=web\\\\ 1 state=1i,cpu_time_ns=4211000000i 1700000000000000000\\n'
        """
        previous, current = self._prefixes, {}
        plans = self._plans
        suffix = f" {timestamp_ns}\n"
        lines = []
        for measurement, tags, fields in points:
            if not fields:
                continue
            series = (measurement, tags)
            prefix = current.get(series) or previous.get(series)
            if prefix is None:
                prefix = self.series_prefix(measurement, tags)
            current[series] = prefix
            values = tuple(fields.values())
            shape = (tuple(fields), tuple(map(type, values)))
            try:
                plan = plans[shape]
            except KeyError:
                plan = plans[shape] = FieldPlan.build(*shape)
            text = plan.render(values) if plan is not None else None
            if text is None:
                text = encode_fields(fields)
            if text:
                lines.append(f"{prefix} {text}{suffix}")
        self._prefixes = current
        if len(plans) > 4096:  # field sets are few and fixed; this only bounds a pathological caller
            plans.clear()
        return "".join(lines)


def encode_fields(fields: Mapping[str, FieldValue]) -> str:
    """``key=value,...`` field by field, leaving out what line protocol cannot carry."""
    encoded = []
    for key, value in fields.items():
        escaped_key = escape_key(key)
        if not escaped_key:
            continue
        text = format_field_value(value)
        if text is not None:
            encoded.append(f"{escaped_key}={text}")
    return ",".join(encoded)
