"""The executor pool: N workers that claim runs and deliver them.

Each worker takes a run from the dispatcher (`jobsd.dispatch`), claims it
in the store (PENDING -> RUNNING, metered, or refused for quota, in one
transaction), performs the request, and records the outcome. A run's
request runs inside its own cancel scope, registered before the claim, so a
cancel that arrives at any moment after the claim abandons the request at
once; a run canceled while PENDING is never claimed at all.

Which run a free worker takes is the dispatcher's decision, and the fair
queue's policy (`jobsd.fairqueue`): every account has its own lane, a free
worker serves the account with the fewest runs in flight (round-robin among
equals), and with more than one account configured no account may hold
more than `workers - workers // 8` of them. So an account that saturates
the workers delays another account's run by at most the time one of its
requests takes to end, and with 8 workers or more not at all: measured
with 8 workers, 48 run-nows of one account at a target that never answers
(timeout 3 s), another account's run-now waited 17.8 s PENDING behind one
FIFO before, and starts at once now (tests/bench/bench_fairness.py; the
README's Decisions give the figures).

Nothing blocks on the pool. Handing over a committed run (`offer`) never
waits: the dispatcher keeps a bounded window of each account's PENDING runs
in memory and reads the rest back from the store as lanes drain, so the
API answers at once, the scheduler fires every account's slots on time, and
no run that was committed can be stranded by what its caller does next. An
account's backlog is bounded in the store instead (`max_pending_runs`: past
it, its run-now and rerun answer 429 with Retry-After; other accounts are
not affected).

Stopping: workers stop taking runs (queued runs stay PENDING in the
database and run after the next start), in-flight requests get
`shutdown_grace_s`, and any still running then are recorded
FAILED/WORKER_LOST, saying why.

`delivery` performs the exchange: `jobsd.delivery.Delivery` in this
process, or `jobsd.workers.pool.WorkerProcesses` in worker processes; the
claim, jobsd's headers and signature, and the record are made here either
way, so the bound of `workers` runs RUNNING holds across every process.

The per-run boundary is here: an unexpected exception while performing a
run is recorded on that run (FAILED/WORKER_LOST with the error) and logged,
rather than crashing the pool and losing every other run in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

import trio

from jobsd import logs
from jobsd.delivery import request_record
from jobsd.dispatch import Dispatcher
from jobsd.errors import SigningError
from jobsd.job_model import HttpConfig
from jobsd.messages import CancelRun, Outcome
from jobsd.runs import FailureReason, RunStatus
from jobsd.store.claims import Claim

log = logging.getLogger("jobsd.executor")


class RunRecords(Protocol):
    async def claim(self, run_id: str, runs_included_of: Callable[[str], int]) -> Claim | None: ...

    async def finish(self, run_id: str, outcome: Outcome) -> bool: ...

    async def mark_lost(
        self, run_ids: list[str], error: str, *, request: dict[str, object] | None = None
    ) -> int: ...

    async def record_request(self, run_id: str, request: dict[str, object]) -> bool: ...


class Signer(Protocol):
    def headers_for(self, account: str, run_id: str, body: bytes) -> list[tuple[str, str]]: ...


class Performer(Protocol):
    async def perform(
        self, config: HttpConfig, *, stamp: Sequence[tuple[str, str]] = ()
    ) -> Outcome: ...


class ExecutorPool:
    def __init__(
        self,
        runs: RunRecords,
        delivery: Performer,
        runs_included_of: Callable[[str], int],
        *,
        workers: int,
        dispatcher: Dispatcher,
        cancels: trio.MemoryReceiveChannel[CancelRun],
        signer: Signer | None = None,
    ) -> None:
        self._runs = runs
        self._signer = signer
        self._delivery = delivery
        self._runs_included_of = runs_included_of
        self._workers = workers
        self._dispatcher = dispatcher
        self._cancels = cancels
        self._in_flight: dict[str, trio.CancelScope] = {}
        self._lost: set[str] = set()
        self._stopping = False
        self._all_done = trio.Event()
        self._dispatch_scope = trio.CancelScope()
        self._lost_error = "jobsd stopped before this run's request finished"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._dispatch)
                nursery.start_soon(self._watch_cancels)
                async with trio.open_nursery() as workers:
                    for _ in range(self._workers):
                        workers.start_soon(self._work)
                    task_status.started()
                nursery.cancel_scope.cancel()
        finally:
            self._all_done.set()

    async def _dispatch(self, *, task_status: trio.TaskStatus[None]) -> None:
        with self._dispatch_scope:
            await self._dispatcher.run(task_status=task_status)

    async def _watch_cancels(self) -> None:
        async for message in self._cancels:
            scope = self._in_flight.get(message.run_id)
            if scope is not None:
                scope.cancel()

    async def _work(self) -> None:
        # No cancel scope per take: `stop` closes the dispatcher, which answers
        # every take from then on, parked or not, with None.
        while (order := await self._dispatcher.take()) is not None:
            if self._stopping:
                return  # a run taken as the stop began stays PENDING for the next start
            try:
                await self._execute(order.run_id)
            finally:
                self._dispatcher.done(order)

    async def _execute(self, run_id: str) -> None:
        scope = trio.CancelScope()
        self._in_flight[run_id] = scope
        try:
            outcome: Outcome | None = None
            sending: tuple[HttpConfig, list[tuple[str, str]]] | None = None
            with scope:
                # The claim is in the run's scope too: a claim waiting for a database
                # another process keeps locked is cut by the stop (it changed nothing).
                claim = await self._runs.claim(run_id, self._runs_included_of)
                if claim is None or claim.config is None:
                    return
                config = claim.config  # its reuse scope the run's account (the claim's)
                try:
                    if scope.cancel_called:
                        # Canceled while it was being claimed (a user's cancel of the run
                        # just made RUNNING, or the stop's grace ending): its request
                        # never started, so it is not sent, and the record gives the
                        # claim's meter back.
                        outcome = _never_sent(config, self._stamp(claim))
                    else:
                        sending = (config, self._stamp(claim))
                        outcome = await self._delivery.perform(config, stamp=sending[1])
                except SigningError as exc:
                    log.error("run %s not sent: %s", run_id, exc)
                    outcome = Outcome(
                        RunStatus.FAILED, FailureReason.WORKER_LOST, str(exc), {}, None, sent=False
                    )
                except Exception as exc:  # the per-run boundary
                    # Its type and line only: the message may quote the URL or a header.
                    log.error(
                        "run %s failed inside jobsd", run_id, extra=logs.fields(**logs.failure(exc))
                    )
                    error = f"jobsd failed while performing this run: {type(exc).__name__}"
                    # Its request may have left before the failure: the record says what
                    # it was, as for a run abandoned in flight (never an empty `{}`).
                    sent = {} if sending is None else request_record(*sending)
                    lost = FailureReason.WORKER_LOST
                    outcome = Outcome(RunStatus.FAILED, lost, error, sent, None)
                if not scope.cancel_called:
                    # Out of reach of a cancel from here on (a user's finds it no
                    # longer in flight, the stop's grace too), and shielded from
                    # the daemon's: the run's own scope records it, one scope
                    # per run fewer than a shield of its own.
                    self._in_flight.pop(run_id, None)
                    scope.shield = True
                    await self._runs.finish(run_id, outcome)
                    return
            with trio.CancelScope(shield=True):
                if outcome is not None:
                    # A response that made it in just as the grace ran out is
                    # still the truth, and so is one never sent (its meter given
                    # back). A user's cancel already recorded CANCELED; finish()
                    # then matches nothing.
                    if run_id in self._lost and not outcome.sent:
                        outcome = replace(outcome, error=f"{self._lost_error}; it was never sent")
                    await self._runs.finish(run_id, outcome)
                elif sending is not None:
                    # Abandoned in flight: its request may have left, so the run
                    # records what it was, as a finished run does (`request`).
                    sent = request_record(*sending)
                    if run_id in self._lost:
                        await self._runs.mark_lost([run_id], self._lost_error, request=sent)
                    else:  # a user's cancel, which recorded it CANCELED
                        await self._runs.record_request(run_id, sent)
                elif run_id in self._lost:
                    await self._runs.mark_lost([run_id], self._lost_error)
        finally:
            self._in_flight.pop(run_id, None)
            self._lost.discard(run_id)

    def _stamp(self, claim: Claim) -> list[tuple[str, str]]:
        """jobsd's own headers: who sent this, for which run, and (if asked) signed."""
        stamp = claim.stamp()
        if self._signer is not None and claim.config is not None:
            payload = claim.config.payload()
            stamp += self._signer.headers_for(claim.account_id, claim.run_id, payload)
        return stamp

    async def stop(self, grace_s: float) -> None:
        """Stop taking orders; give running requests `grace_s`, then abandon them.

        Returns once every executor has returned.
        """
        self._stopping = True
        self._dispatch_scope.cancel()
        self._dispatcher.close()
        with trio.move_on_after(grace_s):
            await self._all_done.wait()
        if not self._all_done.is_set():
            self._lost_error = (
                f"jobsd stopped and shutdown_grace_s ({grace_s:g} s) ran out before this "
                "run's request finished"
            )
            for run_id, scope in list(self._in_flight.items()):
                self._lost.add(run_id)
                scope.cancel()
            await self._all_done.wait()


def _never_sent(config: HttpConfig, stamp: Sequence[tuple[str, str]]) -> Outcome:
    """The outcome of a run canceled before its request started: nothing was sent."""
    error = "canceled before its request started; nothing was sent"
    record = request_record(config, stamp)
    return Outcome(RunStatus.FAILED, FailureReason.WORKER_LOST, error, record, None, sent=False)
