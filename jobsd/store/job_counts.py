"""Each account's stored jobs, counted as jobs change: the plan's `max_jobs` in O(1).

Every create checks the account's jobs against `max_jobs` (any kind, any
state: `jobsd.plans.may_store`) inside its own transaction. Counting them
there would walk the account's part of `jobs_listing`, a scan per create
that grows with the very number it bounds (a million jobs on one account is
what the cron bench holds). `job_counts` holds the number instead, one row
per account that ever stored a job, kept by triggers on `jobs` in the
transaction of every insert, delete and change of `deleted_at_us` or
`account_id`, like `pending_counts` (`jobsd.store.pending_counts`): no code
path can forget it, and it never disagrees with the jobs committed beside
it. What counts is a live job (`deleted_at_us IS NULL`): a delete here is a
tombstone (`jobs_sql.soft_delete`), and it frees the account's place at once;
retention's later drop of the tombstone row (`retention.drop_deleted_jobs`)
changes no count. A replace changes neither column and fires nothing.

Statements are listed one by one (for migration 11): trigger bodies hold
semicolons.
"""

from __future__ import annotations

import sqlite3

_LIVE = "{row}.deleted_at_us IS NULL"

_ADD = (
    "INSERT INTO job_counts (account_id, n) SELECT NEW.account_id, 1 WHERE {when} "
    "ON CONFLICT (account_id) DO UPDATE SET n = n + 1"
)
_REMOVE = "UPDATE job_counts SET n = n - 1 WHERE account_id = OLD.account_id AND {when}"

TRIGGERS = ("job_counts_insert", "job_counts_delete", "job_counts_update")

STATEMENTS: tuple[str, ...] = (
    "CREATE TABLE job_counts (account_id TEXT PRIMARY KEY, "
    "n INTEGER NOT NULL CHECK (n >= 0)) WITHOUT ROWID",
    "INSERT INTO job_counts (account_id, n) "
    f"SELECT account_id, count(*) FROM jobs WHERE {_LIVE.format(row='jobs')} GROUP BY account_id",
    f"CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs WHEN {_LIVE.format(row='NEW')} "
    f"BEGIN {_ADD.format(when='1')}; END",
    f"CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs WHEN {_LIVE.format(row='OLD')} "
    f"BEGIN {_REMOVE.format(when='1')}; END",
    "CREATE TRIGGER job_counts_update AFTER UPDATE OF deleted_at_us, account_id ON jobs "
    f"WHEN ({_LIVE.format(row='OLD')}) OR ({_LIVE.format(row='NEW')}) BEGIN "
    f"{_REMOVE.format(when=_LIVE.format(row='OLD'))}; "
    f"{_ADD.format(when=_LIVE.format(row='NEW'))}; END",
)


def job_count(conn: sqlite3.Connection, account_id: str) -> int:
    """The account's live jobs: one primary-key read."""
    row = conn.execute("SELECT n FROM job_counts WHERE account_id = ?", (account_id,)).fetchone()
    return 0 if row is None else int(row[0])
