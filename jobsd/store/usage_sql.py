"""The usage meter: runs started per account and billing period (`usage`).

Apart from the runs' SQL because it is the plan's count, not a run's row: a
claim moves it in the same transaction that starts the run
(`jobsd.store.claims`), and `/usage` reads it (`jobsd.store.jobs`); a claimed
run refused before its request left gives it back (`unmeter_run`).
"""

from __future__ import annotations

import sqlite3


def meter(conn: sqlite3.Connection, account_id: str, period: str) -> None:
    conn.execute(
        "INSERT INTO usage (account_id, period, runs_used) VALUES (?, ?, 1) "
        "ON CONFLICT (account_id, period) DO UPDATE SET runs_used = runs_used + 1",
        (account_id, period),
    )


def runs_used(conn: sqlite3.Connection, account_id: str, period: str) -> int:
    row = conn.execute(
        "SELECT runs_used FROM usage WHERE account_id = ? AND period = ?", (account_id, period)
    ).fetchone()
    return 0 if row is None else int(row[0])


def unmeter_run(conn: sqlite3.Connection, run_id: str) -> None:
    """Take back a claimed run's meter: it ended before its request started."""
    row = conn.execute(
        "SELECT account_id, metered_period FROM runs WHERE id = ? AND metered_period IS NOT NULL",
        (run_id,),
    ).fetchone()
    if row is None:
        return
    conn.execute("UPDATE runs SET metered_period = NULL WHERE id = ?", (run_id,))
    conn.execute(
        "UPDATE usage SET runs_used = runs_used - 1 "
        "WHERE account_id = ? AND period = ? AND runs_used > 0",
        (row[0], row[1]),
    )
