"""Each account holds at most `MAX_HELD_RETRIES` retries waiting for their instant.

Every failed run its policy retries holds a `PENDING` retry for up to a year
(the policy's delay), retention never deletes a `PENDING` run, and held
retries count toward no backlog: without a bound, an account whose target
keeps failing stored one more row per failure for as long as its plan's
metered runs allowed (without end on an unlimited plan), and every start and
reload read them all into memory (`cancel_held_outside`). The account is
filled to one below the bound with held rows written directly (100,000
requests would take minutes), then pushed past it through the store's own
finish path.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import trio

from jobsd.clock import Clock
from jobsd.config_sections import DEFAULT_MAX_JOBS
from jobsd.crypto import KeyRing
from jobsd.job_model import HttpConfig
from jobsd.messages import Outcome, SchedulerNews
from jobsd.retry import Backoff, RetryPolicy
from jobsd.runs import FailureReason, RunStatus
from jobsd.store import open_store, pending_counts
from jobsd.store.pending_counts import MAX_HELD_RETRIES
from tests.model import ENV, create_job, seed_job
from tests.test_retry_store import Told, _fields

T0 = datetime(2026, 6, 5, tzinfo=UTC)
FAILED_503 = Outcome(
    RunStatus.FAILED, FailureReason.NON_SUCCESS_STATUS, "status 503", {}, {"status": 503}
)


def _fill(conn: sqlite3.Connection, account: str, n: int) -> None:
    """`n` retries held a year ahead, as `jobsd.store.retries` writes them."""
    job_pk = conn.execute(
        "SELECT id FROM jobs WHERE account_id = ? AND slug = 'j'", (account,)
    ).fetchone()[0]
    conn.execute(
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?) "
        "INSERT INTO runs (id, account_id, job_id, job_slug, environment, trigger, status, "
        "created_at_us, scheduled_for_us, retry_of, retry_attempt, retried_run, "
        "held_until_us) SELECT 'held-' || ? || i, ?, ?, 'j', ?, 'RETRY', 'PENDING', 0, "
        "40000000000000000, 'first' || i, 1, 'first' || i, 40000000000000000 FROM k",
        (n, account, account, job_pk, ENV),
    )


async def test_a_failure_past_the_accounts_held_retries_is_not_retried(tmp_path: Path) -> None:
    told = Told()
    news_tx, _news_rx = trio.open_memory_channel[SchedulerNews](10)
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0), news_tx, told) as store:
        for account in ("acme", "other"):
            rules = RetryPolicy(2, Backoff.FIXED, 3600, retry_statuses=("503",))
            await store.policies.create(account, "p", "P", rules)
            write = seed_job("j", "j", None, False, "now", HttpConfig(url="https://x.invalid/"))
            spec = type(write.spec)(**{**_fields(write.spec), "retry_policy": "p"})
            await create_job(store, account, type(write)(spec, write.environments, write.owns))

        async def failed_run(account: str) -> str:
            run = await store.runs.enqueue_manual(
                account, "j", ENV, require_enabled=False, max_pending=100
            )
            claim = await store.runs.claim(run.id, lambda _: -1)
            assert claim is not None
            assert await store.runs.finish(run.id, FAILED_503)
            return run.id

        async def held(account: str) -> int:
            return await store.engine.read(lambda c: pending_counts.held_count(c, account))

        await store.engine.write(lambda c: _fill(c, "acme", MAX_HELD_RETRIES - 1))
        assert await held("acme") == MAX_HELD_RETRIES - 1

        await failed_run("acme")  # the last place: taken
        assert told.retries == 1 and await held("acme") == MAX_HELD_RETRIES

        refused = await failed_run("acme")  # one past it: the chain ends here, saying why
        assert told.retries == 1 and await held("acme") == MAX_HELD_RETRIES
        run = await store.runs.get_run("acme", refused)
        assert run.status is RunStatus.FAILED
        assert run.error == (
            f"status 503; not retried: the account already holds {MAX_HELD_RETRIES} "
            "retries waiting for their instant (the most it may)"
        )

        await failed_run("other")  # another account's bound is its own
        assert told.retries == 2 and await held("other") == 1

        canceled, _ = await store.runs.cancel_run("acme", "held-acme1")
        assert canceled.status is RunStatus.CANCELED  # a place frees
        await failed_run("acme")
        assert told.retries == 3 and await held("acme") == MAX_HELD_RETRIES


def test_the_bound_is_a_retry_held_for_each_job_of_a_full_account() -> None:
    """The bound is the default plan's `max_jobs` (pending_counts' note), not any number."""
    assert MAX_HELD_RETRIES == DEFAULT_MAX_JOBS == 100_000
