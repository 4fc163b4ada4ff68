"""The writer's transactions, one write at a time: a write's result or error,
kept for its caller until the batch is settled with one wake-up of the trio
thread (`jobsd.store.engine`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import trio


class Pending:
    """A write's caller, parked by hand until its batch is settled.

    Not cancellable once its write is queued: the write happens whatever the
    caller does, so it waits to learn how (a cancel is delivered at its next
    checkpoint). That is a shield without a cancel scope, and without an
    Event: each claim and each finish of a run paid for both.
    """

    __slots__ = ("error", "parked", "settled", "task", "value")

    def __init__(self) -> None:
        self.task = trio.lowlevel.current_task()
        self.parked = False
        self.settled = False
        self.value: Any = None
        self.error: BaseException | None = None

    async def wait(self) -> None:
        if self.settled:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        self.parked = True
        await trio.lowlevel.wait_task_rescheduled(_never_abort)


def _never_abort(_: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


Outcome = tuple[Pending, Any, BaseException | None]


def wal_checkpoint(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """Run by the writer alone, outside any transaction (a checkpoint cannot run in one)."""
    busy, logged, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(busy), int(logged), int(copied)


def alone(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any], pending: Pending
) -> Outcome:
    """A write alone in its transaction needs no savepoint: its failure rolls it all back."""
    try:
        value = fn(conn)
    except BaseException as exc:
        if conn.in_transaction:  # SQLite may have rolled back already (a full disk)
            conn.execute("ROLLBACK")
        return pending, None, exc
    conn.execute("COMMIT")
    return pending, value, None


def in_savepoint(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any], pending: Pending
) -> Outcome:
    """One write of a batch: its failure rolls back its own changes only."""
    conn.execute("SAVEPOINT op")
    try:
        value = fn(conn)
    except BaseException as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return pending, None, exc
    conn.execute("RELEASE op")
    return pending, value, None


def settle(outcomes: list[Outcome]) -> None:
    for pending, value, error in outcomes:
        pending.value = value
        pending.error = error
        pending.settled = True
        if pending.parked:
            pending.parked = False
            trio.lowlevel.reschedule(pending.task)
