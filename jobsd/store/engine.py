"""SQLite on threads, behind awaitables.

One writer thread owns the only write connection. Callers hand it a
function of the connection; it drains whatever has queued up, runs the
batch inside one `BEGIN IMMEDIATE` transaction with a savepoint around each
function (so one failure rolls back only its own changes; a function alone
in its transaction needs none), commits once, and only then wakes the
callers, all of them with one wake-up of the trio thread. Concurrent writes therefore cost one fsync
between them, and a caller is never told "done" before its data is durable.

Reads use a small pool of read-only connections on trio's worker threads,
so a long listing never waits behind the writer (WAL lets both proceed);
a read made for an account (`owner`) stays within its share of them
(`jobsd.store.read_shares`).
Listings read through snapshots of their own (`jobsd.store.snapshots`).
A point read (a few rows found by a unique key: one job, one run) runs on the event
loop's thread instead, on a read-only connection that never waits for a
lock: it costs tens of microseconds, less than the hand-over to a worker
thread and back, and a worker thread waiting for the GIL behind a busy loop
made each such read take milliseconds. If SQLite says busy (WAL recovery
after a crash, say), the same read goes to a worker thread and waits there.

Waiting for a write is shielded from cancellation: once a write has been
handed over it will happen, and the caller learns its result rather than
leaving it in doubt. So the writer must answer every write, whatever
happens: a failed write whose transaction cannot be rolled back either (an
I/O error, a connection gone bad) leaves the connection in a state nothing
more may be written on. The writer then answers that batch, everything
queued and everything after with a StorageError that says so, and
`broken()` returns one: the daemon stops on it (exit 2) and systemd
restarts it, reopening the file (`jobsd.lifecycle.watch_writer`).

The write connection keeps its temporary storage in memory. A statement
on `runs` that fires a trigger (the count tables') may abort half-way, so
SQLite keeps a statement journal of every page it touches; with `runs`'
indexes that is ~18 pages, past the 64 KiB SQLite keeps in memory, and the
journal spilled to a temporary file: ~28 `pwrite`s per statement, ~75 of
the writer's ~190 us per run's insert, start and finish
(tests/bench/bench_store.py). In memory, a journal holds only the pages
one statement touches, which the writer's statements bound (retention
deletes in chunks; recovery and cancels touch live runs only).

`checkpoint()` runs a passive checkpoint on the writer thread between its
transactions, for the snapshots' bound on the WAL (`jobsd.store.snapshots`).

`on_batch(size, seconds)` hears, from the writer thread, how many writes
each transaction carried and how long it took from BEGIN to COMMIT (the
`jobsd_store_*` metrics); it must be thread-safe and quick.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio

from jobsd.clock import perf_s
from jobsd.errors import StorageError, database_locked, is_store_busy
from jobsd.quick_acquire import acquire
from jobsd.store.read_shares import ReadShares
from jobsd.store.schema import configure
from jobsd.store.snapshots import Snapshot, SnapshotPool
from jobsd.store.write_batch import Outcome, Pending, alone, in_savepoint, settle, wal_checkpoint

T = TypeVar("T")

_BATCH_MAX = 256
_STOP = object()
# Writes queued for the writer thread at once; more callers wait their turn in
# trio (in order), so the queue between the threads holds at most this many.
INFLIGHT_MAX = 1024


# The WAL is cut back to this after a checkpoint lets it restart; see `start`.
# Above what large writes reach between checkpoints (a batch of 5 MiB jobs),
# so steady state never pays for cutting it and growing it again.
WAL_SIZE_LIMIT = 64 * 1024 * 1024


class Engine:
    def __init__(
        self,
        path: Path,
        *,
        readers: int = 4,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._path = path
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._token = trio.lowlevel.current_trio_token()
        self._inflight = trio.Semaphore(INFLIGHT_MAX)
        self._read_conns: list[sqlite3.Connection] = []
        self._read_limiter = trio.CapacityLimiter(readers)
        self.read_shares = ReadShares(readers)
        self._point_conn: sqlite3.Connection | None = None
        self._readers = readers
        self.snapshots = SnapshotPool(
            self.open_reader, checkpoint=self.checkpoint, wal=Path(f"{path}-wal")
        )
        self._thread: threading.Thread | None = None
        self._closed = False
        self._broken_why: str | None = None  # set once, by the writer thread
        self._broken = trio.Event()

    def start(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Open the write connection, run `prepare` on it, start the thread."""
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=5.0
        )
        try:
            configure(conn)
            prepare(conn)
            # After the migrations (whose index builds may sort a million rows):
            # see the module note.
            conn.execute("PRAGMA temp_store = MEMORY")
            # A reader holding one snapshot (a backup's copy, a streamed list)
            # keeps every commit made meanwhile in the WAL. SQLite reuses the
            # file from its start afterwards, but without a limit never makes it
            # smaller: a backup under write load left it at its peak until a
            # restart. Steady state stays under the limit (a checkpoint every
            # ~4 MiB), so this costs nothing then.
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            if is_store_busy(exc):  # in use, not damaged: no backup to restore
                raise database_locked(exc, self._path) from None
            raise StorageError(
                f"{self._path} cannot be used as a jobsd database ({exc}): if it is damaged, "
                "stop jobsd and restore the latest backup (see README, 'Backups'); if the path "
                "is wrong, fix storage.path"
            ) from exc
        except BaseException:
            conn.close()
            raise
        self._thread = threading.Thread(
            target=self._loop, args=(conn,), name="jobsd-store-writer", daemon=True
        )
        self._thread.start()

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # A caller cancelled learns that first, not that the store closed since:
        # a stop cancels a reload's sync between batches, then closes the store.
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise RuntimeError("the store is closed")
        if self._broken_why is not None:
            raise StorageError(self._broken_why)
        pending = Pending()
        await acquire(self._inflight)  # no step when there is room: the wait below is one
        try:
            self._queue.put((fn, pending))
            await pending.wait()  # shielded: once queued, the write happens
        finally:
            self._inflight.release()
        if pending.error is not None:
            raise pending.error
        return pending.value  # type: ignore[no-any-return]

    async def checkpoint(self) -> bool:
        """A passive checkpoint on the writer thread, between its transactions; whether
        the whole log is now in the database file (`jobsd.store.snapshots`)."""
        busy, logged, copied = await self.write(wal_checkpoint)
        return bool(busy == 0 and logged == copied)

    async def broken(self) -> StorageError:
        """Returns once the write connection is unusable (see the module note)."""
        await self._broken.wait()
        assert self._broken_why is not None
        return StorageError(self._broken_why)

    async def read(self, fn: Callable[[sqlite3.Connection], T], owner: str | None = None) -> T:
        async with self.read_shares.held(owner), self._read_limiter:
            conn = self._read_conns.pop() if self._read_conns else self.open_reader()
            try:
                return await trio.to_thread.run_sync(fn, conn, abandon_on_cancel=False)
            finally:
                self._read_conns.append(conn)

    async def point_read(
        self, fn: Callable[[sqlite3.Connection], T], owner: str | None = None
    ) -> T:
        """`read` for a bounded lookup by key, run here; waits only if SQLite is busy."""
        try:
            return self.point_read_now(fn)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY:
                raise
        return await self.read(fn, owner)

    def point_read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A point read here and now, never waiting: SQLite's busy error instead."""
        if self._closed:
            raise RuntimeError("the store is closed")
        if self._point_conn is None:
            self._point_conn = self.open_reader()
            self._point_conn.execute("PRAGMA busy_timeout = 0")
        return fn(self._point_conn)

    @asynccontextmanager
    async def snapshot(self, owner: str) -> AsyncIterator[Snapshot]:
        """A read transaction held across awaits; see `jobsd.store.snapshots`."""
        if self._closed:
            raise RuntimeError("the store is closed")
        async with self.snapshots.snapshot(owner) as snap:
            yield snap

    def open_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            f"file:{self._path}?mode=ro",
            uri=True,
            check_same_thread=False,
            timeout=5.0,
            isolation_level=None,
        )
        configure(conn, readonly=True)
        return conn

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            await trio.to_thread.run_sync(self._thread.join)
        for conn in self._read_conns:
            conn.close()
        self._read_conns.clear()
        if self._point_conn is not None:
            self._point_conn.close()
            self._point_conn = None
        self.snapshots.close()

    # -- the writer thread ----------------------------------------------------

    def _loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch = [first]
                stop_after = False
                later: list[Any] = []  # a checkpoint runs alone, after the batch
                while len(batch) < _BATCH_MAX and first[0] is not wal_checkpoint:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop_after = True
                        break
                    if item[0] is wal_checkpoint:
                        later.append(item)
                    else:
                        batch.append(item)
                self._run_batch(conn, batch)
                for item in later:
                    self._run_batch(conn, [item])
                if stop_after:
                    return
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        began = perf_s()
        if self._broken_why is None:
            outcomes = self._transaction(conn, batch)
        else:
            outcomes = [(p, None, StorageError(self._broken_why)) for _, p in batch]
        if self._on_batch is not None and batch[0][0] is not wal_checkpoint:
            self._on_batch(len(batch), perf_s() - began)
        # One wake-up of the trio thread per batch, not one per write.
        self._token.run_sync_soon(settle, outcomes)

    def _transaction(self, conn: sqlite3.Connection, batch: list[Any]) -> list[Outcome]:
        if batch[0][0] is wal_checkpoint:  # alone in its batch (see `_loop`), outside BEGIN
            try:
                return [(batch[0][1], wal_checkpoint(conn), None)]
            except sqlite3.Error as exc:
                return [(batch[0][1], None, exc)]
        try:
            conn.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:
                return [alone(conn, *batch[0])]
            outcomes = [in_savepoint(conn, fn, pending) for fn, pending in batch]
            conn.execute("COMMIT")
            return outcomes
        except BaseException as exc:
            failed = exc
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except BaseException as lost:
            while failed.__context__ is not None:  # what failed first, not its rollback
                failed = failed.__context__
            self._broken_why = (
                f"a write to the database failed ({failed}) and could not be rolled back"
                f" ({lost}): nothing more can be written on this connection, so jobsd stops;"
                " restarted, it reopens the file (if this repeats, check the disk and"
                " see README, 'Backups')"
            )
            self._token.run_sync_soon(self._broken.set)
            return [(p, None, StorageError(self._broken_why)) for _, p in batch]
        return [(pending, None, failed) for _, pending in batch]
