"""The executor pool: N actors that claim runs and deliver them.

Each executor takes a `RunOrder` from one bounded channel shared by all,
claims the run in the store (PENDING -> RUNNING, metered, or refused for
quota, in one transaction), performs the request, and records the outcome.
A run's request runs inside its own cancel scope, registered before the
claim, so a cancel that arrives at any moment after the claim abandons the
request at once; a run canceled while PENDING is never claimed at all.

Every order (scheduled, manual, rerun, recovered) comes through an intake
channel with a deep buffer, forwarded by one task into the executors'
shallow channel. The API therefore answers at once even while every
executor is busy, and the scheduler commits a crowd of due runs on time
(`created_at` = the slot) instead of waiting for workers between batches:
the wait shows where it belongs, as `pending_duration_ms`. Only a backlog
deeper than the intake buffer pushes back on the scheduler.

Stopping: executors stop taking orders (queued runs stay PENDING in the
database and run after the next start), in-flight requests get
`shutdown_grace_s`, and any still running then are recorded
FAILED/WORKER_LOST, saying why.

The per-run boundary is here: an unexpected exception while performing a
run is recorded on that run (FAILED/WORKER_LOST with the error) and logged,
rather than crashing the pool and losing every other run in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import trio

from jobsd.errors import SigningError
from jobsd.messages import CancelRun, HttpConfig, Outcome, RunOrder
from jobsd.runs import FailureReason, RunStatus
from jobsd.store.runs import Claim

log = logging.getLogger("jobsd.executor")


class RunRecords(Protocol):
    async def claim(self, run_id: str, runs_included_of: Callable[[str], int]) -> Claim | None: ...

    async def finish(self, run_id: str, outcome: Outcome) -> bool: ...

    async def mark_lost(self, run_ids: list[str], error: str) -> int: ...


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
        orders: trio.MemoryReceiveChannel[RunOrder],
        forward_to: trio.MemorySendChannel[RunOrder],
        intake: trio.MemoryReceiveChannel[RunOrder],
        cancels: trio.MemoryReceiveChannel[CancelRun],
        signer: Signer | None = None,
    ) -> None:
        self._runs = runs
        self._signer = signer
        self._delivery = delivery
        self._runs_included_of = runs_included_of
        self._workers = workers
        self._orders = orders
        self._forward_to = forward_to
        self._intake = intake
        self._cancels = cancels
        self._in_flight: dict[str, trio.CancelScope] = {}
        self._lost: set[str] = set()
        self._idle: set[trio.CancelScope] = set()
        self._stopping = False
        self._all_done = trio.Event()
        self._intake_scope = trio.CancelScope()
        self._lost_error = "jobsd stopped before this run's request finished"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forward_intake)
                nursery.start_soon(self._watch_cancels)
                async with trio.open_nursery() as workers:
                    for _ in range(self._workers):
                        workers.start_soon(self._work)
                    task_status.started()
                nursery.cancel_scope.cancel()
        finally:
            self._all_done.set()

    async def _forward_intake(self) -> None:
        with self._intake_scope:
            async for order in self._intake:
                await self._forward_to.send(order)

    async def _watch_cancels(self) -> None:
        async for message in self._cancels:
            scope = self._in_flight.get(message.run_id)
            if scope is not None:
                scope.cancel()

    async def _work(self) -> None:
        while not self._stopping:
            with trio.CancelScope() as taking:
                self._idle.add(taking)
                try:
                    order = await self._orders.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    return
                finally:
                    self._idle.discard(taking)
            if taking.cancelled_caught or self._stopping:
                return  # an order taken as the stop began stays PENDING for the next start
            await self._execute(order.run_id)

    async def _execute(self, run_id: str) -> None:
        scope = trio.CancelScope()
        self._in_flight[run_id] = scope
        try:
            claim = await self._runs.claim(run_id, self._runs_included_of)
            if claim is None or claim.config is None:
                return
            outcome: Outcome | None = None
            with scope:
                try:
                    outcome = await self._delivery.perform(claim.config, stamp=self._stamp(claim))
                except SigningError as exc:
                    log.error("run %s not sent: %s", run_id, exc)
                    outcome = Outcome(
                        RunStatus.FAILED, FailureReason.WORKER_LOST, str(exc), {}, None
                    )
                except Exception as exc:  # the per-run boundary
                    log.exception("run %s failed inside jobsd", run_id)
                    error = f"jobsd failed while performing this run: {type(exc).__name__}"
                    outcome = Outcome(RunStatus.FAILED, FailureReason.WORKER_LOST, error, {}, None)
            with trio.CancelScope(shield=True):
                if outcome is not None:
                    # A response that made it in just as the grace ran out is
                    # still the truth. A user's cancel already recorded
                    # CANCELED; finish() then matches nothing.
                    await self._runs.finish(run_id, outcome)
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
        self._intake_scope.cancel()
        for scope in list(self._idle):
            scope.cancel()
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
