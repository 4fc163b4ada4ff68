"""Log lines a batch of trio's tasks at a time (`jobsd.log_batching`).

A write(2) per line cost the daemon's loop a system call and a hand-over of
the GIL to the store's writer thread for each run's line. Inside the run,
lines below WARNING on the loop's thread are written together once the
tasks runnable with them have run; anything else writes what is kept, then
itself, at once. Order is never changed and nothing is left unwritten.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from jobsd.config import LogConfig
from jobsd.log_batching import BatchingHandler, batch_in_this_run
from jobsd.logs import configure

log = logging.getLogger("jobsd.test_batching")


class Writes(io.StringIO):
    """A stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def lines(self) -> list[str]:
        return [line.rsplit(": ", 1)[-1] for line in self.getvalue().splitlines()]


@pytest.fixture
def stream() -> Iterator[Writes]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = Writes()
    handler = configure(LogConfig(format="text", level="info"), out, {})
    assert isinstance(handler, BatchingHandler)
    try:
        yield out
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.captureWarnings(False)  # as `configure` set it: test_logs counts on it


async def test_lines_of_one_batch_of_tasks_are_one_write(stream: Writes) -> None:
    batch_in_this_run()

    async def one(n: int) -> None:
        log.info("line %d", n)

    async with trio.open_nursery() as nursery:
        for n in range(50):
            nursery.start_soon(one, n)
    await trio.testing.wait_all_tasks_blocked()
    assert sorted(stream.lines(), key=lambda t: int(t.split()[1])) == [
        f"line {n}" for n in range(50)
    ]
    assert stream.writes <= 3, stream.writes  # a write a line would be 50


async def test_a_warning_writes_what_is_kept_then_itself_at_once(stream: Writes) -> None:
    batch_in_this_run()
    log.info("first")
    log.info("second")
    assert stream.lines() == []  # kept until the loop's batch has run
    log.warning("third")
    assert stream.lines() == ["first", "second", "third"]  # before any checkpoint


async def test_another_threads_line_comes_after_what_the_loop_kept(stream: Writes) -> None:
    batch_in_this_run()
    log.info("from the loop")
    thread = threading.Thread(target=log.info, args=("from a thread",))
    thread.start()
    thread.join()
    assert stream.lines() == ["from the loop", "from a thread"]


def test_the_end_of_the_run_writes_what_is_kept(stream: Writes) -> None:
    async def main() -> None:
        batch_in_this_run()
        log.info("last words")

    trio.run(main)
    assert stream.lines() == ["last words"]
    log.info("after the run")  # no loop: at once
    assert stream.lines() == ["last words", "after the run"]

    async def again() -> None:  # the next run (a test's, a restart's) batches again
        batch_in_this_run()
        log.info("kept again")
        assert stream.lines() == ["last words", "after the run"]

    trio.run(again)
    assert stream.lines() == ["last words", "after the run", "kept again"]


async def test_flush_writes_what_is_kept(stream: Writes) -> None:
    batch_in_this_run()
    log.info("kept")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert stream.lines() == ["kept"]


def test_outside_a_run_each_line_is_written_at_once(stream: Writes) -> None:
    log.info("one")
    assert stream.lines() == ["one"]


def test_a_stderr_whose_reader_left_does_not_crash_the_end_of_the_run() -> None:
    """A pipe whose reader is gone (a log shipper that died) refuses every write
    and every flush after (its buffer keeps the bytes). The system task that
    writes what is kept flushed once more as the run ended, outside its guard:
    an exception leaving a system task is a TrioInternalError, so a daemon
    that stopped cleanly ended in a crash."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    broken = open(write_end, "w", buffering=1)  # noqa: SIM115 (closed below, refusing)
    configure(LogConfig(format="text", level="info"), broken, {})
    try:

        async def main() -> None:
            batch_in_this_run()
            log.info("into the void")
            await trio.sleep(0)
            log.info("last words, kept as the run ends")

        with contextlib.redirect_stderr(io.StringIO()):  # logging's own complaints
            trio.run(main)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.captureWarnings(False)  # as `configure` set it: test_logs counts on it
        logging.captureWarnings(False)
        with contextlib.suppress(OSError):
            broken.close()


def test_a_stream_closed_before_the_run_ends_does_not_end_it_in_error(tmp_path: Path) -> None:
    """The flusher is a system task: one that raised at the run's end (its last
    write to a stream closed meanwhile) was a TrioInternalError out of `trio.run`."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = (tmp_path / "log").open("w")
    configure(LogConfig(format="text", level="info"), out, {})
    try:

        async def main() -> None:
            batch_in_this_run()
            log.info("kept")
            out.close()

        trio.run(main)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.captureWarnings(False)  # as `configure` set it: test_logs counts on it
