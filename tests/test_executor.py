"""The executor pool over a real store: concurrency bound, boundaries, cancel, stop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import trio

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.executor import ExecutorPool
from jobsd.messages import CancelRun, HttpConfig, Outcome, RunOrder
from jobsd.runs import FailureReason, RunStatus
from jobsd.store import Store, open_store
from tests.model import ENV, create_job, seed_job

T0 = datetime(2026, 6, 5, tzinfo=UTC)
SPEC = seed_job("j", "j", None, False, "now", HttpConfig(url="https://example.invalid/"))


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


@dataclass
class PoolRig:
    store: Store
    performer: GatedPerformer
    pool: ExecutorPool
    cancels: trio.MemorySendChannel[CancelRun]
    _intake: trio.MemorySendChannel[RunOrder]

    async def submit(self, count: int) -> list[str]:
        """Enqueue `count` manual runs and hand them to the pool, in order."""
        ids = [
            (await self.store.runs.enqueue_manual("acme", "j", ENV, require_enabled=False)).id
            for _ in range(count)
        ]
        for run_id in ids:
            await self._intake.send(RunOrder(run_id))
        return ids

    async def statuses(self, ids: list[str]) -> list[RunStatus]:
        return [(await self.store.runs.get_run("acme", i)).status for i in ids]

    async def until_active(self, count: int) -> None:
        with trio.fail_after(10):
            while self.performer.active < count:
                await trio.sleep(0.01)


@asynccontextmanager
async def pool_rig(tmp_path: Path, workers: int) -> AsyncIterator[PoolRig]:
    """A real store with one job, and a pool of `workers` over a GatedPerformer."""
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0)) as store, trio.open_nursery() as n:
        await create_job(store, "acme", SPEC, -1)
        performer = GatedPerformer()
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
        await n.start(pool.run)
        yield PoolRig(store, performer, pool, cancels_tx, intake_tx)
        n.cancel_scope.cancel()


async def test_at_most_workers_running(tmp_path: Path) -> None:
    async with pool_rig(tmp_path, 3) as rig:
        ids = await rig.submit(10)
        await rig.until_active(3)
        await trio.sleep(0.2)
        found = await rig.statuses(ids)
        assert found.count(RunStatus.RUNNING) == 3 and found.count(RunStatus.PENDING) == 7
        assert rig.performer.peak == 3
        rig.performer.release.set()
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
        assert rig.performer.started == 1
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
