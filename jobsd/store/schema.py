"""The schema, as numbered migrations applied at start.

Invariants live here rather than in code: a live slug is unique per account
(partial unique index), a scheduled slot fires at most once (unique
`(job_id, scheduled_for_us)` over SCHEDULE runs), statuses, triggers and
failure reasons are CHECKed against the wire enums, and a run's trigger
decides which of `scheduled_for_us` / `rerun_of` it must carry. Instants are
integer microseconds since the Unix epoch (UTC): exact, and cheap to index.

A database written by a newer jobsd is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3

from jobsd.errors import SchemaTooNewError, StorageError
from jobsd.runs import FailureReason, RunStatus, Trigger


def _in(values: type[RunStatus] | type[Trigger] | type[FailureReason]) -> str:
    return "(" + ", ".join(f"'{v.value}'" for v in values) + ")"


MIGRATIONS: tuple[str, ...] = (
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
        trigger           TEXT    NOT NULL CHECK (trigger IN {_in(Trigger)}),
        rerun_of          TEXT,
        scheduled_for_us  INTEGER,
        status            TEXT    NOT NULL CHECK (status IN {_in(RunStatus)}),
        created_at_us     INTEGER NOT NULL,
        started_at_us     INTEGER,
        finished_at_us    INTEGER,
        failure_reason    TEXT    CHECK (failure_reason IN {_in(FailureReason)}),
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
)

LATEST = len(MIGRATIONS)


def configure(conn: sqlite3.Connection, *, readonly: bool = False) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"could not switch the database to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")


def current_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to LATEST; return the version found before."""
    found = current_version(conn)
    if found > LATEST:
        raise SchemaTooNewError(
            f"the database is at schema version {found} but this jobsd knows only up to "
            f"{LATEST}: upgrade jobsd, or restore a backup taken by this version"
        )
    for version in range(found + 1, LATEST + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version - 1]):
                conn.execute(statement)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
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
