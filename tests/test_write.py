"""The write stage against real pipes: every batch arrives whole, straight on the fd."""

from __future__ import annotations

import fcntl
import io
import os
import signal
import sys
import threading
from types import SimpleNamespace
from typing import BinaryIO, Callable, Iterator, List, Optional

import pytest

import kvm_telegraf.write as write_module
from kvm_telegraf.write import BatchWriter

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux values; the fcntl names exist from Python 3.10
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
SMALL_PIPE = 4096

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="F_SETPIPE_SZ is Linux only")


def lines(count: int, width: int = 100) -> str:
    """Distinct line-protocol-like lines, so a lost, doubled or reordered chunk shows."""
    return "".join(f'vm_metrics,vm=guest-{n:06d} pad="{"x" * width}" {n}\n' for n in range(count))


class Pipe:
    """A blocking pipe; an end is closed once, by the test or after it (never a reused fd number)."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self._open = {self.read_fd, self.write_fd}

    def close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    def close_all(self) -> None:
        for fd in list(self._open):
            self.close(fd)

    def shrink(self) -> Pipe:
        fcntl.fcntl(self.write_fd, F_SETPIPE_SZ, SMALL_PIPE)
        assert fcntl.fcntl(self.write_fd, F_GETPIPE_SZ) == SMALL_PIPE  # the test means nothing on a 64 KiB pipe
        return self

    def stream(self) -> BinaryIO:
        """The write end as a buffered binary stream, as sys.stdout.buffer is; closing it leaves the fd."""
        return os.fdopen(self.write_fd, "wb", closefd=False)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    yield p
    p.close_all()


class Drain:
    """Telegraf's side of the pipe: a thread that reads until EOF, optionally doing something before each read."""

    def __init__(self, pipe: Pipe, chunk: int = 65536, before_read: Optional[Callable[[], None]] = None) -> None:
        self._pipe = pipe
        self._chunk = chunk
        self._before_read = before_read
        self._parts: List[bytes] = []
        self._thread = threading.Thread(target=self._run, name="drain", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            if self._before_read is not None:
                self._before_read()
            part = os.read(self._pipe.read_fd, self._chunk)
            if not part:
                return
            self._parts.append(part)

    def received(self) -> bytes:
        """Close the writer's end and return everything that came through."""
        self._pipe.close(self._pipe.write_fd)
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the reader never saw EOF"
        return b"".join(self._parts)


def write_all(pipe: Pipe, *batches: str) -> None:
    with pipe.stream() as stream:
        writer = BatchWriter(stream)
        for batch in batches:
            writer.write(batch)


@linux_only
def test_a_batch_larger_than_the_pipe_arrives_whole(pipe):
    batch = lines(10_000)  # about 1.2 MiB through a 4 KiB pipe
    drain = Drain(pipe.shrink(), chunk=1000)
    write_all(pipe, batch)
    assert drain.received() == batch.encode()


@linux_only
def test_consecutive_batches_arrive_in_order_and_unmixed(pipe):
    batches = [lines(300), lines(1), lines(50, width=3000)]
    drain = Drain(pipe.shrink(), chunk=777)
    write_all(pipe, *batches)
    assert drain.received() == "".join(batches).encode()


def test_a_batch_goes_straight_to_the_fd_without_waiting_for_a_flush(pipe):
    os.set_blocking(pipe.read_fd, False)
    stream = pipe.stream()
    try:
        BatchWriter(stream).write("vm_metrics,vm=a state=1i 1\n")
        assert os.read(pipe.read_fd, 65536) == b"vm_metrics,vm=a state=1i 1\n"
    finally:
        stream.close()


def test_a_batch_with_non_ascii_names_is_written_as_utf8(pipe):
    batch = "vm_metrics,vm=ünï-テスト state=1i 1\n"
    drain = Drain(pipe)
    write_all(pipe, batch)
    assert drain.received().decode("utf-8") == batch


def test_an_empty_batch_writes_nothing(pipe):
    drain = Drain(pipe)
    write_all(pipe, "", "m f=1i 1\n", "")
    assert drain.received() == b"m f=1i 1\n"


def test_an_empty_batch_does_not_touch_a_pipe_whose_reader_is_gone(pipe):
    pipe.close(pipe.read_fd)
    write_all(pipe, "")  # no BrokenPipeError: nothing was written


def test_a_partial_os_write_is_continued_from_where_it_stopped(pipe, monkeypatch):
    taken: List[int] = []

    def short_write(fd: int, data: memoryview) -> int:  # what a full pipe or a signal makes os.write do
        written = os.write(fd, bytes(data[:7]))
        taken.append(written)
        return written

    monkeypatch.setattr(write_module, "os", SimpleNamespace(write=short_write))
    batch = lines(20, width=10)
    drain = Drain(pipe)
    write_all(pipe, batch)
    assert drain.received() == batch.encode()
    assert len(taken) == -(-len(batch.encode()) // 7)  # one call per 7 bytes: nothing repeated, no empty call


@linux_only
def test_signals_landing_while_the_pipe_is_full_do_not_cut_the_batch(pipe):
    main = threading.main_thread().ident
    assert main is not None and threading.current_thread().ident == main  # signal handlers run there only
    interrupts: List[int] = []
    done = threading.Event()

    def interrupt_writer() -> None:  # a blocked os.write returns what it wrote so far when a signal lands
        if not done.is_set():
            interrupts.append(1)
            signal.pthread_kill(main, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    try:
        batch = lines(2000)
        drain = Drain(pipe.shrink(), chunk=1500, before_read=interrupt_writer)
        write_all(pipe, batch)
        received = drain.received()
    finally:
        done.set()  # no SIGUSR1 may follow once the default handler (terminate) is back
        signal.signal(signal.SIGUSR1, previous)
    assert len(interrupts) > 100
    assert received == batch.encode()


def test_a_reader_that_is_gone_raises_broken_pipe_to_the_caller(pipe):
    pipe.close(pipe.read_fd)
    with pytest.raises(BrokenPipeError):
        write_all(pipe, "vm_metrics,vm=a state=1i 1\n")


@linux_only
def test_a_reader_that_leaves_mid_batch_raises_broken_pipe_to_the_caller(pipe):
    def take_a_little_and_leave() -> None:
        os.read(pipe.read_fd, 100)
        pipe.close(pipe.read_fd)

    reader = threading.Thread(target=take_a_little_and_leave, daemon=True)
    reader.start()
    with pytest.raises(BrokenPipeError):
        write_all(pipe.shrink(), lines(1000))  # 100 KiB: blocks on the full pipe until the reader leaves
    reader.join(timeout=60)


class Recording(io.BytesIO):
    """click's CliRunner output: no fd; remembers how much had been written at the last flush."""

    flushed_at: Optional[int] = None

    def flush(self) -> None:
        super().flush()
        self.flushed_at = self.tell()


def test_an_in_memory_stream_gets_the_batch_written_and_flushed():
    stream = Recording()
    batch = "vm_metrics,vm=ünï state=1i 1\nvm_totals,vm=ünï cpu_percent=6.2 1\n"
    BatchWriter(stream).write(batch)
    assert stream.getvalue() == batch.encode("utf-8")
    assert stream.flushed_at == len(batch.encode("utf-8"))


def test_an_in_memory_stream_gets_nothing_for_an_empty_batch():
    stream = Recording()
    BatchWriter(stream).write("")
    assert stream.getvalue() == b""
    assert stream.flushed_at is None
