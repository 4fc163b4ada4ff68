"""Retention and the at-most-once of a slot: a pruned run must not free its slot.

A one-off fires at most once for its instant: re-enabling one whose
instant already fired does not fire it again (README, Decisions). The
unique `(job, environment, scheduled_for)` index over SCHEDULE runs is
what refuses the second run, so the rule must hold once retention has
pruned the first one too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from jobsd.clock import Clock
from jobsd.config import RetentionConfig
from jobsd.crypto import KeyRing
from jobsd.job_model import HttpConfig
from jobsd.messages import Outcome, RunOrder
from jobsd.plans import UNLIMITED
from jobsd.retention import prune_once
from jobsd.runs import RunStatus
from jobsd.store import Store, open_store
from tests.model import ENV, create_job, next_run, seed_job, seed_limit

T0 = datetime(2026, 6, 5, 2, 0, tzinfo=UTC)
AT = T0 + timedelta(hours=1)


class SetClock(Clock):
    def __init__(self, at: datetime) -> None:
        super().__init__(at)
        self.at = at

    def now(self) -> datetime:
        return self.at


def one_off(enabled: bool) -> object:
    return seed_job("once", "n", None, enabled, AT.isoformat(), HttpConfig("https://x.invalid/"))


async def fire_the_instant(store: Store, job_pk: int) -> RunOrder:
    fired, order = await store.runs.fire_slot(job_pk, due=AT, slot=AT, next_run_at=None)
    assert fired and order is not None
    return order


async def succeed(store: Store, run_id: str) -> None:
    assert await store.runs.claim(run_id, lambda _: UNLIMITED) is not None
    assert await store.runs.finish(
        run_id, Outcome(RunStatus.SUCCEEDED, None, None, {}, {"status": 200})
    )


async def test_a_pruned_one_off_run_does_not_let_its_instant_fire_again(tmp_path: Path) -> None:
    clock = SetClock(T0)
    ring = KeyRing.load_or_create(tmp_path / "secret.key")
    async with open_store(tmp_path / "db", ring, clock) as store:
        job = await create_job(store, "acme", one_off(True))
        assert next_run(job) == AT
        clock.at = AT
        order = await fire_the_instant(store, job.pk)
        await succeed(store, order.run_id)
        manual = await store.runs.enqueue_manual(
            "acme", "once", ENV, require_enabled=False, max_pending=10
        )
        await succeed(store, manual.id)

        # Weeks later its run is past `days` and pruned; then the job is re-enabled.
        clock.at = AT + timedelta(days=30)
        report = await prune_once(store.retention, RetentionConfig(days=7), clock.now())
        assert report.expired >= 1  # the run-now's run at least
        again = await store.jobs.replace_job(
            "acme", "once", one_off(True), configured=(ENV,), limit=seed_limit(-1)
        )
        due = next_run(again)
        if due is not None:
            _, second = await store.runs.fire_slot(job.pk, due=due, slot=due, next_run_at=None)
            assert second is None, f"the instant {AT} fired a second time: run {second}"


async def test_a_deleted_one_offs_instant_run_is_pruned_like_any_other(tmp_path: Path) -> None:
    """The instant's run is kept only while its one-off lives: once the job is
    deleted, nothing can fire it again, and its run goes at `days` (and then
    the job's row), not kept for good."""
    clock = SetClock(T0)
    ring = KeyRing.load_or_create(tmp_path / "secret.key")
    async with open_store(tmp_path / "db", ring, clock) as store:
        job = await create_job(store, "acme", one_off(True))
        clock.at = AT
        order = await fire_the_instant(store, job.pk)
        await succeed(store, order.run_id)
        await store.jobs.delete_job("acme", "once")

        clock.at = AT + timedelta(days=30)
        report = await prune_once(store.retention, RetentionConfig(days=7), clock.now())
        assert report.expired == 1


async def test_the_per_job_cap_keeps_a_live_one_offs_instant_run(tmp_path: Path) -> None:
    """`max_runs_per_job` keeps the instant's run too, though newer runs fill the cap:
    pruned, re-enabling the one-off would fire its instant a second time."""
    clock = SetClock(AT)
    ring = KeyRing.load_or_create(tmp_path / "secret.key")
    async with open_store(tmp_path / "db", ring, clock) as store:
        job = await create_job(store, "acme", one_off(True))
        order = await fire_the_instant(store, job.pk)
        manual = await store.runs.enqueue_manual(
            "acme", "once", ENV, require_enabled=False, max_pending=10
        )
        for run_id in (order.run_id, manual.id):  # the instant's run first, then a newer one
            await succeed(store, run_id)
        config = RetentionConfig(days=1_000_000, max_runs_per_job=1)
        report = await prune_once(store.retention, config, clock.now())
        assert report.over_cap == 0
        assert (await store.runs.get_run("acme", order.run_id)).scheduled_for == AT
