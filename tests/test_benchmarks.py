"""The benchmark's own logic (``make bench`` measures; these only check what it computes and configures)."""

from __future__ import annotations

import os
import pathlib
import resource
import time

from benchmarks.bench import README_END, README_START, verdict
from benchmarks.peers import collectd_config
from benchmarks.procstat import peak_rss_mib, schedstat_cpu_ns, stat_cpu_s
from benchmarks.synthetic import recorded_pairs, synthetic_host
from kvm_telegraf.shape import shape_snapshot


def test_the_synthetic_host_replicates_recorded_domains_under_new_names_and_uuids():
    first, second = synthetic_host(50)
    recorded = {dom.uuid: dom for pair in recorded_pairs() for dom in pair}
    assert len({dom.name for dom in second.domains}) == 50
    assert len({dom.uuid for dom in second.domains}) == 50
    assert not {dom.uuid for dom in second.domains} & set(recorded)
    pairs = recorded_pairs()
    assert all(dom.stats == pairs[i % len(pairs)][0].stats for i, dom in enumerate(first.domains))
    assert all(dom.stats == pairs[i % len(pairs)][1].stats for i, dom in enumerate(second.domains))
    assert [dom.uuid for dom in first.domains] == [dom.uuid for dom in second.domains]


def test_the_second_synthetic_cycle_carries_cpu_percent_like_a_live_host():
    first, second = synthetic_host(20)
    _, history = shape_snapshot(first, {})
    points, _ = shape_snapshot(second, history)
    totals = [p for p in points if p.measurement == "vm_totals"]
    assert len(totals) == 20
    assert any("cpu_percent" in p.fields for p in totals)


def test_collectd_reads_only_the_bench_guests_every_second_with_the_extra_stats():
    conf = collectd_config("/tmp/w", "^ktbench-", 25826, "qemu:///system")
    assert "Interval 1\n" in conf
    assert 'Domain "/^ktbench-/"' in conf
    assert 'Server "127.0.0.1" "25826"' in conf
    assert "ExtraStats" in conf and "domain_state" in conf and "pcpu" in conf


def test_a_target_is_met_at_its_limit_and_missed_by_a_share_or_a_multiple_of_it():
    assert verdict(1.05, 1.05) == "met"
    assert verdict(1.26, 1.05) == "missed by 20%"
    assert verdict(3.15, 1.05) == "missed: 3.0x the limit"
    assert verdict(None, 1.05) == "not measured"


def burn_cpu(seconds: float) -> None:
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        pass


def test_process_cpu_figures_grow_by_what_this_process_burns_as_the_kernel_counts_it():
    pid = os.getpid()
    ticks, nanoseconds, process = stat_cpu_s(pid), schedstat_cpu_ns(pid), time.process_time()
    burn_cpu(0.3)
    burned = time.process_time() - process
    assert abs((stat_cpu_s(pid) - ticks) - burned) < 0.05  # two 10 ms ticks of rounding, and some slack
    assert abs((schedstat_cpu_ns(pid) - nanoseconds) / 1e9 - burned) < 0.02


def test_peak_rss_is_the_kernels_high_water_mark_of_this_process():
    ballast = bytearray(64 * 1024 * 1024)  # touched: 64 MiB more resident
    assert abs(peak_rss_mib(os.getpid()) - resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024) < 1
    assert peak_rss_mib(os.getpid()) >= 64 and len(ballast)


def test_readme_shows_the_table_of_the_latest_benchmark_run():
    repo = pathlib.Path(__file__).resolve().parent.parent
    block = (repo / "README.md").read_text(encoding="utf-8").split(README_START, 1)[1].split(README_END, 1)[0]
    assert "| Target | Limit | Measured |" in block
    assert block.strip() in (repo / "benchmarks" / "results.md").read_text(encoding="utf-8")
