"""The store on real SQLite files: invariants, transitions, secrecy."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from jobsd.clock import Clock, to_us
from jobsd.crypto import KeyRing
from jobsd.errors import ApiError, SchemaTooNewError, StorageError
from jobsd.job_model import EnvironmentSpec, Header, HttpConfig, JobCounting, JobWrite, Overlay
from jobsd.messages import JobChanged, Outcome, RunEnded, SchedulerNews
from jobsd.plans import NO_PLAN
from jobsd.run_filters import RunFilter
from jobsd.run_order import DEFAULT_SORT
from jobsd.runs import FailureReason, RunStatus
from jobsd.store import open_store, rekey, usage_sql
from jobsd.store.keyring import UNREADABLE
from jobsd.store.recovery import recover
from jobsd.store.run_listing import RunQuery
from jobsd.store.schema import LATEST
from tests.model import ENV, create_job, enabled, next_run, seed_job, seed_limit

T0 = datetime(2026, 6, 5, 2, 0, tzinfo=UTC)
SECRET = "Bearer very-secret-value-1234567890"


def spec(slug: str = "job", *, enabled: bool = True, schedule: str = "*/5 * * * *") -> JobWrite:
    return seed_job(
        slug,
        "n",
        None,
        enabled,
        schedule,
        HttpConfig(url="https://example.invalid/", headers=(Header("Authorization", SECRET),)),
    )


def keyring(tmp_path: Path) -> KeyRing:
    return KeyRing.load_or_create(tmp_path / "secret.key")


async def test_header_values_never_in_plaintext(tmp_path: Path) -> None:
    db = tmp_path / "jobsd.sqlite3"
    async with open_store(db, keyring(tmp_path), Clock(T0)) as store:
        job = await create_job(store, "acme", spec(), -1)
        assert job.spec.config.headers[0].value == SECRET
        assert (await store.jobs.get_job("acme", "job")).spec.config.headers[0].value == SECRET
    for path in tmp_path.iterdir():
        if path.name.startswith("jobsd.sqlite3"):
            data = path.read_bytes()
            assert b"very-secret-value" not in data, path
    with sqlite3.connect(db) as conn:
        raw = conn.execute("SELECT headers FROM jobs").fetchone()[0]
    assert "very-secret" not in raw and "Authorization" in raw


async def test_sealed_value_moved_to_other_job_does_not_open(tmp_path: Path) -> None:
    db = tmp_path / "jobsd.sqlite3"
    async with open_store(db, keyring(tmp_path), Clock(T0)) as store:
        await create_job(store, "acme", spec("a"), -1)
        await create_job(store, "acme", spec("b"), -1)
    with sqlite3.connect(db) as conn:
        raw = conn.execute("SELECT headers FROM jobs WHERE slug = 'a'").fetchone()[0]
        conn.execute("UPDATE jobs SET headers = ? WHERE slug = 'b'", (raw,))
    async with open_store(db, keyring(tmp_path), Clock(T0)) as store:
        assert (await store.jobs.get_job("acme", "a")).spec.config.headers[0].value == SECRET
        # GET must not 500: the value is shown as a marker, never silently dropped.
        bad = (await store.jobs.get_job("acme", "b")).spec.config.headers[0].value
        assert bad.startswith(UNREADABLE)


async def test_wal_and_schema_version(tmp_path: Path) -> None:
    db = tmp_path / "jobsd.sqlite3"
    async with open_store(db, keyring(tmp_path), Clock(T0)):
        pass
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == LATEST
        conn.execute("UPDATE schema_version SET version = ?", (LATEST + 1,))
    with pytest.raises(SchemaTooNewError, match="upgrade jobsd"):
        async with open_store(db, keyring(tmp_path), Clock(T0)):
            pass


async def test_corrupt_database_refused(tmp_path: Path) -> None:
    db = tmp_path / "jobsd.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises((StorageError, sqlite3.DatabaseError)):
        async with open_store(db, keyring(tmp_path), Clock(T0)):
            pass


async def test_slot_fires_at_most_once(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", keyring(tmp_path), Clock(T0)) as store:
        job = await create_job(store, "acme", spec(), -1)
        due = next_run(job)
        assert due == T0 + timedelta(minutes=5)
        nxt = due + timedelta(minutes=5)
        advanced, order = await store.runs.fire_slot(job.pk, due=due, slot=due, next_run_at=nxt)
        assert advanced and order is not None and order.account_id == "acme"
        # The same slot again (a stale scheduler view): nothing happens.
        assert await store.runs.fire_slot(job.pk, due=due, slot=due, next_run_at=nxt) == (
            False,
            None,
        )
        # Even when forced through the job row, the unique index holds.
        with sqlite3.connect(tmp_path / "db") as conn:
            conn.execute("UPDATE job_environments SET next_run_at_us = ?", (to_us(due),))
        advanced, again = await store.runs.fire_slot(job.pk, due=due, slot=due, next_run_at=nxt)
        assert advanced and again is None
        async with store.runs.listing("acme") as listing:
            query = RunQuery(RunFilter(), DEFAULT_SORT, 10)
            runs = [r async for chunk in listing.page(query) for r in chunk]
        assert [(r.id, r.scheduled_for) for r in runs] == [(order.run_id, due)]


async def test_one_off_disables_itself(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", keyring(tmp_path), Clock(T0)) as store:
        job = await create_job(store, "acme", spec(schedule="2026-06-05T03:00:00Z"), -1)
        advanced, order = await store.runs.fire_slot(
            job.pk, due=next_run(job), slot=next_run(job), next_run_at=None
        )
        assert advanced and order is not None
        fresh = await store.jobs.get_job("acme", "job")
        assert not enabled(fresh) and next_run(fresh) is None
        assert (await store.jobs.usage("acme", "2026-06", JobCounting(ENV)))[1] == 0


async def test_claim_meters_and_refuses_over_quota(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", keyring(tmp_path), Clock(T0)) as store:
        await create_job(store, "acme", spec(), -1)
        first = await store.runs.enqueue_manual(
            "acme", "job", ENV, require_enabled=False, max_pending=100
        )
        second = await store.runs.enqueue_manual(
            "acme", "job", ENV, require_enabled=False, max_pending=100
        )
        claim = await store.runs.claim(first.id, lambda _: 1)
        assert claim is not None and claim.config is not None
        assert claim.config.headers[0].value == SECRET
        assert await store.runs.claim(first.id, lambda _: 1) is None  # never twice
        refused = await store.runs.claim(second.id, lambda _: 1)
        assert refused is not None and refused.config is None
        run = await store.runs.get_run("acme", second.id)
        assert run.status is RunStatus.FAILED
        assert run.failure_reason is FailureReason.QUOTA_EXCEEDED
        assert (await store.jobs.usage("acme", "2026-06", JobCounting(ENV)))[0] == 1
        outcome = Outcome(RunStatus.SUCCEEDED, None, None, {"method": "POST"}, {"status": 200})
        assert await store.runs.finish(first.id, outcome)
        assert not await store.runs.finish(first.id, outcome)
        done = await store.runs.get_run("acme", first.id)
        assert done.status is RunStatus.SUCCEEDED and done.job_version == 1
        assert done.started_at is not None and done.finished_at is not None


async def test_the_usage_meter_counts_each_account_apart_and_gives_back_once(
    tmp_path: Path,
) -> None:
    """usage_sql: a second run of the period counts one more (not the first only);
    each account and period reads its own count; a run's meter goes back once,
    from its own account only, and never below zero."""
    async with open_store(tmp_path / "db", keyring(tmp_path), Clock(T0)) as store:
        await create_job(store, "acme", spec(), -1)
        queued = await store.runs.enqueue_manual(
            "acme", "job", ENV, require_enabled=False, max_pending=100
        )
        assert await store.runs.claim(queued.id, lambda _: 10) is not None

        def more(conn: sqlite3.Connection) -> None:
            usage_sql.meter(conn, "acme", "2026-06")
            usage_sql.meter(conn, "other", "2026-06")
            usage_sql.meter(conn, "other", "2026-06")
            usage_sql.meter(conn, "other", "2026-06")

        def used(conn: sqlite3.Connection) -> tuple[int, int, int]:
            return (
                usage_sql.runs_used(conn, "acme", "2026-06"),
                usage_sql.runs_used(conn, "other", "2026-06"),
                usage_sql.runs_used(conn, "acme", "2026-05"),
            )

        def unmeter(conn: sqlite3.Connection) -> None:
            usage_sql.unmeter_run(conn, queued.id)

        def at_zero(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE usage SET runs_used = 0 WHERE account_id = 'acme'")
            conn.execute("UPDATE runs SET metered_period = '2026-06' WHERE id = ?", (queued.id,))
            usage_sql.unmeter_run(conn, queued.id)

        await store.engine.write(more)
        assert await store.engine.read(used) == (2, 3, 0)
        await store.engine.write(unmeter)
        await store.engine.write(unmeter)
        assert await store.engine.read(used) == (1, 3, 0)
        await store.engine.write(at_zero)
        assert await store.engine.read(used) == (0, 3, 0)


async def test_a_reseal_pass_that_only_raced_is_followed_by_another(tmp_path: Path) -> None:
    """rekey: a pass whose every update lost to a concurrent write (rowcount 0)
    re-sealed nothing, yet the rows still need it: another pass follows."""
    db = tmp_path / "db"
    old = keyring(tmp_path)
    async with open_store(db, old, Clock(T0)) as store:
        await create_job(store, "acme", spec(), -1)
    new = old.with_new_active_key()
    conn = rekey.connect(db)
    try:
        # The first UPDATE of the job is skipped, as a concurrent write's would be.
        conn.execute("CREATE TEMP TABLE raced (n INTEGER)")
        conn.execute(
            "CREATE TEMP TRIGGER race BEFORE UPDATE OF headers ON main.jobs "
            "WHEN (SELECT count(*) FROM raced) = 0 "
            "BEGIN INSERT INTO raced VALUES (1); SELECT RAISE(IGNORE); END"
        )
        report = rekey.reseal(conn, new, pause_s=0.0)
        assert (report.resealed, report.raced) == (1, 1)
        assert rekey.count_under(conn, new, old.active_id) == (0, 0)
    finally:
        conn.close()


async def test_a_run_of_an_account_no_longer_configured_is_refused_saying_so(
    tmp_path: Path,
) -> None:
    """A reload that removed its account leaves the run no plan: refused unmetered,
    and its error says why, not that a plan of 0 runs was used up."""
    async with open_store(tmp_path / "db", keyring(tmp_path), Clock(T0)) as store:
        await create_job(store, "acme", spec(), -1)
        queued = await store.runs.enqueue_manual(
            "acme", "job", ENV, require_enabled=False, max_pending=100
        )
        refused = await store.runs.claim(queued.id, lambda _: NO_PLAN)
        assert refused is not None and refused.config is None
        run = await store.runs.get_run("acme", queued.id)
        assert (run.status, run.failure_reason) == (RunStatus.FAILED, FailureReason.QUOTA_EXCEEDED)
        assert run.error is not None
        assert run.error.startswith("this run's account is no longer in jobsd's configuration")
        assert (await store.jobs.usage("acme", "2026-06", JobCounting(ENV)))[0] == 0


async def test_cancel_rules(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", keyring(tmp_path), Clock(T0)) as store:
        await create_job(store, "acme", spec(), -1)
        pending = await store.runs.enqueue_manual(
            "acme", "job", ENV, require_enabled=False, max_pending=100
        )
        run, was_running = await store.runs.cancel_run("acme", pending.id)
        assert run.status is RunStatus.CANCELED and not was_running
        assert await store.runs.claim(pending.id, lambda _: -1) is None
        with pytest.raises(ApiError) as err:
            await store.runs.cancel_run("acme", pending.id)
        assert err.value.status == 409
        with pytest.raises(ApiError) as err:
            await store.runs.cancel_run("other", pending.id)
        assert err.value.status == 404
        running = await store.runs.enqueue_manual(
            "acme", "job", ENV, require_enabled=False, max_pending=100
        )
        await store.runs.claim(running.id, lambda _: -1)
        run, was_running = await store.runs.cancel_run("acme", running.id)
        assert was_running and run.status is RunStatus.CANCELED


async def test_rerun_of_deleted_job_is_409_even_if_slug_reused(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", keyring(tmp_path), Clock(T0)) as store:
        await create_job(store, "acme", spec(), -1)
        old = await store.runs.enqueue_manual(
            "acme", "job", ENV, require_enabled=False, max_pending=100
        )
        rerun = await store.runs.enqueue_rerun("acme", old.id, max_pending=100)
        assert rerun.rerun_of == old.id
        await store.jobs.delete_job("acme", "job")
        await create_job(store, "acme", spec(), -1)
        with pytest.raises(ApiError) as err:
            await store.runs.enqueue_rerun("acme", old.id, max_pending=100)
        assert err.value.status == 409


async def test_an_account_backlog_is_bounded(tmp_path: Path) -> None:
    """Past `max_pending` PENDING runs, run-now and rerun are 429 and change nothing;
    another account is not affected, and a run that starts makes room."""
    async with open_store(tmp_path / "db", keyring(tmp_path), Clock(T0)) as store:
        for account in ("acme", "zeta"):
            await create_job(store, account, spec(), -1)

        async def run_now(account: str) -> str:
            run = await store.runs.enqueue_manual(
                account, "job", ENV, require_enabled=False, max_pending=3
            )
            return run.id

        first = [await run_now("acme") for _ in range(3)]
        for refused in (
            run_now("acme"),
            store.runs.enqueue_rerun("acme", first[0], max_pending=3),
        ):
            with pytest.raises(ApiError) as err:
                await refused
            assert err.value.status == 429 and err.value.headers == {"Retry-After": "5"}
            assert err.value.items[0].code == "too_many_pending_runs"
        assert await store.runs.oldest_pending("acme", 10) == first
        await run_now("zeta")
        await store.runs.claim(first[0], lambda _: -1)
        await run_now("acme")
        assert len(await store.runs.oldest_pending("acme", 10)) == 3


async def test_recovery(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", keyring(tmp_path), Clock(T0)) as store:
        await create_job(store, "acme", spec(), -1)
        lost = await store.runs.enqueue_manual(
            "acme", "job", ENV, require_enabled=False, max_pending=100
        )
        await store.runs.claim(lost.id, lambda _: -1)
        waiting = await store.runs.enqueue_manual(
            "acme", "job", ENV, require_enabled=False, max_pending=100
        )
        report = await recover(store.engine, to_us(T0))
        assert report.lost == 1 and report.pending == 1
        # What is left PENDING is what the dispatcher reads back, oldest first.
        assert await store.runs.pending_accounts(10) == ["acme"]
        assert await store.runs.oldest_pending("acme", 10) == [waiting.id]
        run = await store.runs.get_run("acme", lost.id)
        assert run.failure_reason is FailureReason.WORKER_LOST and run.finished_at is not None


async def test_concurrent_creates_same_slug(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", keyring(tmp_path), Clock(T0)) as store:
        results: list[str] = []

        async def one() -> None:
            try:
                await create_job(store, "acme", spec("same"), 3)
                results.append("ok")
            except ApiError as exc:
                results.append(str(exc.status))

        async with trio.open_nursery() as nursery:
            for _ in range(30):
                nursery.start_soon(one)
        assert results.count("ok") == 1 and results.count("409") == 29


class _CancelAtCommit:
    """A store observer that cancels `scope` from the writer thread just after
    the next transaction commits: the caller's request goes away right then."""

    def __init__(self) -> None:
        self.scope: trio.CancelScope | None = None
        self.token = trio.lowlevel.current_trio_token()

    def store_batch(self, size: int, seconds: float) -> None:
        if self.scope is not None:
            self.token.run_sync_soon(self.scope.cancel)

    def runs_ended(self, ends: object) -> None:
        pass

    def retry_scheduled(self) -> None:
        pass


async def test_a_write_cancelled_as_it_commits_still_tells_the_scheduler(tmp_path: Path) -> None:
    """No checkpoint lies between a job's commit and its news: a request
    cancelled the moment its write commits cannot leave the scheduler
    unaware of a job it must fire (it would learn only at its next refill)."""
    news_tx, news_rx = trio.open_memory_channel[SchedulerNews](10)
    observer = _CancelAtCommit()
    db = tmp_path / "jobsd.sqlite3"
    async with open_store(db, keyring(tmp_path), Clock(T0), news_tx, observer) as store:
        with trio.CancelScope() as scope:
            observer.scope = scope
            await create_job(store, "acme", spec())
        observer.scope = None
        assert scope.cancel_called  # the caller went away as the write committed
        assert (await store.jobs.get_job("acme", "job")).spec.slug == "job"
        change = news_rx.receive_nowait()
        assert isinstance(change, JobChanged) and change.next_run_at is not None


async def test_job_news_never_waits_on_a_full_channel(tmp_path: Path) -> None:
    """A full channel drops the news rather than holding the request (the
    scheduler reads the store back when it finds its channel was full)."""
    news_tx, news_rx = trio.open_memory_channel[SchedulerNews](1)
    db = tmp_path / "jobsd.sqlite3"
    async with open_store(db, keyring(tmp_path), Clock(T0), news_tx) as store:
        with trio.fail_after(5):
            await create_job(store, "acme", spec("one"))
            await create_job(store, "acme", spec("two"))  # dropped, not waited on
        assert (await store.jobs.get_job("acme", "two")).spec.slug == "two"
        first = news_rx.receive_nowait()
        assert isinstance(first, JobChanged)
        with pytest.raises(trio.WouldBlock):
            news_rx.receive_nowait()


class Heard:
    """A store observer that keeps the run ends it is told of."""

    def __init__(self) -> None:
        self.ends: list[RunEnded] = []

    def store_batch(self, size: int, seconds: float) -> None:
        pass

    def runs_ended(self, ends: Sequence[RunEnded]) -> None:
        self.ends += ends

    def retry_scheduled(self) -> None:
        pass

    def alerts_dropped(self, account: str, alert_type: str, outcome: str) -> None:
        pass


async def test_a_run_whose_header_no_longer_opens_is_told_as_a_failure(tmp_path: Path) -> None:
    """Recorded FAILED/WORKER_LOST at its claim (its key is gone), the run is a run that
    ended like any other: the observer hears of it once that has committed."""
    db = tmp_path / "db"
    async with open_store(db, keyring(tmp_path), Clock(T0)) as store:
        await create_job(store, "acme", spec(), -1)
    heard = Heard()
    other = KeyRing.load_or_create(tmp_path / "other.key")  # the job's key is not in it
    async with open_store(db, other, Clock(T0), None, heard) as store:
        run = await store.runs.enqueue_manual(
            "acme", "job", ENV, require_enabled=False, max_pending=100
        )
        claim = await store.runs.claim(run.id, lambda _: -1)
        assert claim is not None and claim.config is None
    assert [(e.run_id, e.status, e.failure_reason) for e in heard.ends] == [
        (run.id, RunStatus.FAILED, FailureReason.WORKER_LOST)
    ]


async def test_a_run_refused_for_quota_is_told_as_a_failure(tmp_path: Path) -> None:
    heard = Heard()
    async with open_store(tmp_path / "db", keyring(tmp_path), Clock(T0), None, heard) as store:
        await create_job(store, "acme", spec(), -1)
        run = await store.runs.enqueue_manual(
            "acme", "job", ENV, require_enabled=False, max_pending=100
        )
        claim = await store.runs.claim(run.id, lambda _: 0)
        assert claim is not None and claim.config is None
    assert [(e.run_id, e.status, e.failure_reason) for e in heard.ends] == [
        (run.id, RunStatus.FAILED, FailureReason.QUOTA_EXCEEDED)
    ]


async def test_a_write_removes_an_environment_it_owns_and_does_not_set(tmp_path: Path) -> None:
    """job_writes: an entry the write owns but does not set is removed; one it
    does not own is kept as it was."""
    async with open_store(tmp_path / "db", keyring(tmp_path), Clock(T0)) as store:
        envs = {ENV: EnvironmentSpec(True), "staging": EnvironmentSpec(True)}
        base = spec()
        both = JobWrite(base.spec, envs, owns=frozenset(envs), keep=base.keep)
        await create_job(store, "acme", both, configured=(ENV, "staging"))
        only = {ENV: EnvironmentSpec(True)}
        for owns, left in (({ENV}, [ENV, "staging"]), (set(envs), [ENV])):
            write = JobWrite(base.spec, only, owns=frozenset(owns), keep=base.keep)
            await store.jobs.replace_job(
                "acme", "job", write, configured=(ENV, "staging"), limit=seed_limit(-1)
            )
            assert sorted((await store.jobs.get_job("acme", "job")).environments) == left


async def test_a_claim_applies_its_own_environments_overrides_only(tmp_path: Path) -> None:
    """The claim reads the run's environment's row, not the job's first one."""
    async with open_store(tmp_path / "db", keyring(tmp_path), Clock(T0)) as store:
        staging = Overlay(url="https://staging.invalid/")
        envs = {ENV: EnvironmentSpec(True), "staging": EnvironmentSpec(True, staging)}
        write = spec()
        write = JobWrite(write.spec, envs, owns=frozenset(envs), keep=write.keep)
        await create_job(store, "acme", write, configured=(ENV, "staging"))
        urls = {}
        for env in sorted(envs):
            run = await store.runs.enqueue_manual(
                "acme", "job", env, require_enabled=False, max_pending=100
            )
            claim = await store.runs.claim(run.id, lambda _: -1)
            assert claim is not None and claim.config is not None
            urls[env] = claim.config.url
    assert urls == {ENV: "https://example.invalid/", "staging": "https://staging.invalid/"}
