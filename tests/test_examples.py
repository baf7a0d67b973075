"""examples/: the Grafana dashboard, the queries and the alerts, run against a real InfluxDB 1.6.

The database is filled the way a host fills it: the real ``kvm-telegraf`` driven as Telegraf's execd
input drives it, on the live lab guests, with the ``host`` tag Telegraf adds to every metric.
Alerts must also fire: for each one, recorded lab snapshots go through the plugin's own shape and
encode stages with one libvirt counter, state or guest agent answer changed, the way a guest in
trouble reports it.
Flux cannot run on InfluxDB 1.6; each ``.flux`` file is checked against its InfluxQL twin instead.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Set, Tuple

import pytest

from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.group import Group
from kvm_telegraf.groups import every_group, resolve
from kvm_telegraf.measurements import MEASUREMENTS
from kvm_telegraf.shape import shape_snapshot
from kvm_telegraf.snapshot import Snapshot
from tests.conftest import load_snapshots
from tests.harness.cli import KVM_TELEGRAF
from tests.harness.execd import ExecdDriver

ROOT = Path(__file__).resolve().parent.parent
GROUPS = every_group()
GROUP_NAMES = [group.name for group in GROUPS]
GROUP_MEASUREMENTS = {measurement for group in GROUPS for measurement in group.measurements}
GUEST_MEASUREMENTS = {measurement for group in GROUPS if group.read_write for measurement in group.measurements}
EXAMPLES = ROOT / "examples"
DASHBOARD = EXAMPLES / "grafana" / "kvm-telegraf.json"
README = ROOT / "README.md"
DASHBOARDS_DOC = ROOT / "docs" / "dashboards.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"

TAG_KEYS = {"host", "vm", "uuid", "device", "type", "event", "mountpoint", "fstype"}
INFLUXQL = sorted(EXAMPLES.glob("*/*.influxql"))
FLUX = sorted(EXAMPLES.glob("*/*.flux"))
TOP_PANELS = json.loads(DASHBOARD.read_text())["panels"]  # a row lists its panels inside when collapsed
PANELS = [p for top in TOP_PANELS for p in (top["panels"] if top["type"] == "row" else [top])]
HOST = socket.gethostname()  # what Telegraf's agent puts in the host tag by default
TICKS = 5

# virDomainState (libvirt-domain.h): the codes the state panel must name.
DOMAIN_STATES = range(8)


# --- what the docs promise --------------------------------------------------------------------


def metrics_tables() -> str:
    """The Metrics tables: the README's for the default measurements, docs/metrics.md's for the groups'."""
    readme = README.read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    groups = METRICS_DOC.read_text().split("\n## Measurements and fields\n", 1)[1].split("\n## ", 1)[0]
    return readme + "\n" + groups


def readme_schema() -> Dict[str, List[re.Pattern]]:
    """Field-name patterns per measurement, read from the Metrics tables."""
    schema: Dict[str, List[re.Pattern]] = {}
    for section in metrics_tables().split("\n### ")[1:]:
        measurement = section.split(":", 1)[0].strip()
        for row in section.splitlines():
            cells = row.split("|")
            if len(cells) < 3 or cells[1].strip().startswith(("Field", "---")):
                continue
            for name in re.findall(r"`([^`]+)`", cells[1]):
                pattern = re.sub(r"<\w+>", r"\\w+", re.escape(name))  # <name>, <start>: a word of the data
                schema.setdefault(measurement, []).append(re.compile(pattern + r"\Z"))
    return schema


def is_field(schema: Dict[str, List[re.Pattern]], measurement: str, name: str) -> bool:
    return any(pattern.match(name) for pattern in schema.get(measurement, []))


def influxql_names(query: str) -> Tuple[Set[str], Set[str]]:
    """(measurements, names) an InfluxQL query reads: the innermost SELECT's fields and tags, plus
    whatever an outer query names that is not an alias of the query inside it."""
    code = "\n".join(line for line in query.splitlines() if not line.lstrip().startswith("--"))
    start = max(code.rfind("SELECT"), 0)  # SHOW TAG VALUES has none
    depth, end = 0, len(code)
    for index in range(start, len(code)):
        depth += {"(": 1, ")": -1}.get(code[index], 0)
        if depth < 0:
            end = index
            break
    inner, outer = code[start:end], code[:start] + code[end:]
    measurements = set(re.findall(r'\bFROM\s+"(\w+)"', inner))
    aliases = set(re.findall(r'\bAS\s+"(\w+)"', code))

    def quoted(text: str) -> Set[str]:
        return set(re.findall(r'"(\w+)"', re.sub(r'\bAS\s+"\w+"', "", text)))

    return measurements, (quoted(inner) - measurements) | (quoted(outer) - aliases)


def flux_names(query: str) -> Tuple[Set[str], Set[str]]:
    """(measurements, fields and tags) that a Flux query reads."""
    code = "\n".join(line for line in query.splitlines() if not line.lstrip().startswith("//"))
    measurements = set(re.findall(r'r\._measurement == "(\w+)"', code))
    fields = set(re.findall(r'r\._field == "(\w+)"', code))
    tags = set(re.findall(r"\br\.([a-z]\w*) ==", code))
    for columns in re.findall(r"columns: \[([^\]]*)\]", code):
        tags |= {c for c in re.findall(r'"(\w+)"', columns) if not c.startswith("_")}
    return measurements, fields | tags


def dashboard_queries() -> List[Tuple[str, str]]:
    """(where, query) for every templating variable and every panel target."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [(f"variable {v['name']}", v["query"]) for v in dashboard["templating"]["list"]]
    queries += [(f"panel {p['title']}", t["query"]) for p in PANELS for t in p["targets"]]
    queries += [(f"annotation {a['name']}", a["query"]) for a in dashboard["annotations"]["list"]]
    return queries


def panel_measurements(panel: dict) -> Set[str]:
    return {m for target in panel["targets"] for m in influxql_names(target["query"])[0]}


# The panels every host fills: the default measurements'. An opt-in group's sit in a collapsed row of their own.
DEFAULT_PANELS = [p for p in TOP_PANELS if p["type"] != "row"]
GUEST_PANELS = [p for p in PANELS if panel_measurements(p) & set(GUEST_MEASUREMENTS)]


def unknown_names(query: str, names: Tuple[Set[str], Set[str]]) -> List[str]:
    schema = readme_schema()
    measurements, used = names
    wrong = [f"measurement {m}" for m in measurements if m not in schema]
    wrong += [n for n in used if n not in TAG_KEYS and not any(is_field(schema, m, n) for m in measurements)]
    return wrong


def test_the_schema_is_read_from_the_docs_with_every_measurement_and_their_tags():
    schema = readme_schema()
    assert set(schema) == {*MEASUREMENTS, *GROUP_MEASUREMENTS}
    assert is_field(schema, "vm_totals", "cpu_percent") and is_field(schema, "vm_features", "feature_acpi")
    assert not is_field(schema, "vm_metrics", "cpu_percent")
    assert all(f"`{tag}`" in metrics_tables() for tag in TAG_KEYS)


def test_every_field_of_every_group_recorded_on_the_lab_is_in_the_metrics_tables():
    schema = readme_schema()
    points = []
    for name in ("lab-groups.json", "lab-backing.json", "lab-anchors.json", "sid-stats.json", "sid-events.json"):
        history: dict = {}
        for snapshot in load_snapshots(name):
            cycle, history = shape_snapshot(snapshot, history, groups=resolve(["all"]))
            points += cycle
    undocumented = {
        (p.measurement, name) for p in points for name in p.fields if not is_field(schema, p.measurement, name)
    }
    read_only = {m for group in GROUPS if not group.read_write and not group.events for m in group.measurements}
    assert {p.measurement for p in points} >= read_only - {"vm_memory_bandwidth", "vm_cache_monitor", "vm_energy"}
    assert undocumented == set()


def test_every_collect_group_has_a_row_in_both_groups_tables_and_is_listed_under_the_option():
    readme = README.read_text()
    for table in (
        readme.split("\n## Statistics groups: `--collect`\n", 1)[1].split("\n## ", 1)[0],
        METRICS_DOC.read_text().split("\n## What each group calls and costs", 1)[1].split("\n## ", 1)[0],
    ):
        rows = {row.split("|")[1].strip().strip("`") for row in table.splitlines() if row.startswith("| `")}
        assert set(GROUP_NAMES) <= rows
    option = next(line for line in readme.splitlines() if line.startswith("| `--collect GROUP`"))
    assert [name for name in GROUP_NAMES if f"`{name}`" not in option] == []


def test_every_guest_field_recorded_from_a_real_agent_is_in_the_metrics_tables():
    schema = readme_schema()
    points, history = [], {}
    for snapshot in [*load_snapshots("lab-guest.json"), *load_snapshots("sid-guest.json")]:
        cycle, history = shape_snapshot(snapshot, history, groups=resolve(["guest"]))
        points += cycle
    undocumented = {
        (p.measurement, name) for p in points for name in p.fields if not is_field(schema, p.measurement, name)
    }
    assert {p.measurement for p in points} >= set(GUEST_MEASUREMENTS)
    assert undocumented == set()


@pytest.mark.parametrize("where,query", dashboard_queries(), ids=[w for w, _ in dashboard_queries()])
def test_the_dashboard_reads_only_measurements_fields_and_tags_the_docs_document(where, query):
    names = influxql_names(query)
    assert names[0] and names[1], f"{where}: no quoted measurement or field found"
    assert unknown_names(query, names) == []


@pytest.mark.parametrize("path", INFLUXQL + FLUX, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_example_reads_only_measurements_fields_and_tags_the_docs_document(path):
    text = path.read_text()
    names = influxql_names(text) if path.suffix == ".influxql" else flux_names(text)
    assert names[0] and names[1], "no measurement or field found"
    assert unknown_names(text, names) == []


@pytest.mark.parametrize("flux", FLUX, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_flux_file_has_an_influxql_twin_reading_the_same_measurements_and_fields(flux):
    twin = flux.with_suffix(".influxql")
    assert twin.is_file(), f"{flux.name} has no InfluxQL twin"
    flux_measurements, flux_used = flux_names(flux.read_text())
    influxql_measurements, influxql_used = influxql_names(twin.read_text())
    assert flux_measurements == influxql_measurements
    assert flux_used - TAG_KEYS == influxql_used - TAG_KEYS


def test_every_influxql_example_has_a_flux_twin():
    assert [p.with_suffix(".flux") for p in INFLUXQL] == FLUX


@pytest.mark.parametrize("path", sorted((EXAMPLES / "alerts").iterdir()), ids=lambda p: p.name)
def test_every_alert_opens_with_a_comment_saying_what_it_detects_and_its_threshold(path):
    comment = "--" if path.suffix == ".influxql" else "//"
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith(comment):
            break
        header.append(line)
    text = "\n".join(header)
    assert text.startswith(f"{comment} Alert: ") and "Detects:" in text and "Threshold:" in text


def test_the_dashboards_doc_names_every_example_file():
    doc = DASHBOARDS_DOC.read_text()
    files = [p.relative_to(ROOT).as_posix() for p in sorted(EXAMPLES.rglob("*")) if p.is_file()]
    missing = [f for f in files if f not in doc and Path(f).stem not in doc]
    assert missing == []


def test_the_dashboard_asks_for_an_influxdb_datasource_at_import_and_uses_it_everywhere():
    dashboard = json.loads(DASHBOARD.read_text())
    (wanted,) = dashboard["__inputs"]
    assert (wanted["type"], wanted["pluginId"]) == ("datasource", "influxdb")
    reference = {"type": "influxdb", "uid": "${" + wanted["name"] + "}"}
    users = dashboard["templating"]["list"] + PANELS + [t for p in PANELS for t in p["targets"]]
    assert all(user["datasource"] == reference for user in users)
    assert all(t["rawQuery"] for p in PANELS for t in p["targets"])
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["host", "vm"]


def test_the_top_level_panels_read_the_default_measurements_and_the_guest_panels_a_collapsed_row_of_their_own():
    assert all(panel_measurements(p) <= set(MEASUREMENTS) for p in DEFAULT_PANELS)
    (row,) = [p for p in TOP_PANELS if p["type"] == "row"]
    assert row["collapsed"] and "--collect guest" in row["title"]
    assert row["panels"] == GUEST_PANELS
    assert set().union(*map(panel_measurements, GUEST_PANELS)) == set(GUEST_MEASUREMENTS)


def test_the_state_panel_names_every_libvirt_domain_state():
    (panel,) = [p for p in PANELS if p["title"] == "State"]
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    assert mapping["type"] == "value"
    assert sorted(int(code) for code in mapping["options"]) == list(DOMAIN_STATES)
    assert mapping["options"]["1"]["text"] == "running" and mapping["options"]["5"]["text"] == "shut off"


def test_the_docs_influxql_statements_make_the_database_with_a_30_day_default_policy(influx):
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text() + DASHBOARDS_DOC.read_text(), re.S)
    assert len(blocks) == 2, "README lost its CREATE DATABASE or docs/dashboards.md its CREATE RETENTION POLICY"
    try:
        for block in blocks:
            influx.query(None, block.strip())
        policies = influx.rows("telegraf", 'SHOW RETENTION POLICIES ON "telegraf"')
    finally:
        influx.drop_database("telegraf")
    assert [(p["name"], p["duration"]) for p in policies if p["default"]] == [("kvm_30d", "720h0m0s")]


# --- the way Telegraf writes them --------------------------------------------------------------


def as_telegraf_sends(batch: str) -> str:
    """Telegraf adds its ``host`` tag to each metric; InfluxDB sorts tags itself, so it goes first."""
    out = []
    for line in batch.splitlines():
        measurement, rest = line.split(",", 1)  # our measurement names hold no comma
        out.append(f"{measurement},host={HOST},{rest}")
    return "\n".join(out) + "\n"


def write(influx, db: str, batch: str) -> None:
    status, body = influx.write(db, as_telegraf_sends(batch))
    assert status == 204, body


def grafana(query: str, guests: List[str]) -> str:
    """The query as Grafana sends it: the last 15 minutes, a 1s interval, every host and guest."""
    end_ms = int(time.time() * 1000) + 1000
    variables = {
        "$timeFilter": f"time >= {end_ms - 15 * 60 * 1000}ms and time <= {end_ms}ms",
        "$__interval": "1s",
        "$host": f"({re.escape(HOST)})",
        "$vm": "(" + "|".join(re.escape(name) for name in guests) + ")",
    }
    for name, value in variables.items():
        query = query.replace(name, value)
    assert "$" not in query.replace("$/", ""), query
    return query


def series(influx, db: str, query: str) -> List[dict]:
    return [s for result in influx.query(db, query) for s in result.get("series", [])]


@pytest.fixture(scope="module")
def filled(lab, influx) -> Iterator[str]:
    """A database holding a few real batches, ~1 s apart, of the lab guests."""
    db = "examples"
    influx.create_database(db)
    driver = ExecdDriver([KVM_TELEGRAF, *(arg for name in lab for arg in ("--domain", name))])
    driver.start()
    try:
        for _ in range(TICKS):
            assert driver.tick()
            batch = driver.read_batch(timeout=15, settle=0.3)
            assert batch, driver.stderr
            write(influx, db, "\n".join(batch))
            time.sleep(1)
    finally:
        driver.stop()
    yield db
    influx.drop_database(db)


@pytest.mark.lab
def test_the_dashboard_variables_list_the_host_and_every_guest(filled, influx, lab):
    found = {}
    for variable in json.loads(DASHBOARD.read_text())["templating"]["list"]:
        rows = series(influx, filled, grafana(variable["query"], lab))
        found[variable["name"]] = sorted(value for s in rows for _, value in s["values"])
    assert found == {"host": [HOST], "vm": sorted(lab)}


@pytest.mark.lab
@pytest.mark.parametrize("panel", DEFAULT_PANELS, ids=[p["title"] for p in DEFAULT_PANELS])
def test_every_dashboard_panel_gets_a_series_with_values_for_every_guest(panel, filled, influx, lab):
    for target in panel["targets"]:
        got = series(influx, filled, grafana(target["query"], lab))
        assert sorted({s["tags"]["vm"] for s in got}) == sorted(lab)
        for s in got:
            assert any(v is not None for row in s["values"] for v in row[1:]), s
        if "vm_devices" in target["query"]:
            per_guest = [s["tags"]["vm"] for s in got]
            assert all(per_guest.count(name) == 2 for name in lab), "each lab guest has 2 NICs and 2 disks"


@pytest.mark.lab
@pytest.mark.parametrize("path", sorted((EXAMPLES / "queries").glob("*.influxql")), ids=lambda p: p.name)
def test_every_example_query_gets_a_series_with_values_for_every_guest(path, filled, influx, lab):
    got = series(influx, filled, path.read_text())
    assert sorted({s["tags"]["vm"] for s in got}) == sorted(lab)
    for s in got:
        assert s["tags"]["host"] == HOST
        assert any(v is not None for row in s["values"] for v in row[1:]), s


@pytest.mark.lab
@pytest.mark.parametrize("path", sorted((EXAMPLES / "alerts").glob("*.influxql")), ids=lambda p: p.name)
def test_every_alert_runs_on_the_lab_data_and_only_steal_time_may_fire_there(path, filled, influx):
    fired = series(influx, filled, path.read_text())  # a statement error raises here
    if path.stem != "steal-time":  # TCG guests on 2 busy cores may really wait for a CPU
        assert fired == []


# --- each alert fires on the condition it is for -----------------------------------------------


def replay(influx, db: str, snapshots: List[Snapshot], groups: Sequence[Group] = ()) -> None:
    """Shape and encode recorded snapshots as the plugin does (with the ``--collect`` *groups*), moved to
    just before now."""
    influx.create_database(db)
    shift = time.time_ns() - snapshots[-1].timestamp_ns - 1_000_000_000
    encoder, history = LineEncoder(), {}
    for snapshot in snapshots:
        snapshot = dataclasses.replace(snapshot, timestamp_ns=snapshot.timestamp_ns + shift)
        points, history = shape_snapshot(snapshot, history, groups=groups)
        write(influx, db, encoder.encode(points, snapshot.timestamp_ns))


def grown(snapshots: List[Snapshot], vm: str, key: str, by: int) -> List[Snapshot]:
    """The recording with one libvirt counter of one guest grown by *by* in its last cycle."""
    *earlier, last = snapshots
    domains = tuple(
        dataclasses.replace(d, stats={**d.stats, key: d.stats[key] + by}) if d.name == vm else d for d in last.domains
    )
    return [*earlier, dataclasses.replace(last, domains=domains)]


def agent_answered(snapshots: List[Snapshot], vm: str, guest: Mapping[str, Any], cycle: int = -1) -> List[Snapshot]:
    """The recording with what one guest's agent answered (``calls["guest"]``) replaced in one cycle."""
    changed = snapshots[cycle]
    domains = tuple(
        dataclasses.replace(d, calls={**d.calls, "guest": guest}) if d.name == vm else d for d in changed.domains
    )
    return [dataclasses.replace(s, domains=domains) if s is changed else s for s in snapshots]


def guest_call(snapshot: Snapshot, vm: str) -> Mapping[str, Any]:
    """What one guest's agent answered in one recorded cycle."""
    (domain,) = [d for d in snapshot.domains if d.name == vm]
    return domain.calls["guest"]


def alert(influx, db: str, name: str) -> Dict[Tuple[str, ...], List]:
    """Rows of one alert, by their tags (host left out)."""
    fired = series(influx, db, (EXAMPLES / "alerts" / f"{name}.influxql").read_text())
    out = {}
    for s in fired:
        assert s["tags"].pop("host") == HOST
        out[tuple(v for _, v in sorted(s["tags"].items()))] = [row[1:] for row in s["values"]]
    return out


def test_vm_not_running_fires_for_the_recorded_paused_and_shut_off_guests_only(influx):
    replay(influx, "alert_states", load_snapshots("lab-states.json"))
    assert alert(influx, "alert_states", "vm-not-running") == {
        ("ktlab-02",): [[3, 1]],  # paused by the user
        ("ktlab-03",): [[5, 2]],  # shut off, destroyed
    }


def test_device_errors_rising_fires_for_the_nic_whose_receive_errors_grew_only(influx):
    recorded = load_snapshots("lab-running.json")
    replay(influx, "alert_nic", grown(recorded, "ktlab-01", "net.0.rx.errs", 3))
    nic = dict(recorded[0].domains[0].config.facts.interfaces)[recorded[0].domains[0].stats["net.0.name"]]  # its MAC
    fired = alert(influx, "alert_nic", "device-errors-rising")
    assert list(fired) == [(nic, "ktlab-01")]
    ((rx_per_min, tx_per_min, disk_per_min),) = fired[(nic, "ktlab-01")]
    assert rx_per_min > 0 and tx_per_min == 0 and disk_per_min is None


def test_device_errors_rising_stays_quiet_when_a_guest_restart_resets_the_counter(influx):
    recorded = load_snapshots("lab-running.json")
    before_restart = grown(recorded[:1], "ktlab-01", "net.0.rx.errs", 50)
    replay(influx, "alert_reset", [*before_restart, recorded[1]])
    assert alert(influx, "alert_reset", "device-errors-rising") == {}


def test_swap_in_fires_for_the_guest_that_swapped_in_only(influx):
    replay(influx, "alert_swap", grown(load_snapshots("lab-running.json"), "ktlab-02", "balloon.swap_in", 2048))
    fired = alert(influx, "alert_swap", "swap-in")
    assert list(fired) == [("ktlab-02",)]
    ((bytes_per_s,),) = fired[("ktlab-02",)]
    assert 0 < bytes_per_s < 2048 * 1024


def test_steal_time_fires_for_the_guest_whose_vcpu_waited_half_the_time_only(influx):
    recorded = load_snapshots("lab-running.json")
    elapsed_ns = recorded[1].timestamp_ns - recorded[0].timestamp_ns
    replay(influx, "alert_steal", grown(recorded, "ktlab-01", "vcpu.0.delay", elapsed_ns // 2))
    fired = alert(influx, "alert_steal", "steal-time")
    assert list(fired) == [("ktlab-01",)]
    ((percent,),) = fired[("ktlab-01",)]
    assert 50 <= percent < 51  # the recorded guest's own steal was ~0.2 %


# --- vm_events (--collect events): the alert and the dashboard's annotations -----------------------


@pytest.fixture(scope="module")
def events_db(influx) -> Iterator[str]:
    """The recorded destroy/start, suspend/resume and metadata change, moved to just before now, each
    event at its own time as the plugin writes it."""
    db = "alert_events"
    recorded = load_snapshots("lab-events.json")
    shift = time.time_ns() - recorded[-1].timestamp_ns - 1_000_000_000
    influx.create_database(db)
    encoder, history = LineEncoder(), {}
    for snapshot in recorded:
        events = tuple(dataclasses.replace(e, timestamp_ns=e.timestamp_ns + shift) for e in snapshot.events)
        snapshot = dataclasses.replace(snapshot, timestamp_ns=snapshot.timestamp_ns + shift, events=events)
        points, history = shape_snapshot(snapshot, history, groups=resolve(["events"]))
        write(influx, db, encoder.encode(points, snapshot.timestamp_ns))
    yield db
    influx.drop_database(db)


def test_vm_crashed_or_restarted_fires_once_for_the_guest_destroyed_and_started_between_two_cycles(events_db, influx):
    assert alert(influx, events_db, "vm-crashed-or-restarted") == {("kte-01",): [[1]]}, "the boot, not the pause"


def test_the_dashboard_annotations_show_every_event_with_its_detail(events_db, influx):
    ((name, query),) = [(w, q) for w, q in dashboard_queries() if w.startswith("annotation")]
    got = series(influx, events_db, grafana(query, ["kte-01"]))
    events = sorted((s["tags"]["event"], row[1]) for s in got for row in s["values"])
    recorded = load_snapshots("lab-events.json")
    assert events == sorted((e.event, e.detail) for snapshot in recorded for e in snapshot.events), name


# --- vm_guest and vm_filesystems (--collect guest): the alerts and the dashboard's guest row --------

GUEST = resolve(["guest"])


def filled_to(snapshots: List[Snapshot], vm: str, percent: int, cycle: int = -1) -> List[Snapshot]:
    """The recording with the first filesystem of one guest filled to *percent* in one cycle, as its agent
    would report it."""
    answer = guest_call(snapshots[cycle], vm)
    info = answer["info"]
    used = info["fs.0.total-bytes"] * percent // 100
    return agent_answered(snapshots, vm, {**answer, "info": {**info, "fs.0.used-bytes": used}}, cycle)


def test_guest_filesystem_full_fires_for_the_filesystem_filled_to_95_percent_only(influx):
    recorded = load_snapshots("lab-guest.json")
    replay(influx, "alert_fs_full", filled_to(recorded, "ktguest-01", 95), GUEST)
    fired = alert(influx, "alert_fs_full", "guest-filesystem-full")
    assert list(fired) == [("/mnt/data", "ktguest-01")]
    ((percent, free_bytes),) = fired[("/mnt/data", "ktguest-01")]
    total = guest_call(recorded[-1], "ktguest-01")["info"]["fs.0.total-bytes"]
    assert 94.99 <= percent <= 95.01 and free_bytes == total - total * 95 // 100


def test_guest_filesystem_full_stays_quiet_on_the_recorded_filesystem_and_one_cleaned_up_since(influx):
    recorded = load_snapshots("lab-guest.json")
    replay(influx, "alert_fs_recorded", recorded, GUEST)
    replay(influx, "alert_fs_cleaned", filled_to(recorded, "ktguest-01", 95, cycle=0), GUEST)
    assert series(influx, "alert_fs_recorded", 'SELECT "used_percent" FROM "vm_filesystems"'), "no filesystem replayed"
    assert alert(influx, "alert_fs_recorded", "guest-filesystem-full") == {}  # 0.2 % used
    assert alert(influx, "alert_fs_cleaned", "guest-filesystem-full") == {}  # 95 % one cycle ago, 0.2 % now


def test_guest_agent_not_responding_fires_for_the_recorded_stopped_agent_only(influx):
    replay(influx, "alert_agent", load_snapshots("lab-guest.json"), GUEST)
    assert alert(influx, "alert_agent", "guest-agent-not-responding") == {("ktguest-02",): [[False]]}


def test_guest_agent_not_responding_stays_quiet_for_an_agent_that_answers_again(influx):
    recorded = load_snapshots("lab-guest.json")
    stopped = guest_call(recorded[0], "ktguest-02")  # the recorded answer of an agent under SIGSTOP
    replay(influx, "alert_agent_back", agent_answered(recorded, "ktguest-01", stopped, cycle=0), GUEST)
    assert list(alert(influx, "alert_agent_back", "guest-agent-not-responding")) == [("ktguest-02",)]


@pytest.fixture(scope="module")
def guest_db(influx) -> Iterator[str]:
    """The two recorded agent guests, moved to just before now: ktguest-01 answers with one filesystem,
    ktguest-02's agent is stopped (vm_guest agent_responding=false alone, no vm_filesystems)."""
    db = "dashboard_guest"
    replay(influx, db, load_snapshots("lab-guest.json"), GUEST)
    yield db
    influx.drop_database(db)


@pytest.mark.parametrize("panel", GUEST_PANELS, ids=[p["title"] for p in GUEST_PANELS])
def test_every_guest_panel_gets_a_series_with_values_for_every_guest_that_has_the_measurement(panel, guest_db, influx):
    shaped, history = [], {}
    for snapshot in load_snapshots("lab-guest.json"):
        points, history = shape_snapshot(snapshot, history, groups=GUEST)
        shaped += points
    for target in panel["targets"]:
        got = series(influx, guest_db, grafana(target["query"], ["ktguest-01", "ktguest-02"]))
        assert got, target["query"]
        (measurement,) = influxql_names(target["query"])[0]
        assert sorted({s["tags"]["vm"] for s in got}) == sorted(
            {dict(p.tags)["vm"] for p in shaped if p.measurement == measurement}
        )
        for s in got:
            assert any(v is not None for row in s["values"] for v in row[1:]), s


def test_the_guest_agent_panel_shows_which_agent_does_not_answer(guest_db, influx):
    ((query,),) = [[t["query"] for t in p["targets"]] for p in GUEST_PANELS if panel_measurements(p) == {"vm_guest"}]
    got = series(influx, guest_db, grafana(query, ["ktguest-01", "ktguest-02"]))
    responding = {s["tags"]["vm"]: s["values"][-1][s["columns"].index("agent_responding")] for s in got}
    assert responding == {"ktguest-01": True, "ktguest-02": False}
