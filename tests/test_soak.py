"""The soak's verdict (tests/soak.py): each of its checks fails the run when its condition breaks.

The soak itself runs on its own target (``make soak``); these only make sure it cannot pass vacuously.
"""

from __future__ import annotations

from typing import List

from tests.soak import PREFIX, STEADY, WARMUP, ProcSample, SoakResult, check_batch, failures

TS = 1_700_000_000_000_000_000


def batch(timestamp: int = TS, vms: tuple = (STEADY, f"{PREFIX}02")) -> List[str]:
    return [f"vm_metrics,uuid=u,vm={vm} state=1i {timestamp}" for vm in vms]


def passing(**changes) -> SoakResult:
    result = SoakResult(
        cycles=2 * WARMUP,
        samples=[ProcSample(WARMUP, 30.0, 34000, 5, 3), ProcSample(2 * WARMUP, 60.0, 34100, 5, 3)],
        batch_lines=[2] * (2 * WARMUP),
        churn_events={"destroy": 3, "start": 3},
        returncode=0,
    )
    for name, value in changes.items():
        setattr(result, name, value)
    return result


def test_a_whole_batch_with_the_untouched_guest_in_it_passes():
    assert check_batch(batch(), TS - 1) == (None, TS)


def test_events_carry_their_own_timestamps_in_arrival_order():
    event = f"vm_events,event=started,uuid=u,vm={STEADY} count=1i"
    assert check_batch([f"{event} {TS - 5}", f"{event} {TS - 3}", *batch()], TS - 10) == (None, TS)
    assert "order" in check_batch([f"{event} {TS - 3}", f"{event} {TS - 5}", *batch()], TS - 10)[0]


def test_a_missing_batch_fails():
    assert check_batch([], TS)[0] == "no batch"


def test_two_timestamps_in_what_should_be_one_batch_fail():
    assert "2 timestamps" in check_batch(batch() + batch(TS + 1), 0)[0]


def test_a_batch_no_later_than_the_previous_one_fails():
    assert "no later" in check_batch(batch(), TS)[0]


def test_a_batch_without_the_untouched_guest_fails():
    assert STEADY in check_batch(batch(vms=(f"{PREFIX}02",)), 0)[0]


def test_a_domain_outside_the_selection_fails():
    assert "ktlab-01" in check_batch(batch(vms=(STEADY, "ktlab-01")), 0)[0]


def test_a_clean_run_has_no_failures():
    assert failures(passing()) == []


def test_rss_growth_past_the_bound_fails_and_within_it_passes():
    grown = passing(samples=[ProcSample(WARMUP, 30.0, 34000, 5, 3), ProcSample(2 * WARMUP, 60.0, 36049, 5, 3)])
    assert failures(grown, rss_growth_max_kib=2048) == [
        f"RSS grew 2049 KiB from cycle {WARMUP} to {2 * WARMUP} (34000 -> 36049 KiB; bound 2048 KiB)"
    ]
    assert failures(grown, rss_growth_max_kib=2049) == []


def test_the_baseline_is_the_sample_after_the_warm_up_not_the_first():
    early = ProcSample(1, 0.3, 20000, 5, 3)
    assert failures(passing(samples=[early, *passing().samples])) == []


def test_a_leaked_fd_or_thread_fails():
    leaky = passing(samples=[ProcSample(WARMUP, 30.0, 34000, 5, 3), ProcSample(2 * WARMUP, 60.0, 34000, 6, 4)])
    assert failures(leaky) == [
        f"open fds 5 at cycle {WARMUP}, 6 at cycle {2 * WARMUP}",
        f"threads 3 at cycle {WARMUP}, 4 at cycle {2 * WARMUP}",
    ]


def test_an_error_or_unprefixed_line_on_stderr_fails_and_a_warning_does_not():
    assert failures(passing(stderr=[("W", "stats call did not return within 5s")])) == []
    assert len(failures(passing(stderr=[("E", "Traceback (most recent call last):")]))) == 1


def test_an_exit_that_needed_sigterm_fails():
    assert failures(passing(needed_sigterm=True)) == ["on stdin EOF: exit 0, SIGTERM needed: True"]


def test_a_run_whose_guests_did_not_churn_fails():
    assert failures(passing(churn_events={})) == ["the guests did not churn"]
    assert len(failures(passing(churn_errors=["virsh start ktsoak-02: error"]))) == 1


def test_a_failure_during_a_libvirtd_restart_says_so():
    assert failures(passing(batch_problems=["cycle 7: no batch"], libvirtd_restarted=True))[-1].startswith(
        "note: libvirtd was restarted"
    )


def test_a_process_that_exits_mid_run_fails_and_its_memory_is_not_compared():
    assert failures(passing(exited_at=42, samples=[ProcSample(1, 0.3, 20000, 5, 3)])) == [
        f"the process exited during cycle 42 of {2 * WARMUP}"
    ]
