"""One cycle end to end: recorded snapshots in, the golden batches out on a real fd, failures logged once.

The source replays snapshots recorded from lab guests (tests/snapshots); what a
cycle writes is read back from the file the BatchWriter wrote to, and what it
logs is read as Telegraf reads stderr (prefix and all).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple, Union

import pytest

from kvm_telegraf.connection import LibvirtUnavailableError
from kvm_telegraf.encode import LineEncoder
from kvm_telegraf.pipeline import Pipeline
from kvm_telegraf.shape import MEASUREMENTS, shape_snapshot
from kvm_telegraf.snapshot import Snapshot
from kvm_telegraf.trigger import Shutdown
from kvm_telegraf.write import BatchWriter
from tests.conftest import TESTS, load_snapshots
from tests.harness.goldens import batches, golden_file, golden_snapshots
from tests.harness.loglines import log_lines

SCENARIOS = sorted(path.stem for path in (TESTS / "goldens" / "batch").glob("*.yml"))
DOWN = "cannot connect to qemu:///system: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file"
DOWN_AGAIN = "cannot connect to qemu:///system: Connection refused"
E_DOWN = f"E! {DOWN}; no metrics until it recovers (retrying every cycle)"
I_BACK = "I! libvirt answers again; collecting"

Step = Union[Snapshot, BaseException]


class RecordedSource:
    """A SnapshotSource that replays a script: each collect() returns the next snapshot or raises the next error."""

    def __init__(self, script: Sequence[Step]) -> None:
        self._script = list(script)
        self.closed = False
        self.forgotten = 0

    def collect(self) -> Snapshot:
        step = self._script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    def forget_configs(self) -> None:
        self.forgotten += 1

    def close(self) -> None:
        self.closed = True


class Stdout:
    """A real file descriptor for the BatchWriter; ``batch()`` is what the last cycle added to it."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.stream = path.open("wb")
        self._seen = 0

    def batch(self) -> str:
        data = self._path.read_bytes()
        new, self._seen = data[self._seen :], len(data)
        return new.decode("utf-8")


@pytest.fixture
def stdout(tmp_path: Path) -> Iterator[Stdout]:
    out = Stdout(tmp_path / "stdout")
    yield out
    out.stream.close()


def pipeline(script: Sequence[Step], stdout: Stdout, measurements: Sequence[str] = MEASUREMENTS) -> Pipeline:
    return Pipeline(RecordedSource(script), BatchWriter(stdout.stream), Shutdown(), frozenset(measurements))


def play(
    script: Sequence[Step], stdout: Stdout, measurements: Sequence[str] = MEASUREMENTS
) -> Tuple[List[str], List[str]]:
    """Run one surviving cycle per step of *script*: (the batch each wrote, the log lines of them all)."""
    cycles = pipeline(script, stdout, measurements)
    written = []
    with log_lines() as logged:
        for _ in script:
            cycles.survive_cycle()
            written.append(stdout.batch())
    return written, logged


def lines_of(batch: str, measurement: str) -> List[str]:
    return [line for line in batch.splitlines() if line.startswith(measurement + ",")]


@pytest.fixture(scope="module")
def running() -> List[Snapshot]:
    """Two cycles two seconds apart of two running lab guests."""
    return load_snapshots("lab-running.json")


@pytest.fixture(scope="module")
def running_batches() -> List[str]:
    return batches("lab-running")


# --- what a cycle writes --------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_cycle_writes_exactly_what_shape_and_encode_make_of_its_snapshot(scenario, stdout):
    snapshots = golden_snapshots(golden_file("batch", scenario))  # the goldens themselves are pinned in test_encode
    written, logged = play(snapshots, stdout)
    encoder, history, expected = LineEncoder(), {}, []
    for snapshot in snapshots:
        points, history = shape_snapshot(snapshot, history)
        expected.append(encoder.encode(points, snapshot.timestamp_ns))
    assert written == expected
    assert logged == []


def test_cpu_percent_appears_in_the_second_cycle_only(running, stdout):
    cycles = pipeline(running, stdout)
    cycles.cycle()
    first = stdout.batch()
    cycles.cycle()
    second = stdout.batch()
    assert len(lines_of(first, "vm_totals")) == len(lines_of(second, "vm_totals")) == 2
    assert "cpu_percent=" not in first
    assert all("cpu_percent=" in line for line in lines_of(second, "vm_totals"))
    assert "cpu_percent=" not in "".join(line for line in second.splitlines() if not line.startswith("vm_totals,"))


def test_cpu_history_belongs_to_the_pipeline_so_a_fresh_one_has_no_cpu_percent(running, running_batches, stdout):
    pipeline(running[:1], stdout).cycle()
    stdout.batch()
    pipeline(running[1:], stdout).cycle()  # the same snapshot the second cycle above would read
    alone = stdout.batch()
    assert "cpu_percent=" not in alone
    assert "cpu_percent=" in running_batches[1]
    assert alone.splitlines()[0] == running_batches[1].splitlines()[0]  # vm_metrics is the same either way


@pytest.mark.parametrize(
    "selection",
    [("vm_totals",), ("vm_metrics",), ("vm_devices", "vm_features"), ("vm_metrics", "vm_totals")],
    ids=lambda selection: "+".join(selection),
)
def test_only_the_selected_measurements_are_written(selection, running, running_batches, stdout):
    cycles = pipeline(running, stdout, selection)
    for expected in running_batches:
        cycles.cycle()
        written = stdout.batch().splitlines()
        assert {line.split(",", 1)[0] for line in written} == set(selection)
        assert written == [line for line in expected.splitlines() if line.split(",", 1)[0] in selection]


def test_the_measurements_default_to_all_four(running, running_batches, stdout):
    cycles = Pipeline(RecordedSource(running), BatchWriter(stdout.stream), Shutdown())
    cycles.cycle()
    assert stdout.batch() == running_batches[0]
    assert {line.split(",", 1)[0] for line in running_batches[0].splitlines()} == set(MEASUREMENTS)


# --- libvirt outages --------------------------------------------------------------------------------


def test_an_outage_is_logged_once_however_its_message_changes_and_its_end_once(running, running_batches, stdout):
    script: List[Step] = [running[0], LibvirtUnavailableError(DOWN), LibvirtUnavailableError(DOWN_AGAIN)]
    script += [LibvirtUnavailableError(DOWN), running[1]]
    written, logged = play(script, stdout)
    assert logged == [E_DOWN, I_BACK]
    assert written == [running_batches[0], "", "", "", running_batches[1]]


def test_each_new_outage_is_logged_again(running, stdout):
    script: List[Step] = [LibvirtUnavailableError(DOWN), running[0], LibvirtUnavailableError(DOWN), running[1]]
    _, logged = play(script, stdout)
    assert logged == [E_DOWN, I_BACK, E_DOWN, I_BACK]


def test_the_e_line_is_logged_when_the_outage_starts_not_when_it_ends(running, stdout):
    cycles = pipeline([LibvirtUnavailableError(DOWN), LibvirtUnavailableError(DOWN), running[0]], stdout)
    with log_lines() as logged:
        cycles.survive_cycle()
        assert logged == [E_DOWN]
        cycles.survive_cycle()
        assert logged == [E_DOWN]
        cycles.survive_cycle()
    assert logged == [E_DOWN, I_BACK]


def test_a_healthy_run_logs_nothing_about_recovery(running, stdout):
    cycles = pipeline(running, stdout)
    with log_lines(logging.DEBUG) as logged:
        cycles.survive_cycle()
        cycles.survive_cycle()
    assert logged == []


def test_the_batch_after_an_outage_has_cpu_percent_from_the_last_good_cycle(running, running_batches, stdout):
    cycles = pipeline([running[0], LibvirtUnavailableError(DOWN), running[1]], stdout)
    for _ in range(3):
        cycles.survive_cycle()
    assert stdout.batch() == running_batches[0] + running_batches[1]


def test_cycle_lets_an_outage_propagate_for_once_and_logs_nothing(stdout):
    cycles = pipeline([LibvirtUnavailableError(DOWN)], stdout)
    with log_lines(logging.DEBUG) as logged, pytest.raises(LibvirtUnavailableError) as raised:
        cycles.cycle()
    assert str(raised.value) == DOWN
    assert logged == []
    assert stdout.batch() == ""


# --- other failures -------------------------------------------------------------------------------


def test_a_bug_costs_one_batch_and_is_logged_on_one_e_line(running, running_batches, stdout):
    cycles = pipeline([running[0], KeyError("net.0.rx.bytes"), running[1]], stdout)
    written = []
    with log_lines() as logged:
        for _ in range(3):
            cycles.survive_cycle()
            written.append(stdout.batch())
    assert logged == ["E! cycle failed: KeyError: 'net.0.rx.bytes'"]
    assert written == [running_batches[0], "", running_batches[1]]


def test_at_debug_level_a_bug_s_traceback_follows_on_one_d_line(running, stdout):
    cycles = pipeline([ValueError("bad\nstat")], stdout)
    with log_lines(logging.DEBUG) as logged:
        cycles.survive_cycle()
    assert len(logged) == 2
    assert logged[0] == "E! cycle failed: ValueError: bad | stat"
    assert logged[1].startswith("D! cycle failed: Traceback (most recent call last):")
    assert "ValueError: bad | stat" in logged[1]


def test_a_bug_during_an_outage_neither_ends_it_nor_repeats_its_e_line(running, stdout):
    script: List[Step] = [LibvirtUnavailableError(DOWN), RuntimeError("boom"), LibvirtUnavailableError(DOWN)]
    script.append(running[0])
    _, logged = play(script, stdout)
    assert logged == [E_DOWN, "E! cycle failed: RuntimeError: boom", I_BACK]


def test_a_closed_stdout_ends_the_long_running_mode_with_broken_pipe(running):
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # Telegraf went away
    with os.fdopen(write_fd, "wb") as stream:
        cycles = Pipeline(RecordedSource(running), BatchWriter(stream), Shutdown())
        with log_lines(logging.DEBUG) as logged, pytest.raises(BrokenPipeError):
            cycles.survive_cycle()
    assert logged == []


@pytest.mark.parametrize("stop", [SystemExit(3), KeyboardInterrupt()], ids=["SystemExit", "KeyboardInterrupt"])
def test_system_exit_and_keyboard_interrupt_are_not_swallowed(stop, stdout):
    cycles = pipeline([stop], stdout)
    with log_lines(logging.DEBUG) as logged, pytest.raises(type(stop)):
        cycles.survive_cycle()
    assert logged == []


# --- SIGTERM and the batch being written ------------------------------------------------------------


class SignalledWriter(BatchWriter):
    """A BatchWriter that has the process signalled just as its batch starts going out."""

    def __init__(self, stream, signum: int) -> None:
        super().__init__(stream)
        self.signum = signum

    def write(self, batch: str) -> None:
        os.kill(os.getpid(), self.signum)  # the handler runs in this thread before the next line
        super().write(batch)


def exit_code_of_a_signalled_cycle(source: RecordedSource, writer: BatchWriter) -> int:
    """Run one cycle with the stop signals handled as in the process; the code it exits with."""
    shutdown = Shutdown()
    cycles = Pipeline(source, writer, shutdown)
    restore = shutdown.install()
    try:
        with pytest.raises(SystemExit) as stopped:
            cycles.survive_cycle()
    finally:
        restore()
    return stopped.value.code


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_during_the_write_lets_the_batch_out_whole_then_exits(
    signum, code, running, running_batches, stdout
):
    assert exit_code_of_a_signalled_cycle(RecordedSource(running), SignalledWriter(stdout.stream, signum)) == code
    assert stdout.batch() == running_batches[0]


def test_a_stop_signal_during_collection_exits_at_once_and_writes_nothing(running, stdout):
    class SignalledSource(RecordedSource):
        def collect(self) -> Snapshot:
            os.kill(os.getpid(), signal.SIGTERM)
            return super().collect()

    assert exit_code_of_a_signalled_cycle(SignalledSource(running), BatchWriter(stdout.stream)) == 0
    assert stdout.batch() == ""


def test_a_sighup_has_the_next_cycle_read_the_domain_configurations_again_and_only_that_one(running, stdout):
    source, shutdown = RecordedSource(running * 3), Shutdown()
    cycles = Pipeline(source, BatchWriter(stdout.stream), shutdown)
    restore = shutdown.install()
    try:
        cycles.cycle()
        os.kill(os.getpid(), signal.SIGHUP)
        cycles.cycle()
        cycles.cycle()
    finally:
        restore()
    assert source.forgotten == 1
