"""Log lines written a batch of trio's tasks at a time, not a write(2) each.

Each run's `run finished` line (and each request's access line) was a write
to stderr of its own, and the daemon's loop shares one GIL with the store's
writer thread, which a system call hands over: `bench_store` measured
~25 us of the daemon's CPU per run in those writes and hand-overs, beyond
formatting the line (half a goal of issue 11's per-run budget).

So, inside the daemon's `trio.run` (`batch_in_this_run`): a line below
WARNING logged on the loop's thread is kept, and a system task writes what
is kept once the tasks runnable with it have run (the next batch of trio's
scheduler: microseconds, a millisecond under load), in one write. Nothing
is reordered and nothing waits that matters:
- a line at WARNING or above, or from any other thread, writes what is kept
  first, then itself at once (an error is never held back);
- the end of the run, `flush` and interpreter exit (`logging.shutdown`)
  write what is kept;
- only a kill -9 can lose lines, and only those of the loop's current batch.
Outside a daemon's run (the maintenance commands, worker processes, tests)
the handler writes every line at once, as `logging.StreamHandler` does.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, TextIO

import trio


class BatchingHandler(logging.StreamHandler[TextIO]):
    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._kept: list[str] = []
        self._loop_thread: int | None = None
        self._flusher: trio.lowlevel.Task | None = None
        self._parked = False

    def emit(self, record: logging.LogRecord) -> None:  # under the handler's lock
        try:
            line = self.format(record) + self.terminator
            if (
                record.levelno < logging.WARNING
                and self._flusher is not None
                and threading.get_ident() == self._loop_thread
            ):
                self._kept.append(line)
                if self._parked:
                    self._parked = False
                    trio.lowlevel.reschedule(self._flusher)
                return
            self._write_kept()
            self.stream.write(line)
            self.stream.flush()
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_kept()
            super().flush()

    def _write_kept(self) -> None:
        if self._kept:
            text = "".join(self._kept)
            self._kept.clear()
            self.stream.write(text)
            self.stream.flush()

    async def _flush_loop(self) -> None:
        try:
            while True:
                if not self._kept:
                    self._parked = True
                    await trio.lowlevel.wait_task_rescheduled(self._abort)
                try:
                    self.flush()  # all that is kept: the loop parks again next
                except Exception:  # a stderr that refuses writes must not end the loop
                    self._kept.clear()
        finally:
            self._flusher = None
            self._loop_thread = None
            try:
                self.flush()
            except Exception:  # a system task must not raise: it would end the run
                self._kept.clear()  # nowhere left to write them

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        self._parked = False
        return trio.lowlevel.Abort.SUCCEEDED

    def start_batching(self) -> None:
        """From here until the end of this `trio.run`, on its thread, lines below
        WARNING are written a batch at a time."""
        if self._flusher is not None:
            return
        self._loop_thread = threading.get_ident()
        self._flusher = trio.lowlevel.spawn_system_task(self._flush_loop, name="jobsd.log_batching")


def batch_in_this_run() -> None:
    """Batch the root logger's lines for the rest of this `trio.run`, if it writes
    through jobsd's handler (`jobsd.logs.configure`); otherwise nothing."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BatchingHandler):
            handler.start_batching()
