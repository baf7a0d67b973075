"""telegraf.d/kvm-telegraf.conf, read the way Telegraf reads it.

Telegraf cannot be installed here, so its config loader's TOML library, influxdata/toml
(tests/go/tomlcheck, conftest's toml_parse), parses the file; the tests then check the keys and
values Telegraf's execd input expects (plugins/inputs/execd/sample.conf).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

import pytest

from kvm_telegraf.cli import main
from kvm_telegraf.config import parse_duration

DROP_IN = Path(__file__).resolve().parent.parent / "telegraf.d" / "kvm-telegraf.conf"

# Keys of execd's sample.conf, plus `interval`, which every Telegraf input takes.
EXECD_KEYS = {"command", "environment", "signal", "restart_delay", "buffer_size", "stop_on_error", "data_format"}
INPUT_KEYS = {"interval", "name_override", "name_prefix", "name_suffix", "alias", "tags"}
# Go's time.ParseDuration, which Telegraf's config.Duration uses for strings.
GO_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+\Z")


@pytest.fixture(scope="module")
def execd(toml_parse) -> Dict[str, Any]:
    tables = toml_parse(DROP_IN.read_text())
    assert list(tables) == ["inputs"] and list(tables["inputs"]) == ["execd"]
    (plugin,) = tables["inputs"]["execd"]
    return plugin


def option(argv: List[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_checker_rejects_what_telegraf_would_reject(toml_parse):
    assert toml_parse('[[inputs.execd]]\n  command = ["/bin/true"]\n') == {
        "inputs": {"execd": [{"command": ["/bin/true"]}]}
    }
    with pytest.raises(AssertionError):
        toml_parse('[[inputs.execd]]\n  command = ["/bin/true"\n')


def test_the_drop_in_is_one_execd_input_with_only_keys_telegraf_knows(execd):
    assert set(execd) <= EXECD_KEYS | INPUT_KEYS
    assert {"command", "signal", "restart_delay", "data_format", "interval"} <= set(execd)


def test_the_command_is_an_argv_array_with_an_absolute_path_to_kvm_telegraf(execd):
    command = execd["command"]
    assert isinstance(command, list) and all(isinstance(arg, str) for arg in command)
    assert Path(command[0]).is_absolute() and Path(command[0]).name == "kvm-telegraf"


def test_the_command_options_are_ones_kvm_telegraf_accepts(execd):
    context = main.make_context("kvm-telegraf", execd["command"][1:])
    assert not context.params["once"] and context.params["interval"] is None, "Telegraf sends the newlines"


def test_telegraf_signals_on_stdin_and_reads_influx_line_protocol(execd):
    assert execd["signal"] == "STDIN"
    assert execd["data_format"] == "influx"


def test_interval_and_restart_delay_are_go_duration_strings(execd):
    for key in ("interval", "restart_delay"):
        assert isinstance(execd[key], str) and GO_DURATION.match(execd[key]), key


def test_the_stats_call_deadline_stays_below_the_interval(execd):
    timeout = parse_duration(option(execd["command"], "--timeout"))
    assert timeout < parse_duration(execd["interval"])


def test_the_comments_say_how_interval_and_timeout_relate():
    text = DROP_IN.read_text()
    interval_comment = text.split("\n  interval =", 1)[0].rsplit("\n\n", 1)[1]
    assert "--timeout" in interval_comment and "below" in interval_comment


def test_every_commented_command_for_another_install_path_parses_with_an_absolute_path(toml_parse):
    alternatives = [
        line.split("# ", 1)[1] for line in DROP_IN.read_text().splitlines() if line.strip().startswith("# command =")
    ]
    paths = []
    for line in alternatives:
        command = toml_parse(line + "\n")["command"]
        assert Path(command[0]).is_absolute() and Path(command[0]).name == "kvm-telegraf"
        paths.append(command[0])
    assert "/usr/local/bin/kvm-telegraf" in paths and "/usr/bin/kvm-telegraf" in paths
