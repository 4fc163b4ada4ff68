"""A write connection that can no longer roll back: every write is told, none waits forever.

The writer thread runs each batch in a transaction and rolls it back when a
write fails. If the rollback itself fails (an I/O error, a connection gone
bad), the connection's state is unknown: nothing more may be written on it.
Before, the exception escaped the writer thread, which died with the batch's
callers unanswered; since a write's wait is shielded, they and every later
write waited forever. Now each of them gets a StorageError, and
`Engine.broken()` returns it, so the daemon stops (exit 2) and systemd
restarts it (`jobsd.lifecycle.watch_writer`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from jobsd.errors import StorageError
from jobsd.store.engine import Engine


async def answer(
    engine: Engine, fn: Callable[[sqlite3.Connection], object], answers: list[str]
) -> None:
    """Writes `fn`; what the engine answered it, appended to `answers`."""
    try:
        await engine.write(fn)
    except StorageError:
        answers.append("refused")
    except sqlite3.Error as exc:
        answers.append(f"error: {exc}")
    else:
        answers.append("done")


def _prepare(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")


def _insert(i: int):  # type: ignore[no-untyped-def]
    def fn(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (id) VALUES (?)", (i,))
        return i

    return fn


def _ruin(conn: sqlite3.Connection) -> None:
    """Leaves the connection unable to roll back, then fails, as an I/O error would."""
    conn.close()
    raise sqlite3.OperationalError("disk I/O error")


async def break_writer(engine: Engine) -> None:
    """Leaves `engine`'s write connection unusable, as the daemon would meet it."""
    with pytest.raises(StorageError):
        await engine.write(_ruin)


async def _within(seconds: float, scenario: Callable[[], Awaitable[None]]) -> None:
    """Runs `scenario` in a trio run of its own on a thread, abandoned if it takes too
    long: a write's wait is shielded, so a writer that never answers would hang
    this test's own run instead of failing it."""
    with trio.fail_after(seconds):
        await trio.to_thread.run_sync(trio.run, scenario, abandon_on_cancel=True)


async def test_a_failed_rollback_answers_every_write_and_says_so(tmp_path: Path) -> None:
    await _within(10, lambda: _every_write_told(tmp_path))


async def test_a_failed_rollback_in_a_batch_answers_the_whole_batch(tmp_path: Path) -> None:
    await _within(10, lambda: _the_batch_told(tmp_path))


async def _every_write_told(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "db.sqlite3")
    engine.start(_prepare)
    try:
        assert await engine.write(_insert(1)) == 1
        with pytest.raises(StorageError, match="could not be rolled back"):
            await engine.write(_ruin)
        with pytest.raises(StorageError, match="could not be rolled back"):
            await engine.write(_insert(2))
        broken = await engine.broken()
        assert "disk I/O error" in str(broken)
    finally:
        await engine.aclose()
    rows = await engine.read(lambda c: [r[0] for r in c.execute("SELECT id FROM t")])
    assert rows == [1]


async def _the_batch_told(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "db.sqlite3")
    engine.start(_prepare)
    entered, release = trio.Event(), trio.Event()
    token = trio.lowlevel.current_trio_token()

    def wedge(conn: sqlite3.Connection) -> None:
        token.run_sync_soon(entered.set)
        trio.from_thread.run(release.wait, trio_token=token)

    answers: list[str] = []

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.write, wedge)
            await entered.wait()
            for fn in (_insert(2), _ruin, _insert(3)):
                nursery.start_soon(answer, engine, fn, answers)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        assert answers == ["refused"] * 3
    finally:
        release.set()
        await engine.aclose()


async def test_a_sound_engine_is_not_broken(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "db.sqlite3")
    engine.start(_prepare)
    try:
        await engine.write(_insert(1))
        with trio.move_on_after(0.2) as waited:
            await engine.broken()
        assert waited.cancelled_caught
    finally:
        await engine.aclose()


async def test_the_daemon_stops_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole daemon: a write connection gone bad stops it (CRITICAL, the
    ordinary stop) and `run_daemon` raises the StorageError, which the CLI
    turns into exit 2 with the message; systemd restarts it."""
    from tests.test_limits import serving_daemon

    raised: list[BaseException] = []
    with trio.fail_after(30), caplog.at_level(logging.INFO, logger="jobsd"):
        try:
            async with serving_daemon(tmp_path) as live:
                await break_writer(live.ctx.store.engine)
                while not live.ctx.health.stopping:  # the daemon stops by itself
                    await trio.sleep(0.01)
        except* StorageError as group:
            raised.extend(group.exceptions)
    assert len(raised) >= 1 and all("could not be rolled back" in str(e) for e in raised)
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1 and "could not be rolled back" in critical[0]
    assert any("the database can no longer be written" in r.getMessage() for r in caplog.records)


def _ruin_rollbacks(conn: sqlite3.Connection) -> None:
    """Fails, and the two ROLLBACKs that follow fail too (an I/O error that passes):
    the connection's state is unknown even if it would take writes again."""
    denied = [2]

    def authorize(action: int, arg1: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and arg1 == "ROLLBACK" and denied[0]:
            denied[0] -= 1
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    conn.set_authorizer(authorize)
    conn.execute("INSERT INTO t (id) VALUES (99)")
    raise sqlite3.OperationalError("disk I/O error")


async def test_writes_queued_behind_the_break_are_refused_though_the_connection_recovered(
    tmp_path: Path,
) -> None:
    await _within(10, lambda: _refused_after_recovery(tmp_path))


async def _refused_after_recovery(tmp_path: Path) -> None:
    """Writes queued while the breaking write ran passed `write`'s own check:
    the writer refuses them, it does not try them on the connection."""
    engine = Engine(tmp_path / "db.sqlite3")
    engine.start(_prepare)
    entered, release = threading.Event(), threading.Event()

    def ruin_when_released(conn: sqlite3.Connection) -> None:
        entered.set()
        release.wait(10)
        _ruin_rollbacks(conn)

    answers: list[str] = []

    try:
        assert await engine.write(_insert(1)) == 1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer, engine, ruin_when_released, answers)
            assert await trio.to_thread.run_sync(entered.wait, 10)
            for i in (2, 3):  # queued behind it, into the writer's next batch
                nursery.start_soon(answer, engine, _insert(i), answers)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        assert answers == ["refused"] * 3
    finally:
        release.set()
        await engine.aclose()
    rows = await engine.read(lambda c: [r[0] for r in c.execute("SELECT id FROM t")])
    assert rows == [1]
