"""The database's integrity check (`PRAGMA quick_check`), after the start.

Why not before serving, as it once was: the check reads every page of the
file, about 1.7 s of a 2 s start budget on a million jobs (540 MB), and
grows with the file while nothing else at start does. It runs once, on a
read-only connection of its own, beside the writer (WAL lets a reader and
the writer proceed together); the daemon starts it as soon as it is ready
and, if the check fails, logs it as CRITICAL and stops with exit 2 and the
same guidance a failed check at start gave (`jobsd.lifecycle.check_store`).

What that gives up: for as long as the check runs, a damaged file is served
and written to. That costs nothing a restore does not already cost (the
remedy for a damaged file is the latest backup, and writes after it are
lost either way), and SQLite refuses, with SQLITE_CORRUPT, any statement
that touches a damaged page, so damage is not spread by the writes either.
Such an error before the check has finished stops the daemon with the same
guidance (`damaged`, read by the command line).

A stop while the check runs interrupts it (`sqlite3_interrupt`), so a stop
never waits for a whole read of the file.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

import trio

from jobsd.clock import perf_s
from jobsd.errors import StorageError

log = logging.getLogger("jobsd")

GUIDANCE = "stop jobsd and restore the latest backup (see README, 'Backups')"
_DAMAGE_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def damaged(exc: BaseException) -> bool:
    """Whether SQLite said the file is damaged (or is not a database at all)."""
    code = getattr(exc, "sqlite_errorcode", 0)
    return isinstance(exc, sqlite3.DatabaseError) and (code & 0xFF) in _DAMAGE_CODES


def quick_check(conn: sqlite3.Connection) -> None:
    """`PRAGMA quick_check`; StorageError, with what to do, unless it answers "ok"."""
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        if not damaged(exc):
            raise
        rows = [str(exc)]
    if rows != ["ok"]:
        detail = "; ".join(str(r) for r in rows[:5])
        raise StorageError(f"the database failed PRAGMA quick_check ({detail}): {GUIDANCE}")


def _check_unless_interrupted(conn: sqlite3.Connection) -> StorageError | None:
    """The failure, returned rather than raised: raised out of the nursery it would be grouped."""
    try:
        quick_check(conn)
    except StorageError as exc:
        return exc
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_INTERRUPT:
            raise  # interrupted: a stop, which the caller's cancel scope raises
    return None


async def _interrupt_when_cancelled(conn: sqlite3.Connection) -> None:
    try:
        await trio.sleep_forever()
    finally:
        conn.interrupt()  # a no-op once the check has returned


async def check(open_reader: Callable[[], sqlite3.Connection]) -> None:
    """Run the check on a connection of its own (`Engine.open_reader`); StorageError
    if the file is damaged."""
    began = perf_s()
    conn = open_reader()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_interrupt_when_cancelled, conn)
            # Not abandoned on cancel: the connection is closed only once its thread is done.
            failure = await trio.to_thread.run_sync(_check_unless_interrupted, conn)
            nursery.cancel_scope.cancel()
    finally:
        conn.close()
    if failure is not None:
        raise failure
    log.info("database check (PRAGMA quick_check): ok in %.1f s", perf_s() - began)
