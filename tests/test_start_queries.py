"""What every start does to a big file: `sync_environments` and recovery.

They run before the daemon serves, so their cost is the start's: proven
here, they keep their meaning across accounts, and each of their statements
reads by index (a seek per environment, the dormant rows, the live runs,
each batch from where the last stopped),
never by scanning the jobs, their environment rows or the run history.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.job_model import HttpConfig
from jobsd.store import environments_sql, open_store, retries
from jobsd.store.recovery import recover_tx
from tests.model import create_job, seed_job

T0 = datetime(2026, 6, 5, tzinfo=UTC)
BOTH = ("production", "staging")
URL = HttpConfig("https://example.invalid/")


def _rows(db: Path) -> dict[tuple[str, str], tuple[int, bool]]:
    """(slug, environment) -> (enabled, has a next fire)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT j.slug, e.environment, e.enabled, e.next_run_at_us IS NOT NULL "
            "FROM job_environments AS e JOIN jobs AS j ON j.id = e.job_id"
        ).fetchall()
    return {(slug, env): (enabled, bool(firing)) for slug, env, enabled, firing in rows}


async def _filled(tmp_path: Path) -> Path:
    db = tmp_path / "jobsd.sqlite3"
    async with open_store(db, KeyRing.load_or_create(tmp_path / "key"), Clock(T0)) as store:
        jobs = [
            ("acme", "a", "production", True, "0 2 * * *"),
            ("acme", "a2", "staging", True, "0 2 * * *"),
            ("acme", "off", "staging", False, "0 2 * * *"),
            ("other", "b", "production", True, "0 2 * * *"),
            ("other", "b2", "staging", True, "0 2 * * *"),
            ("other", "once", "staging", True, "2026-07-01T00:00:00Z"),
            ("other", "manual", "staging", True, None),
            ("third", "c", "staging", True, "0 2 * * *"),
        ]
        for account, slug, env, enabled, schedule in jobs:
            write = seed_job(slug, slug, None, enabled, schedule, URL, env)
            await create_job(store, account, write, configured=BOTH)
    return db


async def _sync(tmp_path: Path, configured: dict[str, tuple[str, ...]]) -> int:
    db = tmp_path / "jobsd.sqlite3"
    async with open_store(db, KeyRing.load_or_create(tmp_path / "key"), Clock(T0)) as store:
        return await store.jobs.sync_environments(configured, announce=False)


async def test_sync_environments_across_accounts(tmp_path: Path) -> None:
    """Each account's unlisted environments sleep and wake on their own; an
    account not named is left alone; manual and disabled rows never fire."""
    db = await _filled(tmp_path)
    before = _rows(db)
    assert all(firing for (slug, _), (_, firing) in before.items() if slug not in ("off", "manual"))
    # other loses staging: its two firing rows there sleep; acme's and third's do not.
    assert await _sync(tmp_path, {"acme": BOTH, "other": ("production",)}) == 2
    asleep = _rows(db)
    assert asleep == {
        **before,
        ("b2", "staging"): (1, False),
        ("once", "staging"): (1, False),
    }
    assert await _sync(tmp_path, {"acme": BOTH, "other": ("production",)}) == 0
    # acme drops production too: a is the only row it has there.
    assert await _sync(tmp_path, {"acme": ("staging",), "other": ("production",)}) == 1
    assert _rows(db)[("a", "production")] == (1, False)
    # Listed again, each wakes (the one-off not yet fired too); manual and
    # disabled rows stay without a next fire.
    assert await _sync(tmp_path, {"acme": BOTH, "other": BOTH}) == 3
    assert _rows(db) == before


def _plans(db: Path) -> list[tuple[str, list[str]]]:
    """Every statement the start's steps run on this file, with its query plan."""
    conn = sqlite3.connect(db, isolation_level=None)
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        conn.execute("BEGIN")
        environments_sql.stored_environments(conn)
        environments_sql.make_dormant(conn, "staging", ["other", "acme"], after=0, limit=9)
        environments_sql.dormant_enabled(conn, "acme", "staging", after=0, limit=9)
        recover_tx(conn, 1)
        retries.cancel_held_outside(conn, {"acme": ("production",)}, now_us=1)
        conn.execute("ROLLBACK")
        conn.set_trace_callback(None)
        statements = [s for s in seen if s.startswith(("SELECT", "UPDATE"))]
        return [
            (s, [str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {s}")]) for s in statements
        ]
    finally:
        conn.close()


# Each statement's table, and the index it must read that table through.
_EXPECTED = {
    "FROM job_environments": "job_environments_by_environment",
    "UPDATE job_environments": "PRIMARY KEY",  # each row found, by its key
    "INDEXED BY job_environments_dormant": "job_environments_dormant",
    "UPDATE runs": "runs_live",
    "FROM runs": "runs_live",
    "held_until_us IS NOT NULL": "runs_held",
}


async def test_the_start_reads_by_index(tmp_path: Path) -> None:
    plans = _plans(await _filled(tmp_path))
    assert len(plans) >= 6
    for statement, plan in plans:
        scans = [step for step in plan if step.startswith("SCAN") and "json_each" not in step]
        assert not scans, (statement, plan)
        # A search of every job of an account (jobs by account_id) is a scan too.
        assert not [step for step in plan if "jobs USING" in step and "PRIMARY KEY" not in step]
        wanted = [index for marker, index in _EXPECTED.items() if marker in statement]
        assert wanted, statement
        assert any(wanted[-1] in step for step in plan), (statement, plan)
