"""The migrations for retries, kept apart from `schema.py`'s machinery.

Retry policies (`retry_policies`): one row per (account, id), the id the
client chose. A policy is deleted outright rather than marked: nothing but
a job's `retry_policy` refers to one, and a policy still referred to cannot
be deleted (409), so there is no history to keep. Listings sort by the
name case-folded (`jobsd_fold`, as jobs do), by creation or by update, each
with the id as the tie-break, and each served by an index. A job's
references (its base `retry_policy` and each environment's override) are
indexed too, so the 409's "which jobs still use it" never scans.
"""

from __future__ import annotations

import sqlite3

from jobsd.errors import StorageError

RETRY_POLICIES: tuple[str, ...] = (
    "CREATE TABLE retry_policies ("
    " account_id                TEXT    NOT NULL,"
    " id                        TEXT    NOT NULL,"
    " name                      TEXT    NOT NULL,"
    " name_key                  TEXT    NOT NULL,"
    " max_retries               INTEGER NOT NULL CHECK (max_retries BETWEEN 0 AND 10),"
    " backoff                   TEXT    NOT NULL CHECK (backoff IN ('fixed', 'exponential')),"
    " delay_seconds             INTEGER NOT NULL CHECK (delay_seconds >= 1),"
    " max_delay_seconds         INTEGER CHECK (max_delay_seconds IS NULL"
    "     OR (max_delay_seconds >= 1 AND backoff = 'exponential')),"
    " retry_on_timeout          INTEGER NOT NULL CHECK (retry_on_timeout IN (0, 1)),"
    " retry_on_connection_error INTEGER NOT NULL CHECK (retry_on_connection_error IN (0, 1)),"
    " retry_statuses            TEXT    NOT NULL DEFAULT '[]',"
    " retry_statuses_except     TEXT    NOT NULL DEFAULT '[]',"
    " created_at_us             INTEGER NOT NULL,"
    " updated_at_us             INTEGER NOT NULL,"
    " version                   INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),"
    " PRIMARY KEY (account_id, id)"
    ") WITHOUT ROWID",
    "CREATE INDEX retry_policies_by_name ON retry_policies (account_id, name_key, name, id)",
    "CREATE INDEX retry_policies_by_creation ON retry_policies (account_id, created_at_us, id)",
    "CREATE INDEX retry_policies_by_update ON retry_policies (account_id, updated_at_us, id)",
    "CREATE INDEX jobs_by_retry_policy ON jobs (account_id, retry_policy) "
    "WHERE retry_policy IS NOT NULL AND deleted_at_us IS NULL",
    "CREATE INDEX job_environments_by_retry_policy ON job_environments (retry_policy) "
    "WHERE retry_policy IS NOT NULL",
)


# Retry runs, and the overlap policy. A retry is a run with trigger RETRY,
# `retry_of` (the chain's original run), `retry_attempt` (1 for the first
# retry) and `retried_run` (the run it retries); the unique index on
# (retry_of, retry_attempt) is what makes each attempt of a chain exist at
# most once, whatever happens. Its due instant is its `scheduled_for_us`,
# kept for good (lateness = started - due, as for a scheduled run);
# `held_until_us` is the same instant while the retry waits for it, and is
# cleared when the scheduler releases it to the executors (`runs_held`
# indexes the waiting ones; the dispatcher's queue, `runs_pending`, only
# holds released ones). The two CHECKs of migration 1 that name triggers
# are widened in place (`widen_run_checks`); `runs_going` finds a run of a
# (job, environment) still PENDING or RUNNING, for `overlap_policy` SKIP.
_WIDENED = (
    (
        "CHECK (trigger IN ('SCHEDULE', 'MANUAL', 'RERUN'))",
        "CHECK (trigger IN ('SCHEDULE', 'MANUAL', 'RERUN', 'RETRY'))",
    ),
    (
        "CHECK ((trigger = 'SCHEDULE') = (scheduled_for_us IS NOT NULL))",
        "CHECK ((trigger IN ('SCHEDULE', 'RETRY')) = (scheduled_for_us IS NOT NULL))",
    ),
)
RETRY_RUNS: tuple[str, ...] = (
    "ALTER TABLE runs ADD COLUMN retry_of TEXT "
    "CHECK ((trigger = 'RETRY') = (retry_of IS NOT NULL))",
    "ALTER TABLE runs ADD COLUMN retry_attempt INTEGER CHECK ((trigger = 'RETRY') = "
    "(retry_attempt IS NOT NULL) AND (retry_attempt IS NULL OR retry_attempt BETWEEN 1 AND 10))",
    "ALTER TABLE runs ADD COLUMN retried_run TEXT "
    "CHECK ((trigger = 'RETRY') = (retried_run IS NOT NULL))",
    "ALTER TABLE runs ADD COLUMN held_until_us INTEGER "
    "CHECK (held_until_us IS NULL OR (status = 'PENDING' AND trigger = 'RETRY'))",
    "CREATE UNIQUE INDEX runs_retry_attempt ON runs (retry_of, retry_attempt) "
    "WHERE trigger = 'RETRY'",
    "CREATE INDEX runs_held ON runs (held_until_us) WHERE held_until_us IS NOT NULL",
    "CREATE INDEX runs_going ON runs (job_id, environment) WHERE status IN ('PENDING', 'RUNNING')",
    "DROP INDEX runs_pending",
    "CREATE INDEX runs_pending ON runs (account_id, seq) "
    "WHERE status = 'PENDING' AND held_until_us IS NULL",
    "ALTER TABLE jobs ADD COLUMN overlap_policy TEXT NOT NULL DEFAULT 'ALLOW' "
    "CHECK (overlap_policy IN ('ALLOW', 'SKIP'))",
)


def widen_run_checks(conn: sqlite3.Connection) -> None:
    """Admit RETRY in the `runs` CHECKs of migration 1, without copying the table.

    SQLite cannot alter a CHECK; its documented recipe for a change that
    only loosens one (every stored row satisfies the new text, and nothing
    on disk changes) is to edit the table's SQL in `sqlite_schema` under
    `writable_schema` and bump `schema_version`, in the migration's
    transaction. Rebuilding the table instead would copy every run and
    have to re-create every index and trigger other migrations put on it.
    """
    (sql,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
    ).fetchone()
    for old, new in _WIDENED:
        if sql.count(old) != 1:
            raise StorageError(f"the runs table is not as migration 1 made it (no {old})")
        sql = sql.replace(old, new)
    (version,) = conn.execute("PRAGMA schema_version").fetchone()
    conn.execute("PRAGMA writable_schema = ON")
    try:
        conn.execute(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'runs'", (sql,)
        )
        conn.execute(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
    for statement in RETRY_RUNS:
        conn.execute(statement)
