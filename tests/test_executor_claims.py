"""A run canceled while it is being claimed never starts its request, and is not metered.

The executor registers a run's cancel scope before its claim, so a user's
cancel of the run the claim has just made RUNNING, or the end of the stop's
grace, cancels it at once. The request must then not start at all
(SEMANTICS: a run is metered when its request starts): before, the run was
handed to the delivery inside a cancelled scope, metered although nothing
was sent, and at a stop recorded as a request that had not finished. The
claim here is the store's own, held after its commit by a wait shielded as
the store's writer shields it, so the cancel lands at that exact moment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.dispatch import Dispatcher
from jobsd.executor import ExecutorPool
from jobsd.job_model import EnvironmentSpec, HttpConfig, Overlay
from jobsd.messages import CancelRun, RunOrder
from jobsd.runs import FailureReason, RunStatus
from jobsd.store import Store, open_store, usage_sql
from jobsd.store.claims import Claim
from tests.model import ENV, create_job, seed_job
from tests.test_executor import SPEC, T0, GatedPerformer, PassThroughRuns, enqueue


class HeldClaims(PassThroughRuns):
    """The store's run records, each claim held after it committed until `go` is set."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.claimed = trio.Event()
        self.go = trio.Event()

    async def claim(self, run_id: str, runs_included_of: Callable[[str], int]) -> Claim | None:
        claim = await super().claim(run_id, runs_included_of)
        self.claimed.set()
        with trio.CancelScope(shield=True):  # as the store's writer waits
            await self.go.wait()
        return claim


@dataclass
class Rig:
    store: Store
    claims: HeldClaims
    performer: GatedPerformer
    pool: ExecutorPool
    cancels: trio.MemorySendChannel[CancelRun]
    run_id: str

    async def used(self) -> int:
        return await self.store.engine.read(lambda c: usage_sql.runs_used(c, "acme", "2026-06"))


@asynccontextmanager
async def claiming(tmp_path: Path) -> AsyncIterator[Rig]:
    """One run of job `j`, its claim committed and held."""
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0)) as store, trio.open_nursery() as n:
        await create_job(store, "acme", SPEC, -1)
        claims = HeldClaims(store)
        performer = GatedPerformer()
        cancels_tx, cancels_rx = trio.open_memory_channel[CancelRun](10)
        dispatcher = Dispatcher(store.runs, depth=16, cap=lambda: 1)
        pool = ExecutorPool(
            claims, performer, lambda _: -1, workers=1, dispatcher=dispatcher, cancels=cancels_rx
        )
        await n.start(pool.run)
        run_id = await enqueue(store, "acme")
        dispatcher.offer(RunOrder(run_id, "acme"))
        with trio.fail_after(10):
            await claims.claimed.wait()
        assert (await store.runs.get_run("acme", run_id)).status is RunStatus.RUNNING
        rig = Rig(store, claims, performer, pool, cancels_tx, run_id)
        assert await rig.used() == 1  # metered with its claim
        yield rig
        n.cancel_scope.cancel()


async def test_a_users_cancel_during_the_claim_sends_nothing_and_gives_the_meter_back(
    tmp_path: Path,
) -> None:
    async with claiming(tmp_path) as rig:
        canceled, was_running = await rig.store.runs.cancel_run("acme", rig.run_id)
        assert was_running and canceled.status is RunStatus.CANCELED
        await rig.cancels.send(CancelRun(rig.run_id))
        await trio.testing.wait_all_tasks_blocked()
        rig.claims.go.set()
        with trio.fail_after(10):
            while await rig.used():
                await trio.sleep(0.01)
        assert rig.performer.started == []  # the request never began
        run = await rig.store.runs.get_run("acme", rig.run_id)
        assert run.status is RunStatus.CANCELED and run.error is None
        await rig.pool.stop(1)


async def test_a_stop_whose_grace_ends_during_the_claim_records_it_never_sent(
    tmp_path: Path,
) -> None:
    async with claiming(tmp_path) as rig:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rig.pool.stop, 0.1)
            await trio.sleep(0.3)  # the grace is over: the run's scope is cancelled
            rig.claims.go.set()
        assert rig.performer.started == []
        run = await rig.store.runs.get_run("acme", rig.run_id)
        assert run.status is RunStatus.FAILED
        assert run.failure_reason is FailureReason.WORKER_LOST
        assert run.error is not None
        assert "shutdown_grace_s" in run.error and "never sent" in run.error
        assert await rig.used() == 0


async def test_a_claimed_request_may_reuse_only_its_own_accounts_connections(
    tmp_path: Path,
) -> None:
    """The claim names the run's account as the request's reuse scope
    (`jobsd.keepalive`), with the environment's overrides applied or without."""
    async with open_store(
        tmp_path / "jobsd.sqlite3", KeyRing.load_or_create(tmp_path / "key"), Clock(T0)
    ) as store:
        for account, overlay in (("acme", Overlay()), ("other", Overlay(url="https://y.invalid/"))):
            write = seed_job("j", "j", None, True, None, HttpConfig(url="https://x.invalid/"))
            write = replace(write, environments={ENV: EnvironmentSpec(True, overlay)})
            await create_job(store, account, write)
            run = await store.runs.enqueue_manual(
                account, "j", ENV, require_enabled=False, max_pending=10
            )
            claim = await store.runs.claim(run.id, lambda _: -1)
            assert claim is not None and claim.config is not None
            assert claim.config.reuse_scope == account
            assert claim.config.url == (overlay.url or "https://x.invalid/")
