"""One worker process seen from the daemon: its socket pair, and the runs waiting on it.

Split from `jobsd.workers.pool`, which keeps the set of them (start,
replace, pick the least busy, stop). `_Child.serve` routes each `done`
frame to the `perform` waiting for it; `lose_all` answers every waiter
when the worker is gone: FAILED/WORKER_LOST if its frame was written to
it, else "never sent" (its `perform` takes another worker).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from contextlib import suppress

import trio

from jobsd.delivery import request_record
from jobsd.job_model import HttpConfig
from jobsd.messages import Outcome
from jobsd.runs import FailureReason, RunStatus
from jobsd.workers import wire
from jobsd.workers.sender import QUEUED, WRITTEN, FrameSender

log = logging.getLogger("jobsd.workers")

WORKER_LOST_ERROR = (
    "the worker process performing this run's request died; whether the target received "
    "the request is unknown"
)
EXIT_WAIT_S = 5.0


def lost(
    config: HttpConfig, stamp: Sequence[tuple[str, str]], error: str, *, sent: bool = True
) -> Outcome:
    """FAILED/WORKER_LOST; `sent` False when no worker ever had the request, so the
    record gives the claim's meter back (a run is metered when its request starts)."""
    record = request_record(config, stamp)
    return Outcome(RunStatus.FAILED, FailureReason.WORKER_LOST, error, record, None, sent=sent)


class Waiter:
    """A `perform` waiting for its outcome: its task is parked by hand (no Event
    per run) and rescheduled by whoever answers, `serve` or `lose_all`. Its
    `state` is its frame's (`sender.Tracked`), set by the `FrameSender`."""

    __slots__ = (
        "answered",
        "config",
        "deadline",
        "outcome",
        "parked",
        "patience_s",
        "stamp",
        "state",
        "task",
    )

    def __init__(
        self,
        config: HttpConfig,
        stamp: Sequence[tuple[str, str]],
        patience_s: float = math.inf,
    ) -> None:
        """`patience_s`: from now, how long its worker has to answer before it is
        taken for stuck (`Child.expect`)."""
        self.config = config
        self.stamp = stamp
        self.patience_s = patience_s
        self.deadline = trio.current_time() + patience_s
        self.task = trio.lowlevel.current_task()
        self.parked = False
        self.answered = False
        self.outcome: Outcome | None = None
        self.state = QUEUED

    def answer(self, outcome: Outcome | None) -> None:
        """None: its worker died before the whole frame was written to it."""
        self.outcome, self.answered = outcome, True
        if self.parked:
            self.parked = False
            trio.lowlevel.reschedule(self.task)

    async def wait(self) -> Outcome | None:
        """The outcome, once answered (None: never sent, see `answer`);
        cancellable (then never rescheduled)."""
        if not self.answered:
            self.parked = True

            def abort(_: object) -> trio.lowlevel.Abort:
                self.parked = False
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        assert self.answered
        return self.outcome


def _deadline(waiter: Waiter) -> float:
    return waiter.deadline


class Child:
    def __init__(self, number: int, process: trio.Process, stream: trio.SocketStream) -> None:
        self.number = number
        self.process = process
        self.stream = stream
        self.reader = wire.FrameReader(stream)
        self.sender: FrameSender | None = None
        self.waiting: dict[int, Waiter] = {}
        self.next_seq = 0
        self.alive = False
        # The stuck timer's next look, and what brings it sooner (`expect`).
        self._look_at = math.inf
        self._look_sooner = trio.Event()

    def expect(self, seq: int, waiter: Waiter) -> None:
        """`waiter` waits for request `seq`'s outcome until its deadline."""
        self.waiting[seq] = waiter
        if waiter.deadline < self._look_at:
            self._look_sooner.set()

    async def serve(self, capacity: int) -> None:
        """Route its outcomes to their waiters until it is gone."""
        self.sender = FrameSender(self.stream, capacity)
        self.alive = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send, nursery.cancel_scope)
                nursery.start_soon(self._watch_stuck)
                await self._route()
                nursery.cancel_scope.cancel()
        finally:
            self.alive = False
            self.sender.close()

    async def _route(self) -> None:
        """The read loop. A broken frame is caught here, outside the nursery: one
        raised inside it leaves wrapped in an ExceptionGroup, which no
        `except FrameError` matches, and would end the pool and the daemon."""
        try:
            while (doc := await self.reader.receive()) is not None:
                if doc["kind"] != "done":
                    raise wire.FrameError(f"a worker sent {doc['kind']!r}")
                # Checked before its waiter leaves `waiting`: a bad outcome ends
                # the pair, and `lose_all` must still find that run to answer.
                seq = wire.seq_of(doc)
                waiter = self.waiting.get(seq)
                record = {} if waiter is None else request_record(waiter.config, waiter.stamp)
                outcome = wire.outcome_of(doc, record)
                if waiter is not None:
                    del self.waiting[seq]
                    waiter.answer(outcome)
        except (wire.FrameError, trio.BrokenResourceError) as exc:
            # Bounded: the reason may quote what it sent (a kind, a status), and a
            # worker that keeps sending it is restarted every few seconds.
            log.error("worker process %d broke its socket pair: %.300s", self.number, exc)

    async def _watch_stuck(self) -> None:
        """One timer per worker, not a deadline scope per run (a cost every run
        paid): it looks at the earliest deadline of the runs waiting, and a
        worker that let one pass is killed (`kill_stuck`). Runs come and go
        far faster than their deadlines, so it wakes about once a deadline."""
        while True:
            now = trio.current_time()
            first = min(self.waiting.values(), key=_deadline, default=None)
            if first is not None and first.deadline <= now:
                self.kill_stuck(first.patience_s)
                return  # its death ends the pair, and answers every waiter
            self._look_at = math.inf if first is None else first.deadline
            self._look_sooner = trio.Event()
            with trio.move_on_at(self._look_at):
                await self._look_sooner.wait()

    async def _send(self, reading: trio.CancelScope) -> None:
        assert self.sender is not None
        await self.sender.run()
        reading.cancel()  # it no longer reads what we write: it is gone

    def lose_all(self) -> tuple[int, int]:
        """Answer every waiter; (lost, never sent). A run whose frame was written
        whole may have reached the target: FAILED/WORKER_LOST. One whose frame
        was still queued, or cut short, never reached this worker: answered
        None, and its `perform` takes another."""
        waiters = list(self.waiting.values())
        self.waiting.clear()
        lost_count = 0
        for waiter in waiters:
            if waiter.state == WRITTEN:
                lost_count += 1
                waiter.answer(lost(waiter.config, waiter.stamp, WORKER_LOST_ERROR))
            else:
                waiter.answer(None)
        return lost_count, len(waiters) - lost_count

    def cancel(self, seq: int) -> None:
        """Tell it to abandon request `seq` (its frame was written, or is being)."""
        assert self.sender is not None
        try:
            self.sender.send_nowait({"kind": "cancel", "seq": seq})
        except trio.WouldBlock:
            log.error("worker process %d is not reading: a cancel is lost", self.number)

    def kill_stuck(self, waited_s: float) -> None:
        """Kill a worker that gave no outcome `waited_s` after a request (see
        `jobsd.workers.pool`, "Stuck"); its death answers every run it held."""
        if self.process.returncode is not None:
            return
        log.error(
            "worker process %d (pid %d) gave no outcome %g s after a request was handed to it, "
            "past that run's timeout: killed as stuck",
            self.number,
            self.process.pid,
            waited_s,
        )
        with suppress(ProcessLookupError):
            self.process.kill()

    async def end(self) -> int:
        """Close its pair, wait a little for it to exit, then kill it; its exit status."""
        await self.stream.aclose()
        with trio.move_on_after(EXIT_WAIT_S):
            return await self.process.wait()
        self.process.kill()
        return await self.process.wait()
