"""The durable queue: the PENDING runs the dispatcher may hand to workers.

Per account, oldest first, on the `runs_pending` index (`jobsd.dispatch`
reads them back into its lanes; `max_pending_runs` bounds an account's
backlog, counted by triggers in `jobsd.store.pending_counts`). A retry
held for its due instant is not in the queue until the scheduler releases
it (`jobsd.store.retries`): it is scheduled work, like a slot not yet due,
and counts toward no backlog.
"""

from __future__ import annotations

import sqlite3

# What the dispatcher may hand to a worker: PENDING, and not a retry still
# held for its due instant (the scheduler releases those when they are due).
QUEUED = "status = 'PENDING' AND held_until_us IS NULL"


def oldest_pending(conn: sqlite3.Connection, account_id: str, limit: int) -> list[str]:
    return [
        str(r[0])
        for r in conn.execute(
            f"SELECT id FROM runs WHERE account_id = ? AND {QUEUED} ORDER BY seq LIMIT ?",
            (account_id, limit),
        )
    ]


def pending_accounts(conn: sqlite3.Connection, limit: int) -> list[str]:
    """Accounts with PENDING runs: one index seek each, however many runs wait."""
    accounts: list[str] = []
    row = conn.execute(f"SELECT min(account_id) FROM runs WHERE {QUEUED}").fetchone()
    while row is not None and row[0] is not None and len(accounts) < limit:
        accounts.append(str(row[0]))
        row = conn.execute(
            f"SELECT min(account_id) FROM runs WHERE {QUEUED} AND account_id > ?",
            (accounts[-1],),
        ).fetchone()
    return accounts
