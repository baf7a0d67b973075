"""Compiled layouts, issue #15 section 2: tried, measured side by side, not shipped.

kvm-telegraf ships shape + encode (shape_snapshot, LineEncoder.encode): the
targets this design was to reach (CPU per cycle <= 2x the bare call's client
CPU, no loss of peak RSS) were missed, so the plain code stays (README,
Performance). This module is kept so that ``benchmarks/synthetic.py`` and
``benchmarks/same_process.py`` measure the two side by side; it imports only
kvm_telegraf, so same_process.py can load it next to an installed copy.

The design: a domain's set of stat keys rarely changes between cycles. So
after shape + encode have printed a domain once, its layout is compiled from
what they printed: one ``itemgetter`` over every stat the lines need, a few
C-level ``map`` passes for the derived values (KiB scaling, device sums,
``memory_used_bytes``), and one pre-escaped ``%`` format string for all its
lines. While the domain's identity, its set of keys and the stats it watches
(names, counts, values that were not reportable) stay the same, and every
value it fetches is a reportable integer, the next cycles print that domain
with the layout; otherwise that cycle goes through shape + encode again and
the layout is compiled anew. A layout is only used after it printed its own
cycle byte for byte as the reference path did. ``_sources`` mirrors shape's
field tables; a field it does not know keeps the domain on the reference path.

Pure like shape and encode: no I/O, no clock. The state (one entry per
domain, dropped with the domain) lives in a LayoutCache.
"""

from __future__ import annotations

from operator import add, itemgetter, mul, sub
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from kvm_telegraf.encode import LineEncoder, escape_key, format_field_value, format_float, series_prefix
from kvm_telegraf.points import INT64_MAX, INT64_MIN, Point, Tags
from kvm_telegraf.shape import (
    BALLOON_FIELDS,
    CPU_SPLIT_FIELDS,
    DISK_FIELDS,
    DISK_LATENCIES,
    DISK_TOTALS,
    INACTIVE_METRIC_FIELDS,
    INTERFACE_FIELDS,
    INTERFACE_TOTALS,
    KIB,
    MEASUREMENTS,
    METRIC_FIELDS,
    Reading,
    batch_points,
    domain_tags,
    extra_tags,
    history_key,
    shape_domain,
)
from kvm_telegraf.shape_groups import domain_points
from kvm_telegraf.snapshot import DomainSample, Snapshot, StatValue

# Groups that only add points of their own after a domain's default lines; the others change those lines.
LINE_NEUTRAL_GROUPS = frozenset({"vcpu", "iothread", "memory_bandwidth", "jobs", "host", "pools", "events"})
_INT_ONLY = {int}
Term = Tuple[int, int]  # (index into the fetched values, coefficient)
Getter = Callable[[Sequence[Any]], Tuple[Any, ...]]


def _reportable(value: StatValue) -> bool:
    return type(value) is int and 0 <= value <= INT64_MAX


def _picker(indices: Sequence[int]) -> Getter:
    """itemgetter that returns a tuple for one index too."""
    if len(indices) == 1:
        index = indices[0]
        return lambda values: (values[index],)
    return itemgetter(*indices)


class _Sources:
    """Where each field of a domain's default lines comes from: the mirror of shape's rules, per stat key."""

    def __init__(self, stats: Mapping[str, StatValue]) -> None:
        self.stats = stats
        self.slots: Dict[str, int] = {}  # stat key -> index in the fetched values
        self.watched: Dict[str, StatValue] = {}  # stat key -> the value it must keep (names, counts, unreportable)

    def term(self, key: str, coefficient: int = 1) -> Optional[List[Term]]:
        stats = self.stats
        if key not in stats:
            return None
        value = stats[key]
        if not _reportable(value):
            self.watched[key] = value
            return None
        return [(self.slots.setdefault(key, len(self.slots)), coefficient)]

    def watch(self, key: str) -> StatValue:
        if key in self.stats:
            self.watched[key] = self.stats[key]
        return self.stats.get(key)

    def count(self, key: str) -> int:
        value = self.watch(key)
        return value if _reportable(value) else 0


class Entry(NamedTuple):
    """What the cache keeps of one domain from one cycle to the next."""

    layout: Optional[Layout]
    values: Optional[Tuple[int, ...]]  # the layout's fetched values of that cycle
    started_ns: int
    finished_ns: int
    reading: Optional[Reading]  # the reference path's, when there is no layout


class Layout:
    """One domain's default lines, compiled; see the module docstring for when it is used."""

    def __init__(
        self,
        domain: DomainSample,
        slots: Dict[str, int],
        watched: Dict[str, StatValue],
        stages: List[Tuple[Callable[[int, int], int], Getter, Getter]],
        template: str,
        final: Getter,
        latencies: Tuple[Tuple[Tuple[str, int, int], ...], ...],
        cpu: Optional[Tuple[str, Tuple[int, ...]]],
        vcpu_times: Tuple[Tuple[int, int], ...],
        disks: Tuple[Tuple[str, Tuple[Tuple[str, int], ...]], ...],
    ) -> None:
        self.identity = (domain.name, domain.uuid, domain.hypervisor, domain.id, domain.responding)
        self.config = domain.config
        self.keys = frozenset(domain.stats)
        self.getter: Getter = _picker(list(slots)) if slots else (lambda stats: ())
        self.watch_getter: Optional[Getter] = _picker(list(watched)) if watched else None
        self.watch_values = tuple(watched.values())
        self.stages = stages
        self.template = template
        self.final = final
        self.latencies = latencies
        self.cpu = cpu
        self.vcpu_times = vcpu_times
        self.disks = disks

    def fits(self, domain: DomainSample) -> bool:
        """Same domain, same config object, same set of keys, same watched values."""
        stats = domain.stats
        if (
            domain.config is not self.config
            or (domain.name, domain.uuid, domain.hypervisor, domain.id, domain.responding) != self.identity
            or stats.keys() != self.keys
        ):
            return False
        return self.watch_getter is None or self.watch_getter(stats) == self.watch_values

    def fetch(self, stats: Mapping[str, StatValue]) -> Optional[Tuple[int, ...]]:
        """The values, when every one is a reportable integer and every derived one fits int64."""
        values = self.getter(stats)
        if not values or set(map(type, values)) != _INT_ONLY or min(values) < 0 or max(values) > INT64_MAX:
            return None
        return values

    def render(self, values: Tuple[int, ...], dynamic: Tuple[str, ...]) -> Optional[str]:
        derived: Tuple[Any, ...] = values
        for operation, left, right in self.stages:
            derived += tuple(map(operation, left(derived), right(derived)))
        if len(derived) > len(values) and (max(derived) > INT64_MAX or min(derived) < INT64_MIN):
            return None  # a sum or a scaled value out of int64: the reference path drops that field
        return self.template % self.final(derived + dynamic)

    def dynamic(
        self, values: Tuple[int, ...], previous: Optional[Entry], finished_ns: int, stamp: str
    ) -> Tuple[str, ...]:
        """The fields whose presence changes from cycle to cycle (disk latency, cpu_percent), then the timestamp."""
        before = previous.values if previous is not None and previous.layout is self else None
        parts: List[str] = []
        for disk in self.latencies:
            text = ""
            if before is not None:
                for prefix, spent_at, requests_at in disk:
                    requests = values[requests_at] - before[requests_at]
                    spent = values[spent_at] - before[spent_at]
                    if requests > 0 and spent >= 0:
                        text += prefix + format_float(round(spent / requests, 1))
            parts.append(text)
        if self.cpu is not None:
            text = ""
            prefix, times = self.cpu
            if before is not None and previous is not None and times:
                window = finished_ns - previous.started_ns
                used = sum(values[i] - before[i] for i in times)
                if window > 0 and used >= 0:
                    text = prefix + format_float(round(100.0 * used / (window * len(times)), 2))
            parts.append(text)
        parts.append(stamp)
        return tuple(parts)

    def reading(self, entry: Entry) -> Optional[Reading]:
        """The reference path's Reading of the cycle this entry holds (for a cycle that falls back)."""
        values = entry.values
        domain_id = self.identity[3]
        if values is None or domain_id < 0:
            return None
        return Reading(
            domain_id,
            entry.started_ns,
            entry.finished_ns,
            {n: values[i] for n, i in self.vcpu_times},
            {name: {field: values[i] for field, i in fields} for name, fields in self.disks},
        )


def _field_prefix(name: str) -> str:
    return f"{escape_key(name)}="


def _sources(domain: DomainSample, sources: _Sources) -> Tuple[Dict[Tuple[str, str], Dict[str, Any]], Any]:
    """Per line (measurement, device), each field's terms, or "dynamic"; the same rules as shape.py's."""
    running = domain.id >= 0
    lines: Dict[Tuple[str, str], Dict[str, Any]] = {}
    metric_rows = METRIC_FIELDS if running else INACTIVE_METRIC_FIELDS
    lines[("vm_metrics", "")] = {name: sources.term(key, scale) for name, key, scale in metric_rows}
    nics = []
    for i in range(sources.count("net.count")):
        sources.watch(f"net.{i}.name")
        fields = {name: sources.term(f"net.{i}.{key}", scale) for name, key, scale in INTERFACE_FIELDS}
        nics.append(fields)
        lines[("interface", str(i))] = fields
    disks = []
    disk_times = []
    seen = set()
    for i in range(sources.count("block.count")):
        name = sources.watch(f"block.{i}.name") or f"disk{i}"
        if name in seen:
            continue
        seen.add(name)
        fields = {field: sources.term(f"block.{i}.{key}", scale) for field, key, scale in DISK_FIELDS}
        for latency, _, _ in DISK_LATENCIES:
            fields[latency] = "dynamic"
        disks.append(fields)
        disk_times.append((name, fields))
        lines[("disk", name)] = fields
    totals: Dict[str, Any] = {}
    if running:
        totals.update({name: sources.term(key, scale) for name, key, scale in CPU_SPLIT_FIELDS})
    for devices, pairs in ((nics, INTERFACE_TOTALS), (disks, DISK_TOTALS)):
        for total, name in pairs:
            terms = [term for fields in devices if isinstance(fields.get(name), list) for term in fields[name]]
            totals[total] = terms or None
    totals.update({name: sources.term(key, scale) for name, key, scale in BALLOON_FIELDS})
    maximum = sources.count("vcpu.maximum")
    for name, suffix in (("vcpu_wait_ns", "wait"), ("vcpu_delay_ns", "delay")):
        terms = [term for n in range(maximum) for term in (sources.term(f"vcpu.{n}.{suffix}") or [])]
        totals[name] = terms or None
    available, usable = sources.term("balloon.available", KIB), sources.term("balloon.usable", -KIB)
    totals["memory_used_bytes"] = available + usable if available and usable else None
    totals["cpu_percent"] = "dynamic"
    lines[("vm_totals", "")] = totals
    vcpu_times = []
    if running:
        for n in range(maximum):
            term = sources.term(f"vcpu.{n}.time")
            if term is not None:
                vcpu_times.append((n, term[0][0]))
    return lines, (vcpu_times, disk_times)


class _Compiler:
    """Turns terms into stages of C-level maps over the fetched values, and lines into one format string."""

    def __init__(self, slot_count: int) -> None:
        self.size = slot_count
        self.stages: List[Tuple[Callable[[int, int], int], Getter, Getter]] = []

    def finish(self, expressions: List[Tuple[Term, ...]]) -> Dict[Tuple[Term, ...], int]:
        """Stages that compute every expression; returns each one's index in the derived tuple."""
        # 1. scaled terms (|coefficient| != 1), one mul stage
        scales = sorted({(i, abs(c)) for terms in expressions for i, c in terms if abs(c) != 1})
        place: Dict[Tuple[int, int], int] = {}
        size = self.size
        if scales:
            self.stages.append((mul, _picker([i for i, _ in scales]), _constant_picker([c for _, c in scales])))
            for offset, scaled in enumerate(scales):
                place[scaled] = size + offset
            size += len(scales)
        # 2. each expression as (index, sign) operands, reduced pairwise level by level
        operands = {
            terms: [(place.get((i, abs(c)), i) if abs(c) != 1 else i, c > 0) for i, c in terms] for terms in expressions
        }
        while any(len(ops) > 1 for ops in operands.values()):
            adds: List[Tuple[int, int]] = []
            subs: List[Tuple[int, int]] = []
            plans = {}
            for terms, ops in operands.items():
                if len(ops) == 1:
                    continue
                reduced = []
                for k in range(0, len(ops) - 1, 2):
                    (a, a_plus), (b, b_plus) = ops[k], ops[k + 1]
                    if a_plus == b_plus:
                        reduced.append(("add", len(adds), a_plus))
                        adds.append((a, b))
                    elif a_plus:
                        reduced.append(("sub", len(subs), True))
                        subs.append((a, b))
                    else:
                        reduced.append(("sub", len(subs), True))
                        subs.append((b, a))
                if len(ops) % 2:
                    reduced.append(("keep", ops[-1][0], ops[-1][1]))
                plans[terms] = reduced
            add_base, sub_base = size, size + len(adds)
            if adds:
                self.stages.append((add, _picker([a for a, _ in adds]), _picker([b for _, b in adds])))
            if subs:
                self.stages.append((sub, _picker([a for a, _ in subs]), _picker([b for _, b in subs])))
            size += len(adds) + len(subs)
            for terms, reduced in plans.items():
                operands[terms] = [
                    (index, plus) if kind == "keep" else ((add_base if kind == "add" else sub_base) + index, plus)
                    for kind, index, plus in reduced
                ]
        result = {}
        for terms, ops in operands.items():
            if not ops[0][1]:
                raise ValueError("an expression with no positive term")
            result[terms] = ops[0][0]
        self.size = size
        return result


def _constant_picker(constants: Sequence[int]) -> Getter:
    values = tuple(constants)
    return lambda _derived: values


def compile_layout(domain: DomainSample, points: Sequence[Point], lines: Sequence[str]) -> Optional[Layout]:
    """The layout of the domain's default *points*, or None when it cannot print exactly *lines* (their text)."""
    sources = _Sources(domain.stats)
    by_line, (vcpu_times, disk_times) = _sources(domain, sources)
    compiler = _Compiler(len(sources.slots))
    # Per point: (series prefix, [(field prefix, expression terms or None for a constant, constant text)])
    planned = []
    nic_index = 0
    for point in points:
        if point.timestamp_ns is not None:
            return None
        if point.measurement == "vm_devices":
            kind = dict(point.tags).get("type", "")
            if kind == "interface":
                key = ("interface", str(nic_index))
                nic_index += 1
            else:
                key = ("disk", dict(point.tags).get("device", ""))
        else:
            key = (point.measurement, "")
        spec = by_line.get(key, {})
        constants_only = point.measurement == "vm_features"  # facts of the config, which is part of the identity
        fields = []
        for name, value in point.fields.items():
            prefix = _field_prefix(name)
            source = spec.get(name, "constant") if not constants_only else "constant"
            if source == "dynamic":
                continue  # printed from the dynamic slot at the end of its line
            if source is None:
                return None  # shape printed a field the sources say is not reportable
            if source == "constant":
                if not constants_only and type(value) is int:
                    return None  # a counter the sources do not know: no layout
                text = format_field_value(value)
                if text is None or prefix == "=":
                    continue
                fields.append((prefix, None, text))
            else:
                fields.append((prefix, tuple(source), ""))
        planned.append((series_prefix(point.measurement, point.tags), fields, key, spec))
    expressions = sorted({terms for _, fields, _, _ in planned for _, terms, _ in fields if terms and len(terms) > 1})
    expressions += sorted(
        {
            terms
            for _, fields, _, _ in planned
            for _, terms, _ in fields
            if terms and len(terms) == 1 and terms[0][1] != 1
        }
    )
    try:
        index_of = compiler.finish(expressions)
    except ValueError:
        return None
    # The dynamic slots follow the derived values: one per disk line (its latencies), cpu_percent, the stamp.
    disk_lines = [key for _, _, key, _ in planned if key[0] == "disk"]
    has_cpu = any(key == ("vm_totals", "") for _, _, key, _ in planned)
    base = compiler.size
    dynamic_index = {key: base + n for n, key in enumerate(disk_lines)}
    cpu_index = base + len(disk_lines)
    stamp_index = cpu_index + (1 if has_cpu else 0)
    template_parts = []
    order: List[int] = []
    for prefix_text, fields, key, _ in planned:
        if not fields:
            return None  # a line whose fields are all dynamic may vanish: the reference path handles it
        texts = []
        for prefix, terms, constant in fields:
            if terms is None:
                texts.append((prefix + constant).replace("%", "%%"))
                continue
            order.append(terms[0][0] if len(terms) == 1 and terms[0][1] == 1 else index_of[terms])
            texts.append(prefix.replace("%", "%%") + "%di")
        line = prefix_text.replace("%", "%%") + " " + ",".join(texts)
        if key in dynamic_index:
            line += "%s"
            order.append(dynamic_index[key])
        elif key == ("vm_totals", ""):
            line += "%s"
            order.append(cpu_index)
        template_parts.append(line + " %s\n")
        order.append(stamp_index)
    latencies = tuple(
        tuple(
            ("," + _field_prefix(latency), spec[time_field][0][0], spec[requests_field][0][0])
            for latency, time_field, requests_field in DISK_LATENCIES
            if isinstance(spec.get(time_field), list) and isinstance(spec.get(requests_field), list)
        )
        for _, _, key, spec in planned
        if key[0] == "disk"
    )
    cpu = ("," + _field_prefix("cpu_percent"), tuple(i for _, i in vcpu_times)) if has_cpu else None
    disks = tuple(
        (name, tuple((field, terms[0][0]) for field, terms in spec.items() if isinstance(terms, list)))
        for name, spec in disk_times
    )
    layout = Layout(
        domain,
        sources.slots,
        sources.watched,
        compiler.stages,
        "".join(template_parts),
        _picker(order),
        latencies,
        cpu,
        tuple(vcpu_times),
        disks,
    )
    # Proof: this cycle, with the dynamic fields the reference path printed, must come out byte for byte.
    values = layout.fetch(domain.stats) if layout.fits(domain) else None
    if values is None:
        return None
    dynamic = []
    for point, (_, _, key, _) in zip(points, planned):
        if key[0] == "disk" or key == ("vm_totals", ""):
            names = [latency for latency, _, _ in DISK_LATENCIES] if key[0] == "disk" else ["cpu_percent"]
            dynamic.append(
                "".join(f",{_field_prefix(n)}{format_field_value(point.fields[n])}" for n in names if n in point.fields)
            )
    stamp = lines[0].rsplit(" ", 1)[-1][:-1] if lines and lines[0] else ""
    if layout.render(values, tuple(dynamic) + (stamp,)) != "".join(lines):
        return None
    return layout


class LayoutCache:
    """The compiled layouts of a host's domains, and what each domain's next cycle needs from this one.

    ``encode`` prints a batch byte for byte as ``shape_snapshot`` + ``LineEncoder.encode``
    (the reference path, which shape's and encode's tests pin) would: a domain whose
    layout fits goes through it, any other through shape_domain and the encoder.
    An entry lives as long as its domain is in the snapshot.
    """

    def __init__(self) -> None:
        self._entries: Dict[str, Entry] = {}

    def encode(
        self,
        snapshot: Snapshot,
        encoder: LineEncoder,
        measurements: FrozenSet[str] = frozenset(MEASUREMENTS),
        groups: FrozenSet[str] = frozenset(),
        cycle_ns: Optional[int] = None,
    ) -> str:
        compiled = groups <= LINE_NEUTRAL_GROUPS
        previous_entries, entries = self._entries, {}
        stamp = str(snapshot.timestamp_ns)
        finished = snapshot.timestamp_ns
        started = snapshot.started_ns if snapshot.started_ns is not None else finished
        chunks: List[Any] = []  # text, or (start, end) of the points that the encoder prints
        pending: List[Point] = []
        builds = []  # (history key, domain, start, end of its default points)
        for domain in snapshot.domains:
            key = history_key(domain)
            entry = previous_entries.get(key)
            layout = entry.layout if entry is not None else None
            if compiled and layout is not None and layout.fits(domain):
                values = layout.fetch(domain.stats)
                text = layout.render(values, layout.dynamic(values, entry, finished, stamp)) if values else None
                if text is not None:
                    chunks.append(text)
                    entries[key] = Entry(layout, values, started, finished, None)
                    if groups:
                        extra = domain_points(domain, _tags(domain), groups)
                        chunks.append((len(pending), len(pending) + len(extra)))
                        pending += extra
                    continue
            before = None
            if entry is not None:
                before = entry.layout.reading(entry) if entry.layout is not None else entry.reading
            points, reading = shape_domain(domain, snapshot, before, measurements, groups)
            chunks.append((len(pending), len(pending) + len(points)))
            if compiled:
                default = sum(1 for point in points if point.measurement in MEASUREMENTS)
                builds.append((key, domain, len(pending), len(pending) + default, reading))
            else:
                entries[key] = Entry(None, None, started, finished, reading)
            pending += points
        tail = batch_points(snapshot, measurements, groups, cycle_ns)
        chunks.append((len(pending), len(pending) + len(tail)))
        pending += tail
        lines = encoder.lines(pending, snapshot.timestamp_ns)
        for key, domain, start, end, reading in builds:
            layout = compile_layout(domain, pending[start:end], lines[start:end])
            values = layout.fetch(domain.stats) if layout is not None else None
            entries[key] = Entry(layout if values else None, values, started, finished, reading)
        self._entries = entries
        return "".join(chunk if type(chunk) is str else "".join(lines[chunk[0] : chunk[1]]) for chunk in chunks)


def _tags(domain: DomainSample) -> Tags:
    return domain_tags(domain, extra_tags(domain))
