"""A run whose frame never left the daemon when its worker process died.

`FrameSender` queues frames and one task writes them; a worker that stops
reading (stopped, or stuck) leaves the rest of the queue in the daemon. If
it then dies, those runs' requests never reached any worker: nothing was
sent, so they are not lost (`WORKER_LOST_ERROR`, metered, "whether the
target received the request is unknown") but go to the next live worker,
as a run that found none yet does. Only a frame at least partly written
can have reached the dead worker, and only those runs are lost.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from functools import partial

import pytest
import trio
import trio.testing

from jobsd.job_model import HttpConfig
from jobsd.messages import Outcome
from jobsd.runs import FailureReason, RunStatus
from jobsd.workers import pool as pool_module
from jobsd.workers.pool import NOT_TAKEN_ERROR
from tests.crash_workers import gone
from tests.holding_target import RUN_ID, holding_target
from tests.test_workers import processes, stamp

# Larger than a socket pair's buffer (wmem_default, about 208 KiB): the first
# frame to a stopped worker blocks its write, the next ones stay queued.
BIG_BODY = "x" * (1024 * 1024)


async def test_a_run_whose_frame_was_still_queued_goes_to_the_next_worker() -> None:
    async with holding_target() as target, processes() as pool:
        [first] = pool.pids
        os.kill(first, signal.SIGSTOP)  # it reads nothing from here on
        outcomes: dict[str, Outcome] = {}

        async def perform(run_id: str) -> None:
            config = HttpConfig(url=f"{target.url}/ok", body=BIG_BODY, timeout_s=30)
            outcomes[run_id] = await pool.perform(config, stamp=stamp(run_id))

        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(perform, f"r{n}")
            [child] = pool._children
            with trio.fail_after(10):
                while len(child.waiting) < 4:
                    await trio.sleep(0.02)
            await trio.testing.wait_all_tasks_blocked(cushion=0.1)  # the write is stuck
            os.kill(first, signal.SIGKILL)
        assert gone(first)
    received = Counter(headers[RUN_ID] for headers in target.headers)
    assert all(n == 1 for n in received.values()), received  # none sent twice
    # The worker read nothing, and no frame was written whole (the first one,
    # larger than the socket's buffer, was cut short): all went to its
    # replacement, each once.
    assert {o.status for o in outcomes.values()} == {RunStatus.SUCCEEDED}, outcomes
    assert set(received) == set(outcomes) == {"r0", "r1", "r2", "r3"}


async def test_a_run_cancelled_while_its_frame_is_queued_is_never_sent() -> None:
    """The stop's grace (or a user's cancel) ends a run whose frame still waits
    behind a worker that does not read: the frame is withdrawn, so the outcome
    says nothing was sent (the record gives the meter back) and the worker,
    once it reads again, never starts that request."""
    async with holding_target() as target, processes() as pool:
        [first] = pool.pids
        os.kill(first, signal.SIGSTOP)
        outcomes: dict[str, Outcome] = {}

        async def perform(run_id: str, path: str) -> None:
            config = HttpConfig(url=f"{target.url}{path}", body=BIG_BODY, timeout_s=30)
            outcomes[run_id] = await pool.perform(config, stamp=stamp(run_id))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(perform, "head", "/ok")  # its frame blocks the write
            [child] = pool._children
            with trio.fail_after(10):
                while len(child.waiting) < 1:
                    await trio.sleep(0.02)
            await trio.testing.wait_all_tasks_blocked(cushion=0.1)
            try:
                with trio.fail_after(5):  # cancelled at once
                    async with trio.open_nursery() as queued:
                        queued.start_soon(perform, "queued", "/hold")
                        await trio.testing.wait_all_tasks_blocked(cushion=0.1)
                        queued.cancel_scope.cancel()
            finally:
                os.kill(first, signal.SIGCONT)
        await target.until(lambda: "head" in outcomes)
        await trio.sleep(0.3)
    assert outcomes["head"].status is RunStatus.SUCCEEDED
    queued = outcomes["queued"]
    assert queued.error == NOT_TAKEN_ERROR and queued.sent is False, queued
    assert [h[RUN_ID] for h in target.headers] == ["head"]


async def test_a_run_waiting_for_room_behind_a_stopped_worker_is_not_held_for_good(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker that stops reading, whose queue is full of frames no run waits on
    any more (cancelled while queued): a new run's frame waited for room with
    no timer at all, so nothing ever killed the worker and the run stayed
    RUNNING for good. The stuck timer now runs from the moment a frame is
    offered: the worker is killed, and the run goes to its replacement."""
    async with holding_target() as target, processes() as pool:
        [first] = pool.pids
        os.kill(first, signal.SIGSTOP)
        config = HttpConfig(url=f"{target.url}/ok", body=BIG_BODY, timeout_s=1)
        with trio.fail_after(10):
            async with trio.open_nursery() as cancelled:
                # The first blocks the write; the rest fill the queue.
                for n in range(1 + pool._capacity):
                    cancelled.start_soon(partial(pool.perform, config, stamp=stamp(f"c{n}")))
                    await trio.testing.wait_all_tasks_blocked(cushion=0.01)
                cancelled.cancel_scope.cancel()
        monkeypatch.setattr(pool_module, "STUCK_S", 0.5)
        with trio.fail_after(20):
            outcome = await pool.perform(config, stamp=stamp("after"))
        assert outcome.status is RunStatus.SUCCEEDED, outcome  # not cut off by the 20 s
        assert gone(first)
    assert [h[RUN_ID] for h in target.headers] == ["after"]


async def test_a_run_resent_past_the_bound_ends_unsent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers that keep dying before its frame is written do not hold a run for
    good: past `RESENDS` it ends FAILED/WORKER_LOST, saying nothing was sent."""
    monkeypatch.setattr(pool_module, "RESENDS", 0)
    async with holding_target() as target, processes() as pool:
        [first] = pool.pids
        os.kill(first, signal.SIGSTOP)
        outcomes: list[Outcome] = []

        async def perform() -> None:
            config = HttpConfig(url=f"{target.url}/ok", body=BIG_BODY, timeout_s=30)
            outcomes.append(await pool.perform(config, stamp=stamp("bounded")))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(perform)
            await trio.testing.wait_all_tasks_blocked(cushion=0.1)
            os.kill(first, signal.SIGKILL)
    [outcome] = outcomes
    assert outcome.failure_reason is FailureReason.WORKER_LOST
    assert outcome.error == pool_module.NEVER_WRITTEN_ERROR and outcome.sent is False
    assert not target.headers
