"""Retries in the store: written with their failure, held, released once, claimed once.

Store-level, on a real SQLite file: a run finished FAILED under a policy
gets its retry in the same transaction (or none, as the policy and the
reason say); a held retry is in no queue the dispatcher reads, is refused
by a claim, and counts toward no backlog; a release is conditional (once,
only for its own instant, never for a canceled retry); the observer hears
of each retry once it has committed, and the scheduler's channel is never
waited on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
import trio

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.errors import ApiError
from jobsd.job_model import HttpConfig
from jobsd.messages import Outcome, RetryHeld, RunEnded, SchedulerNews
from jobsd.plans import NO_PLAN
from jobsd.retry import Backoff, RetryPolicy
from jobsd.runs import FailureReason, RunStatus, Trigger
from jobsd.store import env_sync, open_store, pending_counts, queue_sql
from jobsd.store.retries import cancel_held, held_outside
from tests.model import ENV, create_job, seed_job

T0 = datetime(2026, 6, 5, tzinfo=UTC)
FAILED_500 = Outcome(
    RunStatus.FAILED,
    FailureReason.NON_SUCCESS_STATUS,
    "status 500",
    {"method": "POST"},
    {"status": 500, "headers": {"retry-after": "90"}},
)


@dataclass
class Told:
    ends: list[RunEnded] = field(default_factory=list)
    retries: int = 0
    transactions: int = 0

    def runs_ended(self, ends: Sequence[RunEnded]) -> None:
        self.ends.extend(ends)

    def retry_scheduled(self) -> None:
        self.retries += 1

    def store_batch(self, size: int, seconds: float) -> None:
        self.transactions += 1


async def test_a_failure_and_its_retry_commit_together(tmp_path: Path) -> None:
    told = Told()
    news_tx, news_rx = trio.open_memory_channel[SchedulerNews](1)
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0), news_tx, told) as store:
        rules = RetryPolicy(2, Backoff.FIXED, 30, retry_statuses=("503",))
        await store.policies.create("acme", "p", "P", rules)
        write = seed_job("j", "j", None, False, "now", HttpConfig(url="https://x.invalid/"))
        write = type(write)(
            type(write.spec)(**{**_fields(write.spec), "retry_policy": "p"}),
            write.environments,
            write.owns,
        )
        await create_job(store, "acme", write)
        news_rx.receive_nowait()  # the job's own change: the channel is empty again

        async def failed_run(outcome: Outcome) -> str:
            run = await store.runs.enqueue_manual(
                "acme", "j", ENV, require_enabled=False, max_pending=100
            )
            claim = await store.runs.claim(run.id, lambda _: -1)
            assert claim is not None and claim.config is not None
            assert await store.runs.finish(run.id, outcome)
            return run.id

        # 500 is not in the allow-list: no retry.
        plain = await failed_run(FAILED_500)
        assert told.retries == 0
        # 503 with Retry-After 90: a retry held for 90 s (the header's, over the policy's 30).
        outcome = Outcome(
            RunStatus.FAILED,
            FailureReason.NON_SUCCESS_STATUS,
            "status 503",
            {},
            {"status": 503, "headers": {"retry-after": "90"}},
        )
        first = await failed_run(outcome)
        assert told.retries == 1
        news = news_rx.receive_nowait()
        failed = await store.runs.get_run("acme", first)
        assert failed.finished_at is not None
        assert isinstance(news, RetryHeld) and news.due == failed.finished_at + timedelta(
            seconds=90
        )
        retry = await store.runs.get_run("acme", news.run_id)
        assert (retry.trigger, retry.status, retry.retry_of, retry.retry_attempt) == (
            Trigger.RETRY,
            RunStatus.PENDING,
            first,
            1,
        )
        assert retry.retried_run == first and retry.scheduled_for == news.due

        # Held: in no queue, counting toward no backlog, refused by a claim.
        def queued(conn: object) -> tuple[list[str], list[str], int]:
            return (
                queue_sql.pending_accounts(conn, 10),  # type: ignore[arg-type]
                queue_sql.oldest_pending(conn, "acme", 10),  # type: ignore[arg-type]
                pending_counts.pending_count(conn, "acme"),  # type: ignore[arg-type]
            )

        assert await store.engine.read(queued) == ([], [], 0)
        assert await store.runs.claim(news.run_id, lambda _: -1) is None
        # Nor refused for quota (nor for no plan) before its instant: not offered at all.
        assert await store.runs.claim(news.run_id, lambda _: 0) is None
        assert await store.runs.claim(news.run_id, lambda _: NO_PLAN) is None

        # Released once, for its own instant only.
        # Due at the instant asked about: due (`<=`), not left for the next pass.
        assert await store.runs.held_retries_before(news.due, 10) == [news]
        early = RetryHeld(news.run_id, news.due - timedelta(seconds=1))
        assert await store.runs.release_retries([early]) == []
        (order,) = await store.runs.release_retries([news, news])
        assert order.run_id == news.run_id and order.account_id == "acme"
        assert await store.runs.release_retries([news]) == []
        assert await store.engine.read(queued) == (["acme"], [news.run_id], 1)
        assert await store.runs.held_retries_before(T0 + timedelta(days=1), 10) == []

        # Its failure makes attempt 2; the news channel is full (1 slot, unread):
        # the store drops the news rather than wait, and the observer still hears.
        claim = await store.runs.claim(news.run_id, lambda _: -1)
        assert claim is not None
        assert ("X-Jobsd-Retry-Attempt", "1") in claim.stamp()
        news_tx.send_nowait(RetryHeld("filler", T0))
        assert await store.runs.finish(news.run_id, outcome)
        assert told.retries == 2
        (second,) = await store.runs.held_retries_before(T0 + timedelta(days=1), 10)
        attempt_two = await store.runs.get_run("acme", second.run_id)
        assert (attempt_two.retry_of, attempt_two.retry_attempt) == (first, 2)
        assert attempt_two.retried_run == news.run_id

        # Canceled while held: no release, and the chain is over.
        canceled, was_running = await store.runs.cancel_run("acme", second.run_id)
        assert canceled.status is RunStatus.CANCELED and not was_running
        assert await store.runs.release_retries([second]) == []
        assert plain != first


def _fields(spec: object) -> dict[str, object]:
    return {name: getattr(spec, name) for name in spec.__dataclass_fields__}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "reason", [FailureReason.SSRF_BLOCKED, FailureReason.WORKER_LOST, FailureReason.QUOTA_EXCEEDED]
)
async def test_failures_never_retried(tmp_path: Path, reason: FailureReason) -> None:
    told = Told()
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0), None, told) as store:
        everything = RetryPolicy(
            10,
            Backoff.FIXED,
            1,
            retry_on_timeout=True,
            retry_on_connection_error=True,
            retry_statuses=("1xx", "2xx", "3xx", "4xx", "5xx"),
        )
        await store.policies.create("acme", "all", "All", everything)
        write = seed_job("j", "j", None, False, "now", HttpConfig(url="https://x.invalid/"))
        write = type(write)(
            type(write.spec)(**{**_fields(write.spec), "retry_policy": "all"}),
            write.environments,
            write.owns,
        )
        await create_job(store, "acme", write)
        run = await store.runs.enqueue_manual(
            "acme", "j", ENV, require_enabled=False, max_pending=100
        )
        await store.runs.claim(run.id, lambda _: -1)
        outcome = Outcome(RunStatus.FAILED, reason, "no", {}, {"status": 500, "headers": {}})
        assert await store.runs.finish(run.id, outcome)
        assert told.retries == 0
        assert await store.runs.held_retries_before(T0 + timedelta(days=1), 10) == []


async def test_a_retry_held_in_an_environment_made_dormant_never_fires(tmp_path: Path) -> None:
    """Nothing fires in an environment the config no longer lists (README,
    "Changing environments"): a retry held for its instant there is a fire to
    come, like a slot, so the reload (or start) that makes it dormant cancels
    it, saying why; the other environments' retries wait on."""
    told = Told()
    keyring = KeyRing.load_or_create(tmp_path / "k")
    both = ("production", "staging")
    async with open_store(tmp_path / "db", keyring, Clock(T0), None, told) as store:
        rules = RetryPolicy(3, Backoff.FIXED, 60, retry_statuses=("5xx",))
        await store.policies.create("acme", "p", "P", rules)
        held: dict[str, RetryHeld] = {}
        for env in both:
            write = seed_job(
                f"j-{env}", "j", None, True, None, HttpConfig("https://x.invalid/"), env
            )
            spec = type(write.spec)(**{**_fields(write.spec), "retry_policy": "p"})
            await create_job(store, "acme", type(write)(spec, write.environments, write.owns))
            run = await store.runs.enqueue_manual(
                "acme", f"j-{env}", env, require_enabled=False, max_pending=100
            )
            assert await store.runs.claim(run.id, lambda _: -1) is not None
            assert await store.runs.finish(run.id, FAILED_500)
            (held[env],) = [
                h
                for h in await store.runs.held_retries_before(T0 + timedelta(days=1), 10)
                if h.run_id not in {x.run_id for x in held.values()}
            ]

        # An account the config does not name is left alone, whatever its environments.
        assert await store.engine.read(lambda c: held_outside(c, {"other": ()})) == []
        await store.jobs.sync_environments({"acme": ("production",)})  # staging removed

        gone = await store.runs.get_run("acme", held["staging"].run_id)
        assert gone.status is RunStatus.CANCELED and "staging" in (gone.error or "")
        assert await store.runs.release_retries([held["staging"]]) == []
        assert gone.id in {end.run_id for end in told.ends}
        waiting = await store.runs.held_retries_before(T0 + timedelta(days=1), 10)
        assert waiting == [held["production"]]
        # Released after the read that found it held: no longer the cancel's to take.
        prod = held["production"].run_id
        assert [o.run_id for o in await store.runs.release_retries([held["production"]])] == [prod]
        cancel = partial(cancel_held, held=[(prod, "production")], now_us=0)
        assert await store.engine.write(cancel) == []
        assert (await store.runs.get_run("acme", prod)).status is RunStatus.PENDING


async def test_held_retries_are_canceled_a_batch_per_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An environment made dormant cancels its held retries in batches of
    `env_sync.BATCH_ROWS` (here 2) per writer transaction, like its rows: all of
    them in one held the writer for as long as there were retries (one each
    of 100,000 failing jobs)."""
    monkeypatch.setattr(env_sync, "BATCH_ROWS", 2)
    told = Told()
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0), None, told) as store:
        rules = RetryPolicy(3, Backoff.FIXED, 60, retry_statuses=("5xx",))
        await store.policies.create("acme", "p", "P", rules)
        for n in range(5):
            write = seed_job(
                f"j{n}", "j", None, True, None, HttpConfig("https://x.invalid/"), "staging"
            )
            spec = type(write.spec)(**{**_fields(write.spec), "retry_policy": "p"})
            await create_job(store, "acme", type(write)(spec, write.environments, write.owns))
            run = await store.runs.enqueue_manual(
                "acme", f"j{n}", "staging", require_enabled=False, max_pending=100
            )
            assert await store.runs.claim(run.id, lambda _: -1) is not None
            assert await store.runs.finish(run.id, FAILED_500)
        held = await store.runs.held_retries_before(T0 + timedelta(days=1), 10)
        assert len(held) == 5
        told.transactions = 0
        await store.jobs.sync_environments({"acme": ("production",)})  # staging removed
        # The look-up, three batches of retries, then the walks of staging and production.
        assert told.transactions >= 5, told.transactions
        assert await store.runs.held_retries_before(T0 + timedelta(days=1), 10) == []
        assert {h.run_id for h in held} <= {end.run_id for end in told.ends}


async def test_a_run_that_fails_after_its_job_was_deleted_is_not_retried(
    tmp_path: Path,
) -> None:
    """A run still in flight when its job is deleted may fail after: the chain ends
    there, no retry held for a job that is gone."""
    told = Told()
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0), None, told) as store:
        await store.policies.create(
            "acme", "p", "P", RetryPolicy(3, Backoff.FIXED, 60, retry_statuses=("5xx",))
        )
        write = seed_job("j", "j", None, False, "now", HttpConfig(url="https://x.invalid/"))
        spec = type(write.spec)(**{**_fields(write.spec), "retry_policy": "p"})
        await create_job(store, "acme", type(write)(spec, write.environments, write.owns))
        run = await store.runs.enqueue_manual(
            "acme", "j", ENV, require_enabled=False, max_pending=100
        )
        assert await store.runs.claim(run.id, lambda _: -1) is not None
        await store.jobs.delete_job("acme", "j")
        assert await store.runs.finish(run.id, FAILED_500)
        assert told.retries == 0
        assert await store.runs.held_retries_before(T0 + timedelta(days=1), 10) == []


async def test_a_policy_replace_changes_its_own_accounts_policy_only(tmp_path: Path) -> None:
    """policies: another account's policy of the same id is neither changed by a
    replace nor found by one (404, not a 500)."""
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0)) as store:
        old, new = RetryPolicy(1, Backoff.FIXED, 30), RetryPolicy(3, Backoff.FIXED, 60)
        await store.policies.create("acme", "p", "P", old)
        await store.policies.create("other", "p", "P", old)
        await store.policies.create("other", "q", "Q", old)
        assert (await store.policies.replace("acme", "p", "P2", new)).rules == new
        assert (await store.policies.get("other", "p")).rules == old
        with pytest.raises(ApiError) as refused:
            await store.policies.replace("acme", "q", "Q2", new)
        assert refused.value.status == 404
        assert (await store.policies.get("other", "q")).rules == old
