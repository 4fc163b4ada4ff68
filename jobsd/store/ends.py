"""Telling the observer which runs ended, once their ends have committed.

Runs end in several transactions (finished by an executor, refused for
quota, lost at a stop, canceled through the API, canceled with their job).
Each of those writes goes through `write_ending`: the transaction lists
the runs it ended, their facts are read in that same transaction (or
handed over by the statement that ended them, `Ended.add`, so a finish
reads nothing twice), and the observer hears of them only after the
commit. So the metrics and the run
log lines count exactly the ends the database holds: a rolled-back write
tells nothing, and no end is told twice. The alerts those ends make are
written in the same transaction (`jobsd.store.outbox`), for the same reason.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from jobsd.messages import RunEnded
from jobsd.store import ended_sql
from jobsd.store.engine import Engine
from jobsd.store.outbox import AlertRecorder
from jobsd.store.outbox_rows import Recorded
from jobsd.store.waiting_writes import write_when_free

T = TypeVar("T")


class Ended(list[str]):
    """The ids of the runs a transaction ended; `known`: the facts of those whose
    ending statement returned them already (`add`), which need no second read."""

    def __init__(self) -> None:
        super().__init__()
        self.known: dict[str, RunEnded] = {}

    def add(self, end: RunEnded) -> None:
        self.append(end.run_id)
        self.known[end.run_id] = end


class RunObserver(Protocol):
    def runs_ended(self, ends: Sequence[RunEnded]) -> None: ...

    def retry_scheduled(self) -> None:
        """Once per retry run committed (`jobsd.store.retries`)."""


async def write_ending(
    engine: Engine,
    observer: RunObserver | None,
    tx: Callable[[sqlite3.Connection, Ended], T],
    alerts: AlertRecorder | None = None,
    *,
    waiting: str | None = None,
) -> T:
    """Run `tx(conn, ended)` in the writer; `tx` appends the ids of the runs it ended.

    With `alerts`, the alerts those ends make are written in the same
    transaction, after `tx` (so a retry it inserted is there to be seen).
    With `waiting` (the daemon's own writes, named so in the log), a database
    locked by another process is waited out (`jobsd.store.waiting_writes`).
    """

    def wrapped(conn: sqlite3.Connection) -> tuple[T, list[RunEnded], Recorded | None]:
        ended = Ended()
        value = tx(conn, ended)
        recorded = None if alerts is None else alerts.record(conn, ended, ended.known)
        if observer is None or not ended:
            return value, [], recorded
        unread = [run_id for run_id in ended if run_id not in ended.known]
        return value, [*ended.known.values(), *ended_sql.ended(conn, unread)], recorded

    if waiting is None:
        value, ends, recorded = await engine.write(wrapped)
    else:
        value, ends, recorded = await write_when_free(engine, wrapped, waiting)
    if ends and observer is not None:
        observer.runs_ended(ends)
    if recorded is not None and alerts is not None:
        alerts.committed(recorded)
    return value
