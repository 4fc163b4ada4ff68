"""The daemon's own writes wait out a database another process keeps locked.

An operator's `sqlite3` shell (or any tool) may hold SQLite's write lock past
the store's busy timeout. An API write answers 503 and its client retries
(tests/api/test_store_busy.py); the daemon's own writes have no client: a
run's claim and its outcome, a slot's firing, a retry's release. Each used to
raise out of its actor, which ended the daemon (exit 2, no stop sequence), so
a response already received was never recorded and read `WORKER_LOST` after
the restart. Now each is tried again until the lock is gone, and written once.
Real SQLite, a second connection holding the lock; the store's busy timeout is
cut to 50 ms so a test takes a fraction of a second.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import trio

from jobsd.clock import Clock, to_us
from jobsd.config import RetentionConfig
from jobsd.crypto import KeyRing
from jobsd.job_model import HttpConfig, JobWrite
from jobsd.lifecycle import store_answers
from jobsd.messages import Outcome, RetryHeld
from jobsd.plans import UNLIMITED
from jobsd.retention import prune_once
from jobsd.retry import Backoff, RetryPolicy
from jobsd.runs import FailureReason, RunStatus
from jobsd.store import Store, open_store
from tests.model import ENV, create_job, seed_job

T = TypeVar("T")
T0 = datetime(2026, 6, 5, tzinfo=UTC)
HELD_S = 0.4  # the lock outlasts the busy timeout (50 ms) several times over
OK = Outcome(RunStatus.SUCCEEDED, None, None, {"method": "POST"}, {"status": 200})


class Stopped(Clock):
    """A clock that stays at T0: the instants written are the ones asked for."""

    def now(self) -> datetime:
        return T0


@asynccontextmanager
async def locked_store(tmp_path: Path) -> AsyncIterator[tuple[Store, Path]]:
    ring = KeyRing.load_or_create(tmp_path / "secret.key")
    async with open_store(tmp_path / "db", ring, Stopped(T0)) as store:

        def pragma(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA busy_timeout = 50")

        await store.engine.write(pragma)
        yield store, tmp_path / "db"


async def while_locked(db: Path, write: Awaitable[T], held_s: float = HELD_S) -> T:
    """`write`, awaited while another connection holds the write lock for `held_s`."""
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        async with trio.open_nursery() as nursery:

            async def release() -> None:
                await trio.sleep(held_s)
                other.execute("ROLLBACK")

            nursery.start_soon(release)
            with trio.fail_after(20):
                return await write
    finally:
        other.close()


def job(slug: str, schedule: str | None, *, enabled: bool = False) -> JobWrite:
    return seed_job(slug, slug, None, enabled, schedule, HttpConfig(url="https://x.invalid/"))


async def test_a_runs_claim_and_its_outcome_are_written_once_the_lock_is_gone(
    tmp_path: Path,
) -> None:
    async with locked_store(tmp_path) as (store, db):
        await create_job(store, "acme", job("j", None))
        run = await store.runs.enqueue_manual(
            "acme", "j", ENV, require_enabled=False, max_pending=9
        )
        claim = await while_locked(db, store.runs.claim(run.id, lambda _: UNLIMITED))
        assert claim is not None and claim.config is not None
        assert await while_locked(db, store.runs.finish(run.id, OK))
        done = await store.runs.get_run("acme", run.id)
        assert done.status is RunStatus.SUCCEEDED and done.result == {"status": 200}

        lost = await store.runs.enqueue_manual(
            "acme", "j", ENV, require_enabled=False, max_pending=9
        )
        assert await store.runs.claim(lost.id, lambda _: UNLIMITED) is not None
        assert await while_locked(db, store.runs.mark_lost([lost.id], "stopped")) == 1
        assert (
            await store.runs.get_run("acme", lost.id)
        ).failure_reason is FailureReason.WORKER_LOST


async def test_a_slots_firing_and_a_retrys_release_wait_for_the_lock(tmp_path: Path) -> None:
    async with locked_store(tmp_path) as (store, db):
        created = await create_job(store, "acme", job("once", "now", enabled=True))
        fired, order = await while_locked(
            db, store.runs.fire_slot(created.pk, due=T0, slot=T0, next_run_at=None)
        )
        assert fired and order is not None

        rules = RetryPolicy(2, Backoff.FIXED, 30, retry_statuses=("5xx",))
        await store.policies.create("acme", "p", "P", rules)
        write = job("flaky", None)
        await create_job(store, "acme", replace(write, spec=replace(write.spec, retry_policy="p")))
        run = await store.runs.enqueue_manual(
            "acme", "flaky", ENV, require_enabled=False, max_pending=9
        )
        assert await store.runs.claim(run.id, lambda _: UNLIMITED) is not None
        failed = Outcome(
            RunStatus.FAILED, FailureReason.NON_SUCCESS_STATUS, "500", {}, {"status": 500}
        )
        assert await store.runs.finish(run.id, failed)
        (held,) = await store.runs.held_retries_before(T0 + timedelta(days=1), 10)
        assert isinstance(held, RetryHeld)
        (released,) = await while_locked(db, store.runs.release_retries([held]))
        assert released.run_id == held.run_id


async def test_the_watchdogs_probe_takes_a_locked_database_for_an_answer(tmp_path: Path) -> None:
    # The probe proves the loop, the writer thread and SQLite move; SQLite saying
    # another process holds the lock is such proof. Raised, it ended the daemon
    # under systemd's watchdog (exit 2) 5 s into an operator's transaction.
    async with locked_store(tmp_path) as (store, db):
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with trio.fail_after(20):
                await store_answers(store)
        finally:
            other.close()
        await store_answers(store)


async def test_retention_and_the_alerts_outbox_wait_for_the_lock(tmp_path: Path) -> None:
    # Both are actors of their own: a write of theirs raised out of them ended the
    # daemon, with every run in flight, an hour into its life or at an alert.
    async with locked_store(tmp_path) as (store, db):
        await create_job(store, "acme", job("j", None))
        run = await store.runs.enqueue_manual(
            "acme", "j", ENV, require_enabled=False, max_pending=9
        )
        assert await store.runs.claim(run.id, lambda _: UNLIMITED) is not None
        assert await store.runs.finish(run.id, OK)
        report = await while_locked(
            db, prune_once(store.retention, RetentionConfig(days=1), T0 + timedelta(days=2))
        )
        assert report.expired == 1
        taken = await while_locked(db, store.outbox.take(to_us(T0), 10, {}, 10))
        assert taken.alerts == [] and taken.expired == []
