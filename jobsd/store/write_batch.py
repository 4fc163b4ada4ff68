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
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None


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
        pending.done.set()
