"""The click CLI, driven in-process through CliRunner with a replayed libvirt source."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Sequence, Union

import pytest

from kvm_telegraf import __version__
from kvm_telegraf.cli import FORMATS, GROUP_NAMES, main
from kvm_telegraf.log import LINE_MAX_BYTES
from kvm_telegraf.measurements import MEASUREMENTS
from kvm_telegraf.snapshot import snapshots_from_json
from tests.conftest import load_snapshots
from tests.harness.cli import runner
from tests.replay import ReplayConnection


@pytest.fixture
def replay() -> ReplayConnection:
    return ReplayConnection(load_snapshots("lab-running.json"))


def invoke(args: List[str], replay=None, input=None):
    obj = {"opener": lambda _uri: replay} if replay is not None else {}
    return runner().invoke(main, args, input=input, obj=obj)


def refused_choice(option: str, value: str, choices: Sequence[str]) -> List[str]:
    """What click's refusal of a choice names in each click's words (7.1: "invalid choice: X. (choose from A, B)";
    8.1: "'X' is not one of 'A', 'B'."): the option, the value and every choice."""
    return [f"'{option}'", value, *choices]


def says(line: str, message: Union[str, List[str]]) -> bool:
    """One E! line holding the message, or every piece of it."""
    return line.startswith("E! ") and all(
        piece in line for piece in ([message] if isinstance(message, str) else message)
    )


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


def test_a_long_run_freezes_what_start_up_made_and_collects_garbage_less_often(replay):
    assert gc.get_freeze_count() == 0 and gc.get_threshold()[0] < 10_000
    result = invoke([], replay, input="\n")
    assert result.exit_code == 0, result.stderr
    assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == 10_000


def test_once_leaves_the_garbage_collector_as_python_set_it(replay):
    invoke(["--once"], replay)
    assert gc.get_freeze_count() == 0 and gc.get_threshold()[0] < 10_000


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
        (["--timeout", "\u0663s"], "not a duration: '\u0663s' (use e.g. 10s, 500ms, 5m: ASCII digits and no spaces)"),
        (["--timeout", " 5s"], "not a duration: ' 5s'"),
        (["--features-refresh", "-1s"], "not a duration"),
        (["--measurement", "vm_nope"], refused_choice("--measurement", "vm_nope", MEASUREMENTS)),
        (["--config", "/nonexistent.toml"], "cannot read /nonexistent.toml"),
        (["--interval", "2s", "--timeout", "5s"], "must be shorter than --interval"),
        (["--once", "--interval", "10s"], "exclude each other"),
        (["--format", "table"], "--format table needs --once"),
        (["--once", "--sample", "1s"], "--sample needs --format table"),
        (["--once", "--format", "csv"], refused_choice("--format", "csv", FORMATS)),
        (["--interval", "inf"], "it must be finite"),
        (["--once", "--timeout", "1e400"], "it must be finite"),
        (["--once", "--timeout", "2h"], "'2h' is out of range: 10ms to 1h"),
        (["--interval", "0.01s"], "out of range: 100ms to 24h"),
        (["--once", "--collect", "nope"], refused_choice("--collect", "nope", (*GROUP_NAMES, "all"))),
    ],
)
def test_bad_options_give_one_error_line_and_exit_2(args, message):
    result = invoke(args)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert says(line, message), line


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("uri = 5", "uri in {path} must be a string or a non-empty list of strings, not an integer"),
        (
            "measurement = []",
            "measurement in {path} must be a string or a non-empty list of strings, not an empty list",
        ),
        ("[domain]\nx = 1", "domain in {path} must be a string or a list of strings, not a table"),
        ("timeout = -1.0", "duration must be positive: -1.0"),
        ('timeout = "5s "', "not a duration: '5s '"),
        ("timeout = 0.0", "duration must be positive: 0.0"),
        ("timeout = nan", "not a duration: nan (it must be finite)"),
        ("interval = inf", "not a duration: inf (it must be finite)"),
        ('nova = "yes"', "nova in {path} must be true or false, not a string"),
        ('collect = ["events", "nope"]', refused_choice("--collect", "nope", (*GROUP_NAMES, "all"))),
    ],
)
def test_a_config_value_of_the_wrong_type_or_range_is_one_error_line_and_exit_2(tmp_path, toml, message):
    path = tmp_path / "kvm-telegraf.toml"
    path.write_text(toml + "\n")
    result = invoke(["--config", str(path), "--once"])
    assert result.exit_code == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert says(line, message.format(path=path) if isinstance(message, str) else message), line


def test_format_table_prints_one_row_per_vm_and_no_line_protocol(replay):
    result = invoke(["--once", "--format", "table"], replay)
    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "STATE", "CPU%", "VCPUS", "MEMORY", "USED", "/", "ACTUAL"]
    assert [row.split()[:4] for row in rows] == [["ktlab-01", "running", "-", "1"], ["ktlab-02", "running", "-", "1"]]


def test_format_table_with_sample_reads_twice_and_adds_cpu_percent_and_rates(replay):
    result = invoke(["--once", "--format", "table", "--sample", "10ms"], replay)
    assert result.exit_code == 0, result.stderr
    assert len(replay.calls) == 2
    header, *rows = result.stdout.splitlines()
    assert " ".join(header.split()[-8:]) == "NET RX/s NET TX/s DISK READ/s DISK WRITE/s"
    for row in rows:  # the replay's counters moved over 2 s of recording: the values only need to be there
        cpu_percent, rates = row.split()[2], row.split()[-8:]
        assert float(cpu_percent) > 0
        assert all(float(number) > 0 for number in rates[0::2])
        assert all(unit.endswith("B/s") for unit in rates[1::2])


def test_format_table_exits_1_with_one_prefixed_line_when_libvirt_cannot_be_reached():
    def refuse(uri):
        raise OSError("Failed to connect socket to '/run/libvirt/libvirt-sock-ro': No such file or directory")

    result = runner().invoke(main, ["--once", "--format", "table"], obj={"opener": refuse})
    assert result.exit_code == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("E! cannot connect to qemu:///system")


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


@pytest.mark.parametrize("setting", [["--collect", "all"], ["--collect", "events"], ["--config", 'collect = "events"']])
def test_collect_events_is_accepted_as_an_option_all_or_a_config_key(tmp_path, replay, setting):
    if setting[0] == "--config":
        (tmp_path / "kvm.toml").write_text(setting[1] + "\n")
        setting = ["--config", str(tmp_path / "kvm.toml")]
    result = invoke([*setting, "--once", "--measurement", "vm_metrics"], replay)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len([line for line in lines if line.startswith("vm_metrics,")]) == 2
    assert not [line for line in lines if line.startswith("vm_events")], "a replay pushes no events"


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


# --- several hypervisors, metadata tags -------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metadata-tag", "nova_name"], "expected TAG=XPATH"),
        (["--metadata-tag", "uuid=metadata/x"], "tag name 'uuid' is taken"),
        (["--metadata-tag", "x=metadata/nova:instance["], "is not one ElementTree can evaluate"),
        (["--uri", "qemu:///system", "--uri", "qemu:///system"], "qemu:///system is given twice"),
    ],
)
def test_bad_metadata_tags_and_repeated_uris_give_one_error_line_and_exit_2(args, message):
    result = invoke(args)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("E! ") and message in line


@pytest.mark.parametrize(
    ("args", "env", "toml", "message"),
    [
        (["--uri", ""], {}, None, "Invalid value for '--uri': must not be empty"),
        (["--uri", "  "], {}, None, "Invalid value for '--uri': must not be empty"),
        (["--uri", "qemu:///system", "--uri", ""], {}, None, "must not be empty"),
        ([], {"KVM_TELEGRAF_URI": ""}, None, "KVM_TELEGRAF_URI is set but empty"),
        ([], {"KVM_TELEGRAF_URI": " "}, None, "KVM_TELEGRAF_URI is set but empty"),
        ([], {}, 'uri = ""', "must not be empty"),
        ([], {}, 'uri = ["qemu:///system", "\t"]', "must not be empty"),
        ([], {"KVM_TELEGRAF_URI": ""}, 'uri = "qemu:///system"', "KVM_TELEGRAF_URI is set but empty"),
    ],
    ids=[
        "option",
        "blank-option",
        "one-of-two",
        "env",
        "blank-env",
        "config",
        "blank-in-config-list",
        "env-and-config",
    ],
)
def test_an_empty_uri_from_the_command_line_the_environment_or_the_config_is_refused(
    tmp_path, args, env, toml, message
):
    if toml is not None:
        (tmp_path / "kvm.toml").write_text(toml + "\n")
        args = ["--config", str(tmp_path / "kvm.toml"), *args]
    result = runner().invoke(main, [*args, "--once"], env=env, obj={"opener": lambda _uri: pytest.fail("opened")})
    assert result.exit_code == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("E! ") and message in line, line


def test_a_uri_on_the_command_line_wins_over_an_empty_one_in_the_environment(replay):
    result = runner().invoke(
        main, ["--uri", "qemu:///system", "--once"], env={"KVM_TELEGRAF_URI": ""}, obj={"opener": lambda _uri: replay}
    )
    assert result.exit_code == 0, result.stderr


HUGE = "x" * 200_000  # what an argument may hold: Linux takes up to 128 KiB per argument


@pytest.mark.parametrize(
    ("args", "kept"),
    [
        (["--timeout", HUGE], "Invalid value for '--timeout': not a duration: 'xxx"),
        (["--measurement", HUGE], ["Invalid value for '--measurement': ", "xxx"]),  # click's own message
        (["--collect", HUGE], ["Invalid value for '--collect': ", "xxx"]),
        (["--metadata-tag", HUGE], "Invalid value for '--metadata-tag': expected TAG=XPATH, got 'xxx"),
        (["--metadata-tag", f"t=/x{HUGE}"], "Invalid value for '--metadata-tag': XPath '/x"),
        (["--uri", "test:///" + HUGE, "--uri", "test:///" + HUGE], "Invalid value for '--uri': test:///xxx"),
        (["--config", "/nonexistent/" + HUGE], "Invalid value for --config: cannot read /nonexistent/xxx"),
        (["--domain", HUGE, "--log-level", HUGE], ["Invalid value for '--log-level': ", "xxx"]),
    ],
    ids=["duration", "choice", "collect", "metadata-tag", "xpath", "uri-twice", "config-path", "log-level"],
)
def test_a_usage_error_echoing_a_huge_value_is_one_line_within_the_bound(args, kept):
    result = invoke([*args, "--once"])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    # click refuses a choice in its own words (7.1: "invalid choice: X", 8.x: "'X' is not one of"): a list of pieces.
    assert says(line, kept) if isinstance(kept, list) else line.startswith("E! " + kept), line[:200]
    assert len(line.encode()) <= LINE_MAX_BYTES
    assert "more characters" in line or " bytes cut)... " in line


def test_a_config_file_with_thousands_of_unknown_keys_is_one_line_within_the_bound(tmp_path):
    path = tmp_path / "kvm.toml"
    path.write_text("".join(f'key{i} = "{"y" * 100}"\n' for i in range(5_000)))
    result = invoke(["--config", str(path), "--once"])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("E! Invalid value for --config: unknown key(s) key0, key1")
    assert len(line.encode()) <= LINE_MAX_BYTES and "more characters" in line


def test_a_huge_uri_in_a_config_file_gives_a_connect_error_line_within_the_bound(tmp_path):
    uri = "qemu+tcp://h/system?name=" + "z" * 1_000_000  # just under the config file's 1 MiB

    def refuse(uri):
        raise OSError(f"Unable to parse URI {uri}")  # libvirt echoes the URI in its error

    path = tmp_path / "kvm.toml"
    path.write_text(f'uri = "{uri}"\n')
    result = runner().invoke(main, ["--config", str(path), "--once"], obj={"opener": refuse})
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("E! cannot connect to qemu+tcp://h/system?name=zzz") and len(line.encode()) <= LINE_MAX_BYTES


def test_libvirts_own_error_text_echoing_a_huge_uri_is_clipped_in_a_real_process():
    uri = "qemu+unix:///system?socket=/nonexistent/" + "y" * 100_000
    argv = [str(Path(sys.executable).with_name("kvm-telegraf")), "--once", "--uri", uri]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("E! cannot connect to qemu+unix:///system?socket=/nonexistent/yyy")
    # libvirt's text, clipped (libvirt 7.0 refuses so long a socket path before it echoes it).
    assert (": Path /nonexistent/yyy" in line and line.endswith(" more characters)")) or line.endswith(
        ": Cannot allocate memory"
    ), line[-300:]
    assert len(line.encode()) <= LINE_MAX_BYTES


def test_a_repeated_uri_that_names_credentials_is_refused_without_showing_them():
    result = invoke(["--uri", "qemu+ssh://root:pw@kvm1/system", "--uri", "qemu+ssh://root:pw@kvm1/system"])
    assert "qemu+ssh://***@kvm1/system is given twice" in result.stderr and "pw" not in result.stderr


def test_several_uris_give_one_batch_whose_points_name_their_hypervisor():
    connections = {
        uri: ReplayConnection(load_snapshots("lab-running.json"), hostname=name)
        for uri, name in (("qemu+ssh://kvm1/system", "kvm1"), ("qemu+tls://kvm2/system", "kvm2"))
    }
    args = [arg for uri in connections for arg in ("--uri", uri)]
    result = runner().invoke(
        main, [*args, "--measurement", "vm_metrics"], input="\n\n", obj={"opener": connections.get}
    )
    assert result.exit_code == 0, result.stderr
    first, second = batches(result.stdout)
    assert len(first) == len(second) == 4
    assert sorted(line.split(",")[1] for line in first) == ["hypervisor=kvm1"] * 2 + ["hypervisor=kvm2"] * 2


def test_one_uri_gets_a_hypervisor_tag_only_when_asked(replay):
    assert "hypervisor=" not in invoke(["--once"], replay).stdout
    lines = invoke(["--once", "--hypervisor-tag"], replay).stdout.splitlines()
    assert lines and all(",hypervisor=lab-host," in line for line in lines)


def test_nova_tags_every_point_of_an_openstack_guest_even_without_vm_features():
    nova = ReplayConnection(load_snapshots("nova-metadata.json"))
    result = invoke(["--once", "--nova", "--measurement", "vm_devices", "--measurement", "vm_totals"], nova)
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    assert all(",nova_flavor=kt.tiny,nova_name=web\\ frontend\\ 01,nova_project=demo," in line for line in lines)


def test_a_config_file_takes_metadata_tags_as_a_table_and_one_uri_as_a_string(tmp_path):
    nova = ReplayConnection(load_snapshots("nova-metadata.json"))
    config = tmp_path / "kvm.toml"
    config.write_text(
        'uri = "qemu:///system"\nmeasurement = "vm_metrics"\n'
        "[metadata_tag]\n"
        'project = "metadata/nova:instance/nova:owner/nova:project"\n'
        'flavor = "/domain/metadata//@name"\n'
    )
    result = invoke(["--config", str(config), "--once"], nova)
    assert result.exit_code == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("vm_metrics,flavor=kt.tiny,project=demo,uuid=")


@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_a_config_on_dev_zero_or_a_fifo_is_one_error_line_and_exit_2_at_once_in_a_real_process(tmp_path, target):
    if target == "fifo":
        target = str(tmp_path / "kvm-telegraf.toml")
        os.mkfifo(target)  # nobody writes to it: reading it would block for ever
    argv = [str(Path(sys.executable).with_name("kvm-telegraf")), "--config", target, "--once"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"E! Invalid value for --config: {target} is a ") and "not a regular file" in line


def test_a_bad_metadata_xpath_in_a_real_process_is_one_error_line_and_exit_2():
    argv = [str(Path(sys.executable).with_name("kvm-telegraf")), "--once", "--metadata-tag", "x=metadata/[nova:name"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("E! Invalid value for '--metadata-tag': XPath 'metadata/[nova:name' is not one")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('timeout = "5x"\n', "Invalid value for '--timeout': not a duration: '5x'"),
        ("timeout = \n", "is not valid TOML"),
        ('tiemout = "5s"\n', "unknown key(s) tiemout"),
        ('measurement = ["vm_nope"]\n', refused_choice("--measurement", "vm_nope", MEASUREMENTS)),
    ],
)
def test_a_bad_config_file_gives_one_error_line_and_exit_2(tmp_path, toml, message):
    config = tmp_path / "kvm-telegraf.toml"
    config.write_text(toml)
    result = invoke(["--config", str(config), "--once"])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert says(line, message), line
