"""What a run imports: the default run (Telegraf's stdin newlines, the four measurements, no ``--collect`` group)
loads no module that only a subcommand, an option or a group it was not given needs. Each module loaded stays
resident for the life of the process (its code objects, some 10 to 300 KiB), so one brought back quietly costs
every host memory (docs/performance.md, "Memory")."""

from __future__ import annotations

import pytest

from tests.harness.imports import modules_after_run

# Each module the default run must not load, and what needs it.
ONLY_WHEN_ASKED = {
    "kvm_telegraf.doctor": "the doctor subcommand",
    "kvm_telegraf.table": "--format table",
    "kvm_telegraf.toml_reader": "--config",
    "kvm_telegraf.hosts": "several --uri, or --hypervisor-tag",
    "kvm_telegraf.guest_agent": "--collect guest",
    "concurrent.futures": "nothing: worker.py hands answers back through its own Call",
    "json": "record",
    "pwd": "doctor",
    "shlex": "a message that names the --domain or --device globs",
}
DEFAULT_RUN = ["--uri", "test:///default"]


@pytest.fixture(scope="module")
def default_run() -> set:
    return modules_after_run(DEFAULT_RUN, stdin="\n\n")


def test_the_default_run_imports_no_group_module(default_run):
    assert sorted(name for name in default_run if name.startswith("kvm_telegraf.groups.")) == []


def test_the_default_run_imports_nothing_only_a_subcommand_or_an_option_it_was_not_given_needs(default_run):
    assert {name: why for name, why in ONLY_WHEN_ASKED.items() if name in default_run} == {}


def test_the_default_run_does_run_a_cycle_with_the_pipeline_the_modules_above_were_left_out_of(default_run):
    assert {"kvm_telegraf.pipeline", "kvm_telegraf.events", "kvm_telegraf.domain_xml"} <= default_run


@pytest.mark.parametrize(
    "args, groups",
    [
        (["--collect", "vcpu"], {"vcpu"}),
        (["--collect", "pools", "--collect", "events"], {"pools", "events"}),
        (["--collect", "backing", "--collect", "vcpu", "--collect", "backing"], {"backing", "vcpu"}),
    ],
)
def test_a_run_imports_the_modules_of_the_groups_it_collects_and_no_other(args, groups):
    loaded = modules_after_run([*DEFAULT_RUN, *args], stdin="\n")
    assert {name.split(".")[-1] for name in loaded if name.startswith("kvm_telegraf.groups.")} == groups


def test_the_hypervisor_tag_brings_in_the_hosts_module_the_default_run_leaves_out():
    assert "kvm_telegraf.hosts" in modules_after_run([*DEFAULT_RUN, "--hypervisor-tag"], stdin="\n")


def test_a_config_file_brings_in_the_toml_reader_the_default_run_leaves_out(tmp_path):
    config = tmp_path / "kvm-telegraf.toml"
    config.write_text('timeout = "5s"\n')
    assert "kvm_telegraf.toml_reader" in modules_after_run([*DEFAULT_RUN, "--config", str(config)], stdin="\n")
