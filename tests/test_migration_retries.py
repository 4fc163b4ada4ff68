"""The retry migrations (policies; retry runs and overlap), the alert
migration (outbox, alert state, paused_reason) and the environment indexes
(migration 9) upgrade a database in place.

The "old" database is written with the earlier migrations themselves
(`MIGRATIONS[:n]`, append-only, so exactly what jobsd wrote before) and rows
in their columns. Proven: the rows survive untouched, jobs get
`overlap_policy` ALLOW, the `runs` CHECKs admit RETRY (and still refuse what
they refused), the queue index leaves held retries out, and the file passes
`PRAGMA integrity_check`. A database whose `runs` table is not as migration 1
made it is refused, and left as it was.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.errors import StorageError
from jobsd.store import open_store
from jobsd.store.schema import (
    ALERTS_VERSION,
    ENVIRONMENT_INDEXES_VERSION,
    LATEST,
    MIGRATIONS,
    RETRY_POLICIES_VERSION,
    RETRY_RUNS_VERSION,
    current_version,
)

T = datetime(2026, 6, 5, 2, 0, tzinfo=UTC)
US = 1_780_624_800_000_000  # T in microseconds


def old_database(path: Path, version: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.create_function("jobsd_fold", 1, lambda t: None if t is None else t.casefold())
        conn.execute("BEGIN")
        for step in MIGRATIONS[:version]:
            if isinstance(step, str):
                for statement in (s.strip() for s in step.split(";")):
                    if statement:
                        conn.execute(statement)
            else:
                step(conn, {})
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        conn.execute(
            "INSERT INTO jobs (id, account_id, slug, name, name_key, kind, schedule, method, url, "
            "success_status, tls_verify, timeout_s, created_at_us, updated_at_us) VALUES "
            "(1, 'acme', 'old', 'Old', 'old', 'recurring', '* * * * *', 'POST', "
            "'https://example.invalid/', '2xx', 1, 30, ?, ?)",
            (US, US),
        )
        conn.execute(
            "INSERT INTO job_environments (job_id, environment, enabled, next_run_at_us) "
            "VALUES (1, 'production', 1, ?)",
            (US + 60_000_000,),
        )
        for trigger, scheduled, status in (
            ("SCHEDULE", US, "SUCCEEDED"),
            ("MANUAL", None, "PENDING"),
        ):
            conn.execute(
                "INSERT INTO runs (id, account_id, job_id, job_slug, environment, trigger, "
                "scheduled_for_us, status, created_at_us, finished_at_us) "
                "VALUES (?, 'acme', 1, 'old', 'production', ?, ?, ?, ?, ?)",
                (
                    str(uuid.uuid4()),
                    trigger,
                    scheduled,
                    status,
                    US,
                    None if status == "PENDING" else US,
                ),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


async def upgrade(path: Path) -> None:
    keyring = KeyRing.load_or_create(path.with_name("secret.key"))
    async with open_store(path, keyring, Clock(T)):
        pass


@pytest.mark.parametrize(
    "version",
    [
        RETRY_POLICIES_VERSION - 1,
        RETRY_RUNS_VERSION - 1,
        ALERTS_VERSION - 1,
        ENVIRONMENT_INDEXES_VERSION - 1,
    ],
)
async def test_an_old_database_upgrades_in_place(tmp_path: Path, version: int) -> None:
    path = tmp_path / "jobsd.sqlite3"
    await trio.to_thread.run_sync(old_database, path, version)
    await upgrade(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert current_version(conn) == LATEST
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute(
            "SELECT trigger, status, retry_of, retry_attempt, held_until_us FROM runs ORDER BY seq"
        ).fetchall()
        assert rows == [
            ("SCHEDULE", "SUCCEEDED", None, None, None),
            ("MANUAL", "PENDING", None, None, None),
        ]
        assert conn.execute("SELECT overlap_policy FROM jobs").fetchall() == [("ALLOW",)]
        assert conn.execute(
            "SELECT job_id, environment, enabled, next_run_at_us FROM job_environments "
            "INDEXED BY job_environments_by_environment WHERE environment = 'production'"
        ).fetchall() == [(1, "production", 1, US + 60_000_000)]
        assert conn.execute(
            "SELECT count(*) FROM job_environments INDEXED BY job_environments_dormant "
            "WHERE enabled = 1 AND next_run_at_us IS NULL"
        ).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM retry_policies").fetchone() == (0,)
        # RETRY is admitted, with its chain, its due instant, and held.
        conn.execute(
            "INSERT INTO runs (id, account_id, job_id, job_slug, environment, trigger, "
            "scheduled_for_us, status, created_at_us, retry_of, retry_attempt, retried_run, "
            "held_until_us) VALUES ('r1', 'acme', 1, 'old', 'production', 'RETRY', ?, 'PENDING', "
            "?, 'a', 1, 'a', ?)",
            (US + 5, US, US + 5),
        )
        # ... and the CHECKs still refuse what they should.
        for bad in (
            "INSERT INTO runs (id, account_id, job_id, job_slug, environment, trigger, status, "
            "created_at_us) VALUES ('x', 'acme', 1, 'old', 'production', 'BOGUS', 'PENDING', 1)",
            "INSERT INTO runs (id, account_id, job_id, job_slug, environment, trigger, status, "
            "created_at_us, retry_of, retry_attempt, retried_run) VALUES ('x', 'acme', 1, 'old', "
            "'production', 'RETRY', 'PENDING', 1, 'a', 2, 'a')",  # a retry with no due instant
            "INSERT INTO runs (id, account_id, job_id, job_slug, environment, trigger, "
            "scheduled_for_us, status, created_at_us, retry_of, retry_attempt, retried_run) "
            "VALUES ('x', 'acme', 1, 'old', 'production', 'RETRY', 9, 'PENDING', 1, 'a', 1, 'b')",
            "UPDATE runs SET status = 'CANCELED', finished_at_us = 1 WHERE id = 'r1'",  # held
            "UPDATE jobs SET overlap_policy = 'FORBID'",
        ):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(bad)
        (pending,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'runs_pending'"
        ).fetchone()
        assert "held_until_us IS NULL" in pending
    finally:
        conn.close()


async def test_a_runs_table_not_as_expected_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "jobsd.sqlite3"
    await trio.to_thread.run_sync(old_database, path, RETRY_RUNS_VERSION - 1)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute(
            "UPDATE sqlite_master SET sql = ? WHERE name = 'runs'",
            (sql.replace("IN ('SCHEDULE', 'MANUAL', 'RERUN')", "IN ('SCHEDULE', 'MANUAL')"),),
        )
        conn.execute("PRAGMA writable_schema = OFF")
    finally:
        conn.close()
    with pytest.raises(StorageError, match="not as migration 1 made it"):
        await upgrade(path)
    conn = sqlite3.connect(path)
    try:
        assert current_version(conn) == RETRY_RUNS_VERSION - 1
        columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        assert "held_until_us" not in columns
    finally:
        conn.close()


async def test_the_alert_migration_adds_the_outbox_and_paused_reason(tmp_path: Path) -> None:
    path = tmp_path / "jobsd.sqlite3"
    await trio.to_thread.run_sync(old_database, path, ALERTS_VERSION - 1)
    await upgrade(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert current_version(conn) == LATEST
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute(
            "SELECT job_id, environment, enabled, next_run_at_us, paused_reason "
            "FROM job_environments"
        ).fetchall() == [(1, "production", 1, US + 60_000_000, None)]
        assert conn.execute("SELECT count(*) FROM alert_outbox").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM alert_state").fetchone() == (0,)
        outbox = (
            "INSERT INTO alert_outbox (id, account_id, job_id, environment, type, body, "
            "created_at_us, due_us, expires_at_us, attempts, sending) "
            "VALUES (?, 'acme', 1, 'production', ?, '{}', 1, 1, ?, ?, ?)"
        )
        conn.execute(outbox, ("a1", "job.failed", 2, 1, 1))
        conn.execute(
            "UPDATE job_environments SET enabled = 0, next_run_at_us = NULL, "
            "paused_reason = 'auto-paused'"
        )
        for bad, args in (
            (outbox, ("a2", "job.exploded", 2, 0, 0)),  # a type alerts do not have
            (outbox, ("a3", "job.failed", 2, 0, 1)),  # sending, never attempted
            (outbox, ("a4", "job.failed", 0, 0, 0)),  # expires before it is due
            (outbox, ("a1", "job.failed", 2, 0, 0)),  # an id twice
            ("UPDATE job_environments SET enabled = 1", ()),  # enabled, still a reason
        ):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(bad, args)
    finally:
        conn.close()
