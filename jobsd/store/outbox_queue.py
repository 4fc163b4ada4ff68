"""The alert outbox as the alert actor sees it: take what is due, settle each try.

Every step is one transaction through the store's writer. `take` marks the
alerts it hands out `sending` (and counts the attempt) before any byte
leaves, which freezes their bodies (`jobsd.store.outbox` folds only into
an alert never taken); `delivered` deletes one, `retry_at` puts one back in
line for later, `drop` gives one up. `reset_sending`, at start, puts back in
line what a crash left `sending`: it may have reached its receiver or not,
so it is sent again, with the same id and body (at least once).

Order and fairness: an alert is taken only when no older alert of its job
and environment is left (a `job.recovered` never overtakes the `job.failed`
it answers, even while that one is retried), and each account may have at
most `per_account` alerts in flight, so an account whose receiver hangs
holds its own alerts back and no one else's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from jobsd.store.engine import Engine
from jobsd.store.waiting_writes import write_when_free

T = TypeVar("T")

_TAKE_SCAN = 64


@dataclass(frozen=True, slots=True)
class OutboxAlert:
    id: str
    account_id: str
    type: str
    body: str
    attempts: int  # this one included
    expires_at_us: int


@dataclass(frozen=True, slots=True)
class Taken:
    alerts: list[OutboxAlert]
    expired: list[OutboxAlert]  # past their 24 hours before this try: deleted, not sent


class OutboxStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """The alert actor's writes wait out a database another process keeps locked
        (`jobsd.store.waiting_writes`): raised, they ended the daemon."""
        return await write_when_free(self._engine, fn, "the alerts' outbox")

    async def reset_sending(self) -> int:
        """At start: alerts a previous process was sending go back in line, due now."""
        return await self._write(
            lambda c: c.execute("UPDATE alert_outbox SET sending = 0 WHERE sending = 1").rowcount
        )

    async def take(
        self, now_us: int, room: int, busy: Mapping[str, int], per_account: int
    ) -> Taken:
        """Up to `room` due alerts, oldest first per account, each account at most
        `per_account` in flight counting `busy`, accounts with fewer in flight
        first (then the one with the oldest due alert); marked sending."""

        def tx(conn: sqlite3.Connection) -> Taken:
            expired = [
                _alert(r)
                for r in conn.execute(
                    "DELETE FROM alert_outbox WHERE sending = 0 AND due_us <= ? "
                    "AND expires_at_us < ? RETURNING id, account_id, type, body, attempts, "
                    "expires_at_us",
                    (now_us, now_us),
                )
            ]
            due = conn.execute(
                "SELECT account_id, min(due_us) AS first FROM alert_outbox "
                "WHERE sending = 0 AND due_us <= ? GROUP BY account_id ORDER BY first",
                (now_us,),
            )
            # Fewest in flight first, then the oldest due: otherwise accounts whose
            # receivers hang, with backlogs older than another's alert, took every
            # place that freed until their backlogs were tried (minutes to hours).
            # sorted() is stable: among equals, the oldest due first.
            accounts = sorted((str(r[0]) for r in due), key=lambda a: busy.get(a, 0))
            taken: list[OutboxAlert] = []
            for account in accounts:
                free = min(per_account - busy.get(account, 0), room - len(taken))
                if free > 0:
                    taken.extend(_take_of(conn, account, now_us, free))
            return Taken(taken, expired)

        return await self._write(tx)

    async def next_due_us(self, after_us: int) -> int | None:
        """The soonest instant after `after_us` an alert in line comes due."""

        def q(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT min(due_us) FROM alert_outbox WHERE sending = 0 AND due_us > ?",
                (after_us,),
            ).fetchone()
            return None if row[0] is None else int(row[0])

        return await self._engine.read(q)

    async def delivered(self, alert_id: str) -> None:
        await self._write(lambda c: c.execute("DELETE FROM alert_outbox WHERE id = ?", (alert_id,)))

    async def drop(self, alert_id: str) -> None:
        await self.delivered(alert_id)

    async def retry_at(self, alert_id: str, due_us: int) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE alert_outbox SET sending = 0, due_us = ? WHERE id = ?", (due_us, alert_id)
            )
        )

    async def held(self) -> dict[str, int]:
        """Alerts in the outbox per account (for tests and the metrics' scrape)."""
        rows = await self._engine.read(
            lambda c: c.execute(
                "SELECT account_id, count(*) FROM alert_outbox GROUP BY account_id"
            ).fetchall()
        )
        return {str(r[0]): int(r[1]) for r in rows}


def _take_of(conn: sqlite3.Connection, account: str, now_us: int, free: int) -> list[OutboxAlert]:
    """The account's oldest due alerts that no older alert of their job holds back."""
    rows = conn.execute(
        "SELECT o.id FROM alert_outbox AS o WHERE o.account_id = ? AND o.sending = 0 "
        "AND o.due_us <= ? AND NOT EXISTS (SELECT 1 FROM alert_outbox AS p "
        "WHERE p.job_id = o.job_id AND p.environment = o.environment AND p.seq < o.seq) "
        "ORDER BY o.seq LIMIT ?",
        (account, now_us, min(free, _TAKE_SCAN)),
    ).fetchall()
    taken = []
    for (alert_id,) in rows:
        row = conn.execute(
            "UPDATE alert_outbox SET sending = 1, attempts = attempts + 1 WHERE id = ? "
            "RETURNING id, account_id, type, body, attempts, expires_at_us",
            (alert_id,),
        ).fetchone()
        taken.append(_alert(row))
    return taken


def _alert(row: sqlite3.Row) -> OutboxAlert:
    return OutboxAlert(
        id=str(row["id"]),
        account_id=str(row["account_id"]),
        type=str(row["type"]),
        body=str(row["body"]),
        attempts=int(row["attempts"]),
        expires_at_us=int(row["expires_at_us"]),
    )
