"""Under the real Telegraf (``make telegraf``): the drop-in end to end into InfluxDB 1.6, and through faults.

Telegraf loads the drop-in from ``--config-directory`` and writes with ``[[outputs.influxdb]]`` to the
session's InfluxDB. The data tests share one run of the drop-in as shipped, byte for byte but for the
path in ``command`` (its interval is 10s); each fault test starts a Telegraf of its own with a 1-2 s
interval and restart_delay, reading the lab's guests only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, List, NamedTuple, Optional, Tuple

import pytest

from tests.conftest import need
from tests.harness.cli import KVM_TELEGRAF
from tests.harness.execd import ExecdDriver
from tests.harness.faults import frozen, libvirtd_answers, start_libvirtd, stop_libvirtd
from tests.harness.influxdb import InfluxServer, free_port, quote_ident
from tests.harness.telegraf import (
    AGENT,
    DROPIN,
    EXIT_NOISE,
    Telegraf,
    dropin,
    find_telegraf,
    influxdb_output,
    wait_until,
)

pytestmark = pytest.mark.lab

MEASUREMENTS = ("vm_metrics", "vm_features", "vm_devices", "vm_totals")
INTERVAL = 2.0  # the fault tests' interval, in seconds
SECOND = 1_000_000_000


class Point(NamedTuple):
    measurement: str
    tags: Dict[str, str]
    fields: FrozenSet[str]
    time: int

    @property
    def key(self) -> Tuple[str, str, str]:
        """Which series: measurement, VM and device (vm_devices)."""
        return self.measurement, self.tags["vm"], self.tags.get("device", "")


def printed(output: str) -> List[Point]:
    """Our lines as points (lab names and values need no unescaping)."""
    points = []
    for line in output.splitlines():
        head, fields, stamp = line.rsplit(" ", 2)
        measurement, *tags = head.split(",")
        keys = frozenset(field.split("=", 1)[0] for field in fields.split(","))
        points.append(Point(measurement, dict(tag.split("=", 1) for tag in tags), keys, int(stamp)))
    return points


def stored(influx: InfluxServer, db: str, measurement: str, since: int = 0) -> List[Point]:
    """What InfluxDB holds: per point its tags (the series') and the fields it has."""
    influxql = f"SELECT * FROM {quote_ident(measurement)} WHERE time >= {since} GROUP BY *"
    points = []
    for result in influx.query(db, influxql):
        for series in result.get("series", []):
            tags = {key: value for key, value in series.get("tags", {}).items() if value}
            for values in series["values"]:
                row = dict(zip(series["columns"], values))
                stamp = row.pop("time")
                points.append(Point(measurement, tags, frozenset(k for k, v in row.items() if v is not None), stamp))
    return points


def gathers(influx: InfluxServer, db: str, vm: str, since: int = 0) -> List[int]:
    """The timestamps of ``vm``'s vm_metrics points: one per gather that reached InfluxDB."""
    return sorted(p.time for p in stored(influx, db, "vm_metrics", since) if p.tags["vm"] == vm)


def only(names: List[str]) -> List[str]:
    return [arg for name in names for arg in ("--domain", name)]


@pytest.fixture(scope="session")
def telegraf_binary() -> Path:
    binary = find_telegraf()
    need(binary is not None, "Telegraf is not built: make telegraf")
    assert binary is not None
    return binary


def start(
    binary: Path, workdir: Path, influx: InfluxServer, lab: List[str], *args: str, outputs: str = "", **settings: str
) -> Tuple[Telegraf, str]:
    """A Telegraf of the fault tests' kind on the lab guests; its database is named after the test's folder."""
    db = workdir.name.replace("-", "_")
    influx.create_database(db)
    settings = {"interval": f"{INTERVAL:g}s", "restart_delay": "1s", **settings}
    text = dropin([KVM_TELEGRAF, "--timeout", "1.5s", *only(lab), *args], **settings)
    config = AGENT.format(interval=settings["interval"]) + influxdb_output(influx.url, db) + outputs
    return Telegraf(binary, workdir, text, config).start(), db


def wait_for_gathers(influx: InfluxServer, db: str, lab: List[str], count: int, since: int, timeout: float) -> bool:
    return wait_until(lambda: all(len(gathers(influx, db, vm, since)) >= count for vm in lab), timeout)


@contextmanager
def gathering(
    binary: Path, workdir: Path, influx: InfluxServer, lab: List[str], **settings: str
) -> Iterator[Tuple[Telegraf, str]]:
    """A fault test's Telegraf once every lab guest's first gather is in InfluxDB; stopped on the way out."""
    telegraf, db = start(binary, workdir, influx, lab, **settings)
    try:
        assert wait_for_gathers(influx, db, lab, 1, 0, 15), telegraf.log_text()
        yield telegraf, db
    finally:
        telegraf.stop()


@pytest.fixture(scope="class")
def shipped(
    telegraf_binary: Path, lab: List[str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tuple[Telegraf, List[Point]]]:
    """Telegraf on the drop-in as shipped but for the path in ``command``; what --once prints after its first gather."""
    text = DROPIN.read_text()
    shipped_command = '["/opt/kvm-telegraf/bin/kvm-telegraf", '
    assert text.count(shipped_command) == 1
    text = text.replace(shipped_command, f'["{KVM_TELEGRAF}", ')
    internal = '[[inputs.internal]]\n  interval = "1s"\n'
    config = AGENT.format(interval="10s") + influxdb_output(influx.url, "shipped") + internal
    influx.create_database("shipped")
    telegraf = Telegraf(telegraf_binary, tmp_path_factory.mktemp("shipped"), text, config).start()
    try:
        # The first tick comes on the next 10 s boundary; then one flush (1 s) and inputs.internal's next point.
        assert wait_for_gathers(influx, "shipped", lab, 1, 0, 25), telegraf.log_text()
        once = subprocess.run([KVM_TELEGRAF, "--once", *only(lab)], capture_output=True, text=True, timeout=60)
        assert once.returncode == 0, once.stderr
        assert wait_until(lambda: internal_counters(influx) is not None, 10), telegraf.log_text()
        yield telegraf, printed(once.stdout)
    finally:
        telegraf.stop()


class TestTheShippedDropIn:
    """One Telegraf run of telegraf.d/kvm-telegraf.conf as shipped, checked against ``kvm-telegraf --once``."""

    def test_every_lab_guests_four_measurements_arrive_with_the_tags_and_fields_of_once_plus_host(
        self, shipped: Tuple[Telegraf, List[Point]], influx: InfluxServer, lab: List[str]
    ):
        _, once = shipped
        points = [p for m in MEASUREMENTS for p in stored(influx, "shipped", m) if p.tags["vm"] in lab]
        first = min(p.time for p in points)
        arrived = {p.key: p for p in points if p.time == first}
        expected = {p.key: p for p in once}
        assert {p.measurement for p in arrived.values()} == set(MEASUREMENTS)
        assert sorted(arrived) == sorted(expected)
        for key, point in arrived.items():
            assert point.tags == {**expected[key].tags, "host": socket.gethostname()}, key
            assert point.fields == expected[key].fields, key

    def test_every_point_of_one_gather_carries_the_same_timestamp(
        self, shipped: Tuple[Telegraf, List[Point]], influx: InfluxServer, lab: List[str]
    ):
        points = [p for m in MEASUREMENTS for p in stored(influx, "shipped", m)]
        for stamp in {p.time for p in points}:
            at = {(p.measurement, p.tags["vm"]) for p in points if p.time == stamp}
            assert {(m, vm) for m in MEASUREMENTS for vm in lab} <= at, f"gather at {stamp} is split"
        assert len({p.time for p in points}) == len(gathers(influx, "shipped", lab[0]))

    def test_telegrafs_log_has_no_error_or_warning_and_inputs_internal_counts_no_error(
        self, shipped: Tuple[Telegraf, List[Point]], influx: InfluxServer
    ):
        telegraf, _ = shipped
        assert [line for line in telegraf.log() if line.level in "EW"] == []
        counters = internal_counters(influx)
        assert counters == {"gather_errors": 0, "write_errors": 0}, counters


def internal_counters(influx: InfluxServer) -> Optional[Dict[str, int]]:
    """inputs.internal's error counts for the execd input and the influxdb output, once both have done work."""
    gather = influx.rows(
        "shipped", "SELECT last(errors) AS e, last(metrics_gathered) AS n FROM internal_gather WHERE input = 'execd'"
    )
    write = influx.rows(
        "shipped", "SELECT last(errors) AS e, last(metrics_written) AS n FROM internal_write WHERE output = 'influxdb'"
    )
    if not gather or not write or not gather[0]["n"] or not write[0]["n"]:
        return None
    return {"gather_errors": gather[0]["e"], "write_errors": write[0]["e"]}


def test_a_frozen_guest_costs_one_warning_and_telegraf_still_writes_every_guest_on_every_interval(
    telegraf_binary: Path, lab: List[str], influx: InfluxServer, tmp_path: Path
):
    stuck = lab[-1]
    with gathering(telegraf_binary, tmp_path, influx, lab) as (telegraf, db):
        since = time.time_ns()
        with frozen(stuck):
            time.sleep(5 * INTERVAL)
        until = time.time_ns()
        assert wait_until(lambda: [m for m in telegraf.plugin_log("I") if "full batches resume" in m], 15)
    during = {vm: [t for t in gathers(influx, db, vm, since) if t < until] for vm in lab}
    assert during[lab[0]] == during[stuck], "the frozen guest is in every gather"
    assert len(during[stuck]) >= 4, f"{len(during[stuck])} gathers in {5 * INTERVAL:g}s"
    warnings = telegraf.plugin_log("W")
    assert len([w for w in warnings if stuck in w]) == 1, warnings
    # A machine saturated by other work can miss the NOWAIT tier too: its own episode, said once, is no guest's fault.
    assert all(stuck in w or SATURATED in w for w in warnings) and len(warnings) <= 2, warnings
    assert telegraf.plugin_log("E") == []


SATURATED = "libvirt answered too slowly for the batch deadline"  # bulk_read.Episodes: the state-only tier's warning


@pytest.mark.skipif(os.geteuid() != 0, reason="stops and starts the system libvirtd")
def test_a_libvirtd_restart_logs_one_error_and_one_recovery_and_points_resume_within_two_intervals(
    telegraf_binary: Path, lab: List[str], influx: InfluxServer, tmp_path: Path
):
    with gathering(telegraf_binary, tmp_path, influx, lab) as (telegraf, db):
        stop_libvirtd()
        try:
            time.sleep(2 * INTERVAL)  # the shared libvirtd: keep the outage short
        finally:
            start_libvirtd()
        assert libvirtd_answers()
        back = time.time_ns()
        assert wait_for_gathers(influx, db, lab, 1, back, 2 * INTERVAL + 5), telegraf.log_text()
        resumed = min(gathers(influx, db, lab[0], back))
    late = (resumed - back) / SECOND
    assert late <= 2 * INTERVAL, f"first point {late:.1f}s after libvirtd answered"
    errors = telegraf.plugin_log("E")
    assert len(errors) == 1 and "no metrics until it recovers" in errors[0], errors
    assert len([m for m in telegraf.plugin_log("I") if "answers again" in m]) == 1


@pytest.mark.parametrize("phase", [0.3, 0.94 * INTERVAL], ids=["early", "just-before-the-next-tick"])
def test_a_sighup_reload_restarts_the_plugin_at_once_and_costs_at_most_the_tick_telegraf_loses(
    telegraf_binary: Path, lab: List[str], influx: InfluxServer, tmp_path: Path, phase: float
):
    """Telegraf's reload closes the plugin's stdin, waits for it to exit and starts it again; the new agent's first
    tick is the next boundary of its interval (round_interval). A reload that ends after a boundary loses that tick,
    so the points either side of it are two intervals apart: Telegraf's part. Ours is how fast the plugin exits and
    how late the first batch is stamped after its tick."""
    with gathering(telegraf_binary, tmp_path, influx, lab) as (telegraf, db):
        plugin = telegraf.plugin_pid()
        last = max(gathers(influx, db, lab[0]))
        tick = last - last % int(INTERVAL * SECOND)  # the batch's tick: round_interval aligns them to the interval
        while time.time_ns() < tick + int(INTERVAL * SECOND):  # the next tick, so its batch lands before the reload
            time.sleep(0.01)
        tick += int(INTERVAL * SECOND)
        assert wait_until(lambda: max(gathers(influx, db, lab[0])) >= tick, 2 * INTERVAL), telegraf.log_text()
        time.sleep(max(0.0, (tick + phase * SECOND - time.time_ns()) / SECOND))
        assert telegraf.proc is not None
        telegraf.proc.send_signal(signal.SIGHUP)
        reloaded = time.monotonic()
        assert wait_until(lambda: telegraf.children() not in ([], [plugin]), 5, every=0.01), telegraf.log_text()
        restarted = time.monotonic() - reloaded
        before = [t for t in gathers(influx, db, lab[0]) if t < tick + phase * SECOND]
        assert wait_for_gathers(influx, db, lab, len(before) + 2, 0, 4 * INTERVAL + 5), telegraf.log_text()
    stamps = gathers(influx, db, lab[0])
    gap = (stamps[len(before)] - stamps[len(before) - 1]) / SECOND
    assert restarted < 0.5, f"the plugin ran on {restarted:.2f}s after the SIGHUP"
    assert gap < 2 * INTERVAL + 0.25, f"{gap:.2f}s between the points either side of the reload"
    assert telegraf.plugin_log("E") + telegraf.plugin_log("W") == []


def test_sigterm_to_telegraf_ends_the_plugin_within_telegrafs_window_and_leaves_no_process(
    telegraf_binary: Path, lab: List[str], influx: InfluxServer, tmp_path: Path
):
    with gathering(telegraf_binary, tmp_path, influx, lab) as (telegraf, db):
        plugin = telegraf.plugin_pid()
        started = time.monotonic()
        assert telegraf.stop() == 0
        took = time.monotonic() - started
    # Telegraf closes the plugin's stdin and sends SIGTERM only after 5 s: the plugin must be gone before.
    assert took < 5, f"Telegraf took {took:.1f}s to stop"
    assert not Path(f"/proc/{plugin}").exists()
    assert running(KVM_TELEGRAF) == [], "a kvm-telegraf process is left behind"
    assert telegraf.plugin_log("E") + telegraf.plugin_log("W") == []
    assert f"Process {KVM_TELEGRAF} shut down" in telegraf.plugin_log("I")


def running(program: str) -> List[int]:
    """Pids of every process that runs ``program``, started by its absolute path as Telegraf does."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if program.encode() in argv[:2]:
            pids.append(int(cmdline.parent.name))
    return pids


def test_a_plugin_killed_with_sigkill_is_restarted_after_restart_delay_and_points_resume(
    telegraf_binary: Path, lab: List[str], influx: InfluxServer, tmp_path: Path
):
    with gathering(telegraf_binary, tmp_path, influx, lab, restart_delay="3s") as (telegraf, db):
        killed = telegraf.plugin_pid()
        os.kill(killed, signal.SIGKILL)
        started = time.monotonic()
        assert wait_until(lambda: telegraf.children() not in ([], [killed]), 15), telegraf.log_text()
        took = time.monotonic() - started
        again = time.time_ns()
        assert wait_for_gathers(influx, db, lab, 1, again, 2 * INTERVAL + 5), telegraf.log_text()
    assert 3 <= took < 3 + INTERVAL, f"restarted {took:.1f}s after the kill"
    assert [m for m in telegraf.plugin_log("E") if "exited: signal: killed" in m], telegraf.log_text()
    assert "Restarting in 3s..." in telegraf.plugin_log("I")


def test_prometheus_client_serves_our_measurements_on_metrics(
    telegraf_binary: Path, lab: List[str], influx: InfluxServer, tmp_path: Path
):
    port = free_port()
    prometheus = f'[[outputs.prometheus_client]]\n  listen = "127.0.0.1:{port}"\n'
    telegraf, _ = start(telegraf_binary, tmp_path, influx, lab, outputs=prometheus, interval="1s")
    try:
        assert wait_until(lambda: all(sample(scrape(port), "vm_totals_cpu_percent", vm) for vm in lab), 15)
        page = scrape(port)
    finally:
        telegraf.stop()
    assert "# TYPE vm_totals_cpu_percent untyped" in page
    for vm in lab:
        assert f'host="{socket.gethostname()}"' in sample(page, "vm_totals_cpu_percent", vm)
        assert sample(page, "vm_metrics_state", vm).endswith(" 1")
        assert sample(page, "vm_devices_rx_bytes", vm)


def sample(page: List[str], name: str, vm: str) -> str:
    """The first sample of ``name`` labelled with ``vm``, or ""."""
    return next((line for line in page if line.startswith(name + "{") and f'vm="{vm}"' in line), "")


def scrape(port: int) -> List[str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode().splitlines()
    except OSError:
        return []


def test_a_bad_option_shows_our_one_error_line_once_per_start_and_restarts_every_restart_delay(
    telegraf_binary: Path, lab: List[str], influx: InfluxServer, tmp_path: Path
):
    telegraf, _ = start(telegraf_binary, tmp_path, influx, lab, "--timeout", "5x", interval="1s")
    try:
        time.sleep(5.5)
    finally:
        telegraf.stop()
    ours = (
        "Invalid value for '--timeout': not a duration: '5x' (use e.g. 10s, 500ms, 5m: ASCII digits and no spaces)"
        " (see kvm-telegraf --help)"
    )
    starts = [m for m in telegraf.plugin_log("I") if m.startswith("Starting process: ")]
    assert 4 <= len(starts) <= 7, starts  # restart_delay 1s, and each start's own second
    assert telegraf.plugin_log("E").count(ours) == len(starts)
    lines = [line for line in telegraf.log() if line.plugin == "inputs.execd"]
    assert len(lines) <= 6 * len(starts), "Telegraf's own lines per restart, and ours: no flood"


def sleep_until_phase(phase: float) -> None:
    """Sleep until ``phase`` seconds after one of Telegraf's ticks (round_interval: multiples of the interval)."""
    now = time.time()
    target = now - now % INTERVAL + phase
    time.sleep(target - now if target > now else target + INTERVAL - now)


def test_the_harness_and_telegraf_agree_that_newlines_behind_a_stopped_plugin_give_two_batches(
    telegraf_binary: Path, lab: List[str], influx: InfluxServer, tmp_path: Path
):
    with gathering(telegraf_binary, tmp_path, influx, lab) as (telegraf, db):
        plugin = telegraf.plugin_pid()
        sleep_until_phase(0.6 * INTERVAL)  # the plugin is idle between two ticks
        os.kill(plugin, signal.SIGSTOP)
        time.sleep(3 * INTERVAL)  # three ticks: three newlines wait in the pipe
        resumed = time.time_ns()
        os.kill(plugin, signal.SIGCONT)
        next_tick = resumed + int(0.4 * INTERVAL * SECOND)
        assert wait_for_gathers(influx, db, lab, 3, resumed, 3 * INTERVAL), telegraf.log_text()
    under_telegraf = [t for t in gathers(influx, db, lab[0], resumed) if t < next_tick]

    driver = ExecdDriver([KVM_TELEGRAF, *only(lab)])
    driver.start()
    try:
        driver.tick()
        assert driver.read_batch(timeout=15, settle=0.5)
        os.kill(driver.pid, signal.SIGSTOP)
        for _ in range(3):
            driver.tick()
        os.kill(driver.pid, signal.SIGCONT)
        lines = driver.read_batch(timeout=15, settle=1.0)
    finally:
        driver.stop()
    under_harness = {line.rsplit(" ", 1)[1] for line in lines}
    assert len(under_telegraf) == len(under_harness) == 2, (under_telegraf, under_harness)


STDERR = ["E! an error", "W! a warning", "I! some news", "D! a detail", "T! a trace", "no prefix", "W!no space", ""]


def test_the_harness_and_telegraf_log_each_stderr_line_at_the_same_level(telegraf_binary: Path, tmp_path: Path):
    script = tmp_path / "stderr.py"
    lines = "".join(line + "\n" for line in STDERR)
    script.write_text(f"import sys\nsys.stderr.write({lines!r})\nsys.stderr.flush()\nsys.stdin.read()\n")
    command = [sys.executable, str(script)]
    text = f'[[inputs.execd]]\n  command = {json.dumps(command)}\n  signal = "STDIN"\n  log_level = "trace"\n'
    outputs = f'[[outputs.file]]\n  files = ["{tmp_path / "out.lp"}"]\n'
    with Telegraf(telegraf_binary, tmp_path, text, AGENT.format(interval="1s") + outputs) as telegraf:
        assert wait_until(lambda: len(logged(telegraf)) == len(STDERR), 10), telegraf.log_text()
        # what it logged while the plugin ran: stopping it may add "read |0: file already closed"
        seen = logged(telegraf)
    with ExecdDriver(command) as driver:
        assert driver.wait_for(lambda: len(driver.stderr) == len(STDERR), 10)
    # Telegraf quotes a line without a level prefix (Go's %q) after "stderr: "; the harness keeps it bare.
    quoted = [
        (level, f"stderr: {json.dumps(message)}" if f"{level}! {message}" not in STDERR else message)
        for level, message in driver.stderr
    ]
    assert (
        seen
        == quoted
        == [
            ("E", "an error"),
            ("W", "a warning"),
            ("I", "some news"),
            ("D", "a detail"),
            ("T", "a trace"),
            ("E", 'stderr: "no prefix"'),
            ("E", 'stderr: "W!no space"'),
            ("E", 'stderr: ""'),
        ]
    )


def logged(telegraf: Telegraf) -> List[Tuple[str, str]]:
    """What Telegraf logged for the execd input from its stderr: its own lines about the process left out."""
    own = ("Starting process: ", "Process ")
    return [
        (x.level, x.message) for x in telegraf.log() if x.plugin == "inputs.execd" and not x.message.startswith(own)
    ]


# A tag value as a plugin prints it, and what InfluxDB holds after Telegraf's parser, serializer and outputs.influxdb
# (None: Telegraf's parser refuses the line, with one E! per line and gather). outputs.file shows the serializer
# writes each value it accepts back byte for byte as it came in.
TAG_VALUES = {
    "rawtab": (b"a\tb", None),
    "rawcr": (b"a\rb", None),
    "rawff": (b"a\fb", None),
    "backslashrawtab": (b"a\\\tb", None),
    "escapedtab": (b"a\\tb", "a\\tb"),
    "escapedcr": (b"a\\rb", "a\\rb"),
    "escapednewline": (b"a\\nb", "a\\nb"),
    "trailingbackslash": (b"ab\\", None),
    "trailingdoublebackslash": (b"ab\\\\", None),
    "innerdoublebackslash": (b"a\\\\b", "a\\\\b"),
    "escapedcomma": (b"a\\,b", "a,b"),
    "escapedspace": (b"a\\ b", "a b"),
    "escapedequals": (b"a\\=b", "a=b"),
}


def test_telegraf_refuses_raw_tabs_crs_and_trailing_backslashes_in_tag_values_and_keeps_escapes_verbatim(
    telegraf_binary: Path, influx: InfluxServer, tmp_path: Path
):
    lines = b"".join(b"esc,case=%s,vm=%s v=1i\n" % (case.encode(), raw) for case, (raw, _) in TAG_VALUES.items())
    script = tmp_path / "emit.py"
    loop = f"for _ in sys.stdin.buffer:\n    sys.stdout.buffer.write({lines!r})\n    sys.stdout.buffer.flush()\n"
    script.write_text("import sys\n" + loop)
    command = [sys.executable, str(script)]
    text = f'[[inputs.execd]]\n  command = {json.dumps(command)}\n  signal = "STDIN"\n  data_format = "influx"\n'
    capture = tmp_path / "out.lp"
    outputs = influxdb_output(influx.url, "escapes") + f'[[outputs.file]]\n  files = ["{capture}"]\n'
    influx.create_database("escapes")
    with Telegraf(telegraf_binary, tmp_path, text, AGENT.format(interval="1s") + outputs) as telegraf:
        assert wait_until(lambda: bool(influx.rows("escapes", "SELECT * FROM esc")), 10), telegraf.log_text()
    stored_values = {row["case"]: row["vm"] for row in influx.rows("escapes", "SELECT * FROM esc")}
    assert stored_values == {case: value for case, (_, value) in TAG_VALUES.items() if value is not None}
    serialized = {}
    for line in capture.read_bytes().splitlines():
        tags = line.split(b" v=1i ")[0].split(b",", 3)  # esc, case=..., host=..., vm=...
        serialized[tags[1][5:].decode()] = tags[3][3:]
    assert serialized == {case: raw for case, (raw, value) in TAG_VALUES.items() if value is not None}
    refused = " ".join(m for m in telegraf.plugin_log("E") if m.startswith("Error in plugin: metric parse error"))
    assert {case for case, (_, value) in TAG_VALUES.items() if value is None and f"case={case}," in refused} == {
        case for case, (_, value) in TAG_VALUES.items() if value is None
    }


# Names a domain can have, and what InfluxDB must hold for them after our encoder, Telegraf's parser and serializer
# (issue 16, item 11): a control character arrives as its two-character escape, a trailing backslash is trimmed,
# everything else unchanged; a string field carries every character unchanged.
OUR_NAMES = {
    "tab": ("web\t01", "web\\t01"),
    "cr": ("web\r01", "web\\r01"),
    "newline": ("web\n01", "web\\n01"),
    "verticaltab": ("web\v01", "web\\v01"),
    "formfeed": ("web\f01", "web\\f01"),
    "trailingbackslash": ("web01\\", "web01"),
    "punctuation": ('w e,b="01"=\\x', 'w e,b="01"=\\x'),
    "unicode": ("wéb-01 ☃", "wéb-01 ☃"),
}
STRING_FIELD = 'tab\tcr\rlf\nvt\vff\f "quoted" back\\slash'


def test_every_name_we_print_arrives_through_telegraf_in_influxdb_as_the_readme_says(
    telegraf_binary: Path, influx: InfluxServer, tmp_path: Path
):
    from kvm_telegraf.encode import LineEncoder
    from kvm_telegraf.points import Point as LinePoint

    points = [
        LinePoint("names", (("case", case), ("vm", name)), {"n": 1, "s": STRING_FIELD})
        for case, (name, _) in OUR_NAMES.items()
    ]
    batch = LineEncoder().encode(points, 1_800_000_000_000_000_000).encode()
    script = tmp_path / "emit.py"
    loop = f"for _ in sys.stdin.buffer:\n    sys.stdout.buffer.write({batch!r})\n    sys.stdout.buffer.flush()\n"
    script.write_text("import sys\n" + loop)
    command = json.dumps([sys.executable, str(script)])
    text = f'[[inputs.execd]]\n  command = {command}\n  signal = "STDIN"\n  data_format = "influx"\n'
    influx.create_database("names")
    with Telegraf(
        telegraf_binary, tmp_path, text, AGENT.format(interval="1s") + influxdb_output(influx.url, "names")
    ) as telegraf:
        assert wait_until(lambda: len(influx.rows("names", "SELECT * FROM names")) >= len(OUR_NAMES), 15), (
            telegraf.log_text()
        )
        assert not telegraf.plugin_log("E"), "Telegraf's parser refused none of our lines"
    rows = influx.rows("names", "SELECT * FROM names")
    assert {row["case"]: row["vm"] for row in rows} == {case: stored for case, (_, stored) in OUR_NAMES.items()}
    assert {row["s"] for row in rows} == {STRING_FIELD}


CONFIGURATION_DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
SPLIT_RECIPE = re.compile(r"<!-- split-recipe:start -->\n```toml\n(.*?)```\n<!-- split-recipe:end -->", re.S)
EVEN_LAST = "02468ace"  # the recipe's first reader: names ending in an even hex digit


def test_the_split_recipe_reads_every_guest_once_per_gather_over_two_plugin_processes(
    telegraf_binary: Path, lab: List[str], influx: InfluxServer, tmp_path: Path
):
    """docs/configuration.md's two [[inputs.execd]] blocks, as written but for the path and the intervals."""
    match = SPLIT_RECIPE.search(CONFIGURATION_DOC.read_text())
    assert match, "docs/configuration.md lost its split recipe"
    text = match.group(1).replace('"/usr/bin/kvm-telegraf"', json.dumps(KVM_TELEGRAF))
    text = text.replace('interval = "10s"', f'interval = "{INTERVAL:g}s"').replace('delay = "10s"', 'delay = "1s"')
    db = "split"
    influx.create_database(db)
    config = AGENT.format(interval=f"{INTERVAL:g}s") + influxdb_output(influx.url, db)
    with Telegraf(telegraf_binary, tmp_path, text, config) as telegraf:
        assert wait_until(lambda: len(telegraf.children()) == 2, 15), telegraf.log_text()
        names = subprocess.run(["virsh", "-q", "list", "--all", "--name"], capture_output=True, text=True).stdout
        # The recipe reads every domain of the host, the lab's and any other test's: give a busy host time.
        assert wait_for_gathers(influx, db, lab, 4, 0, 90), (
            f"{len(names.split())} domains; gathers so far: { {vm: len(gathers(influx, db, vm)) for vm in lab} }; "
            + telegraf.log_text()
        )
        hosts = stored(influx, db, "vm_host")
        per_vm = {vm: gathers(influx, db, vm) for vm in lab}
    assert [line for line in telegraf.log() if line.level in "EW" and line.message not in EXIT_NOISE] == []
    even = [name for name in names.split() if name[-1] in EVEN_LAST]
    host_times = sorted(point.time for point in hosts)
    assert len(host_times) >= 4
    for vm, times in per_vm.items():
        assert len(times) == len(set(times)), f"{vm} read twice in one gather"
        # one point per gather, and as many gathers as the reader with --collect host made (give or take the last)
        assert abs(len(times) - len(host_times)) <= 1, (vm, times, host_times)
    values = influx.rows(db, 'SELECT last("domains") AS d FROM "vm_host"')
    assert values[0]["d"] == len(even)  # vm_host counts the first reader's domains only
