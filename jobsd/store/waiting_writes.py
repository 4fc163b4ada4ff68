"""The daemon's own writes wait out a database another process keeps locked.

Another process may hold SQLite's write lock past the store's 5 s busy
timeout (an operator's `sqlite3` shell in a transaction, a tool of theirs).
An API write then answers `503 store_busy`, and its client tries again. The
daemon's own writes have no client to try again: a run's claim, its
outcome, a slot's firing, a retry's release. Each used to raise, which
ended the daemon (exit 2, no stop sequence), so a response already received
was never recorded (the run read `FAILED`/`WORKER_LOST` after the restart,
as did every other run in flight). A write refused for busy rolled back and
changed nothing, so it is simply tried again once the lock may be gone,
for as long as the other process keeps it: what only this process knows
is kept, and the record is written as soon as it can be.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import TypeVar

import trio

from jobsd.errors import is_store_busy
from jobsd.store.engine import Engine

log = logging.getLogger("jobsd.store")

T = TypeVar("T")

# Between a refused write and its next try (each try itself waits up to the
# busy timeout for the lock).
PAUSE_S = 0.5


async def write_when_free(engine: Engine, fn: Callable[[sqlite3.Connection], T], what: str) -> T:
    """`engine.write(fn)`, tried again for as long as the database stays locked by
    another process; `what` names the write in the warning logged each time."""
    while True:
        try:
            return await engine.write(fn)
        except sqlite3.OperationalError as exc:
            if not is_store_busy(exc):
                raise
            log.warning(
                "%s waits: the database stayed locked by another process past the busy "
                "timeout (%s); trying again",
                what,
                exc,
            )
        await trio.sleep(PAUSE_S)
