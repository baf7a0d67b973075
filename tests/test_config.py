"""Start-up configuration: Telegraf-style durations and the ``--config`` TOML file, on their own.

The CLI tests drive these through click; here each rule is pinned directly.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
from pathlib import Path

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvm_telegraf import toml_reader
from kvm_telegraf.cli import config_schema, main
from kvm_telegraf.config import (
    CONFIG_MAX_BYTES,
    DURATION,
    FLAG,
    SOME_STRINGS,
    STRING,
    STRING_TABLE,
    STRINGS,
    Duration,
    MetadataTagSpec,
    load_config_file,
    parse_duration,
)

SCHEMA = {
    "uri": SOME_STRINGS,
    "timeout": DURATION,
    "domain": STRINGS,
    "metadata_tag": STRING_TABLE,
    "log_level": STRING,
}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("250us", 250e-6),
        ("250µs", 250e-6),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("2", 2.0),
        ("250\u03bcs", 250e-6),
        ("1h2m3.5s", 3723.5),
        (7, 7.0),
        (0.25, 0.25),
    ],
)
def test_a_telegraf_duration_or_a_bare_number_reads_as_seconds(text, seconds):
    assert math.isclose(parse_duration(text), seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "s",
        "10 s",
        "10x",
        "1m30",
        "m1",
        "1m 30s",
        "1s,2s",
        "ten seconds",
        True,
        "nan",
        "inf",
        "infinity",
        "1e400",
        float("nan"),
        float("inf"),
        "-inf",
    ],
)
def test_anything_else_is_not_a_duration(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "text",
    [
        "\u0663s",  # ٣s: Arabic-Indic three
        "\u0663",
        "\uff15s",  # ５s: fullwidth five
        "\u09e8m",  # ২m: Bengali two
        " 5s",
        "5s ",
        " 3s ",
        "\t5s",
        "5s\n",
        " 5",
        "5\u00a0s",  # a no-break space
        "1_000",
        "1_0s",
    ],
)
def test_a_duration_takes_ascii_digits_only_and_no_surrounding_space_as_gos_parseduration(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0s", "0", -1, "-5", -2.5, 0.0])
def test_a_duration_must_be_positive(text):
    with pytest.raises(ValueError, match="positive|not a duration"):
        parse_duration(text)


def test_a_bad_duration_option_is_a_click_usage_error_naming_the_value():
    with pytest.raises(click.BadParameter, match="not a duration: '5 minutes'"):
        Duration().convert("5 minutes", None, None)
    assert Duration().convert("5m", None, None) == 300.0


@pytest.mark.parametrize("value", [-1.0, 0.0, float("nan"), float("inf"), 1e300, "25h", "0.5ms"])
def test_a_duration_option_refuses_what_is_not_finite_positive_and_within_its_bounds(value):
    with pytest.raises(click.BadParameter, match="positive|finite|out of range: 1ms to 24h"):
        Duration(1e-3, 86400.0).convert(value, None, None)


def test_a_duration_option_takes_a_toml_number_as_seconds():
    assert Duration().convert(2.5, None, None) == 2.5 and Duration().convert(3, None, None) == 3.0


def test_a_metadata_tag_needs_a_name_and_an_xpath():
    tag = MetadataTagSpec().convert("nova_name=metadata/x", None, None)
    assert MetadataTagSpec().convert(tag, None, None) is tag
    with pytest.raises(click.BadParameter, match="TAG=XPATH"):
        MetadataTagSpec().convert("nova_name", None, None)


READERS = {"tomllib": toml_reader.loads_with_tomllib, "toml": toml_reader.loads_with_toml}


@pytest.fixture(params=sorted(READERS))
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """--config read by tomllib (tomli before Python 3.11), and by toml: Debian 11's python3-toml, the reader
    there when tomli is missing. Every file test runs with each."""
    monkeypatch.setattr(toml_reader, "loads", READERS[request.param])
    return request.param


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "kvm-telegraf.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def refused(path: str) -> str:
    with pytest.raises(click.BadParameter) as refused:
        load_config_file(path, SCHEMA)
    message = refused.value.format_message()
    assert "\n" not in message
    return message


def test_a_config_file_becomes_click_defaults_with_dashes_read_as_underscores(reader, tmp_path):
    path = write(tmp_path, 'timeout = "2s"\nlog-level = "debug"\n')
    assert load_config_file(path, SCHEMA) == {"timeout": "2s", "log_level": "debug"}


def test_a_repeatable_key_takes_a_list_a_single_string_or_a_table(reader, tmp_path):
    path = write(
        tmp_path,
        'uri = "qemu:///system"\ndomain = ["web-*", "db-*"]\n'
        '[metadata_tag]\nnova_name = "metadata/n"\nowner = "metadata/o"\n',
    )
    assert load_config_file(path, SCHEMA) == {
        "uri": ["qemu:///system"],
        "domain": ["web-*", "db-*"],
        "metadata_tag": ["nova_name=metadata/n", "owner=metadata/o"],
    }


def test_a_single_string_stays_a_string_for_a_key_that_is_not_repeatable(reader, tmp_path):
    path = write(tmp_path, 'log_level = "warn"\n')
    assert load_config_file(path, SCHEMA) == {"log_level": "warn"}


def test_an_unknown_key_is_refused_naming_it_and_the_known_ones(reader, tmp_path):
    path = write(tmp_path, 'uri = "qemu:///system"\ntimeout_s = 3\nintervall = "10s"\n')
    with pytest.raises(click.BadParameter) as refused:
        load_config_file(path, SCHEMA)
    message = refused.value.format_message()
    assert "unknown key(s) intervall, timeout_s" in message
    assert "known keys: domain, log_level, metadata_tag, timeout, uri" in message
    assert "\n" not in message


def test_a_file_that_cannot_be_read_is_one_line_naming_the_path(reader, tmp_path):
    missing = str(tmp_path / "absent.toml")
    with pytest.raises(click.BadParameter, match="cannot read .*absent.toml: No such file or directory"):
        load_config_file(missing, SCHEMA)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("uri = qemu:///system\n", 1),
        ('uri = "qemu:///system"\nuri = "qemu:///session"\n', 2),
        ("timeout = \n", 1),
        ("timeout = 5s\n", 1),
        ('uri = "qemu:///sys\n', 1),
        ('domain = "web-\\q"\n', 1),
        ('domain = ["a" "b"]\n', 1),
        ('log_level = "warn"\n[metadata_tag]\n[metadata_tag]\n', 3),
    ],
)
def test_a_file_that_is_not_toml_is_one_line_naming_the_path_the_readers_reason_and_the_line(
    reader, tmp_path, text, line
):
    path = write(tmp_path, text)
    not_toml = rf"Invalid value for --config: {re.escape(path)} is not valid TOML: \S.* \(at line {line}, column \d+\)"
    assert re.fullmatch(not_toml, refused(path))


def test_tomllib_names_the_reason_and_the_column(tmp_path, monkeypatch):
    monkeypatch.setattr(toml_reader, "loads", toml_reader.loads_with_tomllib)
    path = write(tmp_path, "uri = qemu:///system\n")
    assert refused(path) == f"Invalid value for --config: {path} is not valid TOML: Invalid value (at line 1, column 7)"


@pytest.mark.parametrize(
    "text",
    [
        'domain = ["web-*", "db-*"\n',
        "domain = ['web-*'\n",
        'domain = [\n  "web-*", # ]\n  "db-*"\n',
        'domain = ["web-*",',
        '[metadata_tag]\nx = {a = "1"\n',
        "x = {a = , b = 1}\n",
    ],
)
def test_a_file_cut_short_inside_a_list_or_table_is_not_toml_for_either_reader(reader, tmp_path, text):
    # toml read the first three as ["web-*", ""], [""] and ["web-*", ""], and crashed on the last three.
    path = write(tmp_path, text)
    assert refused(path).startswith(f"Invalid value for --config: {path} is not valid TOML: ")


# Strings with the characters that could fool a reader looking for where a list ends: brackets, braces, '#'
# and quotes, as basic ("...") and literal ('...') TOML strings; lists on one line or several, with comments.
TRICKY = st.text(alphabet=st.sampled_from(list("ab-*/:[]{}#\"'\\= \t\u00e9")), max_size=12)


@st.composite
def toml_string(draw: st.DrawFn) -> str:
    value = draw(TRICKY)
    literal = "'" not in value and "\t" not in value and draw(st.booleans())
    return f"'{value}'" if literal else json.dumps(value)


@st.composite
def toml_list(draw: st.DrawFn) -> str:
    separator = draw(st.sampled_from([", ", ",\n  ", ",\n  # a ] comment [ {\n  "]))
    return "[" + separator.join(draw(st.lists(toml_string(), max_size=3))) + "]"


@st.composite
def config_text(draw: st.DrawFn) -> str:
    keys = draw(st.lists(st.sampled_from(["uri", "domain", "exclude_domain", "log_level"]), unique=True, max_size=3))
    comment = st.sampled_from(["", " # ]", " # [ {"])
    lines = [f"{key} = {draw(st.one_of(toml_string(), toml_list()))}{draw(comment)}" for key in keys]
    if draw(st.booleans()):
        lines += ["[metadata_tag]", *(f"k{i} = {draw(toml_string())}" for i in range(draw(st.integers(0, 2))))]
    return "\n".join(lines) + "\n"


@settings(max_examples=100, deadline=None)
@given(config_text())
def test_no_valid_file_is_taken_for_one_cut_short_by_the_toml_reader(text):
    toml_reader.loads_with_tomllib(text)  # valid TOML
    try:
        toml_reader.loads_with_toml(text)
    except toml_reader.TOMLDecodeError as exc:  # toml's own misreadings are its own ("\"" is not one of ours)
        assert str(exc) != "Unclosed array (at end of document)"


@settings(max_examples=100, deadline=None)
@given(config_text(), toml_list(), st.data())
def test_a_file_cut_anywhere_inside_its_last_list_is_refused_by_both_readers(text, last, data):
    whole = f"{text}collect = {last}"
    cut = data.draw(st.integers(len(whole) - len(last) + 1, len(whole) - 1))
    for read in (toml_reader.loads_with_tomllib, toml_reader.loads_with_toml):
        with pytest.raises(toml_reader.TOMLDecodeError):
            read(whole[:cut])


def test_a_list_of_strings_and_numbers_is_refused_by_either_reader_each_in_its_words(reader, tmp_path):
    path = write(tmp_path, 'domain = ["web-*", 1]\n')
    said = {
        "tomllib": f"domain in {path} must be a string or a list of strings, not a list holding a string, an integer",
        "toml": f"{path} is not valid TOML: Not a homogeneous array (at line 1, column 1)",  # TOML 0.5's rule
    }
    assert refused(path) == f"Invalid value for --config: {said[reader]}"


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="Python 3.11 and later read with tomllib")
def test_without_tomli_python_3_9_and_3_10_read_with_toml(monkeypatch):
    monkeypatch.setitem(sys.modules, "tomli", None)  # as Debian 11, which has python3-toml only
    with pytest.raises(toml_reader.TOMLDecodeError, match="^This float doesn't have a leading digit"):
        toml_reader.loads("uri = qemu:///system\n")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="before Python 3.11 there is no tomllib")
def test_python_3_11_and_later_read_with_tomllib_even_where_toml_is_installed():
    with pytest.raises(toml_reader.TOMLDecodeError, match=r"^Invalid value \(at line 1, column 7\)$"):
        toml_reader.loads("uri = qemu:///system\n")


@pytest.mark.parametrize(
    ("toml", "refusal"),
    [
        ("uri = 5\n", "uri in {path} must be a string or a non-empty list of strings, not an integer"),
        ("uri = []\n", "uri in {path} must be a string or a non-empty list of strings, not an empty list"),
        ("domain = [1, 2]\n", "domain in {path} must be a string or a list of strings, not a list holding an integer"),
        ("[domain]\nx = 1\n", "domain in {path} must be a string or a list of strings, not a table"),
        (
            "[metadata_tag]\nx = 1\n",
            "metadata_tag in {path} must be a string, a list of strings, or a table of strings, not a table",
        ),
        (
            "timeout = true\n",
            'timeout in {path} must be a duration (a string such as "10s", or a number of seconds), not a boolean',
        ),
        ('timeout = ["5s"]\n', "timeout in {path} must be a duration"),
        ("log_level = 3\n", "log_level in {path} must be a string, not an integer"),
        (
            "timeout = 1979-05-27\n",
            'timeout in {path} must be a duration (a string such as "10s", or a number of seconds), not a date or time',
        ),
    ],
)
def test_a_key_of_the_wrong_toml_type_is_refused_naming_the_key_the_file_and_what_was_expected(
    reader, tmp_path, toml, refusal
):
    path = write(tmp_path, toml)
    with pytest.raises(click.BadParameter) as refused:
        load_config_file(path, SCHEMA)
    message = refused.value.format_message()
    assert refusal.format(path=path) in message and "\n" not in message


def test_a_file_that_is_not_utf8_is_one_line_naming_the_path(reader, tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('domain = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(click.BadParameter, match=f"{path} is not UTF-8 text \\(byte 0xe9 at offset 13\\)"):
        load_config_file(str(path), SCHEMA)


def test_a_config_file_may_set_every_long_option_of_a_drop_in_each_as_its_type_implies():
    assert config_schema(main) == {
        "uri": SOME_STRINGS,
        "read_write": FLAG,
        "interval": DURATION,
        "timeout": DURATION,
        "domain": STRINGS,
        "exclude_domain": STRINGS,
        "device": STRINGS,
        "exclude_device": STRINGS,
        "measurement": SOME_STRINGS,
        "collect": STRINGS,
        "features_refresh": DURATION,
        "guest_refresh": DURATION,
        "hypervisor_tag": FLAG,
        "nova": FLAG,
        "metadata_tag": STRING_TABLE,
        "log_level": STRING,
    }


def test_what_is_for_a_person_at_a_terminal_is_no_config_key():
    assert {"config", "once", "output_format", "sample", "version"}.isdisjoint(config_schema(main))


@pytest.mark.parametrize(
    ("make", "refusal"),
    [
        (lambda tmp: "/dev/zero", "/dev/zero is a character device, not a regular file"),
        (lambda tmp: "/dev/null", "/dev/null is a character device, not a regular file"),
        (lambda tmp: os.symlink("/dev/zero", tmp / "link.toml") or str(tmp / "link.toml"), "is a character device"),
        (lambda tmp: os.mkfifo(tmp / "fifo.toml") or str(tmp / "fifo.toml"), "fifo.toml is a FIFO, not a regular file"),
        (lambda tmp: str(tmp), "is a directory, not a regular file"),
        (lambda tmp: os.truncate(write(tmp, ""), 10 << 30) or str(tmp / "kvm-telegraf.toml"), "is 10737418240 bytes"),
        (lambda tmp: write(tmp, "#" * CONFIG_MAX_BYTES + "\n"), "is 1048577 bytes, more than 1 MiB"),
    ],
    ids=["dev-zero", "dev-null", "symlink-to-a-device", "fifo", "directory", "sparse-10-gib", "1-mib-and-a-byte"],
)
def test_a_config_that_is_not_a_regular_file_of_at_most_1_mib_is_refused_before_it_is_read(tmp_path, make, refusal):
    path = make(tmp_path)
    with pytest.raises(click.BadParameter) as refused:
        load_config_file(path, SCHEMA)
    message = refused.value.format_message()
    assert message.startswith("Invalid value for --config: ") and refusal in message, message


def test_a_config_that_is_a_socket_is_refused(tmp_path):
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(tmp_path / "s.toml"))
        with pytest.raises(click.BadParameter, match="s.toml is a socket, not a regular file"):
            load_config_file(str(tmp_path / "s.toml"), SCHEMA)


def test_a_config_of_exactly_1_mib_is_read(tmp_path):
    text = 'log_level = "warn"\n'
    path = write(tmp_path, text + "#" * (CONFIG_MAX_BYTES - len(text) - 1) + "\n")
    assert os.path.getsize(path) == CONFIG_MAX_BYTES
    assert load_config_file(path, SCHEMA) == {"log_level": "warn"}


@pytest.mark.parametrize("nesting", ["x = " + "[" * 100_000, "x = " + "{a=" * 5_000], ids=["arrays", "inline-tables"])
def test_a_config_whose_values_nest_too_deeply_is_one_line_not_a_traceback(tmp_path, nesting):
    path = write(tmp_path, nesting + "\n")
    with pytest.raises(click.BadParameter, match="is not valid TOML: its arrays or inline tables nest too deeply"):
        load_config_file(path, SCHEMA)


@pytest.mark.parametrize(
    ("encoding", "named"),
    [
        ("utf-8-sig", "a UTF-8 byte-order mark (EF BB BF)"),
        ("utf-16", "a UTF-16 byte-order mark"),
        ("utf-32", "a UTF-32 byte-order mark"),
    ],
)
def test_a_config_that_starts_with_a_byte_order_mark_is_refused_naming_it(tmp_path, encoding, named):
    path = tmp_path / "kvm-telegraf.toml"
    path.write_bytes('uri = "qemu:///system"\n'.encode(encoding))
    with pytest.raises(click.BadParameter) as refused:
        load_config_file(str(path), SCHEMA)
    assert refused.value.format_message() == (
        f"Invalid value for --config: {path} starts with {named}, which TOML does not allow: "
        "save it as UTF-8 without one"
    )


def test_a_byte_order_mark_after_the_start_is_a_toml_error_as_any_stray_character(tmp_path):
    path = write(tmp_path, 'uri = "qemu:///system"\n\ufeff')
    with pytest.raises(click.BadParameter, match="is not valid TOML"):
        load_config_file(path, SCHEMA)
