"""Shape's plans: the default four measurements of every domain of one shape, read without a loop per field.

A shape is what decides a domain's default lines and their fields: its set of stat keys (the same devices
reporting the same stats), its device and vCPU counts, its disks' names and whether it runs. Every domain of
one shape shares one Plan, made from measurements.py's rows the first time the shape is seen: which stats to
read (one C-level ``itemgetter``), which to scale, which to sum over devices, and each line's Layout. A cycle
hands encode the domain's lines as one ``Lines``: its values in one row, and the LinesLayout of the plan's
variant (which disks have latencies, whether cpu_percent is there), which encode finds by identity and prints
with one template. Per domain and cycle only what is the domain's own is Python: the taps, the allocation rule,
the rates; its tags and vm_features point are kept from batch to batch while its name, config and taps stay
(DomainNames).

fields.py's one rule still holds: a plan assumes every stat it reads is a plain non-negative int64, and a
domain where one is not (libvirt's -1, a float), or whose disk allocation needs the rule's other branch,
goes down the plain path (shape.shape_domain) for that cycle. Both give the same points
(tests/test_plans.py, every recorded snapshot and changes of them).

What it buys (callgrind, ``python -m benchmarks.synthetic --stages 3 --domains 200``, groups off, main's
56eff48 against this side by side, then with Lines against 2a27dd9: shape 169.9 -> 138.9 K, encode 122.3 ->
99.6 K, benchmarks/README.md): shape 284.2 -> 200.2 K instructions per domain, encode 254.8 -> 166.5 K;
5.0 -> 4.1 KiB kept per domain at 1,000 domains. A running domain's reading is a PlannedReading: the next
cycle of the same plan takes the disks' latencies and cpu_percent by position (shape 129.2 -> 116.1 K).
"""

from __future__ import annotations

from operator import add, itemgetter, mul, sub
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from kvm_telegraf.fields import Rows, counter, extra_tags
from kvm_telegraf.measurements import (
    BALLOON_FIELDS,
    CPU_SPLIT_FIELDS,
    DISK_FIELDS,
    DISK_KEYS,
    DISK_LATENCIES,
    DISK_TOTALS,
    INACTIVE_METRIC_FIELDS,
    INTERFACE_FIELDS,
    INTERFACE_KEYS,
    INTERFACE_TOTALS,
    KEYED_DEVICES,
    METRIC_FIELDS,
    Reading,
    cpu_percent,
    device_keys,
    device_tags,
    domain_tags,
    nic_device,
    vcpu_keys,
    vm_features,
)
from kvm_telegraf.points import (
    INT64_MAX,
    INT64_MIN,
    FieldValue,
    KeptFields,
    Layout,
    Lines,
    LinesLayout,
    Point,
    Tags,
)
from kvm_telegraf.snapshot import DomainSample, Snapshot, StatValue

Getter = Callable[[Sequence[Any]], Tuple[Any, ...]]
LayoutOf = Callable[[Tuple[str, ...], Tuple[type, ...]], Layout]
Shaped = Tuple[List[Lines], Optional["PlannedReading"]]
ShapeKey = Tuple[Tuple[StatValue, ...], Tuple[StatValue, ...], bool]  # device and vCPU counts, disk names, running


class _Misfit:
    """Plan.shape's answer for a domain of another shape under the same ShapeKey."""


MISFIT = _Misfit()

COUNT_KEYS = ("net.count", "block.count", "vcpu.maximum")
MAX_DEVICES = 64  # NICs, and disks with their backing entries, a plan is made for
MAX_VARIANTS = 64  # LinesLayouts a plan keeps: one per set of disks with latencies, cpu_percent and vm_features


def _name_keys(count: int) -> Tuple[str, ...]:
    return tuple(f"block.{i}.name" for i in range(count))


# The name keys of a domain's first n disks, made once (a generator over DISK_KEYS per lookup: 6.0 K instructions
# against 1.6 K a domain, callgrind).
DISK_NAME_KEYS = tuple(_name_keys(count) for count in range(KEYED_DEVICES + 1))


def disk_name_keys(count: int) -> Tuple[str, ...]:
    """The name keys of a domain's first *count* disks: what ShapePlans.key reads besides the counts."""
    return DISK_NAME_KEYS[count] if count <= KEYED_DEVICES else _name_keys(count)


_INTS = {int}
# A Point (a Lines) made by tuple.__new__, not through its NamedTuple constructor, a Python function:
# 1.3 K against 2.3 K instructions a point (callgrind).
_point = tuple.__new__
_STRS = {str}
_LATENCY_KEYS = {latency: (spent, requests) for latency, spent, requests in DISK_LATENCIES}


def picker(items: Sequence[Any]) -> Getter:
    """``itemgetter`` that always returns a tuple (itemgetter(i) returns the bare value, and of none, nothing)."""
    if len(items) > 1:
        return itemgetter(*items)
    if items:
        item = items[0]
        return lambda values: (values[item],)
    return lambda values: ()


def plain_counters(values: Tuple[StatValue, ...]) -> bool:
    """fields.py's counter rule over a whole tuple at once: every value a plain int (no bool) in 0..INT64_MAX."""
    return not values or (set(map(type, values)) == _INTS and min(values) >= 0 and max(values) <= INT64_MAX)


class _Columns:
    """While a plan is made: the stat keys it reads and where each derived value will sit in a cycle's values."""

    def __init__(self, stats: Mapping[str, StatValue]) -> None:
        self.stats = stats
        self.reads: Dict[str, int] = {}  # stat key -> its column
        self.seen: Dict[Tuple[int, int], None] = {}  # every (column, scale) the rows asked for, in order
        self.absent: List[str] = []  # every key asked for that the shape lacks

    def rows(self, rows: Rows) -> List[Tuple[str, Tuple[int, int]]]:
        """(field, (column, scale)) of each row whose stat the shape has, in the rows' order.

        The rows' keys are whole (measurements.py's keyed devices and vCPUs): the plan keeps them, made once.
        """
        found = []
        for name, key, scale in rows:
            if key in self.stats:
                column = (self.reads.setdefault(key, len(self.reads)), scale)
                self.seen[column] = None
                found.append((name, column))
            else:
                self.absent.append(key)
        return found


class _Disk:
    """One disk's line in a plan: its name, which values its line picks, its layouts (base and with latencies)."""

    __slots__ = ("name", "picks", "pick", "layout", "latencies", "variants", "layout_of")

    def __init__(
        self,
        name: str,
        picks: Tuple[int, ...],
        layout: Layout,
        latencies: Tuple[Tuple[str, int, int], ...],
        layout_of: LayoutOf,
    ) -> None:
        self.layout_of = layout_of
        self.name = name
        self.picks = picks  # its values' positions in a cycle's values
        self.pick = picker(picks)  # its values this cycle, for since() against a reading not of its plan
        self.layout = layout
        self.latencies = latencies  # (latency field, time's position, requests' position) in the line's values
        self.variants: Dict[Tuple[str, ...], Layout] = {(): layout}  # at most 8: one per set of latencies

    def since(self, now: Tuple[Any, ...], before: Mapping[str, FieldValue]) -> Tuple[Layout, Tuple[float, ...]]:
        """The layout of the disk's line and its latencies since *before*, the disk's fields of the reading before
        (measurements.add_disk_latency's rule); *now*, its values this cycle."""
        then = tuple(map(before.get, self.layout.keys))
        names: Tuple[str, ...] = ()
        latencies: Tuple[float, ...] = ()
        for latency, spent_at, requests_at in self.latencies:
            spent_then, requests_then = then[spent_at], then[requests_at]
            if spent_then is None or requests_then is None:
                continue
            requests = now[requests_at] - requests_then
            spent = now[spent_at] - spent_then
            if requests > 0 and spent >= 0:
                names += (latency,)
                latencies += (round(spent / requests, 1),)
        return self.with_latencies(names), latencies

    def with_latencies(self, names: Tuple[str, ...]) -> Layout:
        layout = self.variants.get(names)
        if layout is None:
            layout = self.variants[names] = self.layout_of(
                self.layout.keys + names, self.layout.types + (float,) * len(names)
            )
        return layout


class Plan:
    """The default four measurements of one shape of domain; see the module docstring."""

    def __init__(self, domain: DomainSample, key: ShapeKey, layout_of: LayoutOf) -> None:
        """key: the domain's ShapeKey; layout_of: the Layout of some keys and types, one for every plan
        (ShapePlans.layout)."""
        self.layout_of = layout_of
        counts, disk_names, _ = key
        # What ShapePlans.key reads, and what it found, with its types (a count of True equals 1, yet is no count):
        # a domain whose stats say the same is under this plan's key
        self.key_keys = COUNT_KEYS + disk_name_keys(len(disk_names))
        self.key_values = counts + disk_names
        self.key_types = tuple(map(type, self.key_values))
        stats = domain.stats
        self.running = running = domain.id >= 0
        columns = _Columns(stats)
        metrics = columns.rows(METRIC_FIELDS if running else INACTIVE_METRIC_FIELDS)
        nics = []
        tap_keys: List[str] = []
        for i in range(counter(stats.get("net.count")) or 0):
            keys = INTERFACE_KEYS[i] if i < KEYED_DEVICES else device_keys("net", INTERFACE_FIELDS, i)
            tap = None  # where its tap is in the taps read; None: the NIC has no tap key (a hostdev)
            if keys.name in stats:
                tap = len(tap_keys)
                tap_keys.append(keys.name)
            else:
                columns.absent.append(keys.name)
            nics.append((i, columns.rows(keys.rows), tap))
        disks = []
        seen = set()
        for i, name in enumerate(disk_names):  # measurements.disk_entries' rule: backing entries left out
            name = name or f"disk{i}"
            if name not in seen:
                seen.add(name)
                keys = DISK_KEYS[i] if i < KEYED_DEVICES else device_keys("block", DISK_FIELDS, i)
                disks.append((name, columns.rows(keys.rows)))
        cpu_split = columns.rows(CPU_SPLIT_FIELDS) if running else []
        balloon = columns.rows(BALLOON_FIELDS)
        vcpu_rows = {
            suffix: columns.rows(tuple((str(n), key, 1) for n, key in enumerate(vcpu_keys(stats, suffix))))
            for suffix in (("time", "wait", "delay") if running else ("wait", "delay"))
        }
        self.read = picker(list(columns.reads))
        self.read_taps = picker(tap_keys)
        # A domain is of this shape when it has every key read (else the getters raise KeyError) and none of these
        self.absent = tuple(dict.fromkeys(columns.absent))

        # A cycle's values, in this order: the stats read, the scaled ones, a 0 (for sums over devices that
        # lack a field), the sums, memory used. ``place``: (column, scale) -> position.
        at = self.derived_from = len(columns.reads)  # the values from here on are derived: their range is checked
        place = {(column, 1): column for column in range(at)}
        scaled = [column for column in columns.seen if column[1] != 1]
        for offset, column in enumerate(scaled):
            place[column] = at + offset
        self.scale = picker([column for column, _ in scaled])
        self.scales = tuple(scale for _, scale in scaled)
        at += len(scaled)
        disk_places = [(name, {field: place[column] for field, column in fields}) for name, fields in disks]
        # (allocation's position, physical's or None) of each disk that reports an allocation
        self.allocations = [
            (places["allocation_bytes"], places.get("physical_bytes"))
            for _, places in disk_places
            if "allocation_bytes" in places
        ]
        self.allocated = picker([allocation for allocation, _ in self.allocations])
        zero = at
        at += 1
        nic_places = [(i, {field: place[column] for field, column in fields}, tap) for i, fields, tap in nics]

        # vm_totals: measurements.vm_totals' fields in its order; a sum is there when a device (vCPU) reports it.
        sums = []
        for devices, pairs in (
            ([places for _, places, _ in nic_places], INTERFACE_TOTALS),
            ([places for _, places in disk_places], DISK_TOTALS),
        ):
            sums += [(total, [places[name] for places in devices if name in places]) for total, name in pairs]
        for name, suffix in (("vcpu_wait_ns", "wait"), ("vcpu_delay_ns", "delay")):
            sums.append((name, [place[column] for _, column in vcpu_rows[suffix]]))
        sums = [(total, members) for total, members in sums if members]
        width = max((len(members) for _, members in sums), default=0)
        self.sum_members = [picker([m[k] if k < len(m) else zero for _, m in sums]) for k in range(width)]
        summed = {total: at + offset for offset, (total, _) in enumerate(sums)}
        at += len(sums)
        totals = {field: place[column] for field, column in cpu_split}
        totals.update((total, summed[total]) for total, _ in (*INTERFACE_TOTALS, *DISK_TOTALS) if total in summed)
        totals.update((field, place[column]) for field, column in balloon)
        totals.update((total, summed[total]) for total in ("vcpu_wait_ns", "vcpu_delay_ns") if total in summed)
        self.used: Optional[Tuple[int, int]] = None
        if "memory_available_bytes" in totals and "memory_usable_bytes" in totals:
            self.used = (totals["memory_available_bytes"], totals["memory_usable_bytes"])
            totals["memory_used_bytes"] = at

        if self.used is not None:
            at += 1
        # After those, a cycle appends the domain's own: responding (running), its taps, its disks' latencies,
        # cpu_percent and its vm_features' fields, each where it has one (Plan.lines_layout places them).
        self.width = at
        self.responding_at = at if running else None
        self.taps_at = at + running
        self.tap_count = len(tap_keys)

        metric_places = {field: place[column] for field, column in metrics}
        self.metrics = self._line(metric_places, ("responding",) if running else (), (bool,))
        self.nics = [
            (*self._line(places, ("tap",) if tap is not None else (), (str,)), tap) for _, places, tap in nic_places
        ]
        self.disks = []
        for name, places in disk_places:
            picks, layout = self._line(places)
            latencies = tuple(
                (latency, layout.keys.index(spent), layout.keys.index(requests))
                for latency, spent, requests in DISK_LATENCIES
                if spent in places and requests in places
            )
            self.disks.append(_Disk(name, picks, layout, latencies, layout_of))
        self.totals = self._line(totals)
        self.totals_with_percent = layout_of(self.totals[1].keys + ("cpu_percent",), self.totals[1].types + (float,))
        times = vcpu_rows.get("time", [])
        self.vcpu_numbers = tuple(int(n) for n, _ in times)
        # What a running domain's reading keeps for the next cycle's rates: its vCPUs' times, then the (time,
        # requests) of each disk's latencies; per disk, (latency field, time's and requests' place in what is kept)
        kept = [place[column] for _, column in times]
        self.latencies_kept: List[Tuple[Tuple[str, int, int], ...]] = []
        for disk in self.disks:
            latencies = []
            for latency, spent_at, requests_at in disk.latencies:
                latencies.append((latency, len(kept), len(kept) + 1))
                kept += (disk.picks[spent_at], disk.picks[requests_at])
            self.latencies_kept.append(tuple(latencies))
        self.keep = picker(kept)
        # LinesLayout of each variant seen: which disks have latencies, with cpu_percent, with vm_features
        self.variants: Dict[Tuple[Tuple[Layout, ...], bool, bool], LinesLayout] = {}
        self.last_batch = 0  # the ShapePlans batch that last used this plan

    def read_shape(self, stats: Mapping[str, StatValue]) -> Optional[Tuple[Tuple[Any, ...], Tuple[Any, ...]]]:
        """The stats and taps this plan reads; None when the domain is not of its shape (a key read is missing,
        or one it lacks is there)."""
        try:
            read = self.read(stats)
            taps = self.read_taps(stats)
        except KeyError:
            return None
        if self.absent and not stats.keys().isdisjoint(self.absent):
            return None
        return read, taps

    def _allocations_read(self, values: List[int]) -> bool:
        """measurements.disk_fields' rule for an allocation of 0, in place: physical instead; False: left out."""
        for allocation, physical in self.allocations:
            if values[allocation] == 0:
                if physical is None:  # the field is left out: a layout of its own, the plain path's
                    return False
                values[allocation] = values[physical]
        return True

    def _line(
        self, places: Dict[str, int], more: Tuple[str, ...] = (), types: Tuple[type, ...] = ()
    ) -> Tuple[Tuple[int, ...], Layout]:
        """A line's positions in a cycle's values and its layout: the counters, then *more* (the domain's own, whose
        positions Plan.lines_layout adds)."""
        keys = tuple(places)
        return tuple(places.values()), self.layout_of(keys + more, (int,) * len(keys) + types[: len(more)])

    def lines_layout(self, variant: Tuple[Tuple[Layout, ...], bool, bool]) -> LinesLayout:
        """The LinesLayout of a cycle's variant, kept while at most MAX_VARIANTS: each disk's layout (with the
        latencies it has this cycle), whether vm_totals has cpu_percent, whether the domain has a vm_features line."""
        disks, percent, features = variant
        at = self.taps_at + self.tap_count
        measurements, layouts, picks = ["vm_metrics"], [self.metrics[1]], [self.metrics[0]]
        if self.responding_at is not None:
            picks[0] += (self.responding_at,)
        for nic_picks, nic_layout, tap in self.nics:
            measurements.append("vm_devices")
            layouts.append(nic_layout)
            picks.append(nic_picks if tap is None else nic_picks + (self.taps_at + tap,))
        for disk, disk_layout in zip(self.disks, disks):
            added = len(disk_layout.keys) - len(disk.layout.keys)
            measurements.append("vm_devices")
            layouts.append(disk_layout)
            picks.append(disk.picks + tuple(range(at, at + added)))
            at += added
        measurements.append("vm_totals")
        layouts.append(self.totals_with_percent if percent else self.totals[1])
        picks.append(self.totals[0] + ((at,) if percent else ()))
        at += percent
        if features:
            measurements.insert(1, "vm_features")
            layouts.insert(1, None)
            picks.insert(1, (at,))
            at += 1
        layout = LinesLayout(tuple(measurements), tuple(layouts), tuple(picks), at)
        if len(self.variants) < MAX_VARIANTS:
            self.variants[variant] = layout
        return layout

    def device_tags(self, domain: DomainSample, taps: Tuple[Any, ...], extra: Tags) -> Tuple[List[Tags], List[Tags]]:
        """The tags of each NIC's line and of each disk's, in the plan's order (measurements.vm_devices' rule)."""
        facts = domain.config.facts if domain.config is not None else None
        macs = dict(facts.interfaces) if facts is not None else {}
        nics = []
        for i, (_, _, tap_at) in enumerate(self.nics):
            tap = None if tap_at is None else taps[tap_at]
            mac = None if tap is None else macs.get(tap)
            nics.append(device_tags(domain, nic_device(tap, mac, i), "interface", extra, mac))
        return nics, [device_tags(domain, disk.name, "disk", extra) for disk in self.disks]

    def shape(
        self,
        domain: DomainSample,
        snapshot: Snapshot,
        previous: Optional[Reading],
        names: DomainNames,
    ) -> Union[Shaped, None, _Misfit]:
        """The domain's lines, as one Lines of the points shape_domain makes, and its reading; None: the plain path
        must make them; MISFIT: the domain is of another shape (the same counts and disk names, other keys).

        names: the domain's tags and vm_features point, kept from the batch before (ShapePlans.names).
        """
        stats = domain.stats
        got = self.read_shape(stats)
        if got is None:
            return MISFIT
        read, taps = got
        if not plain_counters(read) or (taps and (set(map(type, taps)) != _STRS or not all(taps))):
            return None
        # One list, extended in place, not a tuple made anew by each step: shape 215.6 K -> 202.7 K instructions
        # a domain (callgrind, 200 synthetic domains), fewer objects for the garbage collector
        values = list(read)
        if self.scales:
            values += map(mul, self.scale(read), self.scales)
        if self.allocations and 0 in self.allocated(values) and not self._allocations_read(values):
            return None
        values.append(0)
        if self.sum_members:
            sums = self.sum_members[0](values)
            for members in self.sum_members[1:]:
                sums = map(add, sums, members(values))
            values += sums
        if self.used is not None:
            values.append(values[self.used[0]] - values[self.used[1]])
        # A sum or scaled value line protocol cannot carry. Only above: every value read is at least 0 (the rule),
        # and so is each scaled one and each sum; memory used, the one difference, is two of those, each at most
        # INT64_MAX once this holds (no min(): shape 173.1 K -> 169.6 K instructions per domain, callgrind).
        if max(values[self.derived_from :]) > INT64_MAX:
            return None

        if names.plan is not self or names.taps != taps:
            names.set_devices(self, taps, *self.device_tags(domain, taps, names.extra))
        reading = None
        if self.running:
            if type(domain.responding) is not bool:
                return None
            values.append(domain.responding)
            started = snapshot.started_ns if snapshot.started_ns is not None else snapshot.timestamp_ns
            reading = PlannedReading(domain.id, started, snapshot.timestamp_ns, self, self.keep(values))
            if previous is not None and previous.domain_id != domain.id:
                previous = None
        else:
            previous = None
        values += taps
        disk_layouts = []
        percent: Optional[float] = None
        if type(previous) is PlannedReading and previous.plan is self and reading is not None:
            # The rates by position: this cycle's kept values less the cycle before's, in one C-level map
            changes = list(map(sub, reading.kept, previous.kept))
            for disk, latencies in zip(self.disks, self.latencies_kept):
                added: Tuple[str, ...] = ()
                for latency, spent_at, requests_at in latencies:  # measurements.add_disk_latency's rule
                    requests, spent = changes[requests_at], changes[spent_at]
                    if requests > 0 and spent >= 0:
                        added += (latency,)
                        values.append(round(spent / requests, 1))
                disk_layouts.append(disk.with_latencies(added) if added else disk.layout)
            # measurements.cpu_percent's rule; the same plan reads the same vCPUs
            count, used = len(self.vcpu_numbers), sum(changes[: len(self.vcpu_numbers)])
            window = reading.finished_ns - previous.started_ns
            if count and window > 0 and used >= 0:
                percent = round(100.0 * used / (window * count), 2)
        else:  # a first cycle, a restart, or a reading of the plain path's or of another plan's
            for disk in self.disks:
                before = previous.disks.get(disk.name) if previous is not None and disk.latencies else None
                if before is None:
                    disk_layouts.append(disk.layout)
                else:
                    layout, latencies = disk.since(disk.pick(values), before)
                    disk_layouts.append(layout)
                    values += latencies
            if reading is not None:
                percent = cpu_percent(reading, previous)  # type: ignore[arg-type]
        if percent is not None:
            values.append(percent)
        features = names.features
        if features is not None:
            values.append(features.fields)
        variant = (tuple(disk_layouts), percent is not None, features is not None)
        layout = self.variants.get(variant) or self.lines_layout(variant)
        return [_point(Lines, (layout, names.lines_tags, values))], reading


class PlannedReading:
    """A planned domain's Reading: only what the next cycle's rates read (its vCPUs' times and its disks' latency
    counters, by Plan.keep), with its plan. The next cycle of the same plan takes the rates by position; the plain
    path or another plan reads it as a Reading (vcpu_times, disks), made on demand.

    No dict of vCPU times and no Fields per disk each cycle (callgrind, 200 synthetic domains, groups off: shape
    129.2 K -> 116.1 K instructions per domain).
    """

    __slots__ = ("domain_id", "started_ns", "finished_ns", "plan", "kept")
    carried: Mapping[str, Any] = MappingProxyType({})

    def __init__(self, domain_id: int, started_ns: int, finished_ns: int, plan: Plan, kept: Tuple[int, ...]) -> None:
        self.domain_id = domain_id
        self.started_ns = started_ns
        self.finished_ns = finished_ns
        self.plan = plan
        self.kept = kept  # Plan.keep: its vCPUs' times, then each disk's (time, requests) of each latency

    @property
    def vcpu_times(self) -> Dict[int, int]:
        """Reading.vcpu_times."""
        return dict(zip(self.plan.vcpu_numbers, self.kept))

    @property
    def disks(self) -> Dict[str, Dict[str, int]]:
        """Reading.disks, with each disk's latency counters (all that measurements.add_disk_latency reads)."""
        disks = {}
        for disk, latencies in zip(self.plan.disks, self.plan.latencies_kept):
            fields = {}
            for latency, spent_at, requests_at in latencies:
                time_key, requests_key = _LATENCY_KEYS[latency]
                fields[time_key], fields[requests_key] = self.kept[spent_at], self.kept[requests_at]
            disks[disk.name] = fields
        return disks


class DomainNames:
    """A domain's tags, kept from batch to batch while its name, config and host stay (the UUID is the key), and
    its devices' tags while its plan and taps stay: the same tuples every batch, not made anew per line.

    Callgrind, 200 synthetic domains, medians of 3 batches: shape 199.8 K -> 184.6 K instructions per domain
    (device_tags() per NIC and disk, extra_tags and domain_tags per domain), and encode 135.2 K -> 126.0 K: its
    prefix lookup finds the same tuple, compared by identity. With the vm_features text the encoder keeps, the state
    kept per domain at 1,000 synthetic domains went from 4.06 to 5.06 KiB (each domain its own config: 4.37 to
    5.05; the tags were kept before too, as the encoder's keys).
    """

    __slots__ = ("name", "config", "hypervisor", "tags", "extra", "features", "plan", "taps", "lines_tags")

    def __init__(self, domain: DomainSample) -> None:
        self.name = domain.name
        self.config = domain.config
        self.hypervisor = domain.hypervisor
        self.extra = extra_tags(domain)
        self.tags = domain_tags(domain, self.extra)
        self.features: Optional[Point] = None  # its vm_features point (ShapePlans.features)
        self.plan: Optional[Plan] = None  # the plan and taps the lines' tags below were made for
        self.taps: Tuple[Any, ...] = ()
        self.lines_tags: Tuple[Tags, ...] = ()  # each line's, in a plan's order (Lines.tags)

    def set_devices(self, plan: Plan, taps: Tuple[Any, ...], nics: List[Tags], disks: List[Tags]) -> None:
        """The lines' tags for *plan* and *taps*, given the tags of its NICs' lines and of its disks'."""
        features = (self.features.tags,) if self.features is not None else ()
        self.lines_tags = (self.tags, *features, *nics, *disks, self.tags)
        self.plan, self.taps = plan, taps

    def of(self, domain: DomainSample) -> bool:
        """Whether these are still *domain*'s (of the same UUID): its name, config and host unchanged."""
        return self.name == domain.name and self.config is domain.config and self.hypervisor == domain.hypervisor


class ShapePlans:
    """The plans of one long-running process, keyed by shape; a plan not used in a batch is dropped after it.

    Bounded: at most *bound* plans (a host has one per mix of devices and reported stats, a few dozen at
    most); a shape beyond them goes down the plain path for that batch.
    """

    def __init__(self, bound: int = 256) -> None:
        self.bound = bound
        # Keyed by counts, disk names and whether the domain runs; the plans under one key differ in which
        # stats the domain reports (Plan.read_shape). Not keyed by the domain's every key, ``tuple(stats)``:
        # its lookup took 21.8 K instructions a domain, this key 10.7 K and the plan's check 3.7 K (callgrind,
        # 200 synthetic domains: shape 202.7 K -> 200.2 K), and a key no measurement reads (``block.<i>.path``,
        # ``vcpu.<n>.state``) makes no plan of its own: the synthetic host's 26 recorded domains need 8, not 16.
        self._plans: Dict[ShapeKey, List[Plan]] = {}
        self._count = 0
        self._batch = 1
        # Each line's Layout, one for every plan and config with those keys and types: the encoder keeps one
        # template per Layout (the synthetic host's 16 plans: 136 templates, 17 with the layouts shared).
        self._layouts: Dict[Tuple[Tuple[str, ...], Tuple[type, ...]], Layout] = {}
        # UUID -> the domain's tags: this batch's, and the batch before's (dropped after this one)
        self._names: Dict[str, DomainNames] = {}
        self._names_before: Dict[str, DomainNames] = {}

    def __len__(self) -> int:
        return self._count

    @staticmethod
    def key(stats: Mapping[str, StatValue], running: bool) -> Optional[ShapeKey]:
        """What a plan's lines follow from besides which stats are there; None: a count no plan is made for."""
        counts = tuple(map(stats.get, COUNT_KEYS))
        # no generator: shape 175.6 K -> 173.1 K instructions per domain (callgrind, 200 synthetic domains)
        nic_count = 0 if counts[0] is None else counts[0]
        disk_count = 0 if counts[1] is None else counts[1]
        if not (type(nic_count) is type(disk_count) is int and 0 <= nic_count <= MAX_DEVICES >= disk_count >= 0):
            return None  # no devices reported as a count, or more than a plan is made for: the plain path
        names = tuple(map(stats.get, disk_name_keys(disk_count)))
        return counts, names, running

    def plan(self, domain: DomainSample) -> Optional[Plan]:
        """The plan of the domain's shape, made if new (shape() finds it the same way, reading the stats once);
        None when the bound is reached or a count is odd."""
        key = self.key(domain.stats, domain.id >= 0)
        if key is None:
            return None
        for plan in self._plans.get(key, ()):
            if plan.read_shape(domain.stats) is not None:
                plan.last_batch = self._batch
                return plan
        return self._new(key, domain)

    def _new(self, key: ShapeKey, domain: DomainSample) -> Optional[Plan]:
        if self._count >= self.bound:
            return None
        plan = Plan(domain, key, self.layout)
        plan.last_batch = self._batch
        self._plans.setdefault(key, []).append(plan)
        self._count += 1
        return plan

    def shape(self, domain: DomainSample, snapshot: Snapshot, previous: Optional[Reading]) -> Optional[Shaped]:
        """The domain's lines (one Lines) and reading through the plan of its shape; None: the plain path must make
        them.

        The domain's plan of the batch before first, while its counts and disk names are the ones that plan was made
        for and it is still kept: no ShapeKey made and hashed (callgrind, 200 synthetic domains: shape 138.9 K ->
        133.5 K instructions per domain), and none of the other plans under its key answers MISFIT by a KeyError.
        """
        names = self.names(domain)
        last = names.plan
        batch = self._batch
        if (
            last is not None
            and last.last_batch >= batch - 1  # still among the plans: end_batch drops one after a batch unused
            and last.running is (domain.id >= 0)
            and (found := tuple(map(domain.stats.get, last.key_keys))) == last.key_values
            and tuple(map(type, found)) == last.key_types
        ):
            shaped = last.shape(domain, snapshot, previous, names)
            if shaped is not MISFIT:
                last.last_batch = batch
                return shaped  # type: ignore[return-value]
        key = self.key(domain.stats, domain.id >= 0)
        if key is None:
            return None
        for plan in self._plans.get(key, ()):
            shaped = plan.shape(domain, snapshot, previous, names)
            if shaped is not MISFIT:
                plan.last_batch = self._batch
                return shaped  # type: ignore[return-value]
        plan = self._new(key, domain)
        shaped = plan.shape(domain, snapshot, previous, names) if plan is not None else None
        return None if shaped is MISFIT else shaped  # type: ignore[return-value]

    def names(self, domain: DomainSample) -> DomainNames:
        """The domain's tags and vm_features point, kept from the batch before while they are still its own."""
        names = self._names_before.get(domain.uuid)
        if names is None or not names.of(domain):
            names = DomainNames(domain)
            names.features = self.features(domain, names.tags)
        self._names[domain.uuid] = names
        return names

    def features(self, domain: DomainSample, tags: Tags) -> Optional[Point]:
        """measurements.vm_features' point, made when the domain's config is new (the XML cache keeps the config).

        Its fields are KeptFields, the same object while the config stays: the encoder keeps their text (callgrind,
        200 synthetic domains: encode 166.7 K -> 137.2 K instructions per domain), and finds the layout by identity.
        """
        point = vm_features(domain, tags)
        if point is None:
            return None
        values = tuple(point.fields.values())
        if any(type(value) is int and not INT64_MIN <= value <= INT64_MAX for value in values):
            return point  # a value line protocol cannot carry: the encoder's checks, field by field
        return _point(
            Point,
            ("vm_features", tags, KeptFields(self.layout(tuple(point.fields), tuple(map(type, values))), values), None),
        )

    def layout(self, keys: Tuple[str, ...], types: Tuple[type, ...]) -> Layout:
        """The Layout of lines with these keys and types: the one every plan shares, while at most 4 x bound."""
        layout = self._layouts.get((keys, types))
        if layout is None:
            layout = Layout(keys, types)
            if len(self._layouts) < 4 * self.bound:
                self._layouts[keys, types] = layout
        return layout

    def end_batch(self) -> None:
        """Drop the plans and features this batch did not use: a shape or a config that is gone costs nothing
        after one batch."""
        batch = self._batch
        if any(plan.last_batch != batch for plans in self._plans.values() for plan in plans):
            kept = {key: [plan for plan in plans if plan.last_batch == batch] for key, plans in self._plans.items()}
            self._plans = {key: plans for key, plans in kept.items() if plans}
            self._count = sum(map(len, self._plans.values()))
        self._names_before, self._names = self._names, {}
        self._batch = batch + 1
