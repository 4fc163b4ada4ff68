"""Worker processes (`jobsd.workers.pool`) with real children, against real targets.

The daemon's side here is only `WorkerProcesses`: it has no delivery, no
address policy and no dialler of its own, so whatever a request did, a
worker process did it. The daemon around it is in test_workers_daemon.py.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from jobsd.config import LogConfig
from jobsd.job_model import Header, HttpConfig
from jobsd.messages import Outcome
from jobsd.runs import FailureReason, RunStatus
from jobsd.workers import pool as pool_module
from jobsd.workers.child_link import WORKER_LOST_ERROR
from jobsd.workers.count import process_count
from jobsd.workers.pool import WorkerProcesses
from tests.crash_workers import gone
from tests.holding_target import RUN_ID, holding_target

STAMP = [("X-Jobsd-Run-Id", "run-1"), ("webhook-signature", "v1,c2lnbmVk")]


@asynccontextmanager
async def processes(count: int = 1) -> AsyncIterator[WorkerProcesses]:
    pool = WorkerProcesses(count, allow_cidrs=["127.0.0.1/32"], log=LogConfig(), workers=8)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        with trio.fail_after(30):
            while len(pool.pids) < count:  # they start beside the daemon, not before it
                await trio.sleep(0.02)
        yield pool
        nursery.cancel_scope.cancel()


def stamp(run_id: str) -> list[tuple[str, str]]:
    return [(RUN_ID, run_id)]


async def test_auto_is_one_per_usable_core_but_the_daemons_own() -> None:
    assert process_count("auto") == len(os.sched_getaffinity(0)) - 1
    assert process_count(0) == 0 and process_count(3) == 3
    # A resolver of this process cannot cross to another.
    assert process_count(3, resolver=lambda host, port: None) == 0


async def test_none_under_a_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    assert process_count(3) == 0


async def test_a_request_goes_to_a_worker_and_its_outcome_comes_back() -> None:
    async with holding_target() as target, processes() as pool:
        headers = (Header("Authorization", "Bearer job-secret"),)
        config = HttpConfig(url=f"{target.url}/ok", headers=headers, body="{}", timeout_s=10)
        outcome = await pool.perform(config, stamp=STAMP)
    assert outcome.status is RunStatus.SUCCEEDED, outcome
    assert outcome.result is not None and outcome.result["status"] == 200
    assert outcome.request["headers"] == [{"name": "Authorization", "value": "<redacted>"}]
    [seen] = target.headers
    assert seen["authorization"] == "Bearer job-secret"  # the value crossed the pair
    assert seen["webhook-signature"] == "v1,c2lnbmVk" and seen[RUN_ID] == "run-1"


async def test_the_address_policy_is_enforced_in_the_worker() -> None:
    """A loopback address outside the allowlist: refused where the socket is opened."""
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.2")
    port = listener.socket.getsockname()[1]
    async with listener, processes() as pool:
        config = HttpConfig(url=f"http://127.0.0.2:{port}/", timeout_s=5)
        outcome = await pool.perform(config, stamp=stamp("ssrf"))
        with trio.move_on_after(0.2):
            await listener.accept()
            raise AssertionError("a refused address was dialled")
    assert outcome.failure_reason is FailureReason.SSRF_BLOCKED, outcome
    assert "127.0.0.2" in str(outcome.error)


async def test_a_cancel_reaches_the_request_in_the_worker_at_once() -> None:
    async with holding_target() as target, processes() as pool:
        config = HttpConfig(url=f"{target.url}/hold", timeout_s=60)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(pool.perform, config, stamp=stamp("held")))
            await target.until(lambda: "held" in target.open_ids)
            cancelled_at = trio.current_time()
            nursery.cancel_scope.cancel()
        await target.until(lambda: "held" in target.closed_at, timeout_s=2)
    assert target.closed_at["held"] - cancelled_at < 1.0


async def test_a_worker_that_stops_answering_is_killed_past_the_runs_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker enforces a request's timeout itself; one that gives no outcome
    well past it no longer runs its loop (here: stopped) and would hold its
    runs RUNNING for good. It is killed: its runs WORKER_LOST, a new one starts."""
    monkeypatch.setattr(pool_module, "STUCK_S", 0.5)
    async with holding_target() as target, processes() as pool:
        [first] = pool.pids
        held = HttpConfig(url=f"{target.url}/hold", timeout_s=1)
        async with trio.open_nursery() as nursery:
            outcomes: list[Outcome] = []

            async def perform() -> None:
                outcomes.append(await pool.perform(held, stamp=stamp("stuck")))

            nursery.start_soon(perform)
            await target.until(lambda: "stuck" in target.open_ids)
            os.kill(first, signal.SIGSTOP)
            with trio.fail_after(10):
                while not outcomes:
                    await trio.sleep(0.05)
        await target.until(lambda: len(pool.pids) == 1 and pool.pids != [first])
        assert gone(first)
        after = await pool.perform(HttpConfig(url=f"{target.url}/ok"), stamp=stamp("next"))
    [outcome] = outcomes
    assert (outcome.status, outcome.failure_reason) == (RunStatus.FAILED, FailureReason.WORKER_LOST)
    assert after.status is RunStatus.SUCCEEDED, after


async def test_a_short_deadline_behind_a_long_one_still_finds_a_stuck_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One timer per worker watches the earliest deadline of the runs it holds:
    a run with a short timeout handed over while the timer waits for a long
    one's brings it forward, so the stuck worker dies at the short deadline
    (1.5 s here), not the long one's (60.5 s)."""
    monkeypatch.setattr(pool_module, "STUCK_S", 0.5)
    async with holding_target() as target, processes() as pool:
        [first] = pool.pids
        outcomes: list[Outcome] = []

        async def perform(run_id: str, timeout_s: int) -> None:
            held = HttpConfig(url=f"{target.url}/hold", timeout_s=timeout_s)
            outcomes.append(await pool.perform(held, stamp=stamp(run_id)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(perform, "long", 60)
            await target.until(lambda: "long" in target.open_ids)
            nursery.start_soon(perform, "short", 1)
            await target.until(lambda: "short" in target.open_ids)
            os.kill(first, signal.SIGSTOP)
            stopped_at = trio.current_time()
            with trio.fail_after(10):
                while len(outcomes) < 2:
                    await trio.sleep(0.05)
            assert trio.current_time() - stopped_at < 5.0
        assert gone(first)
    assert {(o.status, o.failure_reason) for o in outcomes} == {
        (RunStatus.FAILED, FailureReason.WORKER_LOST)
    }


async def test_a_worker_that_never_becomes_ready_is_killed_and_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker stopped (or hung) before its `ready` held its place for good: no
    replacement, and with one worker process every run failed unsent for want of
    one. It is killed after `START_WAIT_S`, as a stuck worker is, and replaced."""
    monkeypatch.setattr(pool_module, "START_WAIT_S", 1.0)
    real_open = trio.lowlevel.open_process
    stopped: list[int] = []

    async def open_stopped_once(*args: Any, **kwargs: Any) -> trio.Process:
        process = await real_open(*args, **kwargs)
        if not stopped:
            os.kill(process.pid, signal.SIGSTOP)  # before it could say ready
            stopped.append(process.pid)
        return process

    monkeypatch.setattr(trio.lowlevel, "open_process", open_stopped_once)
    async with holding_target() as target, processes() as pool:
        assert stopped and pool.pids != stopped
        outcome = await pool.perform(HttpConfig(url=f"{target.url}/ok"), stamp=stamp("after"))
    assert outcome.status is RunStatus.SUCCEEDED, outcome
    assert gone(stopped[0])


async def test_a_worker_that_dies_loses_its_requests_and_is_replaced() -> None:
    async with holding_target() as target, processes() as pool:
        [first] = pool.pids
        held = HttpConfig(url=f"{target.url}/hold", headers=(Header("X-Key", "v"),), timeout_s=60)
        outcomes = []

        async def perform(run_id: str) -> None:
            outcomes.append(await pool.perform(held, stamp=stamp(run_id)))

        async with trio.open_nursery() as nursery:
            for run_id in ("a", "b"):
                nursery.start_soon(perform, run_id)
            await target.until(lambda: target.open_ids == {"a", "b"})
            os.kill(first, signal.SIGKILL)
        await target.until(lambda: len(pool.pids) == 1 and pool.pids != [first])
        assert gone(first)
        after = await pool.perform(HttpConfig(url=f"{target.url}/ok"), stamp=stamp("c"))
    assert len(outcomes) == 2
    for outcome in outcomes:
        assert (outcome.status, outcome.failure_reason) == (
            RunStatus.FAILED,
            FailureReason.WORKER_LOST,
        )
        assert outcome.error == WORKER_LOST_ERROR
        assert outcome.request["headers"] == [{"name": "X-Key", "value": "<redacted>"}]
    assert after.status is RunStatus.SUCCEEDED


async def test_requests_spread_over_the_workers_and_stopping_ends_them_all() -> None:
    async with holding_target() as target:
        async with processes(2) as pool:
            pids = pool.pids
            async with trio.open_nursery() as nursery:
                for n in range(6):
                    config = HttpConfig(url=f"{target.url}/hold", timeout_s=60)
                    nursery.start_soon(partial(pool.perform, config, stamp=stamp(f"r{n}")))
                await target.until(lambda: len(target.open_ids) == 6)
                busy = [len(child.waiting) for child in pool._children]
                nursery.cancel_scope.cancel()
        assert sorted(busy) == [3, 3]
        assert all(gone(pid) for pid in pids)
        await target.until(lambda: len(target.closed_at) == 6)


async def test_a_request_longer_than_the_stuck_margin_but_within_its_timeout_is_not_stuck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker is stuck only past the run's own timeout plus `STUCK_S`: a request
    still within its timeout ends by that timeout, in its worker, which lives on."""
    monkeypatch.setattr(pool_module, "STUCK_S", 0.6)  # less than the timeout, as 30 s is
    async with holding_target() as target, processes() as pool:
        [first] = pool.pids
        held = HttpConfig(url=f"{target.url}/hold", timeout_s=1)
        with trio.fail_after(10):
            outcome = await pool.perform(held, stamp=stamp("slow"))
        assert pool.pids == [first]
    assert (outcome.status, outcome.failure_reason) == (RunStatus.FAILED, FailureReason.TIMEOUT)


async def test_cancels_of_every_run_at_once_all_reach_the_worker() -> None:
    """A stop's grace ends every executor's request in the same moment: each
    cancel frame is queued (the queue holds one for every executor), none lost."""
    async with holding_target() as target, processes() as pool:
        config = HttpConfig(url=f"{target.url}/hold", timeout_s=60)
        ids = [f"held-{n}" for n in range(8)]  # as many as the pool's executors
        async with trio.open_nursery() as nursery:
            for run_id in ids:
                nursery.start_soon(partial(pool.perform, config, stamp=stamp(run_id)))
            await target.until(lambda: target.open_ids == set(ids))
            nursery.cancel_scope.cancel()
        await target.until(lambda: set(ids) <= set(target.closed_at), timeout_s=2)


async def test_a_worker_that_dies_young_is_replaced_after_a_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One that dies soon after its start is replaced only after `BACKOFF_S`, so a
    worker that keeps dying does not spin the daemon starting others."""
    monkeypatch.setattr(pool_module, "BACKOFF_S", (0.6, 5.0))
    real_open = trio.lowlevel.open_process
    opened: list[float] = []

    async def open_timed(*args: Any, **kwargs: Any) -> trio.Process:
        opened.append(trio.current_time())
        return await real_open(*args, **kwargs)

    monkeypatch.setattr(trio.lowlevel, "open_process", open_timed)
    async with processes() as pool:
        [first] = pool.pids
        os.kill(first, signal.SIGKILL)
        killed_at = trio.current_time()
        with trio.fail_after(5):
            while len(opened) < 2:
                await trio.sleep(0.02)
    assert opened[1] - killed_at >= 0.5


async def test_a_worker_does_not_inherit_systemds_notify_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the daemon speaks to systemd: its notify socket and watchdog are not
    a worker's (`_NOT_INHERITED`)."""
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/jobsd-test-notify")
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    async with processes() as pool:
        [pid] = pool.pids
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0] for entry in environ}
    assert not names & {b"NOTIFY_SOCKET", b"WATCHDOG_USEC"}
    assert b"PATH" in names
