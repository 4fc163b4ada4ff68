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

`held_counts` (migration 12) holds each account's retries held for their
due instant the same way, kept by the same kind of triggers: every stored
object has a bound, and these had none but the plan's metered runs (a
chain is at most 10 retries, but every failed run may start one, each
held up to a year, and retention never deletes a `PENDING` run), so
`jobsd.store.retries` checks `MAX_HELD_RETRIES` against one row.

Statements are listed one by one (for migrations 10 and 12): trigger bodies
hold semicolons.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


def _queued(row: str) -> str:
    return f"{row}.status = 'PENDING' AND {row}.held_until_us IS NULL"


def _held(row: str) -> str:
    return f"{row}.status = 'PENDING' AND {row}.held_until_us IS NOT NULL"


def _counted(table: str, kept: Callable[[str], str]) -> tuple[str, ...]:
    """The table of each account's runs that `kept` holds, and its triggers."""
    add = (
        f"INSERT INTO {table} (account_id, n) SELECT NEW.account_id, 1 WHERE {{when}} "
        "ON CONFLICT (account_id) DO UPDATE SET n = n + 1"
    )
    remove = f"UPDATE {table} SET n = n - 1 WHERE account_id = OLD.account_id AND {{when}}"
    return (
        f"CREATE TABLE {table} (account_id TEXT PRIMARY KEY, "
        "n INTEGER NOT NULL CHECK (n >= 0)) WITHOUT ROWID",
        f"INSERT INTO {table} (account_id, n) "
        f"SELECT account_id, count(*) FROM runs WHERE {kept('runs')} GROUP BY account_id",
        f"CREATE TRIGGER {table}_insert AFTER INSERT ON runs WHEN {kept('NEW')} "
        f"BEGIN {add.format(when='1')}; END",
        f"CREATE TRIGGER {table}_delete AFTER DELETE ON runs WHEN {kept('OLD')} "
        f"BEGIN {remove.format(when='1')}; END",
        f"CREATE TRIGGER {table}_update AFTER UPDATE OF status, held_until_us, account_id "
        f"ON runs WHEN ({kept('OLD')}) OR ({kept('NEW')}) BEGIN "
        f"{remove.format(when=kept('OLD'))}; {add.format(when=kept('NEW'))}; END",
    )


STATEMENTS = _counted("pending_counts", _queued)
HELD_STATEMENTS = _counted("held_counts", _held)
# An account's retries held for their instant at once; a failure past it is not
# retried (`jobsd.store.retries`). As many as the plan's default `max_jobs`: a
# retry held for each job of a full account.
MAX_HELD_RETRIES = 100_000


def pending_count(conn: sqlite3.Connection, account_id: str) -> int:
    row = conn.execute(
        "SELECT n FROM pending_counts WHERE account_id = ?", (account_id,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def held_count(conn: sqlite3.Connection, account_id: str) -> int:
    row = conn.execute("SELECT n FROM held_counts WHERE account_id = ?", (account_id,)).fetchone()
    return 0 if row is None else int(row[0])
