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

Migration 3 (environments) and 5 (finding runs) live in their own modules,
`jobsd.store.environments_schema` and `jobsd.store.finding_schema`, as the
retry migrations do in `jobsd.store.retry_schema`; migration 3 is told
each account's default environment (`default_environments`).

A database written by a newer jobsd is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping

from jobsd.clock import to_us
from jobsd.errors import ScheduleError, SchemaTooNewError, StorageError
from jobsd.schedule import InstantSchedule, parse_schedule
from jobsd.store import job_counts, pending_counts
from jobsd.store.alert_schema import ALERTS
from jobsd.store.environments_schema import environments
from jobsd.store.finding_schema import FINDING
from jobsd.store.ownership import refuse_foreign
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
    # 3: environments and job kinds; see jobsd.store.environments_schema.
    environments,
    # 4: the durable run queue. Each account's PENDING runs, oldest first: what
    # the dispatcher reads back into memory and what bounds an account's
    # backlog (jobsd.dispatch); partial, so finished runs cost it nothing.
    """
    CREATE INDEX runs_pending ON runs (account_id, seq) WHERE status = 'PENDING';
    """,
    # 5: finding runs; see jobsd.store.finding_schema.
    lambda conn, defaults: _run_all(conn, FINDING),
    # 6: retry policies; see jobsd.store.retry_schema.
    lambda conn, defaults: _run_all(conn, RETRY_POLICIES),
    # 7: retry runs and the overlap policy; see jobsd.store.retry_schema.
    lambda conn, defaults: widen_run_checks(conn),
    # 8: the alert outbox, alert state and paused_reason; see jobsd.store.alert_schema.
    lambda conn, defaults: _run_all(conn, ALERTS),
    # 9: environment rows by environment, for `JobStore.sync_environments` at
    # every start and reload: which environments rows are in (a seek each), and
    # the enabled rows that do not fire (dormant ones, and manual jobs'). Neither
    # changes when a slot fires: a fire changes no environment, and moves no
    # row into or out of the partial one.
    """
    CREATE INDEX job_environments_by_environment ON job_environments (environment);
    CREATE INDEX job_environments_dormant ON job_environments (environment)
        WHERE enabled = 1 AND next_run_at_us IS NULL;
    """,
    # 10: each account's queued runs, counted; see jobsd.store.pending_counts.
    lambda conn, defaults: _run_all(conn, pending_counts.STATEMENTS),
    # 11: each account's live jobs, counted (the plan's max_jobs); see
    # jobsd.store.job_counts.
    lambda conn, defaults: _run_all(conn, job_counts.STATEMENTS),
    # 12: each account's retries held for their instant, counted (their bound);
    # see jobsd.store.pending_counts.
    lambda conn, defaults: _run_all(conn, pending_counts.HELD_STATEMENTS),
)


def _run_all(conn: sqlite3.Connection, statements: tuple[str, ...]) -> None:
    for statement in statements:
        conn.execute(statement)


LATEST = len(MIGRATIONS)
# The migrations that brought retries (their tests upgrade from just before them).
RETRY_POLICIES_VERSION = 6
RETRY_RUNS_VERSION = 7
ALERTS_VERSION = 8  # the alert outbox (its test upgrades from just before it)
ENVIRONMENT_INDEXES_VERSION = 9  # environment rows by environment (sync_environments)
JOB_COUNTS_VERSION = 11  # each account's live jobs, counted (its test upgrades from before it)
HELD_COUNTS_VERSION = 12  # each account's held retries, counted (likewise)


def configure(conn: sqlite3.Connection, *, readonly: bool = False) -> None:
    conn.row_factory = sqlite3.Row
    # Case-insensitive name search beyond ASCII (SQLite's lower() folds ASCII only).
    conn.create_function("jobsd_fold", 1, _fold, deterministic=True)
    # A one-off job's instant, for retention (`jobsd.store.retention`).
    conn.create_function("jobsd_instant_us", 1, _instant_us, deterministic=True)
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


def _instant_us(schedule: str | None) -> int | None:
    """The instant of an ISO-8601 one-off schedule; NULL for `now`, cron or none."""
    if schedule is None:
        return None
    try:
        parsed = parse_schedule(schedule)
    except ScheduleError:
        return None
    return to_us(parsed.at) if isinstance(parsed, InstantSchedule) else None


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
    refuse_foreign(conn)
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
