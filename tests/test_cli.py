"""The click CLI, driven in-process through CliRunner with a replayed libvirt source."""

from __future__ import annotations

from typing import List

import pytest
from click.testing import CliRunner

from kvm_telegraf import __version__
from kvm_telegraf.cli import main
from kvm_telegraf.snapshot import snapshots_from_json
from tests.conftest import load_snapshots
from tests.replay import ReplayConnection


def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()


@pytest.fixture
def replay() -> ReplayConnection:
    return ReplayConnection(load_snapshots("lab-running.json"))


def invoke(args: List[str], replay=None, input=None):
    obj = {"opener": lambda _uri: replay} if replay is not None else {}
    return runner().invoke(main, args, input=input, obj=obj)


def batches(output: str) -> List[List[str]]:
    """Lines grouped by their timestamp, in order."""
    grouped: List[List[str]] = []
    for line in output.splitlines():
        if not grouped or grouped[-1][0].rsplit(" ", 1)[1] != line.rsplit(" ", 1)[1]:
            grouped.append([])
        grouped[-1].append(line)
    return grouped


def test_each_newline_on_stdin_gives_one_batch_and_eof_ends_the_run(replay):
    result = invoke([], replay, input="\n\n")
    assert result.exit_code == 0, result.stderr
    first, second = batches(result.stdout)
    assert len(first) == len(second) == 2 * (1 + 1 + 4 + 1)
    assert len(replay.calls) == 2


def test_the_bulk_call_asks_only_for_the_six_groups_the_measurements_use(replay):
    invoke(["--once"], replay)
    assert replay.calls == [(1 | 2 | 4 | 8 | 16 | 32, 0)]


def test_once_prints_all_four_measurements_and_exits_0(replay):
    result = invoke(["--once"], replay)
    assert result.exit_code == 0
    measurements = {line.split(",", 1)[0] for line in result.stdout.splitlines()}
    assert measurements == {"vm_metrics", "vm_features", "vm_devices", "vm_totals"}


def test_once_exits_1_with_one_prefixed_line_when_libvirt_cannot_be_reached():
    def refuse(uri):
        raise OSError("Failed to connect socket to '/run/libvirt/libvirt-sock-ro': No such file or directory")

    result = runner().invoke(main, ["--once"], obj={"opener": refuse})
    assert result.exit_code == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("E! cannot connect to qemu:///system: Failed to connect socket")


def test_a_newline_while_libvirt_is_down_costs_a_batch_not_the_process():
    def refuse(uri):
        raise OSError("connection refused")

    result = runner().invoke(main, [], input="\n\n\n", obj={"opener": refuse})
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr.count("E! ") == 1  # once per outage, not once per cycle


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "5x"], "not a duration: '5x'"),
        (["--features-refresh", "-1s"], "not a duration"),
        (["--measurement", "vm_nope"], "'vm_nope' is not one of"),
        (["--config", "/nonexistent.toml"], "cannot read /nonexistent.toml"),
        (["--interval", "2s", "--timeout", "5s"], "must be shorter than --interval"),
        (["--once", "--interval", "10s"], "exclude each other"),
    ],
)
def test_bad_options_give_one_error_line_and_exit_2(args, message):
    result = invoke(args)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("E! ") and message in line


def test_a_config_file_with_an_unknown_key_is_refused_naming_the_key(tmp_path):
    config = tmp_path / "kvm.toml"
    config.write_text('uri = "qemu:///system"\ntimeout_s = 3\n')
    result = invoke(["--config", str(config)])
    assert result.exit_code == 2
    assert "unknown key(s) timeout_s" in result.stderr


def test_a_config_file_sets_the_same_keys_as_the_options(tmp_path, replay):
    config = tmp_path / "kvm.toml"
    config.write_text('measurement = ["vm_metrics"]\nexclude_domain = ["*-02"]\ntimeout = "2s"\n')
    result = invoke(["--config", str(config), "--once"], replay)
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vm_metrics,") and "vm=ktlab-01 " in lines[0]


def test_domain_globs_select_and_exclude_by_name(replay):
    result = invoke(["--once", "--domain", "ktlab-0*", "--exclude-domain", "*1"], replay)
    assert {line.split("vm=")[1].split(" ")[0] for line in result.stdout.splitlines()} == {"ktlab-02"}


def test_version_prints_the_package_version():
    result = invoke(["--version"])
    assert result.stdout.strip() == f"kvm-telegraf, version {__version__}"


def test_record_saves_snapshots_that_load_back_as_recorded(tmp_path, replay):
    out = tmp_path / "snap.json"
    result = invoke(["record", str(out), "--cycles", "2", "--every", "10ms"], replay)
    assert result.exit_code == 0, result.stderr
    recorded = snapshots_from_json(out.read_text())
    original = load_snapshots("lab-running.json")
    assert [[d.stats for d in s.domains] for s in recorded] == [[d.stats for d in s.domains] for s in original]
    assert recorded[0].domains[0].config == original[0].domains[0].config
