"""Read transactions held across awaits, for responses streamed in chunks.

A listing of 1,000 jobs with 1 MiB bodies is a gigabyte; read whole, one
request could take the daemon's memory. A `Snapshot` instead keeps one read
transaction open on a connection of its own while the API encodes and sends
rows a chunk at a time, so memory holds one chunk, not the page, and every
chunk comes from the same instant of the database (WAL gives each reader its
own): a page and its `meta.total` agree exactly, however long the client
takes to read (bounded by the response timeout).

Holding a snapshot holds a connection and pins the WAL: nothing written
after it began is checkpointed past it, and the log starts over only when no
reader uses it. Lists that overlap one another (two of an account, each
begun before the other ended) kept the log from ever starting over while
writes went on, and it grew without end. So once the log is past
`wal_barrier` and not all in the database file, a new snapshot waits for
the open ones to end and for the writer's checkpoint (`Engine.checkpoint`);
one begun after that reads the database file and does not pin the log.
Snapshots are also few and shared fairly: at most `per_owner` at once for one owner (an account) and
`total` overall. A request that cannot get one within `wait_s` is refused
(429 when its own account holds its share, else 503, both with
`Retry-After`) before any byte of the response is sent. Snapshots never
take the readers that single reads use (`Engine.read`), so a get or a
health check never waits behind a list.
"""

from __future__ import annotations

import sqlite3
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import trio

from jobsd import errors

T = TypeVar("T")

CHUNK_BYTES = 512 * 1024
# The log's size past which a new snapshot waits for the open ones (module note):
# far above what it reaches while checkpoints complete (~4 MiB).
WAL_BARRIER = 64 * 1024 * 1024
RETRY_AFTER_S = 5


def row_bytes(row: sqlite3.Row) -> int:
    """What a row's text holds, in characters: the measure of a chunk."""
    return sum(len(value) for value in row if isinstance(value, str | bytes))


class Snapshot:
    """One read transaction on one connection; see the module note."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await trio.to_thread.run_sync(fn, self._conn, abandon_on_cancel=False)

    async def chunks(
        self,
        query: Callable[[sqlite3.Connection], Iterable[sqlite3.Row]],
        convert: Callable[[sqlite3.Connection, list[sqlite3.Row]], list[T]],
        *,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> AsyncGenerator[list[T], None]:
        """The query's rows in lists of about `chunk_bytes` of row text (a
        larger row is a chunk of its own), each converted on the store's
        thread by `convert`, which may read more of the snapshot."""
        rows: Iterator[sqlite3.Row] = iter(await self.read(query))

        def take(conn: sqlite3.Connection) -> list[T]:
            chunk: list[sqlite3.Row] = []
            size = 0
            for row in rows:
                chunk.append(row)
                size += row_bytes(row)
                if size >= chunk_bytes:
                    break
            return convert(conn, chunk) if chunk else []

        while chunk := await self.read(take):
            yield chunk


class SnapshotPool:
    """The connections snapshots use, and who may hold one."""

    def __init__(
        self,
        open_conn: Callable[[], sqlite3.Connection],
        *,
        total: int = 8,
        per_owner: int = 2,
        wait_s: float = 10.0,
        checkpoint: Callable[[], Awaitable[bool]] | None = None,
        wal: Path | None = None,
    ) -> None:
        self._open_conn = open_conn
        self._idle: list[sqlite3.Connection] = []
        self._total = trio.Semaphore(total)
        self._per_owner = per_owner
        self._owners: dict[str, trio.Semaphore] = {}
        self.wait_s = wait_s
        self._closed = False
        self._checkpoint = checkpoint
        self._wal = wal
        self.wal_barrier = WAL_BARRIER
        self._open = 0
        self._drained = trio.Event()
        self._drained.set()

    @asynccontextmanager
    async def snapshot(self, owner: str) -> AsyncIterator[Snapshot]:
        deadline = trio.current_time() + self.wait_s
        await self._admit(owner, deadline)
        try:
            await self._barrier(deadline)
            self._open += 1
            if self._open == 1:
                self._drained = trio.Event()
            try:
                conn = self._idle.pop() if self._idle else self._open_conn()
                try:
                    await trio.to_thread.run_sync(conn.execute, "BEGIN", abandon_on_cancel=False)
                    yield Snapshot(conn)
                finally:
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(_end_read, conn)
                    if self._closed:
                        conn.close()
                    else:
                        self._idle.append(conn)
            finally:
                self._open -= 1
                if not self._open:
                    self._drained.set()
        finally:
            self._release(owner)

    async def _barrier(self, deadline: float) -> None:
        """Past `wal_barrier`, with some of the log not yet in the database file:
        wait for the open snapshots to end, then have the writer checkpoint."""
        if self._checkpoint is None or self._wal is None:
            return
        try:
            if self._wal.stat().st_size <= self.wal_barrier:
                return
        except FileNotFoundError:
            return
        if await self._checkpoint():
            return  # all of it is in the database file: a snapshot begun now does not pin it
        with trio.move_on_at(deadline) as waiting:
            while self._open:
                await self._drained.wait()
        if waiting.cancelled_caught:
            raise _busy(503, "the lists being sent hold the database's log until they end")
        await self._checkpoint()

    async def _admit(self, owner: str, deadline: float) -> None:
        mine = self._owners.setdefault(owner, trio.Semaphore(self._per_owner))
        with trio.move_on_at(deadline) as waiting:
            await mine.acquire()
        if waiting.cancelled_caught:
            raise _busy(429, "too many list responses of this account are being sent")
        try:
            with trio.move_on_at(deadline) as waiting:
                await self._total.acquire()
        except BaseException:
            mine.release()
            raise
        if waiting.cancelled_caught:
            mine.release()
            raise _busy(503, "too many list responses are being sent")

    def _release(self, owner: str) -> None:
        self._total.release()
        mine = self._owners[owner]
        mine.release()
        if mine.value == self._per_owner and not mine.statistics().tasks_waiting:
            del self._owners[owner]

    def close(self) -> None:
        """Close the idle connections; one in use is closed when its snapshot ends."""
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()


def _end_read(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("COMMIT")


def _busy(status: int, detail: str) -> errors.ApiError:
    code = "too_many_lists" if status == 429 else "busy"
    title = "Too Many Requests" if status == 429 else "Service Unavailable"
    err = errors.ApiError(
        status,
        [errors.ErrorItem(status, code, title, f"{detail}; retry in {RETRY_AFTER_S} s")],
    )
    err.headers["Retry-After"] = str(RETRY_AFTER_S)
    return err
