"""The executor pool over a real store: concurrency bound, boundaries, cancel, stop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import trio

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.dispatch import Dispatcher
from jobsd.errors import SigningError
from jobsd.executor import ExecutorPool, Signer
from jobsd.fairqueue import account_cap
from jobsd.job_model import HttpConfig
from jobsd.messages import CancelRun, Outcome, RunOrder
from jobsd.runs import FailureReason, RunStatus
from jobsd.store import Store, open_store, usage_sql
from jobsd.store.claims import Claim
from tests.model import ENV, create_job, seed_job

T0 = datetime(2026, 6, 5, tzinfo=UTC)
SPEC = seed_job("j", "j", None, False, "now", HttpConfig(url="https://example.invalid/"))


class GatedPerformer:
    """Holds each request until released (one by one, or all); records who ran, and peaks."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.started: list[str] = []  # run ids, in the order their requests began
        self.running: dict[str, trio.Event] = {}
        self.released = False
        self.fail_with: Exception | None = None

    def release_all(self) -> None:
        self.released = True
        for gate in self.running.values():
            gate.set()

    def release(self, run_id: str) -> None:
        self.running[run_id].set()

    async def perform(
        self, config: HttpConfig, *, stamp: Sequence[tuple[str, str]] = ()
    ) -> Outcome:
        run_id = dict(stamp)["X-Jobsd-Run-Id"]
        gate = self.running[run_id] = trio.Event()
        if self.released:
            gate.set()
        self.active += 1
        self.started.append(run_id)
        self.peak = max(self.peak, self.active)
        try:
            if self.fail_with is not None:
                raise self.fail_with
            await gate.wait()
            return Outcome(RunStatus.SUCCEEDED, None, None, {"method": "POST"}, {"status": 200})
        finally:
            self.active -= 1
            del self.running[run_id]


async def enqueue(store: Store, account: str) -> str:
    """Commit one manual run of job `j` (no backlog bound), without handing it over."""
    run = await store.runs.enqueue_manual(
        account, "j", ENV, require_enabled=False, max_pending=10**6
    )
    return run.id


@dataclass
class PoolRig:
    store: Store
    performer: GatedPerformer
    pool: ExecutorPool
    dispatcher: Dispatcher
    cancels: trio.MemorySendChannel[CancelRun]

    async def commit(self, count: int, account: str = "acme") -> list[str]:
        """Commit `count` manual runs without handing them over (the store alone knows)."""
        return [await enqueue(self.store, account) for _ in range(count)]

    async def submit(self, count: int, account: str = "acme") -> list[str]:
        """Commit `count` manual runs and hand them to the pool, in order."""
        ids = await self.commit(count, account)
        for run_id in ids:
            self.dispatcher.offer(RunOrder(run_id, account))
        return ids

    async def statuses(self, ids: list[str], account: str = "acme") -> list[RunStatus]:
        return [(await self.store.runs.get_run(account, i)).status for i in ids]

    async def until_active(self, count: int) -> None:
        with trio.fail_after(10):
            while self.performer.active < count:
                await trio.sleep(0.01)


@asynccontextmanager
async def pool_rig(
    tmp_path: Path,
    workers: int,
    *,
    accounts: tuple[str, ...] = ("acme",),
    depth: int = 16,
    sweep_s: float = 5.0,
    pending_at_start: int = 0,
    signer: Signer | None = None,
) -> AsyncIterator[PoolRig]:
    """A real store with job `j` in each account, and a pool over a GatedPerformer.

    `pending_at_start` manual runs of the first account are committed before the
    pool starts, as recovery leaves them after a restart.
    """
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0)) as store, trio.open_nursery() as n:
        for account in accounts:
            await create_job(store, account, SPEC, -1)
        for _ in range(pending_at_start):
            await enqueue(store, accounts[0])
        performer = GatedPerformer()
        cancels_tx, cancels_rx = trio.open_memory_channel[CancelRun](100)
        dispatcher = Dispatcher(
            store.runs,
            depth=depth,
            cap=lambda: account_cap(workers, len(accounts)),
            sweep_s=sweep_s,
        )
        pool = ExecutorPool(
            store.runs,
            performer,
            lambda _: -1,
            workers=workers,
            dispatcher=dispatcher,
            cancels=cancels_rx,
            signer=signer,
        )
        rig = PoolRig(store, performer, pool, dispatcher, cancels_tx)
        await n.start(pool.run)
        yield rig
        n.cancel_scope.cancel()


async def test_at_most_workers_running(tmp_path: Path) -> None:
    async with pool_rig(tmp_path, 3) as rig:
        ids = await rig.submit(10)
        await rig.until_active(3)
        await trio.sleep(0.2)
        found = await rig.statuses(ids)
        assert found.count(RunStatus.RUNNING) == 3 and found.count(RunStatus.PENDING) == 7
        assert rig.performer.peak == 3
        rig.performer.release_all()
        with trio.fail_after(10):
            while (await rig.statuses(ids)).count(RunStatus.SUCCEEDED) < 10:
                await trio.sleep(0.02)
        assert rig.performer.peak == 3
        await rig.pool.stop(1)


async def test_cancel_running_and_pending(tmp_path: Path) -> None:
    async with pool_rig(tmp_path, 1) as rig:
        running, waiting = await rig.submit(2)
        await rig.until_active(1)
        # cancel the queued one first: it must never start
        await rig.store.runs.cancel_run("acme", waiting)
        _, was_running = await rig.store.runs.cancel_run("acme", running)
        assert was_running
        await rig.cancels.send(CancelRun(running))
        with trio.fail_after(5):
            while rig.performer.active:
                await trio.sleep(0.01)
        await trio.sleep(0.2)
        assert rig.performer.started == [running]
        assert await rig.statuses([running, waiting]) == [RunStatus.CANCELED] * 2
        await rig.pool.stop(1)


async def test_unexpected_error_is_recorded_not_fatal(tmp_path: Path) -> None:
    async with pool_rig(tmp_path, 2) as rig:
        rig.performer.fail_with = RuntimeError("a bug in jobsd")
        ids = await rig.submit(3)
        with trio.fail_after(10):
            while {RunStatus.PENDING, RunStatus.RUNNING} & set(await rig.statuses(ids)):
                await trio.sleep(0.02)
        for run_id in ids:
            run = await rig.store.runs.get_run("acme", run_id)
            assert run.failure_reason is FailureReason.WORKER_LOST
            assert run.error is not None and "RuntimeError" in run.error
            # Its request may have left before the failure: the record says what it
            # was, as a run abandoned in flight's does (before: `request: {}`).
            assert run.request == {
                "method": "POST",
                "url": "https://example.invalid/",
                "headers": [],
                "body": None,
            }
        await rig.pool.stop(1)


async def test_stop_gives_grace_then_records_lost(tmp_path: Path) -> None:
    async with pool_rig(tmp_path, 1) as rig:
        hung, queued = await rig.submit(2)
        await rig.until_active(1)
        started = trio.current_time()
        await rig.pool.stop(0.5)
        assert 0.4 < trio.current_time() - started < 5
        lost = await rig.store.runs.get_run("acme", hung)
        assert lost.failure_reason is FailureReason.WORKER_LOST
        assert lost.error is not None and "shutdown_grace_s" in lost.error
        assert (await rig.store.runs.get_run("acme", queued)).status is RunStatus.PENDING


class NoSecret:
    """A signer whose account's secret is gone: every request is refused unsent."""

    def headers_for(self, account: str, run_id: str, body: bytes) -> list[tuple[str, str]]:
        raise SigningError(f"account {account!r} has no signing secret; nothing was sent")


async def test_a_run_refused_unsigned_is_not_metered(tmp_path: Path) -> None:
    # SEMANTICS: a run is metered when its HTTP request starts; one refused
    # before it is sent (no secret to sign with) must not use the quota.
    async with pool_rig(tmp_path, 1, signer=NoSecret()) as rig:
        (run_id,) = await rig.submit(1)
        with trio.fail_after(5):
            while (await rig.statuses([run_id])) != [RunStatus.FAILED]:
                await trio.sleep(0.01)
        run = await rig.store.runs.get_run("acme", run_id)
        assert run.failure_reason is FailureReason.WORKER_LOST
        assert rig.performer.started == []
        used = await rig.store.runs._engine.read(
            lambda c: usage_sql.runs_used(c, "acme", "2026-06")
        )
        assert used == 0
        await rig.pool.stop(1)


async def test_a_run_canceled_or_lost_in_flight_records_the_request_it_was_sending(
    tmp_path: Path,
) -> None:
    # Its request may have reached the target: the record says what it was, as a
    # finished run's does (SEMANTICS' `request` snapshot). Before, a run canceled
    # while RUNNING, or lost at the stop's grace, read `request: null`.
    sent = {"method": "POST", "url": "https://example.invalid/", "headers": [], "body": None}
    async with pool_rig(tmp_path, 2) as rig:
        canceled, lost = await rig.submit(2)
        await rig.until_active(2)
        _, was_running = await rig.store.runs.cancel_run("acme", canceled)
        assert was_running
        await rig.cancels.send(CancelRun(canceled))
        with trio.fail_after(5):
            while (await rig.store.runs.get_run("acme", canceled)).request is None:
                await trio.sleep(0.01)
        run = await rig.store.runs.get_run("acme", canceled)
        assert run.status is RunStatus.CANCELED and run.request == sent
        await rig.pool.stop(0.2)
        run = await rig.store.runs.get_run("acme", lost)
        assert run.failure_reason is FailureReason.WORKER_LOST and run.request == sent


async def test_a_cancel_committed_as_the_response_arrives_still_records_the_request(
    tmp_path: Path,
) -> None:
    # The user's cancel commits (CANCELED) while the response is coming in, and the
    # executor has its outcome before the cancel's message reaches it: the record
    # of that outcome then matches no RUNNING run. The request did leave, so the
    # run says what it was, as when the cancel cut the request short. Before, such
    # a run read `request: null`, though its request was sent and answered.
    async with pool_rig(tmp_path, 1) as rig:
        (run_id,) = await rig.submit(1)
        await rig.until_active(1)
        _, was_running = await rig.store.runs.cancel_run("acme", run_id)
        assert was_running
        rig.performer.release(run_id)  # answered before any CancelRun is sent
        with trio.fail_after(5):
            while rig.performer.active:
                await trio.sleep(0.01)
        await rig.pool.stop(1)
        run = await rig.store.runs.get_run("acme", run_id)
    assert run.status is RunStatus.CANCELED and run.result is None
    assert run.request == {"method": "POST"}


async def test_a_cancel_committed_as_the_stops_grace_ends_still_records_the_request(
    tmp_path: Path,
) -> None:
    # The user's cancel commits (CANCELED) while the request is in flight, and the
    # stop's grace runs out before the cancel's message reaches the executor: the
    # record of the run lost matches no RUNNING run. Its request may have reached
    # the target, so the CANCELED run says what it was (before: `request: null`).
    sent = {"method": "POST", "url": "https://example.invalid/", "headers": [], "body": None}
    async with pool_rig(tmp_path, 1) as rig:
        (run_id,) = await rig.submit(1)
        await rig.until_active(1)
        _, was_running = await rig.store.runs.cancel_run("acme", run_id)
        assert was_running
        await rig.pool.stop(0.2)
        run = await rig.store.runs.get_run("acme", run_id)
    assert run.status is RunStatus.CANCELED and run.request == sent


class LateAnswer:
    """A response that arrives just as the stop's grace runs out: its wait is not
    cut by the run's cancel, and it answers once `gate` is set."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.gate = trio.Event()

    async def perform(
        self, config: HttpConfig, *, stamp: Sequence[tuple[str, str]] = ()
    ) -> Outcome:
        self.started.set()
        with trio.CancelScope(shield=True):
            await self.gate.wait()
        return Outcome(RunStatus.SUCCEEDED, None, None, {"method": "POST"}, {"status": 200})


async def test_a_response_that_beat_the_grace_is_recorded_as_it_came(tmp_path: Path) -> None:
    """It was sent and answered: recorded as it is, never as a run "never sent"."""
    async with pool_rig(tmp_path, 1) as rig:
        late = rig.pool._delivery = LateAnswer()
        (run_id,) = await rig.submit(1)
        with trio.fail_after(5):
            await late.started.wait()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rig.pool.stop, 0.1)
            await trio.sleep(0.3)  # the grace is over: the run's scope is cancelled
            late.gate.set()
        run = await rig.store.runs.get_run("acme", run_id)
    assert (run.status, run.error, run.result) == (RunStatus.SUCCEEDED, None, {"status": 200})


class PassThroughRuns:
    """The store's run records as the executors use them; a test's subclass
    changes the one call it needs to hold or slow."""

    def __init__(self, store: Store) -> None:
        self._runs = store.runs

    async def claim(self, run_id: str, runs_included_of: Callable[[str], int]) -> Claim | None:
        return await self._runs.claim(run_id, runs_included_of)

    async def finish(self, run_id: str, outcome: Outcome) -> bool:
        return await self._runs.finish(run_id, outcome)

    async def mark_lost(
        self, run_ids: list[str], error: str, *, request: dict[str, object] | None = None
    ) -> int:
        return await self._runs.mark_lost(run_ids, error, request=request)

    async def record_request(self, run_id: str, request: dict[str, object]) -> bool:
        return await self._runs.record_request(run_id, request)


class SlowFinish(PassThroughRuns):
    """The store's run records, each finish taking a moment."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.finishing = trio.Event()

    async def finish(self, run_id: str, outcome: Outcome) -> bool:
        self.finishing.set()
        await trio.sleep(0.2)
        return await super().finish(run_id, outcome)


async def test_a_finish_under_way_outlives_the_daemons_cancel(tmp_path: Path) -> None:
    """A run's outcome is recorded though the daemon's actors are cancelled while
    it is being written: else a run answered stays RUNNING."""
    async with pool_rig(tmp_path, 1) as rig:
        slow = SlowFinish(rig.store)
        rig.pool._runs = slow
        rig.performer.release_all()
        (run_id,) = await rig.submit(1)
        with trio.fail_after(5):
            await slow.finishing.wait()
        # leaving the rig cancels the pool's nursery (no stop) while the finish waits
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0)) as store:
        run = await store.runs.get_run("acme", run_id)
    assert run.status is RunStatus.SUCCEEDED


async def test_at_most_workers_running_across_accounts(tmp_path: Path) -> None:
    """With two accounts the fair queue lets each hold up to its cap (here all
    the workers): the bound on RUNNING in all is the executors' own."""
    async with pool_rig(tmp_path, 2, accounts=("acme", "beta")) as rig:
        acme, beta = await rig.submit(3, "acme"), await rig.submit(3, "beta")
        await rig.until_active(2)
        await trio.sleep(0.2)
        assert rig.performer.peak == 2
        rig.performer.release_all()
        with trio.fail_after(10):
            while (await rig.statuses(acme, "acme") + await rig.statuses(beta, "beta")).count(
                RunStatus.SUCCEEDED
            ) < 6:
                await trio.sleep(0.02)
        assert rig.performer.peak == 2
        await rig.pool.stop(1)
