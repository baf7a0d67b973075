"""The pure parts of ``make bench``'s issue #26 apparatus: cgroups, the split, callgrind's parts, the table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.callgrind import part_totals, per_stage
from benchmarks.cgroup import CpuGroup, hierarchy, usage_ns
from benchmarks.figures import Results, floor_ratio, in_process, room_beyond_floor, telegraf_ratio
from benchmarks.host import PartLoad, busy_share
from benchmarks.memory import package_of
from benchmarks.table import render, targets
from benchmarks.table_parts import telegraf_split
from benchmarks.vs_peers import PeersResult, Series
from benchmarks.vs_telegraf import TelegrafRun, chunk_s, split
from kvm_telegraf.libvirt_facts import DEFAULT_STATS

REPLAY = Path(__file__).resolve().parent.parent / "benchmarks" / "replay_lines.py"


def test_a_cgroup_v1_group_reads_cpuacct_usage_in_nanoseconds(tmp_path):
    (tmp_path / "cpuacct.usage").write_text("321093142\n")
    assert usage_ns(tmp_path) == 321093142


def test_a_cgroup_v2_group_reads_usage_usec_from_cpu_stat_as_nanoseconds(tmp_path):
    (tmp_path / "cpu.stat").write_text("usage_usec 315725\nuser_usec 118397\nsystem_usec 197328\n")
    assert usage_ns(tmp_path) == 315_725_000


def test_a_cgroup_v2_cpu_stat_without_usage_is_an_error_that_says_so(tmp_path):
    (tmp_path / "cpu.stat").write_text("nr_periods 0\n")
    with pytest.raises(ValueError, match="usage_usec"):
        usage_ns(tmp_path)


def test_the_cpuacct_hierarchy_of_a_hybrid_host_wins_over_its_unified_mount(tmp_path):
    for name, marker in (("cpuacct", "cpuacct.usage"), ("unified", "cgroup.controllers")):
        (tmp_path / name).mkdir()
        (tmp_path / name / marker).write_text("")
    assert hierarchy(tmp_path) == tmp_path / "cpuacct"


def test_a_pure_cgroup_v2_host_makes_its_groups_at_the_root(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    assert hierarchy(tmp_path) == tmp_path


def test_a_host_without_any_cpu_accounting_hierarchy_is_refused_by_name(tmp_path):
    with pytest.raises(RuntimeError, match="no cpuacct"):
        hierarchy(tmp_path)


def test_a_group_writes_each_pid_it_takes_into_cgroup_procs(tmp_path):
    (tmp_path / "cpuacct").mkdir()
    (tmp_path / "cpuacct" / "cpuacct.usage").write_text("0\n")
    group = CpuGroup("ktbench-x", tmp_path)
    group.add([4242])
    assert (tmp_path / "cpuacct" / "ktbench-x" / "cgroup.procs").read_text() == "4242\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="making a cgroup needs root")
def test_a_real_cgroup_counts_the_cpu_of_a_child_started_after_its_parent_joined():
    group = CpuGroup(f"ktbench-test-{os.getpid()}")
    try:
        burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass\n"
        # The parent starts its child only once it is in the group (the newline): else it may start it before.
        start = f"import subprocess, sys; sys.stdin.readline(); subprocess.run([sys.executable, '-c', {burn!r}])"
        parent = subprocess.Popen([sys.executable, "-c", start], stdin=subprocess.PIPE)
        group.add([parent.pid])
        parent.communicate(b"\n")
        assert group.usage_ns() >= 150_000_000
    finally:
        assert group.close() is None


def test_a_chunk_holds_whole_intervals_and_whole_internal_periods():
    assert chunk_s(2.0) == 10
    assert chunk_s(4.0) == 20
    assert chunk_s(5.0) == 5


def telegraf_run(label: str = "20 paused") -> TelegrafRun:
    return TelegrafRun(
        label=label,
        interval_s=2.0,
        gathers=30,
        cpu_s={"kvm-telegraf": 0.0075, "replay": 0.0035, "libvirt": 0.0063, "floor": 0.0052, "baseline": 0.0008},
        chunk_ratios=[1.1, 1.2, 1.3],
        child_s={"kvm-telegraf": 0.0046, "replay": 0.0001, "floor": 0.0015},
        rss_mib={"kvm-telegraf": 59.6, "replay": 40.0, "libvirt": 27.7, "floor": 45.0, "baseline": 25.0},
        lines={"kvm-telegraf": 140, "replay": 140, "libvirt": 240},
        fields={"kvm-telegraf": 1860, "replay": 1860, "libvirt": 1520},
        gather_s={},
        log_problems={
            "kvm-telegraf": [],
            "replay": [],
            "libvirt": ["W! [inputs.libvirt] slow"],
            "floor": [],
            "baseline": [],
        },
    )


def test_the_split_of_telegraf_with_our_block_adds_up_to_its_cgroup():
    parts = split(telegraf_run())
    assert parts.parse == pytest.approx(0.0035 - 0.0001 - 0.0008)
    assert parts.ours == 0.0046
    assert parts.baseline + parts.parse + parts.execd_rest + parts.ours == pytest.approx(parts.total)
    assert parts.theirs_gather == pytest.approx(0.0063 - 0.0008)
    assert telegraf_ratio(telegraf_run()) == pytest.approx(0.0075 / 0.0063)
    assert (parts.floor, parts.floor_process) == (0.0052, 0.0015)
    assert floor_ratio(telegraf_run()) == pytest.approx(0.0052 / 0.0063)


def test_a_target_the_floor_is_under_gets_no_word_about_the_floor():
    run = telegraf_run()
    run.cpu_s["floor"] = 0.0040  # 0.63x: the target of 0.8x is above the floor
    assert "the floor is over the target" not in "\n".join(targets(Results(
        machine={}, guests=20, cycles=30, load=[], peers=None, telegraf={"20 paused": run}
    )))  # fmt: skip


def test_the_in_process_figures_are_medians_and_the_ratio_is_the_median_of_the_per_round_ratios():
    same = {
        "bare": {"cpu_s": [1.0, 1.0, 2.0], "wall_s": [1.0, 1.0, 1.0]},
        "cycle": {"cpu_s": [3.0, 2.0, 10.0], "wall_s": [1.0, 1.0, 1.0], "gc_s": [0.0, 0.1, 0.2], "gc_runs": [0, 1, 2]},
        "staged": {"cpu_s": [3.0, 3.0, 3.0], "wall_s": [1.0, 1.0, 1.0], "gc_s": [0.0, 0.0, 0.3], "gc_runs": [0, 0, 3]},
        "stages": {stage: [0.5, 0.7, 0.9] for stage in ("collect", "shape", "encode", "write")},
    }
    figures = in_process(same)
    assert figures["cycle"] == 3.0 and figures["bare"] == 1.0
    assert figures["ratio"] == 3.0  # per round: 3, 2, 5
    assert figures["gc"] == pytest.approx(0.1) and figures["gc_runs"] == 1.0
    assert figures["shape"] == 0.7


def test_callgrinds_parts_are_named_in_order_and_each_stage_takes_the_median_of_its_repetitions(tmp_path):
    for part, total in ((1, 900), (2, 10), (3, 20), (4, 12), (5, 22), (6, 14), (7, 99), (8, 5)):
        (tmp_path / f"cg.out.{part}").write_text(
            f"version: 1\npart: {part}\ndesc: x\nsummary: {total}\ntotals: {total}\n"
        )
    names = ["setup", "shape", "encode", "shape", "encode", "shape", "encode"]
    assert per_stage(names, part_totals(tmp_path)) == {"setup": 900, "shape": 12, "encode": 22}


def test_the_replayer_prints_the_recorded_batch_once_per_newline_under_a_new_timestamp(tmp_path):
    batch = tmp_path / "batch.lp"
    batch.write_text(
        "vm_metrics,vm=a state=1i 1700000000000000000\nvm_totals,vm=a cpu_user_ns=5i 1700000000000000000\n"
    )
    done = subprocess.run([sys.executable, str(REPLAY), str(batch)], input="\n\n", capture_output=True, text=True)
    lines = done.stdout.splitlines()
    assert len(lines) == 4
    assert [line.rsplit(" ", 1)[0] for line in lines[:2]] == [
        "vm_metrics,vm=a state=1i",
        "vm_totals,vm=a cpu_user_ns=5i",
    ]
    assert all(int(line.rsplit(" ", 1)[1]) > 1700000000000000000 for line in lines)


def test_the_floor_makes_the_bulk_call_before_each_replayed_batch(tmp_path):
    import libvirt

    try:
        libvirt.openReadOnly("test:///default").getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE, 0)
    except libvirt.libvirtError as exc:  # libvirt 7.0's test driver (the bullseye tree) has no bulk stats
        pytest.skip(f"this libvirt's test driver cannot answer the bulk call: {exc}")
    batch = tmp_path / "batch.lp"
    batch.write_text("vm_metrics,vm=a state=1i 1700000000000000000\n")
    argv = [sys.executable, str(REPLAY), str(batch), "test:///default", "test", str(DEFAULT_STATS)]
    done = subprocess.run(argv, input="\n\n", capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert [line.rsplit(" ", 1)[0] for line in done.stdout.splitlines()] == ["vm_metrics,vm=a state=1i"] * 2


def test_the_floor_prints_no_batch_without_its_bulk_call(tmp_path):
    batch = tmp_path / "batch.lp"
    batch.write_text("vm_metrics,vm=a state=1i 1700000000000000000\n")
    argv = [sys.executable, str(REPLAY), str(batch), "test:///nowhere", "test", "1"]
    refused = subprocess.run(argv, input="\n", capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and refused.stdout == ""  # no connection: no batch, not a batch without the call


def test_the_machines_busy_share_is_busy_jiffies_over_all_jiffies():
    assert busy_share((100, 1000), (150, 1200)) == 0.25
    assert busy_share((0, 0), (0, 0)) == 0.0


def test_the_table_shows_each_target_with_its_verdict_and_says_what_was_not_measured():
    peers = PeersResult(
        paused={
            name: Series(wall_s=[0.2], cpu_s=[0.004], paired_ratio=[0.98])
            for name in ("bare", "kvm", "collectd", "exporter")
        },
        live={name: Series() for name in ("bare", "kvm", "collectd")},
        start_s=[0.39],
        rss_mib={"bare": 27.6, "kvm": 33.8, "collectd": 18.7, "exporter": 32.7},
        stat_mean_s={"bare": 0.001, "kvm": 0.005, "collectd": 0.003, "exporter": 0.03},
        domains_on_host=28,
        exporter_domains=26,
        lines_per_batch=140,
    )
    results = Results(
        machine={"nproc": "2", "cpu": "x", "kernel": "6", "libvirt": "9.0.0", "qemu": "7.2", "python": "3.11",
                 "telegraf": "1.37.2", "date": "2026-12-05 05:00 UTC"},
        guests=20,
        cycles=30,
        load=[PartLoad("a part", 61.0, 0.55, 2.5)],
        peers=peers,
        telegraf={"4 running": None, "20 paused": telegraf_run()},
    )  # fmt: skip
    table = render(results)
    assert "| Telegraf + kvm-telegraf to Telegraf + `inputs.libvirt`, CPU per gather, 20 paused guests | 1.19x" in table
    assert "floor 0.83x | <= 0.8x | missed by 49%; the floor is over the target |" in table
    assert "| Ratio, the floor's setup to inputs.libvirt's | 0.83x |" in table
    assert "4 running guests | n/a | <= 1.0x | not measured |" in table
    assert "| Peak RSS | 33.8 MiB (bare process: 27.6 MiB) | <= 30 MiB | missed by 13% |" in table
    assert "| Start to first batch | 0.39 s | <= 0.5 s | met |" in table
    assert "In one process: not measured" in table
    assert "| a part | 61 s | 55% | 2.50 |" in table


def test_the_python_heap_is_put_down_to_the_package_or_stdlib_module_that_allocated_it():
    assert package_of("/usr/lib/python3/dist-packages/click/core.py") == "click"
    assert package_of("/tmp/v/lib/python3.11/site-packages/kvm_telegraf/shape.py") == "kvm_telegraf"
    assert package_of("/usr/lib/python3.11/xml/etree/ElementTree.py") == "stdlib:xml"
    assert package_of("/usr/lib/python3.11/logging/__init__.py") == "stdlib:logging"
    assert package_of("/usr/lib/python3.11/dataclasses.py") == "stdlib:dataclasses"
    assert package_of("<frozen importlib._bootstrap_external>").startswith("code objects")


def test_kvm_telegraf_runs_as_an_operators_default_when_the_host_holds_only_the_benchs_guests():
    from benchmarks.bench import as_operators_run  # its module imports the Telegraf harness: only here

    assert as_operators_run("kvm-telegraf", "te*", "test:///default") == ["kvm-telegraf"]  # its one domain: "test"


def test_kvm_telegraf_keeps_other_domains_out_with_a_domain_glob_when_the_host_has_them():
    from benchmarks.bench import as_operators_run

    argv = as_operators_run("kvm-telegraf", "ktbench-*", "test:///default")
    assert argv == ["kvm-telegraf", "--domain", "ktbench-*"]


def test_the_in_process_rounds_leave_the_filter_out_only_when_every_domain_matches():
    import libvirt

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # same_process's own imports
    try:
        from benchmarks.same_process import only_these
    finally:
        sys.path.pop(0)
    conn = libvirt.openReadOnly("test:///default")
    assert only_these(conn, "te*") and not only_these(conn, "ktbench-*")


def test_the_room_a_target_leaves_is_its_share_of_theirs_less_telegrafs_side_and_the_floors_process():
    # 0.8 x 6.3 ms, less Telegraf's side of ours (7.5 - 4.6 ms), less the floor's process (1.5 ms): 0.64 ms
    assert room_beyond_floor(0.0075, 0.0046, 0.0063, 0.0015, 0.8) == pytest.approx(0.00064)
    runs = {"20 paused": telegraf_run(), "60 paused": telegraf_run("60 paused")}
    table = "\n".join(
        telegraf_split(Results(machine={}, guests=20, cycles=30, load=[], telegraf=runs), {"20 paused": 0.8})
    )
    assert "| The target's room for our process beyond the floor's" in table
    assert "| 0.640 ms at 0.8x | no target |" in table


def test_the_print_floor_times_only_a_cycle_whose_points_it_has_seen_before():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        from benchmarks.same_process import PrintFloor, template
    finally:
        sys.path.pop(0)
    assert template("vm_metrics", (("vm", "a"),), ("state", "cpu%")) == "vm_metrics,vm=a state=%s,cpu%%=%s"
    floor = PrintFloor()
    points = [("vm_metrics", (("vm", "a"),), {"state": 1}, None)]
    floor(points, 1)
    assert floor.samples == []  # a first cycle: its templates are made, not timed
    floor([("vm_metrics", (("vm", "a"),), {"state": 3}, None)], 2)
    floor([("vm_metrics", (("vm", "b"),), {"state": 3}, None)], 3)  # another series: made again, not timed
    assert len(floor.samples) == 1


def test_a_contender_s_cpu_leaves_out_what_it_says_it_spent_measuring_something_else():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        from benchmarks.gc_clock import GcClock
        from benchmarks.same_process import measure
    finally:
        sys.path.pop(0)
    clock = GcClock()
    try:
        samples = measure(2, {"plain": lambda: None, "aside": lambda: 10.0}, clock, pause_s=0)
    finally:
        clock.remove()
    assert all(-10.0 < cpu < -9.0 for cpu in samples["aside"]["cpu_s"])  # its 10 s aside, not a real 10 s
    assert all(0 <= cpu < 1.0 for cpu in samples["plain"]["cpu_s"])


def test_the_in_process_rounds_run_whole_against_libvirts_test_driver_and_report_every_part():
    import json

    import libvirt

    try:
        libvirt.openReadOnly("test:///default").getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE, 0)
    except libvirt.libvirtError as exc:  # libvirt 7.0's test driver (the bullseye tree) has no bulk stats
        pytest.skip(f"this libvirt's test driver cannot answer the bulk call: {exc}")
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "same_process.py"
    done = subprocess.run([sys.executable, str(script), "test:///default", "test", "3"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert {len(answer[name]["cpu_s"]) for name in ("bare", "cycle", "staged")} == {3}
    assert answer["domains"] == {"read": 1, "kept_by_bare": 1, "filtered": False}
    assert len(answer["print_floor_s"]) == 4  # every round and the second warm-up: the first made the templates


def test_the_telegraf_table_gives_the_text_of_each_logged_problem_clipped_and_at_most_five_per_setup():
    run = telegraf_run()
    run.log_problems["kvm-telegraf"] = [f"E! [inputs.execd] line {n} " + "x" * 300 for n in range(7)]
    table = "\n".join(
        telegraf_split(Results(machine={}, guests=20, cycles=30, load=[], telegraf={"20 paused": run}), {})
    )
    assert "- 20 paused, libvirt: `W! [inputs.libvirt] slow`" in table
    ours = [line for line in table.splitlines() if line.startswith("- 20 paused, kvm-telegraf: `")]
    assert len(ours) == 5 and all(len(line) < 300 for line in ours) and "line 4 " in ours[-1]
    assert "- 20 paused, kvm-telegraf: 2 more" in table
