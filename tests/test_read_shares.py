"""One account's reads hold at most half of the store's read threads
(`jobsd.store.read_shares`), and the accounts together never the last one.

Reads that block on a gate (real threads, a real SQLite file) stand in for
an account's slow `GET /usage`: before the shares, four of them took every
thread and another account's read, or the scheduler's, waited behind them
as long as they lasted.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from jobsd.store.engine import Engine
from jobsd.store.read_shares import ReadShares
from tests.conftest import TOKEN_B, make_harness

HELD_S = 0.5  # long enough for a read that could start to have started


class Gate:
    """Reads that wait on a threading.Event, counting how many are running."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.running = 0
        self._lock = threading.Lock()

    def read(self, conn: sqlite3.Connection) -> int:
        with self._lock:
            self.running += 1
        self.open.wait(30)
        return int(conn.execute("SELECT 1").fetchone()[0])


def quick(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT 2").fetchone()[0])


async def _answers(read: Callable[[], object]) -> None:
    with trio.fail_after(5):
        await read()  # type: ignore[misc]


async def test_an_accounts_reads_take_half_the_threads_and_leave_the_rest(
    tmp_path: Path,
) -> None:
    engine = Engine(tmp_path / "shares.sqlite3", readers=4)
    engine.start(lambda conn: None)
    acme, other = Gate(), Gate()
    try:
        async with trio.open_nursery() as nursery:
            try:
                for _ in range(4):  # twice its share
                    nursery.start_soon(engine.read, acme.read, "acme")
                await trio.sleep(HELD_S)
                assert acme.running == 2  # its share; the other two wait in line
                # Another account, and the daemon itself, are answered at once.
                await _answers(lambda: engine.read(quick, "other"))
                await _answers(lambda: engine.read(quick))
                for _ in range(2):
                    nursery.start_soon(engine.read, other.read, "other")
                await trio.sleep(HELD_S)
                assert other.running == 1  # the accounts' places: all threads but one
                await _answers(lambda: engine.read(quick))  # the daemon's own thread
                assert engine.read_shares.shares_kept() == 2
            finally:
                acme.open.set()
                other.open.set()
        assert (acme.running, other.running) == (4, 2)  # every read was answered
        assert engine.read_shares.shares_kept() == 0  # no share outlives its reads
    finally:
        await engine.aclose()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/usage",
        "/api/v1/retry-policies",
        "/api/v1/run_stats?filter[created_at]=[2026-06-01T00:00:00Z,2026-06-05T00:00:00Z)",
    ],
)
async def test_the_apis_reads_count_against_their_accounts_share(tmp_path: Path, path: str) -> None:
    """With acme's share taken, acme's read waits for it and another account's
    does not: the API names the account it reads for."""
    async with make_harness(tmp_path) as h:
        gate = Gate()
        acme_done = trio.Event()

        async def acme_reads() -> None:
            r = await h.get(path)
            assert r.status_code == 200, await r.get_data()
            acme_done.set()

        async with trio.open_nursery() as nursery:
            try:
                for _ in range(h.store.engine.read_shares.per_owner):
                    nursery.start_soon(h.store.engine.read, gate.read, "acme")
                await trio.sleep(HELD_S / 2)
                nursery.start_soon(acme_reads)
                with trio.fail_after(5):
                    r = await h.get(path, token=TOKEN_B)
                assert r.status_code == 200, await r.get_data()
                await trio.sleep(HELD_S)
                assert not acme_done.is_set()  # past its share: waits its turn
            finally:
                gate.open.set()
        assert acme_done.is_set()


async def test_a_share_still_held_is_kept_when_one_of_its_reads_ends() -> None:
    # Dropped while another read still held it, the next reads would start a
    # fresh share beside it: the account would hold more than half.
    shares = ReadShares(4)
    inside = [0]
    gates = [trio.Event() for _ in range(4)]

    async def hold(gate: trio.Event) -> None:
        async with shares.held("acme"):
            inside[0] += 1
            await gate.wait()
            inside[0] -= 1

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for gate in gates[:2]:
                nursery.start_soon(hold, gate)
            await trio.testing.wait_all_tasks_blocked()
            gates[0].set()  # one ends; the other still holds the share
            await trio.testing.wait_all_tasks_blocked()
            for gate in gates[2:]:
                nursery.start_soon(hold, gate)
            await trio.testing.wait_all_tasks_blocked()
            assert inside[0] == 2  # its share, not a second one beside it
            for gate in gates:
                gate.set()
    assert shares.shares_kept() == 0
