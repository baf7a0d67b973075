"""The encoder: escaping and formatting, pinned against InfluxData's own Go encoder."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvm_telegraf.encode import LineEncoder, _Template, carried_key, format_field_value, format_float
from kvm_telegraf.plans import ShapePlans
from kvm_telegraf.points import KeptFields, Layout, Lines, LinesLayout, Point
from kvm_telegraf.shape import shape_snapshot
from tests.harness.goldens import batches, golden_groups, golden_snapshots
from tests.harness.influxdb import quote_ident
from tests.record_snapshots import HOSTILE_NAME

TS = 1700000000000000000


def encode(measurement, tags, fields, ts=TS) -> str:
    return LineEncoder().encode([Point(measurement, tuple(tags), fields)], ts)


@pytest.mark.parametrize(
    ("point", "line"),
    [
        (("m", [("vm", "a b,c=d")], {"f": 1}), "m,vm=a\\ b\\,c\\=d f=1i"),
        (("a b,c=d", [], {"f": 1}), "a\\ b\\,c=d f=1i"),
        (("m", [("k", 'q"uote\\in')], {"f": 1}), 'm,k=q"uote\\in f=1i'),
        (("m", [("k", "tab\there")], {"f": 1}), "m,k=tab\\there f=1i"),
        (("m", [("k", "ünï")], {"f": 1}), "m,k=ünï f=1i"),
        (("m", [], {"s": 'say "hi" \\o/'}), 'm s="say \\"hi\\" \\\\o/"'),
        (("m", [], {"s": "a=b, c"}), 'm s="a=b, c"'),
        (("m", [], {"t": True, "f": False}), "m t=true,f=false"),
        (("m", [("", "v"), ("k", ""), ("x", "y")], {"f": 1}), "m,x=y f=1i"),
        (("m", [("z", "1"), ("a", "2")], {"z": 1, "a": 2}), "m,z=1,a=2 z=1i,a=2i"),
    ],
)
def test_points_encode_exactly_as_the_go_encoder_does(point, line):
    assert encode(*point) == f"{line} {TS}\n"


def test_a_tag_value_ending_in_backslash_is_trimmed_so_the_line_stays_whole():
    assert encode("m", [("vm", "x\\\\")], {"f": 1}) == f"m,vm=x f=1i {TS}\n"


def test_a_tag_that_is_only_backslashes_is_dropped():
    assert encode("m", [("vm", "\\"), ("uuid", "u")], {"f": 1}) == f"m,uuid=u f=1i {TS}\n"


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, -(2**63) - 1])
def test_integers_outside_int64_are_dropped_not_wrapped_or_clamped(value):
    assert encode("m", [], {"big": value, "ok": 1}) == f"m ok=1i {TS}\n"


def test_int64_limits_are_kept():
    assert (
        encode("m", [], {"a": 2**63 - 1, "b": -(2**63)}) == f"m a=9223372036854775807i,b=-9223372036854775808i {TS}\n"
    )


def test_non_finite_floats_are_dropped():
    assert encode("m", [], {"n": math.nan, "i": math.inf, "ok": 0.5}) == f"m ok=0.5 {TS}\n"


def test_a_point_left_without_fields_prints_no_line():
    assert encode("m", [("vm", "x")], {"big": 2**64}) == ""
    assert encode("m", [("vm", "x")], {}) == ""


@pytest.mark.parametrize(
    ("later", "line"),
    [
        ({"a": 2**63, "b": 2, "c": 0.5}, "m b=2i,c=0.5"),
        ({"a": 1, "b": -(2**63) - 1, "c": 0.5}, "m a=1i,c=0.5"),
        ({"a": 1, "b": 2, "c": math.inf}, "m a=1i,b=2i"),
        ({"a": 7, "b": 8, "c": 2.25}, "m a=7i,b=8i,c=2.25"),
    ],
)
def test_a_field_set_seen_in_an_earlier_batch_still_drops_what_this_batch_cannot_carry(later, line):
    encoder = LineEncoder()
    assert encoder.encode([Point("m", (), {"a": 1, "b": 2, "c": 0.5})], TS) == f"m a=1i,b=2i,c=0.5 {TS}\n"
    assert encoder.encode([Point("m", (), later)], TS) == f"{line} {TS}\n"


def test_the_same_keys_with_other_value_types_print_each_type_its_own_way():
    encoder = LineEncoder()
    batch = [
        Point("m", (), {"v": 1}),
        Point("m", (), {"v": True}),
        Point("m", (), {"v": "1"}),
        Point("m", (), {"v": 1.0}),
    ]
    for _ in range(2):  # the second batch finds each layout cached
        assert encoder.encode(batch, 1).splitlines() == ["m v=1i 1", "m v=true 1", 'm v="1" 1', "m v=1 1"]


def test_a_field_key_that_escapes_to_nothing_is_dropped_and_the_others_print_in_every_batch():
    encoder = LineEncoder()
    fields = {"\\": 1, "a": True, "b": 2, "c": 0.5}
    batches = [encoder.encode([Point("m", (), fields), Point("n", (), {"b": 3})], TS) for _ in range(2)]
    assert batches == [f"m a=true,b=2i,c=0.5 {TS}\nn b=3i {TS}\n"] * 2


def test_percent_signs_in_keys_and_strings_print_as_they_are():
    assert encode("m", [], {"used%": 5, "s": "100% %d"}) == f'm used%=5i,s="100% %d" {TS}\n'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.1, "0.1"),
        (1e21, "1000000000000000000000"),
        (1e-7, "0.0000001"),
        (-0.0, "-0"),
        (123456789.123, "123456789.123"),
        (12.5, "12.5"),
        (-2.5e-5, "-0.000025"),
        (1.5e300, "15" + "0" * 299),
    ],
)
def test_floats_print_in_plain_decimal_like_go_format_float(value, text):
    assert format_float(value) == text


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_float_field_prints_through_a_template_as_format_field_value_prints_it(value):
    expected = format_field_value(value)
    line = encode("m", [], {"f": value, "n": 1})
    assert line == (f"m f={expected},n=1i {TS}\n" if expected is not None else f"m n=1i {TS}\n")


@pytest.mark.parametrize("text", ["vnet12", "", 'a"b', "a\\b", '\\"', "ünï \t=,"])
def test_a_string_field_prints_through_a_template_as_format_field_value_prints_it(text):
    assert [encode("m", [], {"s": text, "n": 1}) for _ in range(2)] == [
        f"m s={format_field_value(text)},n=1i {TS}\n"
    ] * 2


def test_kept_fields_are_formatted_once_while_each_batch_prints_them_and_again_after_a_batch_without(monkeypatch):
    formatted = []
    real_format = _Template.format
    monkeypatch.setattr(_Template, "format", lambda self, *args: formatted.append(args[0]) or real_format(self, *args))
    kept = KeptFields(Layout(("os", "acpi", "vcpus"), (str, bool, int)), ("hvm", True, 2))
    other = KeptFields(Layout(("os",), (str,)), ("hvm",))
    encoder = LineEncoder()
    line = f'vm_features,vm=a os="hvm",acpi=true,vcpus=2i {TS}\n'
    assert encoder.encode([Point("vm_features", (("vm", "a"),), kept)], TS) == line
    assert encoder.encode([Point("vm_features", (("vm", "a"),), kept)], TS) == line
    assert formatted == [("hvm", True, 2)]
    encoder.encode([Point("vm_features", (("vm", "a"),), other)], TS)
    assert encoder.encode([Point("vm_features", (("vm", "a"),), kept)], TS) == line
    assert formatted == [("hvm", True, 2), ("hvm",), ("hvm", True, 2)]


def test_kept_fields_with_a_value_no_template_carries_print_field_by_field_in_every_batch():
    kept = KeptFields(Layout(("ok", "bad"), (int, float)), (1, math.inf))
    encoder = LineEncoder()
    assert [encoder.encode([Point("m", (), kept)], TS) for _ in range(2)] == [f"m ok=1i {TS}\n"] * 2


def test_every_line_of_a_batch_carries_the_same_timestamp():
    batch = LineEncoder().encode([Point("a", (), {"x": 1}), Point("b", (), {"y": 2})], 42)
    assert [line.rsplit(" ", 1)[1] for line in batch.splitlines()] == ["42", "42"]


def test_a_cached_prefix_follows_a_rename():
    encoder = LineEncoder()
    first = encoder.encode([Point("m", (("vm", "old"),), {"x": 1})], 1)
    second = encoder.encode([Point("m", (("vm", "new"),), {"x": 1})], 2)
    assert (first, second) == ("m,vm=old x=1i 1\n", "m,vm=new x=1i 2\n")


@pytest.mark.parametrize(
    ("name", "escaped"),
    [("a\tb", "a\\tb"), ("a\nb", "a\\nb"), ("a\vb", "a\\vb"), ("a\fb", "a\\fb"), ("a\rb", "a\\rb")],
)
def test_a_control_character_in_a_tag_is_escaped_since_telegraf_drops_a_line_with_it_raw(name, escaped):
    assert encode("m", (("vm", name),), {"f": 1}, 1) == f"m,vm={escaped} f=1i 1\n"


def test_a_string_field_escapes_only_quotes_and_backslashes_as_telegrafs_serializer_does():
    text = 'tab\tlf\ncr\rvt\vff\f "q" \\'
    assert encode("m", (), {"s": text}, 1) == 'm s="tab\tlf\ncr\rvt\vff\f \\"q\\" \\\\" 1\n'


@pytest.mark.golden_test("goldens/batch/*.yml")
def test_recorded_snapshots_encode_into_the_golden_batches(golden):
    history: dict = {}
    encoder = LineEncoder()
    encoded = []
    for snapshot in golden_snapshots(golden):
        points, history = shape_snapshot(snapshot, history, groups=golden_groups(golden))
        encoded.append(encoder.encode(points, snapshot.timestamp_ns))
    assert encoded == golden.out["batches"]


@pytest.mark.golden_test("goldens/batch/*.yml")
def test_recorded_snapshots_encode_into_the_golden_batches_through_the_plans_the_process_keeps(golden):
    history: dict = {}
    plans = ShapePlans()  # a planned domain's lines come as one Lines, as in the long-running process
    encoder = LineEncoder()
    encoded = []
    for snapshot in golden_snapshots(golden):
        points, history = shape_snapshot(snapshot, history, groups=golden_groups(golden), plans=plans)
        encoded.append(encoder.encode(points, snapshot.timestamp_ns))
    assert encoded == golden.out["batches"]


# --- property tests against the Go oracle --------------------------------------------------------

# The 2018 encoder and ours part only on the characters Telegraf's parser refuses (see encode.py):
# a vertical tab in keys, and control characters in strings. Those have their own tests above.
identifiers = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\v"), min_size=1, max_size=12)
field_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\f\r"), max_size=12),
)


def oracle_metric(measurement, tags, fields, ts):
    """The same metric for the Go encoder, with the backslashes ours drops (encode.py) dropped."""

    def typed(value):
        if isinstance(value, bool):
            return {"type": "bool", "value": value}
        if isinstance(value, int):
            return {"type": "int", "value": value}
        if isinstance(value, float):
            return {"type": "float", "value": repr(value)}
        return {"type": "string", "value": value}

    return {
        "name": re.sub(r"\\+(?=[, \t\n\f\r]|\Z)", "", measurement),
        "tags": [[carried_key(k), carried_key(v)] for k, v in tags],
        "fields": [[carried_key(k), typed(v)] for k, v in fields.items()],
        "time": ts,
    }


@settings(max_examples=300, deadline=None)
@given(
    measurement=identifiers.filter(lambda s: s.rstrip("\\")),
    tags=st.lists(st.tuples(identifiers, identifiers), max_size=4),
    fields=st.dictionaries(identifiers, field_values, min_size=1, max_size=4),
    ts=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_any_metric_encodes_byte_identical_to_influxdatas_go_encoder(oracle, measurement, tags, fields, ts):
    ours = encode(measurement, tags, fields, ts).encode()
    theirs = oracle.encode(oracle_metric(measurement, tags, fields, ts))
    if theirs.startswith(b"ERROR"):
        assert ours == b"", theirs
    else:
        assert ours == theirs


# --- property test against a real InfluxDB 1.x server ---------------------------------------------

# What a libvirt domain name can hold; a control character in a name cannot survive the path (see
# encode.py) and reads back as its two-character escape, so names are printable here. A string
# field carries any character, control characters included.
printable = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=16)
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=16)


@settings(max_examples=150, deadline=None)
@given(
    tag_value=printable.filter(carried_key),
    field_key=printable.filter(lambda s: carried_key(s) not in ("", "time", "n", "vm")),
    text=any_text,
    number=st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_influxdb_accepts_any_printable_name_and_any_string_and_reads_them_back_unchanged(
    influx, tag_value, field_key, text, number
):
    influx.create_database("prop")
    line = encode("prop", [("vm", tag_value)], {field_key: text, "n": number})
    status, body = influx.write("prop", line)
    assert status == 204, (line, body)
    key = carried_key(field_key)
    rows = influx.rows("prop", f"SELECT {quote_ident(key)}, n, vm FROM prop WHERE time = {TS}")
    assert [(row["vm"], row[key], row["n"]) for row in rows] == [(carried_key(tag_value), text, number)]
    influx.query("prop", "DROP SERIES FROM prop")


@pytest.mark.parametrize(
    ("name", "kept"),
    [("a\\=b", "a=b"), ("a\\,b", "a,b"), ("a\\ b", "a b"), ("a\\\\=b", "a=b"), ("end\\", "end"), ("a\\b", "a\\b")],
)
def test_a_backslash_before_an_escaped_character_is_dropped_so_influxdb_takes_the_line(influx, name, kept):
    influx.create_database("bs")
    status, body = influx.write("bs", encode("bs", [("vm", name)], {name: 1}))
    assert status == 204, body
    rows = influx.rows("bs", f"SELECT {quote_ident(kept)}, vm FROM bs WHERE time = {TS}")
    assert [(row["vm"], row[kept]) for row in rows] == [(kept, 1)]
    influx.query("bs", "DROP SERIES FROM bs")


def test_a_control_character_in_a_name_reads_back_from_influxdb_as_its_two_character_escape(influx):
    influx.create_database("ctl")
    assert influx.write("ctl", encode("ctl", [("vm", "a\tb\rc\vd")], {"n": 1}))[0] == 204
    assert [row["vm"] for row in influx.rows("ctl", "SELECT n, vm FROM ctl")] == ["a\\tb\\rc\\vd"]


def test_a_batch_recorded_from_a_guest_with_an_awkward_name_reads_back_from_influxdb_under_that_name(influx):
    recorded = batches("lab-odd-names")
    influx.create_database("odd")
    for batch in recorded:
        status, body = influx.write("odd", batch)
        assert status == 204, body
    names = {row["value"] for row in influx.rows("odd", 'SHOW TAG VALUES FROM vm_metrics WITH KEY = "vm"')}
    assert names == {HOSTILE_NAME.rstrip("\\")}
    assert influx.count("odd", "vm_devices") == sum(batch.count("vm_devices,") for batch in recorded)


# --- Lines: several lines that share one row -----------------------------------------------------


def lines_of(*lines, whole=()) -> Lines:
    """A Lines of (measurement, tags, fields dict) lines, each's values after the one before's in the row; the
    positions in *whole* take their line's fields as one Mapping (as a domain's vm_features)."""
    measurements, layouts, picks, tags, row = [], [], [], [], []
    for number, (measurement, line_tags, fields) in enumerate(lines):
        measurements.append(measurement)
        tags.append(tuple(line_tags))
        if number in whole:
            layouts.append(None)
            picks.append((len(row),))
            row.append(fields)
        else:
            layouts.append(Layout(tuple(fields), tuple(map(type, fields.values()))))
            picks.append(tuple(range(len(row), len(row) + len(fields))))
            row += fields.values()
    row.append("unprinted")  # a position no line picks: the maker's own
    return Lines(LinesLayout(tuple(measurements), tuple(layouts), tuple(picks), len(row)), tuple(tags), row)


def test_a_lines_prints_the_text_of_its_points():
    lines = lines_of(
        ("vm_metrics", [("vm", "web 1")], {"state": 1, "responding": True}),
        ("vm_devices", [("device", "vnet0"), ("vm", "web 1")], {"rx_bytes": 12, "tap": 'v"n'}),
        ("vm_totals", [("vm", "web 1")], {"cpu_percent": 12.5, "read_latency_ns": 2.0}),
    )
    assert LineEncoder().encode([lines], 7) == (
        "vm_metrics,vm=web\\ 1 state=1i,responding=true 7\n"
        'vm_devices,device=vnet0,vm=web\\ 1 rx_bytes=12i,tap="v\\"n" 7\n'
        "vm_totals,vm=web\\ 1 cpu_percent=12.5,read_latency_ns=2 7\n"
    )


def test_a_lines_value_line_protocol_cannot_carry_is_dropped_as_its_point_drops_it():
    lines = lines_of(("m", [("vm", "a")], {"n": 1, "f": math.nan}), ("m", [("vm", "b")], {"f": math.inf}))
    assert LineEncoder().encode([lines], 7) == "m,vm=a n=1i 7\n"


def test_a_lines_whose_keys_escape_to_nothing_prints_what_its_points_print():
    lines = lines_of(("m", [("vm", "a")], {"\\": 1, "kept": 2}))
    assert LineEncoder().encode([lines], 7) == "m,vm=a kept=2i 7\n"


def test_a_lines_fields_taken_whole_print_as_their_point_and_a_dict_among_them_too():
    features = KeptFields(Layout(("persistent", "os_type"), (bool, str)), (True, "hvm"))
    kept = lines_of(("vm_metrics", [("vm", "a")], {"state": 1}), ("vm_features", [("vm", "a")], features), whole=(1,))
    out_of_range = lines_of(("vm_features", [("vm", "b")], {"max": 2**64, "arch": "x86_64"}), whole=(0,))
    encoder = LineEncoder()
    for _ in range(2):  # the kept text in the second batch
        assert encoder.encode([kept, out_of_range], 7) == (
            "vm_metrics,vm=a state=1i 7\n"
            'vm_features,vm=a persistent=true,os_type="hvm" 7\n'
            'vm_features,vm=b arch="x86_64" 7\n'
        )


def test_a_lines_prefixes_follow_its_tags_and_its_measurements_from_batch_to_batch():
    encoder = LineEncoder()
    tags = (("vm", "a"),)
    first = lines_of(("vm_metrics", tags, {"n": 1}))
    assert encoder.encode([first], 1) == "vm_metrics,vm=a n=1i 1\n"
    other_measurement = Lines(
        LinesLayout(("vm_totals",), first.layout.layouts, first.layout.picks, 2), first.tags, first.row
    )
    assert encoder.encode([other_measurement], 2) == "vm_totals,vm=a n=1i 2\n"
    renamed = lines_of(("vm_totals", (("vm", "b"),), {"n": 1}))
    assert encoder.encode([renamed], 3) == "vm_totals,vm=b n=1i 3\n"


lines_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),  # Fields' promise: ints within int64
    st.floats(),  # non-finite ones too: the Lines is printed as its points then
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.tuples(
            identifiers,
            st.lists(st.tuples(identifiers, identifiers), max_size=3),
            st.dictionaries(identifiers, lines_values, max_size=4),
        ),
        min_size=1,
        max_size=5,
    ),
    whole=st.sets(st.integers(min_value=0, max_value=4), max_size=2),
)
def test_any_lines_prints_byte_identical_to_its_points_in_every_batch(lines, whole):
    item = lines_of(*lines, whole=whole)
    as_lines, as_points = LineEncoder(), LineEncoder()
    for ts in (1, 2):  # the second batch through the caches
        assert as_lines.encode([item], ts) == as_points.encode(item.points(), ts)
