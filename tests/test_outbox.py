"""The alert outbox in the store, on a real SQLite file.

Alerts are written in the transaction that records a run's end (a failure
its policy retries writes none; the retry that fails for good does), the
outbox of an account is bounded (the real cap, pushed), an alert once taken
never changes, and the actor's side hands alerts out in order per job,
within each account's share, puts back what a crash left in flight, and
drops what expired.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from jobsd.alert_rules import FAILED_WINDOW_US, GIVE_UP_AFTER_US
from jobsd.clock import Clock, to_us
from jobsd.crypto import KeyRing
from jobsd.job_model import HttpConfig
from jobsd.messages import JobChanged, Outcome, RunEnded, SchedulerNews
from jobsd.retry import Backoff, RetryPolicy
from jobsd.runs import FailureReason, RunStatus, Trigger
from jobsd.store import Store, open_store
from jobsd.store.outbox import OUTBOX_CAP, AlertPolicy, AlertRecorder
from jobsd.store.outbox_rows import Recorded
from tests.model import ENV, create_job, seed_job

T0 = datetime(2026, 6, 5, tzinfo=UTC)
FAILED_500 = Outcome(
    RunStatus.FAILED, FailureReason.NON_SUCCESS_STATUS, "status 500", {}, {"status": 500}
)
OK = Outcome(RunStatus.SUCCEEDED, None, None, {}, {"status": 200})


@dataclass
class Policies:
    alerting: set[str] = field(default_factory=lambda: {"acme"})
    auto_pause_after: int = 0

    def any_active(self) -> bool:
        return bool(self.alerting) or self.auto_pause_after > 0

    def of(self, account_id: str) -> AlertPolicy:
        return AlertPolicy(account_id in self.alerting, self.auto_pause_after)


@dataclass
class Told:
    dropped: list[tuple[str, str, str]] = field(default_factory=list)

    def runs_ended(self, ends: Sequence[RunEnded]) -> None:
        pass

    def retry_scheduled(self) -> None:
        pass

    def store_batch(self, size: int, seconds: float) -> None:
        pass

    def alerts_dropped(self, account: str, alert_type: str, outcome: str) -> None:
        self.dropped.append((account, alert_type, outcome))


async def make_job(store: Store, slug: str, policy: str | None = None) -> None:
    write = seed_job(slug, slug, None, True, "0 0 1 1 *", HttpConfig(url="https://x.invalid/"))
    if policy is not None:
        write = replace(write, spec=replace(write.spec, retry_policy=policy), keep=frozenset())
    await create_job(store, "acme", write)


async def claimed(store: Store, slug: str) -> str:
    """A run-now of the job, claimed: RUNNING, as an executor holds it."""
    run = await store.runs.enqueue_manual(
        "acme", slug, ENV, require_enabled=False, max_pending=10_000
    )
    claim = await store.runs.claim(run.id, lambda _: -1)
    assert claim is not None and claim.config is not None
    return run.id


async def ended(store: Store, slug: str, outcome: Outcome) -> str:
    run_id = await claimed(store, slug)
    assert await store.runs.finish(run_id, outcome)
    return run_id


def outbox(db: Path) -> list[dict[str, object]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM alert_outbox ORDER BY seq")]
    finally:
        conn.close()


def opened(
    tmp_path: Path, told: Told, policies: Policies | None = None, clock: Clock | None = None
) -> AbstractAsyncContextManager[Store]:
    news_tx, _ = trio.open_memory_channel[SchedulerNews](100)
    keyring = KeyRing.load_or_create(tmp_path / "k")
    return open_store(
        tmp_path / "db",
        keyring,
        clock or Clock(T0),
        news_tx,
        told,
        alert_policies=policies or Policies(),
    )


async def test_a_failure_alerts_in_its_own_transaction_and_a_retried_one_does_not(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path, Told()) as store:
        await store.policies.create(
            "acme", "p", "P", RetryPolicy(1, Backoff.FIXED, 30, retry_statuses=("5xx",))
        )
        await make_job(store, "j", policy="p")
        first = await ended(store, "j", FAILED_500)
        assert outbox(tmp_path / "db") == []  # a retry follows it: not a failure for good
        await make_job(store, "k")
        failed = await ended(store, "k", FAILED_500)
        (row,) = outbox(tmp_path / "db")
        body = json.loads(str(row["body"]))
        assert (row["type"], body["type"], body["data"]["run"]["id"]) == (
            "job.failed",
            "job.failed",
            failed,
        )
        assert body["data"]["run"]["status"] == "FAILED" and "request" not in body["data"]["run"]
        assert row["due_us"] == row["created_at_us"]  # sent at once
        assert row["expires_at_us"] == int(row["due_us"]) + GIVE_UP_AFTER_US  # type: ignore[call-overload]
        assert first != failed
        await ended(store, "k", OK)
        assert [r["type"] for r in outbox(tmp_path / "db")] == ["job.failed", "job.recovered"]


async def test_no_statement_and_no_alert_for_an_account_that_does_not_alert(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path, Told(), Policies(alerting=set())) as store:
        await make_job(store, "j")
        await ended(store, "j", FAILED_500)
        assert outbox(tmp_path / "db") == []


async def test_the_outbox_of_an_account_holds_at_most_its_cap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    told = Told()
    async with opened(tmp_path, told) as store:
        await make_job(store, "j")
        now = to_us(T0)

        def fill(conn: sqlite3.Connection) -> None:
            conn.execute(  # another account's alert, older than all of acme's
                "INSERT INTO alert_outbox (id, account_id, job_id, environment, type, body, "
                "created_at_us, due_us, expires_at_us) VALUES ('theirs', 'globex', 0, ?, "
                "'job.failed', '{}', ?, ?, ?)",
                (ENV, now, now, now + GIVE_UP_AFTER_US),
            )
            conn.executemany(
                "INSERT INTO alert_outbox (id, account_id, job_id, environment, type, body, "
                "created_at_us, due_us, expires_at_us) VALUES (?, 'acme', 0, ?, "
                "'job.recovered', '{}', ?, ?, ?)",
                [(f"old-{n}", ENV, now, now, now + GIVE_UP_AFTER_US) for n in range(OUTBOX_CAP)],
            )
            # The oldest is being sent: it is not the one dropped.
            conn.execute("UPDATE alert_outbox SET sending = 1, attempts = 1 WHERE id = 'old-0'")

        await store.engine.write(fill)
        with caplog.at_level(logging.WARNING, logger="jobsd.alerts"):
            await ended(store, "j", FAILED_500)
        rows = [r for r in outbox(tmp_path / "db") if r["account_id"] == "acme"]
        assert len(rows) == OUTBOX_CAP
        # The oldest not in flight went.
        assert [r["id"] for r in rows[:2]] == ["old-0", "old-2"]
        assert rows[-1]["type"] == "job.failed"
        assert told.dropped == [("acme", "job.recovered", "overflow")]
        assert "outbox is full" in caplog.text
        # The other account's outbox is its own.
        assert await store.outbox.held() == {"acme": OUTBOX_CAP, "globex": 1}


async def test_a_taken_alert_never_changes_and_a_deferred_one_folds_until_taken(
    tmp_path: Path,
) -> None:
    clock = Clock(T0)
    async with opened(tmp_path, Told(), clock=clock) as store:
        await make_job(store, "j")
        await ended(store, "j", FAILED_500)  # job.failed, now
        await ended(store, "j", OK)  # job.recovered
        second = await ended(store, "j", FAILED_500)  # inside the window: deferred
        rows = outbox(tmp_path / "db")
        assert [r["type"] for r in rows] == ["job.failed", "job.recovered", "job.failed"]
        deferred = rows[2]
        assert deferred["due_us"] == int(rows[0]["created_at_us"]) + FAILED_WINDOW_US  # type: ignore[call-overload]
        # Its 24 hours count from when it comes due, not from the run's end.
        assert deferred["expires_at_us"] == deferred["due_us"] + GIVE_UP_AFTER_US  # type: ignore[operator]
        third = await ended(store, "j", FAILED_500)  # folded: it names the newest failure
        folded = outbox(tmp_path / "db")[2]
        assert folded["id"] == deferred["id"]
        assert json.loads(str(folded["body"]))["data"]["run"]["id"] == third != second
        # Once the actor took it, it stays as it was sent.
        await store.engine.write(
            lambda c: c.execute(
                "UPDATE alert_outbox SET sending = 1, attempts = 1 WHERE id = ?", (deferred["id"],)
            )
        )
        await ended(store, "j", FAILED_500)
        assert outbox(tmp_path / "db")[2]["body"] == folded["body"]


async def test_the_actor_takes_in_order_per_job_within_each_share(tmp_path: Path) -> None:
    async with opened(tmp_path, Told(), Policies(alerting={"acme"})) as store:
        await make_job(store, "a")
        await make_job(store, "b")
        await ended(store, "a", FAILED_500)
        await ended(store, "a", OK)
        await ended(store, "b", FAILED_500)
        now = to_us(T0) + 60_000_000
        taken = await store.outbox.take(now, room=4, busy={}, per_account=2)
        # a's recovery waits for a's failure; b's failure goes beside it.
        assert [json.loads(t.body)["data"]["job"] for t in taken.alerts] == ["a", "b"]
        assert all(t.attempts == 1 for t in taken.alerts)
        again = await store.outbox.take(now, room=4, busy={"acme": 2}, per_account=2)
        assert again.alerts == []  # in flight: not handed out twice, and no share left
        await store.outbox.delivered(taken.alerts[0].id)
        (recovered,) = (await store.outbox.take(now, 4, {"acme": 1}, 2)).alerts
        assert recovered.type == "job.recovered"
        # A crash leaves them `sending`: the next start puts them back in line.
        assert await store.outbox.reset_sending() == 2
        retaken = await store.outbox.take(now, 4, {}, 2)
        assert sorted(t.id for t in retaken.alerts) == sorted(
            [taken.alerts[1].id, recovered.id]
        ) and all(t.attempts == 2 for t in retaken.alerts)
        # Past its 24 hours, a due alert is dropped instead of taken.
        await store.outbox.retry_at(recovered.id, now + 10)
        late = await store.outbox.take(now + GIVE_UP_AFTER_US + 10, 4, {"acme": 1}, 2)
        assert [e.id for e in late.expired] == [recovered.id] and late.alerts == []
        assert await store.outbox.next_due_us(now) is None


def streak_of(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (streak,) = conn.execute("SELECT streak FROM alert_state").fetchone()
        return int(streak)
    finally:
        conn.close()


async def test_runs_of_one_job_ended_in_one_transaction_count_as_ended_one_by_one(
    tmp_path: Path,
) -> None:
    """Runs lost at a stop (or a crash) end together: the first pause holds for the next.

    With `auto_pause_after = 2`, four failures in a row pause at the second
    and count on while paused, as they would one transaction each: the third
    and fourth make it 2, so the failure after a re-enable pauses again.
    """
    told = Told()
    async with opened(tmp_path, told, Policies(auto_pause_after=2)) as store:
        await make_job(store, "j")
        running = []
        for _ in range(4):
            running.append(await claimed(store, "j"))
        assert await store.runs.mark_lost(running, "stopped") == 4
        assert streak_of(tmp_path / "db") == 2  # was 0: the fourth saw it enabled still
        assert [r["type"] for r in outbox(tmp_path / "db")] == ["job.failed", "job.paused"]
        await store.engine.write(
            lambda c: c.execute("UPDATE job_environments SET enabled = 1, paused_reason = NULL")
        )
        await ended(store, "j", FAILED_500)
        assert [r["type"] for r in outbox(tmp_path / "db")][-1] == "job.paused"
        assert streak_of(tmp_path / "db") == 0


async def test_an_account_that_only_auto_pauses_gets_no_alert_of_the_pause(
    tmp_path: Path,
) -> None:
    # An account with `auto_pause_after` and no `alert_url`: the pause is made, but
    # a job.paused row had nowhere to go (dropped as no_alert_url, counted, taking
    # a place under the cap meanwhile).
    async with opened(tmp_path, Told(), Policies(alerting=set(), auto_pause_after=2)) as store:
        await make_job(store, "j")
        await ended(store, "j", FAILED_500)
        await ended(store, "j", FAILED_500)
        paused = await store.engine.read(
            lambda c: c.execute("SELECT enabled, paused_reason FROM job_environments").fetchone()
        )
    assert paused[0] == 0 and str(paused[1]).startswith("auto-paused after 2")
    assert outbox(tmp_path / "db") == []


async def test_more_runs_than_a_statement_holds_ended_together_all_count(
    tmp_path: Path,
) -> None:
    # The facts of the runs a transaction ended are read 500 to a statement: a chunk
    # one short left every 500th run out (no alert, no count, no pause).
    told = Told()
    async with opened(tmp_path, told) as store:
        await make_job(store, "j")
        running = []
        for _ in range(501):
            running.append(await claimed(store, "j"))
        assert await store.runs.mark_lost(running, "stopped") == 501
    (row,) = outbox(tmp_path / "db")
    assert row["type"] == "job.failed"
    assert len(told.dropped) == 500  # every other failure in the window: suppressed


async def test_a_pause_made_by_a_runs_end_is_told_to_the_scheduler(tmp_path: Path) -> None:
    news_tx, news_rx = trio.open_memory_channel[SchedulerNews](100)
    policies = Policies(auto_pause_after=2)
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(
        tmp_path / "db", keyring, Clock(T0), news_tx, Told(), alert_policies=policies
    ) as store:
        await make_job(store, "j")
        await ended(store, "j", FAILED_500)

        def paused_told() -> list[JobChanged]:
            told: list[JobChanged] = []
            while True:
                try:
                    news = news_rx.receive_nowait()
                except trio.WouldBlock:
                    return told
                if isinstance(news, JobChanged) and news.next_run_at is None:  # no longer fires
                    told.append(news)

        before = paused_told()
        await ended(store, "j", FAILED_500)  # the second: paused
        after = paused_told()
    assert before == [] and len(after) == 1


def test_nothing_is_read_for_ends_that_cannot_alert_and_everything_else_is() -> None:
    conn = sqlite3.connect(":memory:")  # no tables: any statement would fail
    failed = (RunStatus.FAILED, FailureReason.NON_SUCCESS_STATUS, T0, None, T0, T0)
    end = RunEnded("r1", "other", "j", ENV, Trigger.MANUAL, *failed)
    # No account alerts: not a statement, whatever ended.
    assert AlertRecorder(Policies(alerting=set())).record(conn, ["r1"]) == Recorded()
    acme_alerts = AlertRecorder(Policies())
    assert acme_alerts.record(conn, ["r1"], {"r1": end}) == Recorded()  # other's: left out
    with pytest.raises(sqlite3.OperationalError):  # an end whose facts it lacks is read
        acme_alerts.record(conn, ["r1", "r2"], {"r1": end})
    conn.close()


async def test_a_run_that_fails_after_its_job_was_deleted_alerts_no_one(tmp_path: Path) -> None:
    async with opened(tmp_path, Told()) as store:
        await make_job(store, "j")
        run_id = await claimed(store, "j")
        await store.jobs.delete_job("acme", "j")  # while the run is in flight
        assert await store.runs.finish(run_id, FAILED_500)
    assert outbox(tmp_path / "db") == []


async def test_runs_ended_together_are_judged_in_the_order_they_ended(tmp_path: Path) -> None:
    # Their facts come back from SQLite in its own order (by id, or as inserted);
    # judged so, the job.failed alert named another run than the first to end.
    async with opened(tmp_path, Told()) as store:
        await make_job(store, "j")
        made = []
        for _ in range(3):
            made.append(await claimed(store, "j"))
        # First to end: neither the first made nor the first by id.
        (first,) = [r for r in made if r not in (made[0], min(made))][:1]
        order = [first, *(r for r in made if r != first)]
        assert await store.runs.mark_lost(order, "stopped") == 3
    (row,) = outbox(tmp_path / "db")
    assert json.loads(str(row["body"]))["data"]["run"]["id"] == first


async def test_a_failure_in_an_environment_disabled_meanwhile_counts_on(tmp_path: Path) -> None:
    # Judged as if still enabled, it "paused" what was off already: the count went
    # back to 0, though no pause was made and the failures had not stopped.
    async with opened(tmp_path, Told(), Policies(auto_pause_after=2)) as store:
        await make_job(store, "j")
        await ended(store, "j", FAILED_500)
        run_id = await claimed(store, "j")
        await store.engine.write(  # disabled by hand while the run was going
            lambda c: c.execute("UPDATE job_environments SET enabled = 0, next_run_at_us = NULL")
        )
        assert await store.runs.finish(run_id, FAILED_500)
    assert streak_of(tmp_path / "db") == 2
    assert [r["type"] for r in outbox(tmp_path / "db")] == ["job.failed"]
