"""A run no worker process could take was never sent: it is not metered.

`WorkerProcesses.perform` waits `WORKER_WAIT_S` for a live worker; past it
the run ends FAILED/WORKER_LOST without any request having left, so its
outcome must say so (`sent` False) and the record give the meter back,
as for any other run refused before its request (SEMANTICS: a run is
metered when its HTTP request starts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio
import trio.testing

from jobsd.clock import Clock
from jobsd.config import LogConfig
from jobsd.crypto import KeyRing
from jobsd.dispatch import Dispatcher
from jobsd.executor import ExecutorPool
from jobsd.job_model import HttpConfig
from jobsd.messages import CancelRun
from jobsd.runs import FailureReason, RunStatus
from jobsd.store import Store, open_store, usage_sql
from jobsd.workers.pool import WorkerProcesses
from tests.model import ENV, create_job
from tests.test_executor import SPEC, T0


async def test_a_run_no_worker_took_is_recorded_unsent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pool = WorkerProcesses(1, allow_cidrs=["127.0.0.1/32"], log=LogConfig(), workers=4)
    # No worker was ever started (`run` not called): none can take it.
    outcome = await pool.perform(HttpConfig(url="http://127.0.0.1:9/", timeout_s=5))
    assert outcome.status is RunStatus.FAILED
    assert outcome.failure_reason is FailureReason.WORKER_LOST
    assert outcome.sent is False, outcome


@dataclass
class Waiting:
    """A claimed run waiting for a worker process that never comes."""

    store: Store
    pool: ExecutorPool
    cancels: trio.MemorySendChannel[CancelRun]
    run_id: str

    async def meter(self) -> int:
        return await self.store.runs._engine.read(
            lambda c: usage_sql.runs_used(c, "acme", "2026-06")
        )


@asynccontextmanager
async def waiting_for_a_worker(tmp_path: Path) -> AsyncIterator[Waiting]:
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0)) as store, trio.open_nursery() as n:
        await create_job(store, "acme", SPEC, -1)
        run = await store.runs.enqueue_manual(
            "acme", "j", ENV, require_enabled=False, max_pending=10
        )
        dispatcher = Dispatcher(store.runs, depth=16, cap=lambda: 1)
        processes = WorkerProcesses(1, allow_cidrs=["127.0.0.1/32"], log=LogConfig(), workers=1)
        cancels_tx, cancels = trio.open_memory_channel[CancelRun](1)
        pool = ExecutorPool(
            store.runs, processes, lambda _: -1, workers=1, dispatcher=dispatcher, cancels=cancels
        )
        await n.start(pool.run)  # no worker process is ever started: none takes the run
        with trio.fail_after(5):
            while (await store.runs.get_run("acme", run.id)).status is not RunStatus.RUNNING:
                await trio.sleep(0.01)
        yield Waiting(store, pool, cancels_tx, run.id)
        await pool.stop(0.2)
        n.cancel_scope.cancel()


async def test_a_run_the_stop_caught_waiting_for_a_worker_is_not_metered(tmp_path: Path) -> None:
    # SIGTERM while a claimed run waits for a worker process (the workers are
    # still starting, or one that died is paused before its replacement): the
    # grace runs out, the run ends FAILED/WORKER_LOST saying so, and, no
    # request having left, its claim's meter is given back.
    async with waiting_for_a_worker(tmp_path) as w:
        await w.pool.stop(0.2)
        ended = await w.store.runs.get_run("acme", w.run_id)
        assert ended.status is RunStatus.FAILED
        assert ended.failure_reason is FailureReason.WORKER_LOST
        assert ended.error is not None and "shutdown_grace_s" in ended.error
        assert await w.meter() == 0


async def test_a_run_cancelled_while_waiting_for_a_worker_is_not_metered(tmp_path: Path) -> None:
    # A user's cancel lands while the claimed run waits for a worker process: the
    # cancel records CANCELED first; the executor's unsent outcome then matches no
    # RUNNING run, and the meter of a run whose request never left is given back.
    async with waiting_for_a_worker(tmp_path) as w:
        assert await w.meter() == 1
        _, was_running = await w.store.runs.cancel_run("acme", w.run_id)
        assert was_running
        await w.cancels.send(CancelRun(w.run_id))
        with trio.fail_after(5):
            while await w.meter():
                await trio.sleep(0.01)
        assert (await w.store.runs.get_run("acme", w.run_id)).status is RunStatus.CANCELED
