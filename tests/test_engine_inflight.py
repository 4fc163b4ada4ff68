"""The writes queued for the writer thread: bounded, and cheap when there is room.

`Engine.write` hands a write to the writer thread through a queue that holds
at most `INFLIGHT_MAX` of them; more callers wait in trio, in order, and a
caller cancelled while it waits takes no place. With room, a write takes one
trip through trio's scheduler (the wait for its result): each run's claim
and finish is one, and an `async with` on the semaphore made it two.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import trio
import trio.testing

from jobsd.store.engine import INFLIGHT_MAX, Engine


async def _engine(tmp_path: Path) -> Engine:
    engine = Engine(tmp_path / "x.sqlite3")
    await trio.to_thread.run_sync(engine.start, lambda c: c.execute("CREATE TABLE t (n)"))
    return engine


def _insert(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO t VALUES (1)")


class _Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


async def test_a_write_with_room_is_one_step_of_trio(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    counter = _Steps()

    async def writes() -> None:
        for _ in range(50):
            await engine.write(_insert)

    trio.lowlevel.add_instrument(counter)
    try:
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(writes)
    finally:
        trio.lowlevel.remove_instrument(counter)
        await engine.aclose()
    # 400 writes; the rest are the 8 tasks' starts and the writer's wake-ups of
    # trio (one per batch, `run_sync_soon`). Two steps a write would be 800+.
    assert counter.steps <= 500, counter.steps


async def test_writes_queued_for_the_writer_are_bounded(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    entered, release = threading.Event(), threading.Event()

    def held(conn: sqlite3.Connection) -> None:
        entered.set()
        release.wait(30)

    extra = 40
    done = 0

    async def one() -> None:
        nonlocal done
        await engine.write(_insert)
        done += 1

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.write, held)
            await trio.to_thread.run_sync(entered.wait, 10)
            # The writer is inside `held`: fill the queue to the bound.
            for _ in range(INFLIGHT_MAX - 1):
                nursery.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            assert engine._queue.qsize() == INFLIGHT_MAX - 1
            # Past it, callers wait in trio; cancelled there, they take no place.
            async with trio.open_nursery() as waiting:
                for _ in range(extra):
                    waiting.start_soon(engine.write, _insert)
                await trio.testing.wait_all_tasks_blocked()
                assert engine._queue.qsize() == INFLIGHT_MAX - 1
                waiting.cancel_scope.cancel()
            for _ in range(extra):
                nursery.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            assert engine._queue.qsize() == INFLIGHT_MAX - 1
            release.set()
        rows = await engine.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        release.set()
        await engine.aclose()
    assert done == INFLIGHT_MAX - 1 + extra
    assert rows == done  # the cancelled waiters wrote nothing


async def test_a_caller_cancelled_during_its_write_learns_how_it_went(tmp_path: Path) -> None:
    """Once queued, a write happens whatever its caller does: a cancel waits for
    it to commit and is delivered at the caller's next checkpoint."""
    engine = await _engine(tmp_path)
    entered, release = threading.Event(), threading.Event()
    returned: list[object] = []

    def held(conn: sqlite3.Connection) -> str:
        entered.set()
        release.wait(30)
        conn.execute("INSERT INTO t VALUES (2)")
        return "written"

    async def caller(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            returned.append(await engine.write(held))
            await trio.lowlevel.checkpoint()
            returned.append("not cancelled")  # pragma: no cover

    try:
        async with trio.open_nursery() as nursery:
            scope = await nursery.start(caller)
            await trio.to_thread.run_sync(entered.wait, 10)
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert returned == []  # still waiting for its write
            release.set()
        rows = await engine.read(lambda c: [tuple(r) for r in c.execute("SELECT n FROM t")])
    finally:
        release.set()
        await engine.aclose()
    assert returned == ["written"]
    assert scope.cancelled_caught
    assert rows == [(2,)]


async def test_a_close_with_writes_queued_answers_them_and_returns(tmp_path: Path) -> None:
    """The stop reaches the writer behind writes still queued: they are written
    and answered in the same batch, and the writer thread then ends (else the
    close waited for it for good)."""
    from tests.test_engine_broken import _within

    async def scenario() -> None:
        engine = await _engine(tmp_path)
        entered, release = threading.Event(), threading.Event()

        def wedge(conn: sqlite3.Connection) -> None:
            entered.set()
            release.wait(10)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.write, wedge)
            assert await trio.to_thread.run_sync(entered.wait, 10)
            for _ in range(3):
                nursery.start_soon(engine.write, _insert)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(engine.aclose)  # its stop queues behind the three
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        assert await engine.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 3

    await _within(10, scenario)
