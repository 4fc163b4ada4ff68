"""A recurring slot never queues behind another slot's run of its job still
waiting to start (`jobsd.store.slots`).

Scheduled runs are never refused, and before this an account whose runs
could not keep up (targets that hang, on a plan with no monthly quota to
drain them) queued one more `PENDING` run per job and slot without end:
an every-minute job whose runs waited an hour had 60 queued, each to be
sent an hour late. Now the slot is recorded skipped, as `overlap_policy`
SKIP records one, and at most one slot's run per job and environment
waits; a run going (RUNNING) still lets the next slot fire, as ALLOW says.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobsd.clock import Clock, from_us
from jobsd.crypto import KeyRing
from jobsd.job_model import EnvironmentSpec, HttpConfig, JobWrite
from jobsd.runs import RunStatus, Trigger
from jobsd.store import open_store
from tests.model import ENV, create_job, seed_job
from tests.test_store import Heard

T0 = datetime(2026, 6, 5, 2, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


async def test_a_slot_due_while_its_jobs_last_slot_waits_to_start_is_skipped(
    tmp_path: Path,
) -> None:
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0), None) as store:
        config = HttpConfig(url="https://x.invalid/")
        await create_job(store, "acme", seed_job("j", "j", None, True, "* * * * *", config))

        def due_of(conn: object) -> tuple[int, datetime]:
            pk, next_us = conn.execute(  # type: ignore[attr-defined]
                "SELECT job_id, next_run_at_us FROM job_environments WHERE environment = ?",
                (ENV,),
            ).fetchone()
            return int(pk), from_us(int(next_us))

        async def fire() -> str | None:
            pk, due = await store.engine.read(due_of)
            advanced, order = await store.runs.fire_slot(
                pk, due=due, slot=due, next_run_at=due + MINUTE, environment=ENV
            )
            assert advanced  # the job moves on either way
            return None if order is None else order.run_id

        first = await fire()
        assert first is not None
        # A run-now waiting changes nothing: only a slot's run is a slot's backlog.
        await store.runs.enqueue_manual("acme", "j", ENV, require_enabled=False, max_pending=100)
        assert await fire() is None  # the first slot's run still waits: skipped
        assert await fire() is None  # and so on, however long it waits
        waiting = await store.runs.get_run("acme", first)
        skipped = await store.engine.read(
            lambda c: c.execute(
                "SELECT id, status, error, started_at_us FROM runs WHERE trigger = 'SCHEDULE' "
                "AND id != ? ORDER BY seq",
                (first,),
            ).fetchall()
        )
        assert len(skipped) == 2
        for row in skipped:
            assert (row["status"], row["started_at_us"]) == ("CANCELED", None)
            assert row["error"].startswith(f"skipped: run {first} of this job in {ENV}, ")
            assert "still waiting to start" in row["error"]
        assert (waiting.status, waiting.trigger) == (RunStatus.PENDING, Trigger.SCHEDULE)

        # Once it has started, the next slot fires (ALLOW: runs may overlap).
        assert await store.runs.claim(first, lambda _: -1) is not None
        second = await fire()
        assert second is not None and second != first


@pytest.mark.parametrize("overlap", ["SKIP", "ALLOW"])
async def test_a_skipped_slot_is_told_as_a_run_that_ended(tmp_path: Path, overlap: str) -> None:
    """A slot recorded skipped (SKIP: a run going; ALLOW: a slot's run waiting) is a
    run ended CANCELED: `jobsd_runs_finished_total` and its `run finished` line count it."""
    heard = Heard()
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0), None, heard) as store:
        config = HttpConfig(url="https://x.invalid/")
        job = await create_job(store, "acme", seed_job("j", "j", None, True, "* * * * *", config))
        await store.engine.write(
            lambda c: c.execute("UPDATE jobs SET overlap_policy = ?", (overlap,))
        )
        due = T0 + MINUTE
        _, first = await store.runs.fire_slot(job.pk, due=due, slot=due, next_run_at=due + MINUTE)
        assert first is not None and heard.ends == []
        due += MINUTE
        advanced, order = await store.runs.fire_slot(
            job.pk, due=due, slot=due, next_run_at=due + MINUTE
        )
        assert advanced and order is None
    skipped = [(e.status, e.trigger) for e in heard.ends if e.run_id != first.run_id]
    assert skipped == [(RunStatus.CANCELED, Trigger.SCHEDULE)]


@pytest.mark.parametrize("overlap", ["SKIP", "ALLOW"])
async def test_a_run_in_another_environment_never_skips_a_slot(
    tmp_path: Path, overlap: str
) -> None:
    """Overlap and the slot backlog are per (job, environment): production's run still
    waiting skips none of staging's slots."""
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0), None) as store:
        write = seed_job("j", "j", None, True, "* * * * *", HttpConfig(url="https://x.invalid/"))
        both = {ENV: EnvironmentSpec(True), "staging": EnvironmentSpec(True)}
        write = JobWrite(write.spec, both, owns=frozenset(both), keep=write.keep)
        job = await create_job(store, "acme", write, configured=tuple(both))
        await store.engine.write(
            lambda c: c.execute("UPDATE jobs SET overlap_policy = ?", (overlap,))
        )
        due = T0 + MINUTE
        for env in (ENV, "staging"):
            _, order = await store.runs.fire_slot(
                job.pk, due=due, slot=due, next_run_at=due + MINUTE, environment=env
            )
            assert order is not None, f"{env}'s slot was skipped"
