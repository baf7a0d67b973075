"""The benchmark's own logic (``make bench`` measures; these only check what it computes and configures)."""

from __future__ import annotations

import os
import pathlib
import resource
import time

from benchmarks.agreement import MAPPING, agreement, theirs_by_key
from benchmarks.figures import paired_median, verdict
from benchmarks.peers import collectd_config
from benchmarks.procstat import peak_rss_mib, resident_by_kind, schedstat_cpu_ns, stat_cpu_s, status_kib
from benchmarks.rss_floor import table, where_table
from benchmarks.synthetic import kept_per_domain_kib, recorded_pairs, reference_batch, steady_host, synthetic_host
from benchmarks.under_telegraf import parse
from kvm_telegraf.groups import resolve
from kvm_telegraf.shape import shape_snapshot
from tests.harness.imports import modules_after


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


def test_the_steady_third_cycle_keeps_the_second_cycles_keys_and_moves_each_counter_on_as_much_again():
    first, second, third = steady_host(10)
    for before, after, later in zip(first.domains, second.domains, third.domains):
        assert later.stats.keys() == after.stats.keys()
        for key, value in after.stats.items():
            old = before.stats.get(key)
            grew = type(value) is int and type(old) is int and value > old
            assert later.stats[key] == (2 * value - old if grew else value)
    assert third.timestamp_ns - second.timestamp_ns == second.timestamp_ns - first.timestamp_ns


def test_with_8_vcpus_each_running_synthetic_domain_has_8_vm_vcpus_lines():
    cycles = steady_host(10, vcpus=8)
    batch = reference_batch(cycles, resolve(["vcpu"]))()
    running = [dom for dom in cycles[-1].domains if dom.id >= 0]
    assert sum(line.startswith("vm_vcpus,") for line in batch.splitlines()) == 8 * len(running)


def test_the_synthetic_batch_starts_from_the_same_state_every_time():
    batch = reference_batch(steady_host(20, vcpus=4), resolve(["vcpu"]))
    assert batch() == batch()


def test_the_memory_kept_grows_with_the_domains_by_the_same_amount_per_domain():
    small, large = (kept_per_domain_kib(steady_host(count), frozenset()) for count in (50, 200))
    # What each domain past the 50th adds: both hosts have the same shapes of domain, so shape's plans
    # (state per shape, a fixed part) are not in it.
    added = (large * 200 - small * 50) / 150
    assert small > 0.5
    assert abs(added - large) / large < 0.25


def test_a_paired_ratio_is_the_median_of_the_per_round_ratios():
    assert paired_median([2.0, 3.0, 10.0], [1.0, 1.0, 2.0]) == 3.0
    assert paired_median([1.0], [0.0]) is None


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


def test_resident_memory_by_kind_sums_to_the_processs_rss_and_finds_a_fresh_buffer_among_the_anonymous_maps():
    before = resident_by_kind(os.getpid())
    ballast = bytearray(b"x" * (48 * 1024 * 1024))  # written: 48 MiB more resident, in an anonymous map
    after = resident_by_kind(os.getpid())
    assert abs(sum(after.values()) - status_kib(os.getpid(), "VmRSS")) < 1024
    assert after["anonymous"] - before["anonymous"] >= 47 * 1024
    assert after["interpreter"] > 0 and after["libraries"] > 0 and len(ballast)


def test_the_results_file_shows_every_target_of_the_latest_run():
    results = (pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "results.md").read_text()
    assert "| Measure | Measured | Target | |" in results
    for target in ("4 running guests", "paused guests", "bare call's client CPU", "Peak RSS", "Start to first"):
        assert target in results


def test_their_counter_agrees_only_between_our_two_readings_that_bracket_it():
    ours = [
        f"vm_devices,device=vda,type=disk,uuid=u,vm=a read_bytes={value}i {stamp}"
        for value, stamp in ((100, 1_000_000_000), (300, 2_000_000_000))
    ]
    inside = 'libvirt_block,block_id=0,domain_name=a name="vda",rd_bytes=200i 1500000000'
    outside = 'libvirt_block,block_id=0,domain_name=a name="vda",rd_bytes=400i 1500000000'
    agreed = agreement([parse(line) for line in [*ours, inside]], 1.0)
    assert (agreed.counters, agreed.bracketed, agreed.misses) == (1, 1, [])
    missed = agreement([parse(line) for line in [*ours, outside]], 1.0)
    assert (missed.counters, missed.bracketed) == (1, 0) and "read_bytes" in missed.misses[0]


def test_a_counter_read_early_in_a_long_call_is_checked_against_our_readings_one_further_out():
    ours = [
        f"vm_totals,uuid=u,vm=a cpu_user_ns={value}i {second}000000000"
        for second, value in ((1, 100), (2, 200), (3, 300), (4, 400))
    ]
    late = "libvirt_cpu,domain_name=a user=310i 2500000000"
    agreed = agreement([parse(line) for line in [*ours, late]], 1.0)
    assert (agreed.counters, agreed.bracketed, agreed.one_further, agreed.misses) == (1, 0, 1, [])


def test_their_balloon_kib_and_per_vcpu_values_become_our_bytes_and_sums():
    points = [
        parse("libvirt_balloon,domain_name=a current=2i 1500000000"),
        parse("libvirt_vcpu,domain_name=a,vcpu_id=0 delay=5i 1500000001"),
        parse("libvirt_vcpu,domain_name=a,vcpu_id=1 delay=7i 1500000002"),
    ]
    theirs = theirs_by_key(points, 1.0)
    assert theirs[(1500000000, "a", "", "memory_bytes")] == 2048
    assert theirs[(1500000000, "a", "", "vcpu_delay_ns")] == 12


def test_every_field_of_ours_in_the_migration_mapping_is_documented_in_the_readme():
    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    metrics = readme.split("## Metrics", 1)[1].split("## Example Output", 1)[0]
    assert [ours for _, _, _, ours, _ in MAPPING if f"`{ours}`" not in metrics] == []


def test_the_run_path_floor_runs_the_pipeline_without_click_or_the_command_lines_modules():
    loaded = modules_after("benchmarks.rss_contenders", ["run-path", "test:///default", "*"], stdin="\n")
    assert "kvm_telegraf.pipeline" in loaded
    assert {"click", "kvm_telegraf.cli", "kvm_telegraf.config"} & loaded == set()


def test_the_logging_free_floor_runs_the_pipeline_on_a_stub_that_brings_none_of_loggings_imports():
    loaded = modules_after("benchmarks.rss_contenders", ["run-path-nolog", "test:///default", "*"], stdin="\n")
    assert "kvm_telegraf.pipeline" in loaded
    assert {"traceback", "string", "click"} & loaded == set()  # the real logging imports the first two


def test_the_floor_table_gives_each_process_its_median_and_its_distance_from_the_bare_call():
    text = table({"bare call": [27.0, 27.4, 27.2], "kvm-telegraf": [34.1, 33.9, 34.0]})
    assert "| bare call | 27.20 MiB | 27.00 to 27.40 | +0.00 MiB |" in text
    assert "| kvm-telegraf | 34.00 MiB | 33.90 to 34.10 | +6.80 MiB |" in text


def test_the_resident_table_gives_each_kinds_median_and_what_it_adds_to_the_bare_calls():
    def kinds(anonymous: int, heap: int) -> dict:
        return {"anonymous": anonymous, "heap": heap, "stacks": 64, "interpreter": 4608, "libraries": 15360}

    text = where_table(
        {
            "bare call": [kinds(3072, 1024), kinds(4096, 2048), kinds(3584, 1536)],
            "kvm-telegraf": [kinds(8192, 3072), kinds(9216, 3072), kinds(8704, 2560)],
        }
    )
    assert "| Process | anonymous | heap | stacks | interpreter | libraries |" in text
    assert "| bare call | 3.50 | 1.50 | 0.06 | 4.50 | 15.00 |" in text
    assert "| kvm-telegraf | 8.50 (+5.00) | 3.00 (+1.50) | 0.06 (+0.00) | 4.50 (+0.00) | 15.00 (+0.00) |" in text
