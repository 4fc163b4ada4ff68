"""What a deleted job leaves in the store: a tombstone, not its request.

A deleted job's row stays while runs name it (their listing and the 409 of
a rerun read it), but its request is never sent again, so its large parts
(body, CA bundle, sealed header values, description) go with the delete.
Otherwise an account could create, run and delete jobs of 5 MiB each, none
counted by any plan bound, until retention caught up.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.errors import ApiError
from jobsd.job_model import Header, HttpConfig
from jobsd.store import open_store
from jobsd.store.retention import Batch, drop_deleted_jobs, prune_expired
from tests.model import ENV, create_job, seed_job

T0 = datetime(2026, 6, 5, 2, 0, tzinfo=UTC)


async def test_a_deleted_job_keeps_no_request_but_its_runs_still_read(tmp_path: Path) -> None:
    db = tmp_path / "jobsd.sqlite3"
    config = HttpConfig(
        url="https://example.invalid/hook",
        headers=(Header("Authorization", "Bearer s3cret"),),
        ca_cert="-----BEGIN CERTIFICATE-----\n" + "A" * 300_000,
        body="x" * 500_000,
    )
    write = seed_job("big", "Big", "d" * 2_000, True, "*/5 * * * *", config)
    keys = KeyRing.load_or_create(tmp_path / "secret.key")
    async with open_store(db, keys, Clock(T0)) as store:
        await create_job(store, "acme", write)
        run = await store.runs.enqueue_manual(
            "acme", "big", ENV, require_enabled=False, max_pending=100
        )
        await store.jobs.delete_job("acme", "big")
        assert (await store.runs.get_run("acme", run.id)).job_slug == "big"
        with pytest.raises(ApiError) as err:
            await store.runs.enqueue_rerun("acme", run.id, max_pending=100)
        assert err.value.status == 409
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT headers, ca_cert, body, description, length(url), slug FROM jobs"
        ).fetchone()
    assert row == ("[]", None, None, None, len(config.url), "big")


async def test_a_deleted_job_a_run_still_names_is_not_dropped_whoever_asks(
    tmp_path: Path,
) -> None:
    """`drop_deleted_jobs` checks each id again by its key: a deleted job that a
    run still names stays, even when a stale read handed its id over."""
    db = tmp_path / "jobsd.sqlite3"
    write = seed_job("gone", "Gone", None, True, "*/5 * * * *", HttpConfig("https://x.invalid/"))
    later = seed_job("later", "Later", None, True, "*/5 * * * *", HttpConfig("https://x.invalid/"))
    async with open_store(db, KeyRing.load_or_create(tmp_path / "k"), Clock(T0)) as store:
        gone = await create_job(store, "acme", write)
        await create_job(store, "acme", later)  # so `gone` is not the highest id
        await store.runs.enqueue_manual("acme", "gone", ENV, require_enabled=False, max_pending=9)
        await store.jobs.delete_job("acme", "gone")
        dropped = await store.engine.write(lambda c: drop_deleted_jobs(c, [gone.pk]))
        assert dropped == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM jobs WHERE id = ?", (gone.pk,)).fetchone() == (1,)


async def test_the_job_dropper_goes_on_past_a_job_it_may_not_drop(tmp_path: Path) -> None:
    """The highest id is never dropped (ids are not reused); each step reads on past
    the last one's stretch, so a batch of such ids is read once, not at every step."""
    write = seed_job("last", "Last", None, True, "*/5 * * * *", HttpConfig("https://x.invalid/"))
    async with open_store(tmp_path / "db", KeyRing.load_or_create(tmp_path / "k"), Clock(T0)) as s:
        await create_job(s, "acme", write)
        await s.jobs.delete_job("acme", "last")
        step = s.retention.job_dropper(limit=1)
        assert await step() == Batch(0, more=True)
        assert await step() == Batch(0, more=False)


async def test_a_pruning_batch_stops_after_the_run_that_takes_it_past_its_bytes(
    tmp_path: Path,
) -> None:
    """Retention's write is bounded by run text, not rows alone: a batch deletes runs
    until the one that takes it past `max_bytes`, then says more may be left."""
    db = tmp_path / "jobsd.sqlite3"
    write = seed_job("j", "J", None, True, "*/5 * * * *", HttpConfig("https://x.invalid/"))
    async with open_store(db, KeyRing.load_or_create(tmp_path / "k"), Clock(T0)) as store:
        await create_job(store, "acme", write)
        for _ in range(3):
            await store.runs.enqueue_manual("acme", "j", ENV, require_enabled=False, max_pending=9)
        await store.engine.write(
            lambda c: c.execute(
                "UPDATE runs SET status = 'CANCELED', finished_at_us = 1, error = ?",
                ("e" * 1_000,),
            )
        )
        first = await store.engine.write(lambda c: prune_expired(c, 2, 10, max_bytes=1_500))
        assert first == Batch(2, more=True)
        assert await store.engine.write(lambda c: prune_expired(c, 2, 10)) == Batch(1, False)
