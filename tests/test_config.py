"""Start-up configuration: Telegraf-style durations and the ``--config`` TOML file, on their own.

The CLI tests drive these through click; here each rule is pinned directly.
"""

from __future__ import annotations

import math
from pathlib import Path

import click
import pytest

from kvm_telegraf.cli import config_schema, main
from kvm_telegraf.config import (
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
        (" 3s ", 3.0),
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


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "kvm-telegraf.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_config_file_becomes_click_defaults_with_dashes_read_as_underscores(tmp_path):
    path = write(tmp_path, 'timeout = "2s"\nlog-level = "debug"\n')
    assert load_config_file(path, SCHEMA) == {"timeout": "2s", "log_level": "debug"}


def test_a_repeatable_key_takes_a_list_a_single_string_or_a_table(tmp_path):
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


def test_a_single_string_stays_a_string_for_a_key_that_is_not_repeatable(tmp_path):
    path = write(tmp_path, 'log_level = "warn"\n')
    assert load_config_file(path, SCHEMA) == {"log_level": "warn"}


def test_an_unknown_key_is_refused_naming_it_and_the_known_ones(tmp_path):
    path = write(tmp_path, 'uri = "qemu:///system"\ntimeout_s = 3\nintervall = "10s"\n')
    with pytest.raises(click.BadParameter) as refused:
        load_config_file(path, SCHEMA)
    message = refused.value.format_message()
    assert "unknown key(s) intervall, timeout_s" in message
    assert "known keys: domain, log_level, metadata_tag, timeout, uri" in message
    assert "\n" not in message


def test_a_file_that_cannot_be_read_is_one_line_naming_the_path(tmp_path):
    missing = str(tmp_path / "absent.toml")
    with pytest.raises(click.BadParameter, match="cannot read .*absent.toml: No such file or directory"):
        load_config_file(missing, SCHEMA)


def test_a_file_that_is_not_toml_is_one_line_naming_the_path(tmp_path):
    path = write(tmp_path, "uri = qemu:///system\n")
    with pytest.raises(click.BadParameter) as refused:
        load_config_file(path, SCHEMA)
    assert refused.value.format_message() == (
        f"Invalid value for --config: {path} is not valid TOML: Invalid value (at line 1, column 7)"
    )


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
    ],
)
def test_a_key_of_the_wrong_toml_type_is_refused_naming_the_key_the_file_and_what_was_expected(tmp_path, toml, refusal):
    path = write(tmp_path, toml)
    with pytest.raises(click.BadParameter) as refused:
        load_config_file(path, SCHEMA)
    message = refused.value.format_message()
    assert refusal.format(path=path) in message and "\n" not in message


def test_a_file_that_is_not_utf8_is_one_line_naming_the_path(tmp_path):
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
