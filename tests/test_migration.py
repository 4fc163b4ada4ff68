"""Migration 3 (environments): a database from before it upgrades in place at start.

The "old" database is written with the schema version 2 statements
themselves (`MIGRATIONS[:2]`, append-only, so exactly what jobsd wrote
before environments) and rows in that version's columns: jobs enabled,
paused, fired, deleted, of an account the config names and of one it does
not; runs of every kind; a header value sealed as it was sealed then.

Proven here: every job is enabled (or not) in its account's default
environment with the `next_run_at` it had, every run belongs to that
environment, sealed values still open; the real daemon then fires each job
on schedule there, with no slot fired twice or lost across the upgrade; and
a jobsd process SIGKILLed in the middle of the migration of a big database
leaves it as it was, so the next start migrates it completely.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from jobsd.clock import Clock, to_us
from jobsd.crypto import KeyRing, header_aad
from jobsd.store import open_store
from jobsd.store.schema import LATEST, MIGRATIONS, current_version
from tests.conftest import config_text, make_config
from tests.inprocess import daemon_at
from tests.target import open_target

T = datetime(2026, 6, 5, 2, 4, 59, 500_000, tzinfo=UTC)  # the upgrade starts here
MIN = 60_000_000
ACME = 'environments = ["live", "staging"]'


def old_database(path: Path, fill: Any) -> None:
    """A schema version 2 database, `fill(conn)` writing its rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # a test fixture: speed over durability
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB: index builds stay in memory
        conn.execute("BEGIN")
        for script in MIGRATIONS[:2]:
            assert isinstance(script, str)
            for statement in (s.strip() for s in script.split(";")):
                if statement:
                    conn.execute(statement)
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (2)")
        fill(conn)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")  # as jobsd keeps its file
    finally:
        conn.close()


def old_job(
    conn: sqlite3.Connection,
    account: str,
    slug: str,
    schedule: str,
    *,
    enabled: bool,
    next_us: int | None,
    url: str = "http://127.0.0.1:9/x",
    deleted_us: int | None = None,
    headers: str = "[]",
) -> int:
    cur = conn.execute(
        "INSERT INTO jobs (account_id, slug, name, enabled, schedule, method, url, headers, "
        "success_status, tls_verify, timeout_s, next_run_at_us, created_at_us, updated_at_us, "
        "deleted_at_us) VALUES (?, ?, ?, ?, ?, 'POST', ?, ?, '2xx', 1, 5, ?, ?, ?, ?)",
        (
            account,
            slug,
            slug,
            int(enabled),
            schedule,
            url,
            headers,
            next_us,
            to_us(T) - 3600 * 1_000_000,
            to_us(T) - 3600 * 1_000_000,
            deleted_us,
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def old_run(
    conn: sqlite3.Connection,
    account: str,
    pk: int,
    slug: str,
    *,
    scheduled_us: int | None,
    status: str = "SUCCEEDED",
) -> str:
    run_id = str(uuid.uuid4())
    done = status not in ("PENDING", "RUNNING")
    conn.execute(
        "INSERT INTO runs (id, account_id, job_id, job_slug, job_version, trigger, "
        "scheduled_for_us, status, created_at_us, started_at_us, finished_at_us, "
        "metered_period) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)",
        (
            run_id,
            account,
            pk,
            slug,
            "SCHEDULE" if scheduled_us is not None else "MANUAL",
            scheduled_us,
            status,
            to_us(T) - 600_000_000,
            None if status == "PENDING" else to_us(T) - 599_000_000,
            to_us(T) - 598_000_000 if done else None,
            None if status == "PENDING" else "2026-06",
        ),
    )
    return run_id


def rows(path: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


async def test_an_old_database_upgrades_and_every_job_keeps_firing(tmp_path: Path) -> None:
    config = make_config(tmp_path, acme=ACME)
    db = config.storage.path
    keyring = KeyRing.load_or_create(config.secrets.key_file)
    at = to_us(T) + 500_000  # 02:05:00, the next minute
    ids: dict[str, Any] = {}
    async with open_target() as target:

        def fill(conn: sqlite3.Connection) -> None:
            pk = old_job(
                conn,
                "acme",
                "minutely",
                "* * * * *",
                enabled=True,
                next_us=at,
                url=f"{target.url}/minutely",
            )
            sealed = keyring.seal("Bearer kept", aad=header_aad("acme", pk, "Authorization"))
            conn.execute(
                "UPDATE jobs SET headers = ? WHERE id = ?",
                (json.dumps([{"name": "Authorization", "sealed": sealed}]), pk),
            )
            ids["minutely"] = pk
            for k in range(1, 5):  # 02:01 .. 02:04 fired before the upgrade
                old_run(conn, "acme", pk, "minutely", scheduled_us=at - k * MIN)
            pk = old_job(
                conn,
                "acme",
                "tenth",
                "*/10 * * * *",
                enabled=True,
                next_us=at + 5 * MIN,
                url=f"{target.url}/tenth",
            )
            # 02:00 was committed but not yet run when the old jobsd stopped.
            ids["pending"] = old_run(
                conn, "acme", pk, "tenth", scheduled_us=at - 5 * MIN, status="PENDING"
            )
            old_job(conn, "acme", "paused", "0 * * * *", enabled=False, next_us=None)
            old_job(
                conn,
                "acme",
                "once",
                "2026-06-05T02:05:00Z",
                enabled=True,
                next_us=at,
                url=f"{target.url}/once",
            )
            pk = old_job(conn, "acme", "spent", "2026-06-05T01:00:00Z", enabled=False, next_us=None)
            old_run(conn, "acme", pk, "spent", scheduled_us=at - 65 * MIN)
            pk = old_job(
                conn,
                "acme",
                "gone",
                "0 3 * * *",
                enabled=False,
                next_us=None,
                deleted_us=at - 30 * MIN,
            )
            ids["gone-run"] = old_run(conn, "acme", pk, "gone", scheduled_us=None)
            pk = old_job(conn, "other", "theirs", "0 3 * * *", enabled=True, next_us=at + 55 * MIN)
            old_run(conn, "other", pk, "theirs", scheduled_us=None)
            pk = old_job(conn, "ghost", "orphan", "0 3 * * *", enabled=True, next_us=at + 55 * MIN)
            old_run(conn, "ghost", pk, "orphan", scheduled_us=None)

        old_database(db, fill)
        before = rows(db, "SELECT * FROM runs")
        async with daemon_at(config, T) as d:
            assert rows(db, "SELECT version FROM schema_version") == [{"version": LATEST}]
            with trio.fail_after(10):
                while len([r for r in target.received if r.path != "/tenth"]) < 2:
                    await trio.sleep(0.02)
                while not any(r.path == "/tenth" for r in target.received):
                    await trio.sleep(0.02)
            await trio.sleep(0.3)  # nothing more may come
            seed = (await d.client.get("/api/v1/jobs/minutely")).json()["data"]["attributes"]
            new = (
                await d.client.get("/api/v1/jobs/minutely", headers={"Jobsd-Version": "2026-08-07"})
            ).json()["data"]["attributes"]
            d.crash()

    # The environment rows: each live job in its account's default environment.
    envs = {
        (r["slug"], r["environment"]): (r["enabled"], r["next_run_at_us"])
        for r in rows(
            db, "SELECT j.slug, e.* FROM job_environments AS e JOIN jobs AS j ON j.id = e.job_id"
        )
    }
    assert envs == {
        ("minutely", "live"): (1, at + MIN),
        ("tenth", "live"): (1, at + 5 * MIN),
        ("paused", "live"): (0, None),
        ("once", "live"): (0, None),
        ("spent", "live"): (0, None),
        ("theirs", "production"): (1, at + 55 * MIN),
        ("orphan", "production"): (1, at + 55 * MIN),  # an account the config does not name
    }
    kinds = {r["slug"]: r["kind"] for r in rows(db, "SELECT slug, kind FROM jobs")}
    assert kinds["minutely"] == "recurring" and kinds["once"] == kinds["spent"] == "one_off"
    # Every run kept, in its account's default environment.
    after = {r["id"]: r for r in rows(db, "SELECT * FROM runs")}
    for old in before:
        expected = {"acme": "live"}.get(old["account_id"], "production")
        assert after[old["id"]]["environment"] == expected
        kept = ("account_id", "job_id", "job_slug", "trigger", "scheduled_for_us", "created_at_us")
        assert {k: after[old["id"]][k] for k in kept} == {k: old[k] for k in kept}
    # Fired on schedule, in the default environment, no slot twice, none lost.
    slots: dict[str, list[int]] = {}
    for run in after.values():
        if run["trigger"] == "SCHEDULE":
            slots.setdefault(run["job_slug"], []).append(run["scheduled_for_us"])
            assert run["environment"] in ("live", "production")
    assert sorted(slots["minutely"]) == [at - k * MIN for k in range(4, -1, -1)]
    assert slots["tenth"] == [at - 5 * MIN]  # the committed slot ran; not fired again
    assert after[ids["pending"]]["status"] == "SUCCEEDED"
    assert slots["once"] == [at]
    assert after[ids["gone-run"]]["status"] == "SUCCEEDED"
    sent = [r for r in target.received if r.path == "/minutely"]
    assert [r.headers["authorization"] for r in sent] == ["Bearer kept"]  # the old seal opens
    # Both versions read it.
    assert seed["enabled"] is True and seed["next_run_at"] == "2026-06-05T02:06:00Z"
    assert new["environments"] == {"live": {"enabled": True, "next_run_at": "2026-06-05T02:06:00Z"}}
    assert new["configuration"]["headers"] == {"Authorization": "Bearer kept"}


# -- a crash in the middle of the migration ------------------------------------------------

JOBS = 2_000
RUNS = 150_000


def _big(conn: sqlite3.Connection) -> None:
    conn.executemany(
        "INSERT INTO jobs (id, account_id, slug, name, enabled, schedule, method, url, "
        "success_status, tls_verify, timeout_s, next_run_at_us, created_at_us, updated_at_us) "
        "VALUES (?, 'acme', ?, ?, 1, '*/5 * * * *', 'POST', 'http://127.0.0.1:9/', '2xx', 1, 5, "
        "?, 0, 0)",
        ((i, f"j{i}", f"job {i}", to_us(T) + (i % 60) * MIN) for i in range(1, JOBS + 1)),
    )
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?) "
        "INSERT INTO runs (id, account_id, job_id, job_slug, trigger, scheduled_for_us, status, "
        "created_at_us, started_at_us, finished_at_us, metered_period) "
        "SELECT printf('%032x', i), 'acme', i % ? + 1, 'j' || (i % ? + 1), 'SCHEDULE', i * ?, "
        "'SUCCEEDED', i * ?, i * ?, i * ?, '2026-06' FROM n",
        (RUNS, JOBS, JOBS, MIN, MIN, MIN, MIN),
    )


def test_a_kill_in_the_middle_of_the_migration_leaves_it_to_the_next_start(
    tmp_path: Path,
) -> None:
    config_path = tmp_path / "jobsd.toml"
    config_path.write_text(config_text(tmp_path, acme=ACME, runs_included=-1))
    db = tmp_path / "jobsd.sqlite3"
    old_database(db, _big)
    wal = Path(f"{db}-wal")
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    stderr = (tmp_path / "migrating.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobsd", "serve", "--config", str(config_path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    try:
        deadline = time.monotonic() + 60
        # The migration is one transaction: once its pages spill into the WAL
        # it is under way, and nothing of it is committed until it ends.
        while not (wal.exists() and wal.stat().st_size > 4_000_000):
            assert proc.poll() is None, (tmp_path / "migrating.log").read_text()
            assert time.monotonic() < deadline, "the migration never started writing"
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -9
    # What the kill left: still version 2, every old row as it was.
    assert rows(db, "SELECT version FROM schema_version") == [{"version": 2}]
    assert rows(db, "SELECT count(*) AS n FROM runs") == [{"n": RUNS}]
    assert "job_environments" not in {
        r["name"] for r in rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")
    }

    async def start_again() -> None:
        keyring = KeyRing.load_or_create(tmp_path / "secret.key")
        async with open_store(db, keyring, Clock(T), default_environments={"acme": "live"}):
            pass

    trio.run(start_again)
    conn = sqlite3.connect(db)
    try:
        assert current_version(conn) == LATEST
        by_env = dict(conn.execute("SELECT environment, count(*) FROM runs GROUP BY 1").fetchall())
        assert by_env == {"live": RUNS}
        assert conn.execute("SELECT count(*) FROM job_environments").fetchone() == (JOBS,)
        assert conn.execute(
            "SELECT count(*) FROM job_environments WHERE environment = 'live' AND enabled = 1 "
            "AND next_run_at_us >= ?",
            (to_us(T),),
        ).fetchone() == (JOBS,)
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()
