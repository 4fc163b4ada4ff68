"""The schema, as numbered migrations applied at start.

Invariants live here rather than in code: a live slug is unique per account
(partial unique index), a scheduled slot fires at most once per environment
(unique `(job_id, environment, scheduled_for_us)` over SCHEDULE runs),
statuses, triggers and failure reasons are CHECKed against the wire enums,
a run's trigger decides which of `scheduled_for_us` / `rerun_of` it must
carry, and a job's kind decides whether it has a schedule. Instants are
integer microseconds since the Unix epoch (UTC): exact, and cheap to index.

Each migration runs in one transaction (SQLite DDL is transactional), so a
crash in the middle leaves the database as it was before it and the next
start runs it again. Foreign keys are switched off around it, as SQLite's
table-rebuild recipe requires, and checked before the commit.

Migration 3 (environments) needs to know which environment each account's
existing jobs and runs belong to: the caller passes `default_environments`
(account id -> the first environment in the config) from the config it
starts with; an account the config does not name gets `production`, the
default an account's `environments` has.

A database written by a newer jobsd is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping

from jobsd.config import DEFAULT_ENVIRONMENT
from jobsd.errors import ScheduleError, SchemaTooNewError, StorageError
from jobsd.schedule import CronSchedule, parse_schedule
from jobsd.store import count_tables
from jobsd.store.retry_schema import RETRY_POLICIES, widen_run_checks

# Migration 1 as it was written: its enum lists are frozen here, so that adding
# a value later (a trigger, a status) is a migration of its own and a database
# created today has exactly the schema one created then has.
_V1_TRIGGERS = "('SCHEDULE', 'MANUAL', 'RERUN')"
_V1_STATUSES = "('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELED')"
_V1_REASONS = (
    "('TIMEOUT', 'CONNECTION_ERROR', 'NON_SUCCESS_STATUS', 'SSRF_BLOCKED', "
    "'QUOTA_EXCEEDED', 'WORKER_LOST')"
)


Migration = str | Callable[[sqlite3.Connection, Mapping[str, str]], None]

MIGRATIONS: tuple[Migration, ...] = (
    # 1: jobs, runs, usage.
    f"""
    CREATE TABLE jobs (
        id              INTEGER PRIMARY KEY,
        account_id      TEXT    NOT NULL,
        slug            TEXT    NOT NULL,
        name            TEXT    NOT NULL,
        description     TEXT,
        enabled         INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        schedule        TEXT    NOT NULL,
        method          TEXT    NOT NULL,
        url             TEXT    NOT NULL,
        headers         TEXT    NOT NULL DEFAULT '[]',
        success_status  TEXT    NOT NULL,
        tls_verify      INTEGER NOT NULL CHECK (tls_verify IN (0, 1)),
        ca_cert         TEXT,
        body            TEXT,
        timeout_s       INTEGER NOT NULL CHECK (timeout_s >= 1),
        next_run_at_us  INTEGER,
        created_at_us   INTEGER NOT NULL,
        updated_at_us   INTEGER NOT NULL,
        deleted_at_us   INTEGER,
        version         INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
        CHECK (deleted_at_us IS NULL OR (enabled = 0 AND next_run_at_us IS NULL)),
        CHECK (enabled = 1 OR next_run_at_us IS NULL)
    );
    CREATE UNIQUE INDEX jobs_live_slug ON jobs (account_id, slug)
        WHERE deleted_at_us IS NULL;
    CREATE INDEX jobs_due ON jobs (next_run_at_us)
        WHERE enabled = 1 AND deleted_at_us IS NULL;
    CREATE INDEX jobs_listing ON jobs (account_id, created_at_us DESC, slug)
        WHERE deleted_at_us IS NULL;

    CREATE TABLE runs (
        seq               INTEGER PRIMARY KEY AUTOINCREMENT,
        id                TEXT    NOT NULL UNIQUE,
        account_id        TEXT    NOT NULL,
        job_id            INTEGER NOT NULL REFERENCES jobs (id),
        job_slug          TEXT    NOT NULL,
        job_version       INTEGER,
        trigger           TEXT    NOT NULL CHECK (trigger IN {_V1_TRIGGERS}),
        rerun_of          TEXT,
        scheduled_for_us  INTEGER,
        status            TEXT    NOT NULL CHECK (status IN {_V1_STATUSES}),
        created_at_us     INTEGER NOT NULL,
        started_at_us     INTEGER,
        finished_at_us    INTEGER,
        failure_reason    TEXT    CHECK (failure_reason IN {_V1_REASONS}),
        error             TEXT,
        request           TEXT,
        result            TEXT,
        metered_period    TEXT,
        CHECK ((trigger = 'SCHEDULE') = (scheduled_for_us IS NOT NULL)),
        CHECK ((trigger = 'RERUN') = (rerun_of IS NOT NULL)),
        CHECK ((status = 'FAILED') = (failure_reason IS NOT NULL)),
        CHECK ((status IN ('PENDING', 'RUNNING')) = (finished_at_us IS NULL))
    );
    CREATE UNIQUE INDEX runs_slot ON runs (job_id, scheduled_for_us)
        WHERE trigger = 'SCHEDULE';
    CREATE INDEX runs_by_account ON runs (account_id, seq DESC);
    CREATE INDEX runs_by_slug ON runs (account_id, job_slug, seq DESC);
    CREATE INDEX runs_by_job ON runs (job_id, seq DESC);
    CREATE INDEX runs_live ON runs (status) WHERE status IN ('PENDING', 'RUNNING');

    CREATE TABLE usage (
        account_id  TEXT    NOT NULL,
        period      TEXT    NOT NULL,
        runs_used   INTEGER NOT NULL DEFAULT 0 CHECK (runs_used >= 0),
        PRIMARY KEY (account_id, period)
    ) WITHOUT ROWID;
    """,
    # 2: retention. Finished runs (exactly the terminal ones, by the CHECK on
    # runs) by finish time, for the age rule, and per job in insert order, for
    # the per-job cap (finished_at_us in it so the cap's queries read the index
    # alone); partial, so PENDING/RUNNING runs cost them nothing.
    """
    CREATE INDEX runs_finished ON runs (finished_at_us) WHERE finished_at_us IS NOT NULL;
    CREATE INDEX runs_finished_by_job ON runs (job_id, seq, finished_at_us)
        WHERE finished_at_us IS NOT NULL;
    """,
    # 3: environments and job kinds; see _environments.
    lambda conn, defaults: _environments(conn, defaults),
    # 4: the durable run queue. Each account's PENDING runs, oldest first: what
    # the dispatcher reads back into memory and what bounds an account's
    # backlog (jobsd.dispatch); partial, so finished runs cost it nothing.
    """
    CREATE INDEX runs_pending ON runs (account_id, seq) WHERE status = 'PENDING';
    """,
    # 5: finding runs; see _FINDING.
    lambda conn, defaults: _run_all(conn, _FINDING),
    # 6: retry policies; see jobsd.store.retry_schema.
    lambda conn, defaults: _run_all(conn, RETRY_POLICIES),
    # 7: retry runs and the overlap policy; see jobsd.store.retry_schema.
    lambda conn, defaults: widen_run_checks(conn),
)

# `name_key` is the name case-folded (`jobsd_fold`), what listings sort and
# search by. Jobs lose `enabled` and `next_run_at_us` to one row per (job, environment),
# which also holds that environment's sparse overrides; `schedule` may be
# NULL (a manual job) and `kind` follows from it. Every existing job is
# enabled (or not) in its account's default environment, with the
# `next_run_at_us` it had, so no slot is fired twice or lost; every run
# belongs to that environment, and a slot is unique per environment.
_V3 = """
    CREATE TABLE jobs_v3 (
        id              INTEGER PRIMARY KEY,
        account_id      TEXT    NOT NULL,
        slug            TEXT    NOT NULL,
        name            TEXT    NOT NULL,
        name_key        TEXT    NOT NULL,
        description     TEXT,
        kind            TEXT    NOT NULL CHECK (kind IN ('recurring', 'manual', 'one_off')),
        schedule        TEXT,
        timezone        TEXT,
        retry_policy    TEXT,
        method          TEXT    NOT NULL,
        url             TEXT    NOT NULL,
        headers         TEXT    NOT NULL DEFAULT '[]',
        success_status  TEXT    NOT NULL,
        tls_verify      INTEGER NOT NULL CHECK (tls_verify IN (0, 1)),
        ca_cert         TEXT,
        body            TEXT,
        timeout_s       INTEGER NOT NULL CHECK (timeout_s >= 1),
        created_at_us   INTEGER NOT NULL,
        updated_at_us   INTEGER NOT NULL,
        deleted_at_us   INTEGER,
        version         INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
        CHECK ((kind = 'manual') = (schedule IS NULL)),
        CHECK (kind = 'recurring' OR timezone IS NULL)
    );
    INSERT INTO jobs_v3 (id, account_id, slug, name, name_key, description, kind, schedule,
        method, url, headers, success_status, tls_verify, ca_cert, body, timeout_s,
        created_at_us, updated_at_us, deleted_at_us, version)
    SELECT id, account_id, slug, name, jobsd_fold(name), description,
        jobsd_schedule_kind(schedule), schedule,
        method, url, headers, success_status, tls_verify, ca_cert, body, timeout_s,
        created_at_us, updated_at_us, deleted_at_us, version
    FROM jobs;
    CREATE TABLE job_environments (
        job_id          INTEGER NOT NULL REFERENCES jobs (id),
        environment     TEXT    NOT NULL,
        enabled         INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        next_run_at_us  INTEGER,
        schedule        TEXT,
        timezone        TEXT,
        retry_policy    TEXT,
        overlay         TEXT    NOT NULL DEFAULT '{}',
        headers         TEXT    NOT NULL DEFAULT '[]',
        CHECK (enabled = 1 OR next_run_at_us IS NULL),
        PRIMARY KEY (job_id, environment)
    ) WITHOUT ROWID;
    INSERT INTO job_environments (job_id, environment, enabled, next_run_at_us)
    SELECT id, jobsd_default_environment(account_id), enabled, next_run_at_us
    FROM jobs WHERE deleted_at_us IS NULL;
    DROP TABLE jobs;
    ALTER TABLE jobs_v3 RENAME TO jobs;
    CREATE UNIQUE INDEX jobs_live_slug ON jobs (account_id, slug)
        WHERE deleted_at_us IS NULL;
    CREATE INDEX jobs_listing ON jobs (account_id, created_at_us DESC, slug)
        WHERE deleted_at_us IS NULL;
    CREATE INDEX jobs_by_name ON jobs (account_id, name_key, name, slug)
        WHERE deleted_at_us IS NULL;
    CREATE INDEX jobs_by_update ON jobs (account_id, updated_at_us, slug)
        WHERE deleted_at_us IS NULL;
    CREATE INDEX job_environments_due ON job_environments (next_run_at_us)
        WHERE next_run_at_us IS NOT NULL;
    ALTER TABLE runs ADD COLUMN environment TEXT NOT NULL DEFAULT '';
    UPDATE runs SET environment = jobsd_default_environment(account_id);
    DROP INDEX runs_slot;
    CREATE UNIQUE INDEX runs_slot ON runs (job_id, environment, scheduled_for_us)
        WHERE trigger = 'SCHEDULE'
"""


def schedule_kind(schedule: str | None) -> str:
    """`kind` from a schedule as stored (validated when it was written)."""
    if schedule is None:
        return "manual"
    try:
        parsed = parse_schedule(schedule)
    except ScheduleError:
        return "recurring"  # never stored; the scheduler reports it if it ever is
    return "recurring" if isinstance(parsed, CronSchedule) else "one_off"


def _environments(conn: sqlite3.Connection, defaults: Mapping[str, str]) -> None:
    def default_environment(account_id: str) -> str:
        return defaults.get(account_id, DEFAULT_ENVIRONMENT)

    conn.create_function("jobsd_schedule_kind", 1, schedule_kind, deterministic=True)
    conn.create_function("jobsd_default_environment", 1, default_environment, deterministic=True)
    for statement in _statements(_V3):
        conn.execute(statement)


# Finding runs fast (`jobsd.store.run_listing`, `jobsd.store.run_stats`):
# - one index per sort and per equality filter, each ending in the tie order
#   (created_at_us, seq), so any of them walks in `created_at` order once
#   its leading columns are fixed, and a keyset cursor resumes with a seek;
#   they replace the seq-ordered runs_by_account and runs_by_slug;
# - `total_duration_ms` as the API renders it, a virtual column to index;
# - runs_last: the terminal runs per (job, environment), newest last, with
#   their status, for `last_run_only`;
# - run_counts, run_counts_hourly: see `jobsd.store.count_tables`.
_FINDING: tuple[str, ...] = (
    "ALTER TABLE runs ADD COLUMN total_duration_ms INTEGER "
    "GENERATED ALWAYS AS (max(0, (finished_at_us - created_at_us) / 1000)) VIRTUAL",
    "DROP INDEX runs_by_account",
    "DROP INDEX runs_by_slug",
    "CREATE INDEX runs_created ON runs (account_id, created_at_us, seq)",
    "CREATE INDEX runs_job_created ON runs (account_id, job_slug, created_at_us, seq)",
    "CREATE INDEX runs_status_created ON runs (account_id, status, created_at_us, seq)",
    "CREATE INDEX runs_trigger_created ON runs (account_id, trigger, created_at_us, seq)",
    "CREATE INDEX runs_env_created ON runs (account_id, environment, created_at_us, seq)",
    "CREATE INDEX runs_started ON runs (account_id, started_at_us, created_at_us, seq)",
    "CREATE INDEX runs_finished_at ON runs (account_id, finished_at_us, created_at_us, seq)",
    "CREATE INDEX runs_scheduled ON runs (account_id, scheduled_for_us, created_at_us, seq)",
    "CREATE INDEX runs_duration ON runs (account_id, total_duration_ms, created_at_us, seq)",
    "CREATE INDEX runs_last ON runs "
    "(account_id, job_slug, environment, created_at_us, seq, status) "
    "WHERE finished_at_us IS NOT NULL",
    *count_tables.statements(),
)


def _run_all(conn: sqlite3.Connection, statements: tuple[str, ...]) -> None:
    for statement in statements:
        conn.execute(statement)


LATEST = len(MIGRATIONS)
# The migrations that brought retries (their tests upgrade from just before them).
RETRY_POLICIES_VERSION = 6
RETRY_RUNS_VERSION = 7


def configure(conn: sqlite3.Connection, *, readonly: bool = False) -> None:
    conn.row_factory = sqlite3.Row
    # Case-insensitive name search beyond ASCII (SQLite's lower() folds ASCII only).
    conn.create_function("jobsd_fold", 1, _fold, deterministic=True)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"could not switch the database to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")


def _fold(text: str | None) -> str | None:
    return None if text is None else text.casefold()


def current_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, default_environments: Mapping[str, str] | None = None) -> int:
    """Bring the schema to LATEST; return the version found before."""
    found = current_version(conn)
    if found > LATEST:
        raise SchemaTooNewError(
            f"the database is at schema version {found} but this jobsd knows only up to "
            f"{LATEST}: upgrade jobsd, or restore a backup taken by this version"
        )
    defaults = default_environments or {}
    for version in range(found + 1, LATEST + 1):
        step = MIGRATIONS[version - 1]
        conn.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction
        conn.execute("BEGIN IMMEDIATE")
        try:
            if isinstance(step, str):
                for statement in _statements(step):
                    conn.execute(statement)
            else:
                step(conn, defaults)
            if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
                raise StorageError(f"migration {version} would break a foreign key")
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.execute("PRAGMA foreign_keys = ON")
    return found


def _statements(script: str) -> list[str]:
    """Split a migration into statements so it runs inside our transaction.

    `executescript` would COMMIT first; our migrations hold no literal `;`.
    """
    return [s.strip() for s in script.split(";") if s.strip()]


def quick_check(conn: sqlite3.Connection) -> None:
    rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    if rows != ["ok"]:
        detail = "; ".join(str(r) for r in rows[:5])
        raise StorageError(
            f"the database failed PRAGMA quick_check ({detail}): stop jobsd and restore the "
            "latest backup (see README, 'Backups')"
        )
