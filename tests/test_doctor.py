"""kvm-telegraf doctor: recorded lab domains with one thing wrong, libvirt's own test driver, and the live lab."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator, List

import pytest

from kvm_telegraf.cli import main
from kvm_telegraf.collect import Collector
from kvm_telegraf.connection import Connection
from kvm_telegraf.doctor import (
    FAIL,
    NOTE,
    OK,
    WARN,
    connect_hint,
    diagnose,
    groups_finding,
    local_socket,
    memory_findings,
    own_command,
    timing_finding,
)
from kvm_telegraf.snapshot import DomainSample, Snapshot
from tests.conftest import load_snapshots
from tests.harness.cli import KVM_TELEGRAF, runner
from tests.harness.stalling import FULL, NOWAIT, StallingConnection
from tests.replay import ReplayConnection

STATS_PERIOD = "<stats period='2'/>"
UNREACHABLE = "qemu+unix:///system?socket=/nonexistent"


def without_period(domain: DomainSample) -> DomainSample:
    """The domain as libvirt reports it when no balloon stats period is set: no guest memory keys either."""
    assert domain.config is not None and STATS_PERIOD in domain.config.xml
    config = dataclasses.replace(domain.config, xml=domain.config.xml.replace(STATS_PERIOD, ""))
    stats = {k: v for k, v in domain.stats.items() if k not in ("balloon.available", "balloon.usable")}
    return dataclasses.replace(domain, config=config, stats=stats)


def without_guest_memory(domain: DomainSample) -> DomainSample:
    """A period is set, but the guest has no balloon driver: QEMU gets nothing to report."""
    guest_keys = ("unused", "available", "usable", "disk_caches", "swap_in", "swap_out", "major_fault", "minor_fault")
    stats = {k: v for k, v in domain.stats.items() if k.split(".", 1)[-1] not in guest_keys}
    return dataclasses.replace(domain, stats=stats)


def changed(snapshots: List[Snapshot], *changes) -> List[Snapshot]:
    """Each cycle with its i-th domain passed through changes[i]."""
    return [
        dataclasses.replace(s, domains=tuple(change(d) for change, d in zip(changes, s.domains))) for s in snapshots
    ]


def doctor(replay: ReplayConnection):
    return runner().invoke(main, ["doctor"], obj={"opener": lambda _uri: replay})


def same(domain: DomainSample) -> DomainSample:
    return domain


# --- pure findings ---------------------------------------------------------------------------


def test_a_domain_without_a_stats_period_gets_the_virsh_fix_for_its_state():
    running, shut_off = load_snapshots("lab-states.json")[0].domains[1], load_snapshots("lab-states.json")[0].domains[0]
    findings = memory_findings([without_period(running), without_period(shut_off)], period_s=10)
    assert [f.level for f in findings] == [WARN, WARN]
    assert findings[0].text.endswith("fix: virsh dommemstat --period 10 --live --config ktlab-01")
    assert findings[1].text.endswith("fix: virsh dommemstat --period 10 --config ktlab-03")


def test_the_fix_quotes_a_name_the_shell_would_split():
    odd = load_snapshots("lab-odd-names.json")[0].domains[0]
    (finding,) = memory_findings([without_period(odd)], period_s=10)
    command = finding.text.split("fix: ", 1)[1]
    assert shlex.split(command)[-1] == odd.name


def test_a_running_guest_with_a_period_but_no_guest_memory_lacks_the_balloon_driver():
    domain = without_guest_memory(load_snapshots("lab-running.json")[0].domains[0])
    (finding,) = memory_findings([domain], period_s=10)
    assert finding.level == WARN
    assert "ktlab-01 has a balloon stats period of 2s but its guest reports no memory" in finding.text
    assert "virtio_balloon" in finding.text


def test_domains_with_period_and_guest_memory_give_one_ok_line():
    domains = load_snapshots("lab-states.json")[1].domains  # running, paused and shut off, all with a period
    assert memory_findings(domains, period_s=10) == [
        (OK, "memory stats: every domain has a balloon stats period (2s) and every running guest reports its memory")
    ]


def test_a_domain_with_its_balloon_device_off_is_told_how_to_add_one():
    domain = load_snapshots("lab-running.json")[0].domains[0]
    xml = domain.config.xml
    start, end = xml.index("<memballoon"), xml.index("</memballoon>") + len("</memballoon>")
    config = dataclasses.replace(domain.config, xml=xml[:start] + "<memballoon model='none'/>" + xml[end:])
    (finding,) = memory_findings([dataclasses.replace(domain, config=config)], period_s=10)
    assert finding.level == WARN and "has no memory balloon device" in finding.text
    assert "<memballoon model='virtio'><stats period='10'/></memballoon>" in finding.text


@pytest.mark.parametrize(
    ("first", "steady", "timeout", "interval", "level", "says"),
    [
        (0.3, 0.1, 5, 10, OK, "well within --timeout 5s and the 10s interval"),
        (6.0, 5.5, 8, 10, WARN, "more than half the 10s interval"),
        (0.3, 5.2, 5, 20, WARN, "as long as --timeout 5s, the bulk call's deadline"),
        (12.0, 11.0, 5, 10, WARN, "slower than the 10s interval"),
        (0.3, 0.1, 10, 10, WARN, "--timeout 10s is not below the 10s interval"),
    ],
)
def test_one_collection_is_judged_against_timeout_and_interval(first, steady, timeout, interval, level, says):
    finding = timing_finding(first, steady, domains=20, lines=160, timeout_s=timeout, interval_s=interval)
    assert finding.level == level
    assert says in finding.text
    assert finding.text.startswith(f"one collection takes {steady:.2f}s for 20 domain(s), 160 lines")


def test_missing_stats_groups_that_kvm_telegraf_reads_are_named():
    finding = groups_finding(["state", "iothread"], ["cpu-total", "balloon", "vcpu", "interface", "block", "perf"])
    assert finding.level == WARN
    assert "does not support cpu-total balloon vcpu interface block, so their fields are missing" in finding.text


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ("Failed to connect socket to '/run/libvirt/libvirt-sock-ro': No such file or directory", "is not running"),
        ("Failed to connect socket to '/run/libvirt/libvirt-sock': Permission denied", "usermod -aG libvirt"),
        (
            "authentication unavailable: no polkit agent available to authenticate action 'org.libvirt.unix.monitor'",
            "dbus and polkitd must run",
        ),
        ("authentication failed: access denied by policy", "look in /etc/polkit-1/rules.d/"),
        ("No module named 'libvirt'", "python3-libvirt"),
        ("Failed to find user record for uid '999'", "add a group and a user with those numbers"),  # in a container
        ("Failed to find group record for gid '995'", "groupadd -g GID telegraf"),  # libvirt 7.0 asks for both
    ],
)
def test_a_failed_connection_gets_the_hint_for_its_cause(message, hint):
    assert hint in connect_hint(message, "telegraf")


def test_the_local_socket_is_the_one_libvirt_would_pick():
    assert local_socket("qemu:///system", exists=lambda _path: False) == "/run/libvirt/libvirt-sock-ro"
    assert local_socket("qemu:///system", exists=lambda _path: True) == "/run/libvirt/virtqemud-sock-ro"
    assert local_socket("qemu+unix:///system?socket=/tmp/s") == "/tmp/s"
    assert local_socket("qemu+ssh://root@kvm1/system") is None
    assert local_socket("test:///default") is None


def test_the_read_write_socket_is_the_one_libvirt_would_pick_for_a_full_open():
    assert local_socket("qemu:///system", read_only=False, exists=lambda _path: False) == "/run/libvirt/libvirt-sock"
    assert local_socket("qemu:///system", False, lambda path: path.endswith("d-sock")) == "/run/libvirt/virtqemud-sock"
    assert local_socket("qemu:///system", False, lambda path: path.endswith("-ro")) == "/run/libvirt/libvirt-sock"
    assert local_socket("qemu+unix:///system?socket=/tmp/s", read_only=False) == "/tmp/s"
    assert local_socket("qemu+tcp://kvm1/system", read_only=False) is None


# --- the command, on recorded domains ----------------------------------------------------------


def test_doctor_on_the_recorded_lab_finds_nothing_wrong_and_exits_0():
    result = doctor(ReplayConnection(load_snapshots("lab-running.json")))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok    connected to qemu:///system read-only")
    assert "ok    libvirt 9.0.0, QEMU 7.2.22" in lines
    assert "ok    2 domain(s): 2 running" in lines
    assert lines[-1].startswith("ok    one collection takes ")
    assert not [line for line in lines if line.startswith((WARN, FAIL))]


def test_doctor_names_the_domain_without_a_period_and_the_one_without_a_driver():
    replay = ReplayConnection(changed(load_snapshots("lab-running.json"), without_period, without_guest_memory))
    result = doctor(replay)
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith(WARN)]
    assert len(warnings) == 2
    assert warnings[0].startswith("warn  ktlab-01 has no balloon stats period, so memory_used")
    assert warnings[0].endswith("fix: virsh dommemstat --period 10 --live --config ktlab-01")
    assert warnings[1].startswith("warn  ktlab-02 has a balloon stats period of 2s but its guest reports no memory")


def test_the_fix_uses_the_interval_doctor_is_given_as_the_period():
    replay = ReplayConnection(changed(load_snapshots("lab-running.json"), without_period, same))
    result = runner().invoke(main, ["doctor", "--interval", "30s"], obj={"opener": lambda _uri: replay})
    assert "fix: virsh dommemstat --period 30 --live --config ktlab-01" in result.stdout
    assert "the 30s interval" in result.stdout


def test_doctor_warns_that_every_batch_is_empty_when_no_domain_matches():
    result = runner().invoke(
        main,
        ["--domain", "web*", "doctor"],
        obj={"opener": lambda _uri: ReplayConnection(load_snapshots("lab-running.json"))},
    )
    assert result.exit_code == 0, result.stderr
    assert (
        "warn  no domains (none defined, or none match --domain/--exclude-domain): every batch is empty"
        in result.stdout.splitlines()
    )


class OldLibvirt(ReplayConnection):
    def getLibVersion(self) -> int:  # noqa: N802 - libvirt's API
        return 4_004_000


def test_a_libvirt_without_nowait_is_warned_about_since_a_hung_guest_would_block_everything():
    replay = OldLibvirt(load_snapshots("lab-running.json"))
    result = runner().invoke(main, ["doctor"], obj={"opener": lambda _uri: replay})
    assert result.exit_code == 0, result.stderr
    assert "warn  libvirt 4.4.0, QEMU 7.2.22: older than 4.5.0, so a guest whose QEMU hangs blocks" in result.stdout


def test_doctor_exits_1_with_one_fail_line_and_its_hint_when_libvirt_cannot_be_reached():
    def refuse(_uri):
        raise OSError("Failed to connect socket to '/run/libvirt/libvirt-sock-ro': Permission denied")

    result = runner().invoke(main, ["doctor"], obj={"opener": refuse})
    assert result.exit_code == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith("FAIL  cannot connect to qemu:///system: Failed to connect socket")
    assert "fix: the socket does not let user" in line


def test_doctor_never_prints_the_credentials_of_the_uri():
    def refuse(uri):
        raise OSError(f"cannot reach {uri}")

    result = runner().invoke(main, ["--uri", "qemu+ssh://admin:s3cret@kvm1/system", "doctor"], obj={"opener": refuse})
    assert result.exit_code == 1
    assert "s3cret" not in result.stdout and "qemu+ssh://***@kvm1/system" in result.stdout


def test_root_is_told_to_rerun_this_very_command_as_telegraf_by_the_executables_absolute_path(monkeypatch):
    """Issue 16, item 10: telegraf's PATH lacks the venv, so a bare kvm-telegraf fails for that user."""
    monkeypatch.setenv("PATH", str(Path(KVM_TELEGRAF).parent))
    collector = Collector(
        Connection("qemu:///system", lambda _uri: ReplayConnection(load_snapshots("lab-running.json")))
    )
    argv = ["kvm-telegraf", "--domain", "web*", "doctor"]
    findings = diagnose(collector, 10.0, "root", argv)
    notes = [f.text for f in findings if f.level == NOTE and not f.text.startswith("group ")]
    assert len(notes) == 1 and notes[0].endswith(f"runuser -u telegraf -- {KVM_TELEGRAF} --domain 'web*' doctor")
    assert "Permission denied" not in connect_hint("Permission denied", "telegraf", argv)
    assert connect_hint("Permission denied", "telegraf", argv).endswith(f"-- {KVM_TELEGRAF} --domain 'web*' doctor")


def test_the_rerun_command_makes_a_relative_path_absolute_and_a_module_run_an_interpreter_run(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "kvm-telegraf").write_text("")
    monkeypatch.chdir(tmp_path)
    assert own_command(["./bin/kvm-telegraf", "doctor"]) == f"{tmp_path}/bin/kvm-telegraf doctor"
    assert own_command(["/x/kvm_telegraf/__main__.py", "doctor"]) == f"{sys.executable} -m kvm_telegraf doctor"
    assert own_command(["-c", "doctor"]) == f"{sys.executable} -m kvm_telegraf doctor"


def doctor_on(host: StallingConnection, timeout: str = "300ms") -> List[str]:
    try:
        result = runner().invoke(main, ["--timeout", timeout, "doctor"], obj={"opener": lambda _uri: host})
    finally:
        host.release()
    assert result.exit_code == 0, result.stdout
    return result.stdout.splitlines()


def test_doctor_says_the_host_looks_saturated_with_the_call_time_the_state_probe_and_the_load():
    host = StallingConnection(load_snapshots("lab-running.json"), delays={FULL: 2.0, NOWAIT: 2.0})
    (finding,) = [line for line in doctor_on(host) if line.startswith(WARN)]
    assert finding.startswith("warn  the host looks saturated: one full stats call takes 2.0s for 2 domain(s)")
    assert "the state-only probe 0.0" in finding and "load average here " in finding


def test_doctor_flags_a_timeout_below_the_measured_call_time_and_blames_no_guest():
    """Issue 16, item 8."""
    host = StallingConnection(
        load_snapshots("lab-running.json"), delays={FULL: 0.5}, busy={"ktlab-01"}, nowait_after_full=True
    )
    warnings = [line for line in doctor_on(host) if line.startswith(WARN)]
    assert warnings == [
        "warn  --timeout 0.3s is below the bulk stats call's own time (0.5s for 2 domain(s)), though no guest is "
        "frozen: every batch falls back to NOWAIT and may lack memory and disk fields; fix: --timeout 2s or more, "
        "and the interval above it"
    ]


# --- real libvirt ---------------------------------------------------------------------------------


def test_libvirts_test_driver_lacks_the_stats_groups_and_its_domain_the_period():
    """test:///default is libvirt's in-process driver: no daemon needed, but a real answer to every probe."""
    pytest.importorskip("libvirt")
    result = subprocess.run(
        [KVM_TELEGRAF, "--uri", "test:///default", "doctor"], capture_output=True, text=True, timeout=60
    )
    lines = result.stdout.splitlines()
    unsupported = "this function is not supported by the connection driver: virConnectGetAllDomainStats"
    if any(unsupported in line for line in lines):  # libvirt 7.0's test driver has no bulk stats call at all
        assert result.returncode == 1 and lines[-1].startswith(f"FAIL  stats call failed: {unsupported}"), lines
        assert "fix: this libvirt driver has no bulk statistics call" in lines[-1]
        return
    assert result.returncode == 0, result.stderr
    assert "warn  stats groups: the daemon does not support cpu-total balloon vcpu interface block" in result.stdout
    assert any(line.startswith("warn  test has no balloon stats period") for line in lines)


class NoBulkStats(ReplayConnection):
    """A driver without virConnectGetAllDomainStats, as libvirt 7.0's test driver answers it."""

    def getAllDomainStats(self, stats: int, flags: int):  # noqa: N802 - libvirt's API
        raise RuntimeError("this function is not supported by the connection driver: virConnectGetAllDomainStats")


def test_a_driver_without_the_bulk_call_is_told_to_point_at_a_qemu_daemon_not_to_check_libvirtd():
    replay = NoBulkStats(load_snapshots("lab-running.json"))
    result = runner().invoke(main, ["doctor"], obj={"opener": lambda _uri: replay})
    assert result.exit_code == 1
    last = result.stdout.splitlines()[-1]
    assert last.startswith("FAIL  stats call failed: this function is not supported by the connection driver")
    assert "point --uri at a QEMU/KVM daemon" in last and "check that libvirtd answers" not in last


def test_an_unreachable_uri_fails_in_one_line_naming_the_socket_with_the_hint():
    pytest.importorskip("libvirt")
    result = subprocess.run([KVM_TELEGRAF, "--uri", UNREACHABLE, "doctor"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"FAIL  cannot connect to {UNREACHABLE}: Failed to connect socket to '/nonexistent': No such file or "
        "directory; fix: libvirtd (or virtqemud) is not running or the socket path is wrong: start it, and check --uri"
    ]


@pytest.mark.lab
def test_doctor_as_root_on_the_lab_passes_and_finds_the_guests_balloon_period(lab):
    selectors = [arg for name in lab for arg in ("--domain", name)]
    result = subprocess.run([KVM_TELEGRAF, *selectors, "doctor"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith(FAIL)]
    assert f"ok    {len(lab)} domain(s): {len(lab)} running" in lines
    assert (
        "ok    memory stats: every domain has a balloon stats period (2s) and every running guest reports its memory"
    ) in lines


@pytest.mark.lab
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to the telegraf user")
def test_doctor_as_the_telegraf_user_passes_over_the_read_only_socket(lab):
    selectors = [arg for name in lab for arg in ("--domain", name)]
    result = subprocess.run(
        [shutil.which("runuser"), "-u", "telegraf", "--", KVM_TELEGRAF, *selectors, "doctor"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    socket = "/run/libvirt/libvirt-sock-ro"
    assert lines[0] == f"ok    connected to qemu:///system read-only over {socket}, as user telegraf (statistics)"
    assert any(line.startswith("ok    memory stats: every domain has a balloon stats period") for line in lines)


# --- the live lab, with guests of our own --------------------------------------------------------

BARE_GUEST_XML = """<domain type='qemu'>
  <name>{name}</name>
  <description>kvm-telegraf doctor test: SeaBIOS with nothing to boot, a balloon device and no driver</description>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <controller type='usb' model='none'/>
    <memballoon model='virtio'/>
  </devices>
</domain>
"""


def virsh(*args: str) -> str:
    return subprocess.run(
        ["virsh", "-q", "-c", "qemu:///system", *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def bare_guests(lab, tmp_path) -> Iterator[List[str]]:
    """Two ktdoc- domains without a stats period: one running (firmware only, so no balloon driver), one defined."""
    tag = uuid.uuid4().hex[:6]
    names = [f"ktdoc-{tag}-run", f"ktdoc-{tag}-off"]
    try:
        for name in names:
            xml = tmp_path / f"{name}.xml"
            xml.write_text(BARE_GUEST_XML.format(name=name))
            virsh("define", str(xml))
        virsh("start", names[0])
        yield names
    finally:
        for name in names:
            subprocess.run(["virsh", "-q", "destroy", name], capture_output=True, check=False)
            subprocess.run(["virsh", "-q", "undefine", name], capture_output=True, check=False)


def run_doctor(names: List[str]) -> List[str]:
    selectors = [arg for name in names for arg in ("--domain", name)]
    result = subprocess.run([KVM_TELEGRAF, *selectors, "doctor"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith(WARN)]


@pytest.mark.lab
def test_doctors_fix_for_a_missing_period_works_and_then_the_missing_driver_shows(bare_guests):
    running, shut_off = bare_guests
    warnings = run_doctor(bare_guests)
    fixes = {line.split()[1]: line.split("fix: ", 1)[1] for line in warnings if "has no balloon stats period" in line}
    assert fixes == {
        running: f"virsh dommemstat --period 10 --live --config {running}",
        shut_off: f"virsh dommemstat --period 10 --config {shut_off}",
    }
    for command in fixes.values():
        subprocess.run(shlex.split(command), capture_output=True, check=True)
    (warning,) = run_doctor(bare_guests)
    assert warning.startswith(f"warn  {running} has a balloon stats period of 10s but its guest reports no memory")


def guest_line(snapshot_file: str, *args: str) -> str:
    replay = ReplayConnection(load_snapshots(snapshot_file))
    result = runner().invoke(main, [*args, "doctor"], obj={"opener": lambda _uri: replay})
    (line,) = [line for line in result.stdout.splitlines() if " group guest: " in line]
    return line


def test_the_guest_group_line_counts_the_domains_whose_agent_is_connected():
    on = guest_line("lab-guest.json", "--read-write", "--collect", "guest")
    assert on.startswith("ok    group guest: on (--collect); supported") and "enabled on 2 of 2 domain(s)" in on
    off = guest_line("lab-guest.json")
    assert off.startswith("ok    group guest: off (it needs --read-write, which opens read-write connections for its")


def doctor_lines(snapshot_file: str, *args: str, opener=None) -> List[str]:
    replay = ReplayConnection(load_snapshots(snapshot_file))
    result = runner().invoke(main, [*args, "doctor"], obj={"opener": opener or (lambda _uri: replay)})
    return result.stdout.splitlines()


@pytest.mark.parametrize("args", [(), ("--collect", "all"), ("--collect", "vcpu", "--collect", "jobs")])
def test_doctor_says_the_statistics_connection_is_read_only_and_opens_no_read_write_one(args):
    lines = doctor_lines("lab-guest.json", *args)
    assert re.match(
        r"ok    connected to qemu:///system read-only over \S+-sock-ro, as user \S+ \(statistics\)", lines[0]
    )
    assert not any("read-write over" in line or "guest agent calls" in line for line in lines)


def test_doctor_with_read_write_names_the_statistics_socket_read_only_and_the_agents_read_write():
    lines = doctor_lines("lab-guest.json", "--read-write", "--collect", "guest")
    assert re.match(r"ok    connected to qemu:///system read-only over \S+-sock-ro, as user", lines[0])
    assert re.match(
        r"ok    guest agent calls: connected to qemu:///system read-write over /run/libvirt/\S+-sock, ", lines[1]
    )


def test_doctor_fails_when_the_agents_read_write_connection_is_refused_but_still_checks_the_statistics():
    replay = ReplayConnection(load_snapshots("lab-guest.json"))
    opened = []

    def opener(uri: str) -> ReplayConnection:
        opened.append(uri)
        if len(opened) > 1:  # the statistics connection opens first, then the agents' own
            raise PermissionError("authentication unavailable: no polkit agent available to authenticate action")
        return replay

    result = runner().invoke(main, ["--read-write", "--collect", "guest", "doctor"], obj={"opener": opener})
    lines = result.stdout.splitlines()
    assert result.exit_code == 1 and lines[0].startswith("ok    connected to qemu:///system read-only")
    assert lines[1].startswith("FAIL  guest agent calls: cannot connect to qemu:///system: authentication unavailable")
    assert "org.libvirt.unix.manage" in lines[1] and any(" group guest: on (--collect)" in line for line in lines)


def test_the_guest_group_asked_for_where_no_agent_is_connected_is_a_warning_with_the_fix():
    none = guest_line("lab-running.json", "--read-write", "--collect", "guest")
    assert none.startswith("warn  group guest: on (--collect)") and "enabled on 0 of 2 domain(s)" in none
    assert "qemu-guest-agent" in none and "adds nothing until one has it" in none
