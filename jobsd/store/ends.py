"""Telling the observer which runs ended, once their ends have committed.

Runs end in several transactions (finished by an executor, refused for
quota, lost at a stop, canceled through the API, canceled with their job).
Each of those writes goes through `write_ending`: the transaction lists
the runs it ended, their facts are read in that same transaction, and the
observer hears of them only after the commit. So the metrics and the run
log lines count exactly the ends the database holds: a rolled-back write
tells nothing, and no end is told twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from jobsd.messages import RunEnded
from jobsd.store import runs_sql
from jobsd.store.engine import Engine

T = TypeVar("T")


class RunObserver(Protocol):
    def runs_ended(self, ends: Sequence[RunEnded]) -> None: ...

    def retry_scheduled(self) -> None:
        """Once per retry run committed (`jobsd.store.retries`)."""


async def write_ending(
    engine: Engine,
    observer: RunObserver | None,
    tx: Callable[[sqlite3.Connection, list[str]], T],
) -> T:
    """Run `tx(conn, ended)` in the writer; `tx` appends the ids of the runs it ended."""

    def wrapped(conn: sqlite3.Connection) -> tuple[T, list[RunEnded]]:
        ended: list[str] = []
        value = tx(conn, ended)
        if observer is None or not ended:
            return value, []
        return value, runs_sql.ended(conn, ended)

    value, ends = await engine.write(wrapped)
    if ends and observer is not None:
        observer.runs_ended(ends)
    return value
