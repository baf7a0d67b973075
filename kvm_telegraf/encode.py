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
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from kvm_telegraf.points import (
    INT64_MAX,
    INT64_MIN,
    Batch,
    Fields,
    FieldValue,
    KeptFields,
    Layout,
    Lines,
    LinesLayout,
    Tags,
)

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


FieldsLayout = Tuple[Tuple[str, ...], Tuple[type, ...]]  # a point's field keys and its values' types


class LineEncoder:
    """Encodes batches, caching what repeats from one batch to the next.

    Each series' escaped prefix is cached, keeping only the prefixes the previous batch used, so renamed or
    vanished domains fall out after one batch. Each set of field keys and value types (a layout: every NIC
    of every domain shares one) gets a ``%`` template of its escaped keys, so a line's fields are printed by
    one C-level format (callgrind, 200 synthetic domains: 319 K -> 271 K instructions per domain against a
    loop over the fields with a cache of escaped keys), kept per layout, not per domain. A line whose values a
    template cannot take (an integer outside int64, a non-finite float, a key that escapes to nothing) is
    printed field by field, dropping what cannot go. A line whose fields are a ``Fields`` (shape's plans)
    brings its shared Layout: its template is found by the layout's identity, and its ints, in int64 by
    Fields' promise, are not checked again (callgrind, 200 synthetic domains, with shape's plans: 254.8 K ->
    165.9 K instructions per domain). A ``KeptFields`` (a domain's vm_features) is the same object while it
    says the same: its text is kept while each batch prints it.

    A ``Lines`` (a planned domain's default lines) is printed by one template of all its lines, its LinesLayout's,
    with the lines' prefixes as arguments, kept while each batch prints the same tags tuple: one ``%`` format a
    domain where a Point per line cost an object, a prefix lookup and a format each (callgrind, 200 synthetic
    domains, groups off: encode 122.3 K -> 99.6 K instructions per domain, shape 169.9 K -> 138.9 K; 1,000
    domains: shape + encode 41.5 -> 28.1 us). A Lines whose row a template cannot print is printed as its points.
    """

    def __init__(self) -> None:
        self._prefixes: Dict[Tuple[str, Tags], str] = {}
        self._layouts: Dict[Union[FieldsLayout, Layout], Optional[_Template]] = {}
        # id of a KeptFields the previous batch printed -> (it, its text or None): kept while a batch prints it
        self._kept: Dict[int, Tuple[KeptFields, Optional[str]]] = {}
        self._lines_layouts: Dict[LinesLayout, Optional[_LinesTemplate]] = {}
        # id of a Lines' tags the previous batch printed -> (them, the lines' measurements, their prefixes)
        self._lines_prefixes: Dict[int, Tuple[Tuple[Tags, ...], Tuple[str, ...], List[str]]] = {}

    def encode(self, points: Batch, timestamp_ns: int) -> str:
        """Encode a batch (points, and Lines of points), stamped *timestamp_ns* unless a point has its own; points
        left with no field are skipped.

        >>> from kvm_telegraf.points import Point
        >>> LineEncoder().encode([Point("vm_metrics", (("uuid", "4f1c"), ("vm", "web 1")),
        ...     {"state": 1, "cpu_time_ns": 4211000000})], 1700000000000000000)
        'vm_metrics,uuid=4f1c,vm=web\\\\ 1 state=1i,cpu_time_ns=4211000000i 1700000000000000000\\n'
        """
        previous, current = self._prefixes, {}
        kept_before, kept = self._kept, {}
        prefixes_before, prefixes = self._lines_prefixes, {}
        layouts = self._layouts
        suffix = f" {timestamp_ns}\n"
        lines = []
        for item in points:
            if type(item) is Lines:
                text = self._lines(item, suffix, prefixes_before, prefixes, kept_before, kept)
                if text is not None:
                    lines.append(text)
                    continue
                run: Iterable = item.points()
            else:
                run = (item,)
            for measurement, tags, fields, own_timestamp in run:
                kind = type(fields)
                if kind is Fields or kind is KeptFields:  # shape's plans: the layout is shared, found by identity
                    body = self._planned(fields, kept_before, kept)
                else:
                    values = tuple(fields.values())
                    layout = (tuple(fields), tuple(map(type, values)))
                    template = layouts.get(layout, _UNSEEN)
                    if template is _UNSEEN:
                        template = layouts[layout] = _Template.of(layout)
                    body = template.format(values) if template is not None else None
                if body is None:
                    body = _field_by_field(fields)
                    if not body:
                        continue
                series = (measurement, tags)
                # The previous batch's dict first: a steady host finds every series there, hashing its key once
                # less (callgrind, 200 synthetic domains: encode 263.6 K -> 258.7 K instructions per domain).
                line_prefix = previous.get(series) or current.get(series) or series_prefix(measurement, tags)
                current[series] = line_prefix
                end = suffix if own_timestamp is None else f" {own_timestamp}\n"
                lines.append(f"{line_prefix} {body}{end}")
        self._prefixes = current
        self._kept = kept
        self._lines_prefixes = prefixes
        if len(layouts) > 4096:  # a pathological caller's ever-new keys; a host has a few dozen layouts
            layouts.clear()
        if len(self._lines_layouts) > 4096:
            self._lines_layouts.clear()
        return "".join(lines)

    def _planned(self, fields: Fields, kept_before: Dict, kept: Dict) -> Optional[str]:
        """A Fields' text: ints in range by its promise. A KeptFields is the same object as in the batch before: its
        text too (callgrind, 200 synthetic domains: encode 166.7 K -> 137.2 K instructions per domain; one text per
        domain kept)."""
        is_kept = type(fields) is KeptFields
        seen = kept_before.get(id(fields)) if is_kept else None
        if seen is not None and seen[0] is fields:
            body = seen[1]
        else:
            template = self._layouts.get(fields.layout, _UNSEEN)
            if template is _UNSEEN:
                template = self._layouts[fields.layout] = _Template.of((fields.layout.keys, fields.layout.types))
            body = template.format(fields.row, True) if template is not None else None
        if is_kept:
            kept[id(fields)] = (fields, body)
        return body

    def _lines(
        self, lines: Lines, suffix: str, prefixes_before: Dict, prefixes: Dict, kept_before: Dict, kept: Dict
    ) -> Optional[str]:
        """The text of a Lines, or None when its template cannot print this row (then printed as its points)."""
        layout = lines.layout
        template = self._lines_layouts.get(layout, _UNSEEN)
        if template is _UNSEEN:
            template = self._lines_layouts[layout] = _LinesTemplate.of(layout)
        if template is None:
            return None
        tags = lines.tags
        seen = prefixes_before.get(id(tags)) or prefixes.get(id(tags))
        if seen is None or seen[0] is not tags or seen[1] != layout.measurements:
            seen = (tags, layout.measurements, [series_prefix(m, t) for m, t in zip(layout.measurements, tags)])
        prefixes[id(tags)] = seen
        args = [*lines.row, *seen[2], suffix]
        for at, convert in template.others:
            text = convert(args[at])
            if text is None:
                return None
            args[at] = text
        for at in template.whole:
            fields = args[at]
            text = self._planned(fields, kept_before, kept) if isinstance(fields, Fields) else None
            if not text:
                return None
            args[at] = text
        return template.text % template.order(args)


class _Template:
    """One layout's fields as a ``%`` format: ``%r`` for each int, ``%s`` for each other value, converted first."""

    __slots__ = ("text", "others", "ints")

    def __init__(self, text: str, others: Tuple[Tuple[int, Converter], ...], ints: Optional[Callable]):
        self.text = text  # escaped keys, ``%`` doubled
        self.others = others  # (position, its converter) of each value that is not a plain int
        self.ints = ints  # the plain ints' values, for their range check (None: all of them)

    @classmethod
    def of(cls, layout: FieldsLayout) -> Optional[_Template]:
        """The template of *layout*, or None when a key escapes to nothing (printed field by field)."""
        keys, types = layout
        text = _keys_text(keys, types)
        if text is None:
            return None
        others = _converters(range(len(types)), types)
        ints = tuple(i for i, kind in enumerate(types) if kind is int)
        getter = None if not others else (itemgetter(*ints) if len(ints) > 1 else _single(ints))
        return cls(text, others, getter)

    def format(self, values: Tuple[FieldValue, ...], in_range: bool = False) -> Optional[str]:
        """The fields' text, or None when a value cannot be carried (printed field by field then).

        in_range: the ints are known to be within int64 (a Fields' are), not checked again.
        """
        if not in_range:
            ints = values if self.ints is None else self.ints(values)
            if ints and (min(ints) < INT64_MIN or max(ints) > INT64_MAX):
                return None
        if not self.others:
            return self.text % values
        args = list(values)
        for i, convert in self.others:
            text = convert(args[i])
            if text is None:
                return None
            args[i] = text
        return self.text % tuple(args)


Converter = Callable[[Any], Optional[str]]


def _keys_text(keys: Tuple[str, ...], types: Tuple[type, ...]) -> Optional[str]:
    """A line's fields as a ``%`` format of its escaped keys (``%r`` an int, ``"%s"`` a string, ``%s`` any other
    value, converted first); None when a key escapes to nothing, or there is none.

    An int's repr is its decimal digits, as ``%d`` prints them, for less: 80 counters in 3.67 against 4.24 us
    (timeit); callgrind, 200 synthetic domains: encode 99.7 K -> 98.9 K instructions per domain. A layout's int is
    exactly an int, never a bool or an IntEnum, whose repr differs.
    """
    parts = []
    for key, kind in zip(keys, types):
        escaped = escape_key(key)
        if not escaped:
            return None
        parts.append(escaped.replace("%", "%%") + ("=%ri" if kind is int else '="%s"' if kind is str else "=%s"))
    return ",".join(parts) or None


class _LinesTemplate:
    """A LinesLayout's lines as one ``%`` format: each line's prefix, fields and end are arguments in turn, picked
    from the row with the prefixes and the end after it by one ``itemgetter``."""

    __slots__ = ("text", "others", "whole", "order")

    def __init__(
        self, text: str, others: Tuple[Tuple[int, Converter], ...], whole: Tuple[int, ...], order: Callable
    ) -> None:
        self.text = text
        self.others = others  # (position, its converter) of each value in the row that is not a plain int
        self.whole = whole  # the positions of fields printed whole (a Fields' own text)
        self.order = order  # the arguments in the text's order, from row + prefixes + [end]

    @classmethod
    def of(cls, layout: LinesLayout) -> Optional[_LinesTemplate]:
        """The template of *layout*, or None when a line's keys cannot make one (printed as points then)."""
        width, count = layout.width, len(layout.measurements)
        parts, order, whole = [], [], []
        others: Dict[int, Converter] = {}
        for line, (fields, picks) in enumerate(zip(layout.layouts, layout.picks)):
            order.append(width + line)  # its prefix
            if fields is None:
                parts.append("%s %s%s")
                whole.append(picks[0])
            else:
                text = _keys_text(fields.keys, fields.types)
                if text is None:
                    return None
                parts.append(f"%s {text}%s")
                others.update(_converters(picks, fields.types))
            order += picks
            order.append(width + count)  # the end: the batch's timestamp
        return cls("".join(parts), tuple(others.items()), tuple(whole), itemgetter(*order))


def _converters(positions: Iterable[int], types: Tuple[type, ...]) -> Tuple[Tuple[int, Converter], ...]:
    """(position, its converter) of each value that is not a plain int: C-level for bools and strings (callgrind,
    200 synthetic domains: encode 54.1 M -> 52.8 M instructions, against format_field_value for each)."""
    return tuple(
        (at, _CONVERTERS.get(kind, format_field_value)) for at, kind in zip(positions, types) if kind is not int
    )


def _finite_float(value: float) -> Optional[str]:
    """format_field_value of a float, without its checks of the other types: format_float's common case inline
    (callgrind, 200 synthetic domains: encode 137.2 K -> 135.2 K instructions per domain)."""
    text = repr(value)
    if "e" in text or "n" in text:  # an exponent, or inf or nan
        return format_float(value) if math.isfinite(value) else None
    return text[:-2] if text.endswith(".0") else text


def _string_inside(value: str) -> str:
    """A string field's inside, escaped: translated only when it has a character to escape, as few have.

    str.translate looks each distinct character up in the table, a KeyError for each one not in it: about 4 K
    instructions a tap name (callgrind, 200 synthetic domains: encode 126.1 K -> 120.2 K per domain).
    """
    return value.translate(_STRING_ESCAPES) if '"' in value or "\\" in value else value


# The text of a bool, of a float and of a string's inside (the template has its quotes); any other type:
# format_field_value. (Floats: callgrind, 200 synthetic domains, encode 254.9 K -> 250.8 K instructions per domain.)
_CONVERTERS: Mapping[type, Converter] = MappingProxyType(
    {bool: ("false", "true").__getitem__, float: _finite_float, str: _string_inside}
)


def _single(ints: Tuple[int, ...]) -> Callable[[Sequence[FieldValue]], Tuple[FieldValue, ...]]:
    """itemgetter that always returns a tuple: itemgetter(i) returns the bare value, and of none, nothing."""
    return (lambda values: (values[ints[0]],)) if ints else (lambda values: ())


_UNSEEN = object()  # a layout not looked up yet (None: one that has no template)


def _field_by_field(fields: Mapping[str, FieldValue]) -> str:
    """The fields a template cannot print whole, each one that line protocol can carry."""
    encoded = []
    for key, value in fields.items():
        escaped = escape_key(key)
        text = format_field_value(value)
        if escaped and text is not None:
            encoded.append(f"{escaped}={text}")
    return ",".join(encoded)
