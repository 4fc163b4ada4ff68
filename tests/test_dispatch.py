"""The dispatcher over a real store and pool: fairness, spilling, the sweep, restarts.

Each test runs the executor pool (`tests.test_executor.pool_rig`) with a
`GatedPerformer`, so which run a free worker takes, and when, is exact:
a request ends only when the test releases it.
"""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from jobsd.dispatch import Dispatcher, lane_depth
from jobsd.messages import RunOrder
from jobsd.runs import RunStatus
from tests.test_executor import PoolRig, pool_rig

TWO = ("acme", "zeta")


async def until_started(rig: PoolRig, count: int, timeout_s: float = 10) -> None:
    with trio.fail_after(timeout_s):
        while len(rig.performer.started) < count:
            await trio.sleep(0.005)


async def until_terminal(rig: PoolRig, ids: list[str], account: str = "acme") -> None:
    with trio.fail_after(20):
        while {RunStatus.PENDING, RunStatus.RUNNING} & set(await rig.statuses(ids, account)):
            await trio.sleep(0.02)


def assert_oldest_first(started: list[str], committed: list[str], workers: int) -> None:
    """Runs start in commit order, up to the reordering of claims made at the same moment."""
    for n, run_id in enumerate(started):
        assert run_id in committed[: n + workers], f"start {n} jumped the queue"


async def test_another_account_starts_at_once_on_a_reserved_worker(tmp_path: Path) -> None:
    """8 workers, two accounts: one may hold 7; the eighth waits for the other."""
    async with pool_rig(tmp_path, 8, accounts=TWO) as rig:
        flood = await rig.submit(48, "acme")
        await until_started(rig, 7)
        await trio.sleep(0.1)
        assert rig.performer.active == 7, "the eighth worker is kept for other accounts"
        (calm,) = await rig.submit(1, "zeta")
        await until_started(rig, 8, timeout_s=2)
        assert rig.performer.started[7] == calm
        assert rig.performer.peak == 8
        rig.performer.release_all()
        await until_terminal(rig, flood)
        assert rig.performer.peak == 8
        await rig.pool.stop(1)


async def test_alone_an_account_uses_every_worker(tmp_path: Path) -> None:
    async with pool_rig(tmp_path, 8) as rig:
        await rig.submit(20)
        await until_started(rig, 8)
        await trio.sleep(0.1)
        assert rig.performer.active == 8
        rig.performer.release_all()
        await rig.pool.stop(1)


async def test_the_next_free_worker_serves_the_account_with_fewest_running(
    tmp_path: Path,
) -> None:
    """4 workers (none reserved): the first to free up goes to the waiting account."""
    async with pool_rig(tmp_path, 4, accounts=TWO) as rig:
        flood = await rig.submit(20, "acme")
        await until_started(rig, 4)
        (calm,) = await rig.submit(1, "zeta")
        await trio.sleep(0.1)
        assert calm not in rig.performer.started
        rig.performer.release(flood[0])
        await until_started(rig, 5)
        assert rig.performer.started[4] == calm
        # And back to the flood, in its own order, once the other account has its share.
        rig.performer.release(flood[1])
        await until_started(rig, 6)
        assert rig.performer.started[5] == flood[4]
        rig.performer.release_all()
        await rig.pool.stop(1)


async def test_two_floods_share_the_workers_evenly(tmp_path: Path) -> None:
    async with pool_rig(tmp_path, 4, accounts=TWO) as rig:
        a = await rig.submit(30, "acme")
        z = await rig.submit(30, "zeta")
        await until_started(rig, 4)
        for n in range(20):
            rig.performer.release(next(iter(rig.performer.running)))  # the oldest running
            await until_started(rig, 5 + n)
            if n >= 1:  # acme had all 4 workers before zeta's runs existed; then 2 each
                assert sum(r in a for r in rig.performer.running) == 2
        started = rig.performer.started
        assert (sum(r in a for r in started), sum(r in z for r in started)) == (14, 10)
        assert_oldest_first([r for r in started if r in a], a, 4)
        assert_oldest_first([r for r in started if r in z], z, 4)
        rig.performer.release_all()
        await rig.pool.stop(1)


async def test_a_backlog_past_the_lane_is_read_back_from_the_store(tmp_path: Path) -> None:
    """A lane holds 4; 60 runs offered: the rest wait in the store, none is lost or doubled."""
    async with pool_rig(tmp_path, 2, depth=4) as rig:
        ids = await rig.submit(60)
        await until_started(rig, 2)
        assert rig.dispatcher.queued <= 4
        rig.performer.release_all()
        await until_terminal(rig, ids)
        assert sorted(rig.performer.started) == sorted(ids), "each once"
        assert_oldest_first(rig.performer.started, ids, 2)
        assert set(await rig.statuses(ids)) == {RunStatus.SUCCEEDED}
        await rig.pool.stop(1)


async def test_a_run_committed_but_never_offered_is_swept_up(tmp_path: Path) -> None:
    """Whatever happened after a commit, the sweep finds the PENDING run: no restart."""
    async with pool_rig(tmp_path, 2, sweep_s=0.3) as rig:
        rig.performer.release_all()
        (orphan,) = await rig.commit(1)
        with trio.fail_after(5):
            await until_terminal(rig, [orphan])
        assert rig.performer.started == [orphan]
        await rig.pool.stop(1)


async def test_runs_pending_at_start_run_oldest_first(tmp_path: Path) -> None:
    async with pool_rig(tmp_path, 1, depth=4, pending_at_start=12) as rig:
        await until_started(rig, 1)
        left = await rig.store.runs.oldest_pending("acme", 100)
        assert len(left) == 11
        rig.performer.release_all()
        await until_started(rig, 12)
        assert rig.performer.started[1:] == left  # one worker: exactly in order
        await rig.pool.stop(1)


async def test_a_run_offered_twice_runs_once(tmp_path: Path) -> None:
    async with pool_rig(tmp_path, 3, sweep_s=0.1) as rig:
        ids = await rig.submit(6)
        for run_id in ids:
            rig.dispatcher.offer(RunOrder(run_id, "acme"))
        await trio.sleep(0.3)  # a few sweeps, while every run is queued or running
        rig.performer.release_all()
        await until_terminal(rig, ids)
        await trio.sleep(0.3)
        assert sorted(rig.performer.started) == sorted(ids)
        await rig.pool.stop(1)


async def test_a_stop_leaves_queued_and_spilled_runs_pending(tmp_path: Path) -> None:
    async with pool_rig(tmp_path, 1, depth=2) as rig:
        ids = await rig.submit(10)
        await until_started(rig, 1)
        await rig.pool.stop(0.2)
        assert (await rig.statuses(ids)).count(RunStatus.PENDING) == 9


class NoStore:
    async def pending_accounts(self, limit: int) -> list[str]:
        return []

    async def oldest_pending(self, account_id: str, limit: int) -> list[str]:
        return []


async def test_a_parked_worker_wakes_only_when_a_run_may_be_pickable() -> None:
    """A run's end wakes a parked worker only if its account has runs queued
    (at the cap, now below it); and a closed dispatcher answers every take,
    parked or to come, with None: the pool's stop needs no cancel scope per take."""
    picks = 0

    def cap() -> int:
        nonlocal picks
        picks += 1  # asked at every pick: a woken worker asks again
        return 1

    dispatcher = Dispatcher(NoStore(), depth=4, cap=cap)
    dispatcher.offer(RunOrder("a1", "acme"))
    dispatcher.offer(RunOrder("z1", "zeta"))
    dispatcher.offer(RunOrder("z2", "zeta"))
    taken = [await dispatcher.take(), await dispatcher.take()]
    assert {o.run_id for o in taken if o is not None} == {"a1", "z1"}
    answers: list[RunOrder | None] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _take_into(dispatcher, answers))
        await trio.testing.wait_all_tasks_blocked()
        asked = picks  # parked: zeta is at its cap of 1, acme has nothing queued
        dispatcher.done(taken[0])  # acme's: nothing of acme's to pick
        await trio.testing.wait_all_tasks_blocked()
        assert picks == asked and answers == []
        dispatcher.done(taken[1])  # zeta's, below its cap again: z2
        await trio.testing.wait_all_tasks_blocked()
        assert [o.run_id for o in answers if o is not None] == ["z2"]
        nursery.start_soon(lambda: _take_into(dispatcher, answers))
        await trio.testing.wait_all_tasks_blocked()
        dispatcher.close()
    assert answers[1:] == [None]
    assert await dispatcher.take() is None


async def _take_into(dispatcher: Dispatcher, answers: list[RunOrder | None]) -> None:
    answers.append(await dispatcher.take())


class Backlog:
    """PENDING runs of one account, in the store only (committed, never offered)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    async def pending_accounts(self, limit: int) -> list[str]:
        return ["acme"][:limit] if self.ids else []

    async def oldest_pending(self, account_id: str, limit: int) -> list[str]:
        return self.ids[:limit]


async def test_a_refill_wakes_a_parked_worker_for_each_run_it_adds(
    mock_clock: trio.testing.MockClock,
) -> None:
    """Four workers parked, four runs found by the sweep: all four start at once,
    not one now and the rest as runs end."""
    backlog = Backlog()
    dispatcher = Dispatcher(backlog, depth=16, cap=lambda: 100, sweep_s=5)
    taken: list[str] = []

    async def worker() -> None:
        order = await dispatcher.take()
        assert order is not None
        taken.append(order.run_id)

    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.run)
        for _ in range(4):
            nursery.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()
        backlog.ids = [f"run-{n}" for n in range(4)]
        mock_clock.jump(6)  # the next sweep
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(taken) == backlog.ids
        nursery.cancel_scope.cancel()


def test_a_lane_holds_two_rounds_of_the_workers() -> None:
    """A refill (half a lane) keeps every worker busy for a round: twice the workers,
    never fewer than 16."""
    assert [lane_depth(n) for n in (1, 8, 9, 64)] == [16, 16, 18, 128]
