"""Each account's queued runs, counted as runs change: `max_pending_runs` in O(1).

Every run-now and rerun checks the account's backlog against
`max_pending_runs` before it inserts. Counting the queued runs on their
index cost ~90 ns a run: 420 us at 5,000 queued, 660 us at 10,000, on the
writer thread every other write waits behind, and most at the very moment
an account floods (measured on loopback, `count(*)` over `runs_pending`).
`pending_counts` holds the number instead, one row per account that ever
queued a run, kept by triggers on `runs` in the transaction of every
insert, status or hold change and delete, like the run counts
(`jobsd.store.count_tables`): no code path can forget it, and it never
disagrees with the runs committed beside it. Queued is `queue_sql.QUEUED`:
PENDING and not a retry held for its due instant. A run pays one trigger
program when it is queued and one when it leaves the queue.

Statements are listed one by one (for migration 10): trigger bodies hold
semicolons.
"""

from __future__ import annotations

import sqlite3


def _queued(row: str) -> str:
    return f"{row}.status = 'PENDING' AND {row}.held_until_us IS NULL"


_ADD = (
    "INSERT INTO pending_counts (account_id, n) SELECT NEW.account_id, 1 WHERE {when} "
    "ON CONFLICT (account_id) DO UPDATE SET n = n + 1"
)
_REMOVE = "UPDATE pending_counts SET n = n - 1 WHERE account_id = OLD.account_id AND {when}"

STATEMENTS: tuple[str, ...] = (
    "CREATE TABLE pending_counts (account_id TEXT PRIMARY KEY, "
    "n INTEGER NOT NULL CHECK (n >= 0)) WITHOUT ROWID",
    "INSERT INTO pending_counts (account_id, n) "
    f"SELECT account_id, count(*) FROM runs WHERE {_queued('runs')} GROUP BY account_id",
    f"CREATE TRIGGER pending_counts_insert AFTER INSERT ON runs WHEN {_queued('NEW')} "
    f"BEGIN {_ADD.format(when='1')}; END",
    f"CREATE TRIGGER pending_counts_delete AFTER DELETE ON runs WHEN {_queued('OLD')} "
    f"BEGIN {_REMOVE.format(when='1')}; END",
    "CREATE TRIGGER pending_counts_update AFTER UPDATE OF status, held_until_us, account_id "
    f"ON runs WHEN ({_queued('OLD')}) OR ({_queued('NEW')}) BEGIN "
    f"{_REMOVE.format(when=_queued('OLD'))}; {_ADD.format(when=_queued('NEW'))}; END",
)


def pending_count(conn: sqlite3.Connection, account_id: str) -> int:
    row = conn.execute(
        "SELECT n FROM pending_counts WHERE account_id = ?", (account_id,)
    ).fetchone()
    return 0 if row is None else int(row[0])
