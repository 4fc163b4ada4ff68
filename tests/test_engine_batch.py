"""The writer's batches: one failing write rolls back its own changes, and only them.

Writes that queue while the writer is busy commit together, each in its own
savepoint (`jobsd.store.engine`). These batches mix writes that succeed,
fail before changing anything, fail after changing rows, and fail on a
constraint after an insert of their own, in any order and in long runs.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.store.engine import Engine

KINDS = ("ok", "fail_before", "fail_after", "fail_sql")


class Refused(Exception):
    pass


def _write(i: int, kind: str) -> object:
    def fn(conn: sqlite3.Connection) -> int:
        if kind == "fail_before":
            raise Refused(i)
        conn.execute("INSERT INTO t (id, note) VALUES (?, 'a')", (i,))
        conn.execute("UPDATE total SET n = n + 1")
        if kind == "fail_after":
            raise Refused(i)
        if kind == "fail_sql":
            conn.execute("INSERT INTO t (id, note) VALUES (?, 'b')", (i,))  # the same key
        return i

    return fn


def _prepare(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
    conn.execute("CREATE TABLE total (n INTEGER NOT NULL)")
    conn.execute("INSERT INTO total VALUES (0)")


async def _one_batch(path: Path, kinds: list[str]) -> None:
    batches: list[int] = []
    engine = Engine(path, on_batch=lambda size, _s: batches.append(size))
    engine.start(_prepare)
    entered, release = threading.Event(), threading.Event()

    def wedge(conn: sqlite3.Connection) -> None:
        entered.set()
        release.wait(30)

    results: dict[int, object] = {}

    async def one(i: int, kind: str) -> None:
        try:
            results[i] = await engine.write(_write(i, kind))  # type: ignore[arg-type]
        except (Refused, sqlite3.IntegrityError) as exc:
            results[i] = type(exc)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.write, wedge)
            assert await trio.to_thread.run_sync(entered.wait, 10)
            for i, kind in enumerate(kinds):
                nursery.start_soon(one, i, kind)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        assert batches == [1, len(kinds)]  # the wedge alone, then every write in one batch
        ok = [i for i, kind in enumerate(kinds) if kind == "ok"]
        expected = {
            i: i if kind == "ok" else (sqlite3.IntegrityError if kind == "fail_sql" else Refused)
            for i, kind in enumerate(kinds)
        }
        assert results == expected
        rows, total = await engine.read(
            lambda c: (
                [tuple(r) for r in c.execute("SELECT id, note FROM t ORDER BY id")],
                c.execute("SELECT n FROM total").fetchone()[0],
            )
        )
        assert rows == [(i, "a") for i in ok]
        assert total == len(ok)
    finally:
        release.set()
        await engine.aclose()


@given(st.lists(st.sampled_from(KINDS), min_size=2, max_size=70))
@settings(max_examples=40, deadline=None)
def test_a_failing_write_rolls_back_only_itself(kinds: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="jobsd-batch-") as tmp:
        trio.run(_one_batch, Path(tmp) / "db.sqlite3", kinds)


def test_long_runs_of_failures_and_successes_across_groups() -> None:
    kinds = ["fail_after"] * 20 + ["ok"] * 40 + ["fail_sql", "ok"] * 20 + ["fail_before"] * 3
    with tempfile.TemporaryDirectory(prefix="jobsd-batch-") as tmp:
        trio.run(_one_batch, Path(tmp) / "db.sqlite3", kinds)


async def test_a_checkpoint_is_no_batch_of_writes(tmp_path: Path) -> None:
    """`on_batch` feeds `jobsd_store_batch_size` and `_transaction_seconds`: the
    writer's checkpoints between transactions are none of those."""
    batches: list[int] = []
    engine = Engine(tmp_path / "db.sqlite3", on_batch=lambda size, _s: batches.append(size))
    engine.start(_prepare)
    try:
        await engine.write(_write(1, "ok"))
        await engine.checkpoint()
        await engine.write(_write(2, "ok"))
    finally:
        await engine.aclose()
    assert batches == [1, 1]


async def test_a_write_sqlite_already_rolled_back_is_told_its_own_error(tmp_path: Path) -> None:
    """SQLite rolls a transaction back itself on some errors (a full disk): the
    write's caller learns that error, not the failed ROLLBACK's, and the store
    goes on."""

    def rolled_back(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (id, note) VALUES (1, 'a')")
        conn.execute("ROLLBACK")  # as SQLite does on SQLITE_FULL
        raise sqlite3.OperationalError("database or disk is full")

    engine = Engine(tmp_path / "db.sqlite3")
    engine.start(_prepare)
    try:
        with pytest.raises(sqlite3.OperationalError, match="disk is full"):
            await engine.write(rolled_back)
        assert await engine.write(_write(2, "ok")) == 2
        rows = await engine.read(lambda c: [r[0] for r in c.execute("SELECT id FROM t")])
    finally:
        await engine.aclose()
    assert rows == [2]
