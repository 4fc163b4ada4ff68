"""One alert's rows inside the ending transaction: its job's state, the outbox, a pause.

The SQL side of `jobsd.store.outbox`, which decides (with the pure rules)
what to write; here is only how. A body is built once, from the run as it
ended (`jobsd.alert_body`), when its row is written or folded into; the
account's cap is kept as a row is added.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass, field

from jobsd.alert_body import alert_body
from jobsd.alert_rules import GIVE_UP_AFTER_US, AlertState, AlertType
from jobsd.clock import from_us
from jobsd.messages import JobChanged
from jobsd.store import runs_sql


@dataclass
class Recorded:
    """What one transaction did to alerts, for after its commit."""

    paused: list[JobChanged] = field(default_factory=list)
    written: int = 0
    dropped: list[tuple[str, str, str]] = field(default_factory=list)  # account, type, outcome


def read_state(conn: sqlite3.Connection, job_pk: int, env: str) -> AlertState:
    row = conn.execute(
        "SELECT streak, failing, last_failed_us, deferred FROM alert_state "
        "WHERE job_id = ? AND environment = ?",
        (job_pk, env),
    ).fetchone()
    if row is None:
        return AlertState()
    return AlertState(int(row[0]), bool(row[1]), row[2], row[3])


def write_state(conn: sqlite3.Connection, job_pk: int, env: str, state: AlertState) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO alert_state (job_id, environment, streak, failing, "
        "last_failed_us, deferred) VALUES (?, ?, ?, ?, ?, ?)",
        (job_pk, env, state.streak, int(state.failing), state.last_failed_us, state.deferred),
    )


def unsent(conn: sqlite3.Connection, alert_id: str) -> bool:
    found = conn.execute(
        "SELECT 1 FROM alert_outbox WHERE id = ? AND attempts = 0 AND sending = 0", (alert_id,)
    ).fetchone()
    return found is not None


def pause(conn: sqlite3.Connection, row: sqlite3.Row, failures: int) -> bool:
    reason = (
        f"auto-paused after {failures} consecutive failed runs (auto_pause_after of the plan); "
        f"the last: run {row['id']}, {row['failure_reason']}. Enable it again to resume."
    )
    cur = conn.execute(
        "UPDATE job_environments SET enabled = 0, next_run_at_us = NULL, paused_reason = ? "
        "WHERE job_id = ? AND environment = ? AND enabled = 1",
        (reason, row["job_id"], row["environment"]),
    )
    return cur.rowcount == 1


class OutboxWriter:
    """Outbox rows for one run's end, its body built once, the account's cap kept."""

    def __init__(self, conn: sqlite3.Connection, row: sqlite3.Row, cap: int, done: Recorded):
        self._conn = conn
        self._row = row
        self._cap = cap
        self._done = done

    def _body(self, alert_type: AlertType) -> str:
        run_row = runs_sql.by_id(self._conn, self._row["id"])
        assert run_row is not None
        return alert_body(
            alert_type, from_us(self._row["finished_at_us"]), runs_sql.to_run(run_row)
        )

    def insert(self, alert_type: AlertType, due_us: int) -> str:
        account = self._row["account_id"]
        self._make_room(account)
        alert_id = str(uuid.uuid4())
        self._conn.execute(
            "INSERT INTO alert_outbox (id, account_id, job_id, environment, type, body, "
            "created_at_us, due_us, expires_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                alert_id,
                account,
                self._row["job_id"],
                self._row["environment"],
                alert_type.value,
                self._body(alert_type),
                self._row["finished_at_us"],
                due_us,
                due_us + GIVE_UP_AFTER_US,
            ),
        )
        self._done.written += 1
        return alert_id

    def fold(self, alert_id: str) -> None:
        """The deferred `job.failed` names this run now (it has never been sent)."""
        self._conn.execute(
            "UPDATE alert_outbox SET body = ?, created_at_us = ? "
            "WHERE id = ? AND attempts = 0 AND sending = 0",
            (self._body(AlertType.FAILED), self._row["finished_at_us"], alert_id),
        )

    def _make_room(self, account: str) -> None:
        (held,) = self._conn.execute(
            "SELECT count(*) FROM alert_outbox WHERE account_id = ?", (account,)
        ).fetchone()
        if held < self._cap:
            return
        oldest = self._conn.execute(
            "DELETE FROM alert_outbox WHERE seq = (SELECT seq FROM alert_outbox "
            "WHERE account_id = ? AND sending = 0 ORDER BY seq LIMIT 1) RETURNING type",
            (account,),
        ).fetchone()
        if oldest is not None:
            self._done.dropped.append((account, str(oldest[0]), "overflow"))
