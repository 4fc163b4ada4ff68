"""The executor pool over a real store: concurrency bound, boundaries, cancel, stop."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import trio

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.executor import ExecutorPool
from jobsd.messages import CancelRun, HttpConfig, JobSpec, Outcome, RunOrder
from jobsd.runs import FailureReason, RunStatus
from jobsd.store import Store, open_store

T0 = datetime(2026, 6, 5, tzinfo=UTC)
SPEC = JobSpec("j", "j", None, False, "now", HttpConfig(url="https://example.invalid/"))


class GatedPerformer:
    """Holds every request until released; records the peak concurrency."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.started = 0
        self.release = trio.Event()
        self.fail_with: Exception | None = None

    async def perform(
        self, config: HttpConfig, *, stamp: Sequence[tuple[str, str]] = ()
    ) -> Outcome:
        self.active += 1
        self.started += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.fail_with is not None:
                raise self.fail_with
            await self.release.wait()
            return Outcome(RunStatus.SUCCEEDED, None, None, {"method": "POST"}, {"status": 200})
        finally:
            self.active -= 1


async def run_pool(
    store: Store, performer: GatedPerformer, workers: int, nursery: trio.Nursery
) -> tuple[ExecutorPool, trio.MemorySendChannel[RunOrder], trio.MemorySendChannel[CancelRun]]:
    orders_tx, orders_rx = trio.open_memory_channel[RunOrder](workers)
    intake_tx, intake_rx = trio.open_memory_channel[RunOrder](10_000)
    cancels_tx, cancels_rx = trio.open_memory_channel[CancelRun](100)
    pool = ExecutorPool(
        store.runs,
        performer,
        lambda _: -1,
        workers=workers,
        orders=orders_rx,
        forward_to=orders_tx,
        intake=intake_rx,
        cancels=cancels_rx,
    )
    await nursery.start(pool.run)
    return pool, intake_tx, cancels_tx


async def statuses(store: Store, ids: list[str]) -> list[RunStatus]:
    return [(await store.runs.get_run("acme", i)).status for i in ids]


async def test_at_most_workers_running(tmp_path: Path) -> None:
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0)) as store, trio.open_nursery() as n:
        await store.jobs.create_job("acme", -1, SPEC)
        performer = GatedPerformer()
        pool, intake, _ = await run_pool(store, performer, 3, n)
        ids = [(await store.runs.enqueue_manual("acme", "j")).id for _ in range(10)]
        for run_id in ids:
            await intake.send(RunOrder(run_id))
        with trio.fail_after(10):
            while performer.active < 3:
                await trio.sleep(0.01)
        await trio.sleep(0.2)
        found = await statuses(store, ids)
        assert found.count(RunStatus.RUNNING) == 3 and found.count(RunStatus.PENDING) == 7
        assert performer.peak == 3
        performer.release.set()
        with trio.fail_after(10):
            while (await statuses(store, ids)).count(RunStatus.SUCCEEDED) < 10:
                await trio.sleep(0.02)
        assert performer.peak == 3
        await pool.stop(1)
        n.cancel_scope.cancel()


async def test_cancel_running_and_pending(tmp_path: Path) -> None:
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0)) as store, trio.open_nursery() as n:
        await store.jobs.create_job("acme", -1, SPEC)
        performer = GatedPerformer()
        pool, intake, cancels = await run_pool(store, performer, 1, n)
        running = (await store.runs.enqueue_manual("acme", "j")).id
        waiting = (await store.runs.enqueue_manual("acme", "j")).id
        await intake.send(RunOrder(running))
        await intake.send(RunOrder(waiting))
        with trio.fail_after(10):
            while performer.active < 1:
                await trio.sleep(0.01)
        # cancel the queued one first: it must never start
        await store.runs.cancel_run("acme", waiting)
        _, was_running = await store.runs.cancel_run("acme", running)
        assert was_running
        await cancels.send(CancelRun(running))
        with trio.fail_after(5):
            while performer.active:
                await trio.sleep(0.01)
        await trio.sleep(0.2)
        assert performer.started == 1
        assert await statuses(store, [running, waiting]) == [RunStatus.CANCELED] * 2
        await pool.stop(1)
        n.cancel_scope.cancel()


async def test_unexpected_error_is_recorded_not_fatal(tmp_path: Path) -> None:
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0)) as store, trio.open_nursery() as n:
        await store.jobs.create_job("acme", -1, SPEC)
        performer = GatedPerformer()
        performer.fail_with = RuntimeError("a bug in jobsd")
        pool, intake, _ = await run_pool(store, performer, 2, n)
        ids = [(await store.runs.enqueue_manual("acme", "j")).id for _ in range(3)]
        for run_id in ids:
            await intake.send(RunOrder(run_id))
        with trio.fail_after(10):
            while RunStatus.PENDING in (found := await statuses(store, ids)) or (
                RunStatus.RUNNING in found
            ):
                await trio.sleep(0.02)
        for run_id in ids:
            run = await store.runs.get_run("acme", run_id)
            assert run.failure_reason is FailureReason.WORKER_LOST
            assert run.error is not None and "RuntimeError" in run.error
        await pool.stop(1)
        n.cancel_scope.cancel()


async def test_stop_gives_grace_then_records_lost(tmp_path: Path) -> None:
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0)) as store, trio.open_nursery() as n:
        await store.jobs.create_job("acme", -1, SPEC)
        performer = GatedPerformer()
        pool, intake, _ = await run_pool(store, performer, 1, n)
        hung = (await store.runs.enqueue_manual("acme", "j")).id
        queued = (await store.runs.enqueue_manual("acme", "j")).id
        await intake.send(RunOrder(hung))
        await intake.send(RunOrder(queued))
        with trio.fail_after(10):
            while performer.active < 1:
                await trio.sleep(0.01)
        started = trio.current_time()
        await pool.stop(0.5)
        assert 0.4 < trio.current_time() - started < 5
        lost = await store.runs.get_run("acme", hung)
        assert lost.failure_reason is FailureReason.WORKER_LOST
        assert lost.error is not None and "shutdown_grace_s" in lost.error
        assert (await store.runs.get_run("acme", queued)).status is RunStatus.PENDING
        n.cancel_scope.cancel()
