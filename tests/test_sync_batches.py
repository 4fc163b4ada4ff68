"""`sync_environments` on a big account: bounded writer transactions.

A reload that lists an environment again wakes every enabled job there.
Done in one transaction, 100,000 jobs held the one SQLite writer for
seconds (every other account's writes and every run's claim and end
waited behind it). Here the sync's writer transactions are counted, another
write is made while it runs, and an interrupted sync is completed by the next.
"""

from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import trio

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.job_model import HttpConfig
from jobsd.messages import RunEnded, SchedulerNews
from jobsd.store import env_sync, open_store, schema
from tests.model import create_job, seed_job

T0 = datetime(2026, 6, 5, tzinfo=UTC)
BOTH = ("production", "staging")
URL = HttpConfig("https://example.invalid/")


# A new file this big is a copy of the first one this process filled alike.
TEMPLATE_JOBS = 10_000
_templates: dict[tuple[int, str, bool], Path] = {}


def fill(db: Path, jobs: int, *, account: str = "acme", firing: bool = True) -> None:
    """`jobs` recurring jobs of `account`, enabled in production (firing; disabled
    there if not `firing`) and in staging, where they are dormant: what a config
    that dropped staging left.

    A new file of `TEMPLATE_JOBS` or more is a byte-for-byte copy of the first
    this process filled with the same arguments (100,000 jobs take ~2 s to
    insert, 10 ms to copy); an existing file is always filled in place."""
    if db.exists() or jobs < TEMPLATE_JOBS:
        _insert(db, jobs, account, firing)
        return
    key = (jobs, account, firing)
    template = _templates.get(key)
    if template is None:
        folder = Path(tempfile.mkdtemp(prefix="jobsd-fill-"))
        atexit.register(shutil.rmtree, folder, True)
        template = folder / "template.sqlite3"
        _insert(template, jobs, account, firing)
        _templates[key] = template
    shutil.copyfile(template, db)


def _insert(db: Path, jobs: int, account: str, firing: bool) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    schema.configure(conn)
    schema.migrate(conn)
    at = 1_780_000_000_000_000 if firing else None
    conn.execute("BEGIN")
    first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM jobs").fetchone()[0]
    conn.executemany(
        "INSERT INTO jobs (account_id, slug, name, name_key, kind, schedule, method, url, "
        "success_status, tls_verify, timeout_s, created_at_us, updated_at_us) "
        "VALUES (?, ?, 'j', 'j', 'recurring', '*/5 * * * *', 'GET', 'https://x.invalid/', "
        "'2xx', 1, 5, 0, 0)",
        ((account, f"{account}-{i}") for i in range(jobs)),
    )
    conn.executemany(
        "INSERT INTO job_environments (job_id, environment, enabled, next_run_at_us) "
        "VALUES (?, ?, ?, ?)",
        (
            (pk, env, int(firing or env == "staging"), at if env == "production" else None)
            for pk in range(first, first + jobs)
            for env in BOTH
        ),
    )
    conn.execute("COMMIT")
    conn.close()


def states(db: Path) -> dict[tuple[int, str], tuple[int, int | None]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT job_id, environment, enabled, next_run_at_us FROM job_environments"
        ).fetchall()
    return {(pk, env): (enabled, at) for pk, env, enabled, at in rows}


class Batches:
    """The store's observer, as far as the sync is concerned: each writer transaction."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def store_batch(self, size: int, seconds: float) -> None:
        self.seconds.append(seconds)

    def runs_ended(self, ends: Sequence[RunEnded]) -> None:
        pass

    def retry_scheduled(self) -> None:
        pass

    def alerts_dropped(self, account: str, alert_type: str, outcome: str) -> None:
        pass


async def _sync(
    db: Path, configured: dict[str, tuple[str, ...]], observer: Batches | None = None
) -> int:
    key = KeyRing.load_or_create(db.parent / "key")
    async with open_store(db, key, Clock(T0), None, observer) as store:
        return await store.jobs.sync_environments(configured, announce=False)


async def test_a_sync_changes_a_bounded_number_of_rows_per_transaction(tmp_path: Path) -> None:
    """Waking 5 batches' worth of rows, then putting them back to sleep, takes at
    least a transaction per batch (one, before: the writer held for all of them)."""
    db = tmp_path / "jobsd.sqlite3"
    jobs = 5 * env_sync.BATCH_ROWS + 3
    fill(db, jobs)
    woke = Batches()
    assert await _sync(db, {"acme": BOTH}, woke) == jobs
    assert len(woke.seconds) >= 6, woke.seconds  # the held retries' step, then the batches
    print(f"waking {jobs} rows: longest writer transaction {max(woke.seconds):.3f} s")
    assert all(at is not None for at in states(db).values())
    slept = Batches()
    assert await _sync(db, {"acme": ("production",)}, slept) == jobs
    assert len(slept.seconds) >= 6, slept.seconds
    assert all(at is None for (_, env), (_, at) in states(db).items() if env == "staging")


async def test_another_write_commits_while_a_sync_runs(tmp_path: Path) -> None:
    """Another account's create, asked once the sync's first batch has committed,
    commits before the sync ends (before: it waited behind every row)."""
    db = tmp_path / "jobsd.sqlite3"
    fill(db, 6 * env_sync.BATCH_ROWS)
    news_tx, news_rx = trio.open_memory_channel[SchedulerNews](16)
    key = KeyRing.load_or_create(tmp_path / "key")
    async with open_store(db, key, Clock(T0), news_tx) as store:
        synced = trio.Event()

        async def sync() -> None:
            await store.jobs.sync_environments({"acme": BOTH, "other": BOTH})
            synced.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sync)
            await news_rx.receive()  # a batch has committed
            write = seed_job("new", "new", None, True, "0 2 * * *", URL, "production")
            await create_job(store, "other", write, configured=BOTH)
            assert not synced.is_set()
    assert all(at is not None for at in states(db).values())


async def test_an_interrupted_sync_is_finished_by_the_next(tmp_path: Path) -> None:
    """A sync stopped after its first batch (a crash, a stop) leaves what it
    committed; the next start's sync ends where one uninterrupted would have."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    configured = {"acme": ("staging",), "other": BOTH}
    for directory in (whole, cut):
        directory.mkdir()
        fill(directory / "jobsd.sqlite3", 2 * env_sync.BATCH_ROWS + 5)
        fill(directory / "jobsd.sqlite3", env_sync.BATCH_ROWS + 1, account="other")
    await _sync(whole / "jobsd.sqlite3", configured)
    db = cut / "jobsd.sqlite3"
    before = states(db)
    news_tx, news_rx = trio.open_memory_channel[SchedulerNews](16)
    key = KeyRing.load_or_create(cut / "key")
    async with open_store(db, key, Clock(T0), news_tx) as store:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store.jobs.sync_environments, configured)
                await news_rx.receive()
                scope.cancel()
    partly = states(db)
    assert partly != before
    assert partly != states(whole / "jobsd.sqlite3")
    assert await _sync(db, configured) > 0
    assert states(db) == states(whole / "jobsd.sqlite3")
    assert await _sync(db, configured) == 0
