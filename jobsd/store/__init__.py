"""The store: the one owner of SQLite.

`open_store` checks the file (`PRAGMA quick_check`), applies numbered
migrations, starts the writer thread, and yields a `Store` whose `jobs` and
`runs` parts expose typed awaitables. It closes last, after every actor
that might still write has stopped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.messages import JobChanged
from jobsd.store.engine import Engine
from jobsd.store.jobs import JobStore
from jobsd.store.runs import Claim, DueJob, RunStore
from jobsd.store.schema import migrate, quick_check


@dataclass(frozen=True)
class Store:
    jobs: JobStore
    runs: RunStore
    engine: Engine


def _prepare(conn: sqlite3.Connection) -> None:
    quick_check(conn)
    migrate(conn)


@asynccontextmanager
async def open_store(
    path: Path,
    keyring: KeyRing,
    clock: Clock,
    changes: trio.MemorySendChannel[JobChanged] | None = None,
) -> AsyncIterator[Store]:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = Engine(path)
    await trio.to_thread.run_sync(engine.start, _prepare)
    try:
        yield Store(
            jobs=JobStore(engine, keyring, clock, changes),
            runs=RunStore(engine, keyring, clock),
            engine=engine,
        )
    finally:
        with trio.CancelScope(shield=True):
            await engine.aclose()


__all__ = ["Claim", "DueJob", "Store", "open_store"]
