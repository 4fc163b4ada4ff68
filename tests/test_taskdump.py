"""SIGUSR1's task tree (`jobsd.taskdump`): every task, indented under its parent,
with the await it waits in, so a logical stall names its culprit."""

from __future__ import annotations

import logging
import os
import signal

import pytest
import trio
import trio.testing

from jobsd.taskdump import dump_on_signal, task_tree


async def _waits_for_an_event(event: trio.Event) -> None:
    await event.wait()


async def test_the_tree_names_each_task_and_where_it_waits() -> None:
    event = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_waits_for_an_event, event, name="the-waiter")
        await trio.testing.wait_all_tasks_blocked()
        lines = task_tree()
        event.set()
    (waiter,) = [line for line in lines if "the-waiter" in line]
    assert "_waits_for_an_event (test_taskdump.py:" in waiter
    assert "wait (_sync.py:" in waiter
    ours = next(line for line in lines if "test_the_tree_names_each_task" in line)
    indent = len(ours) - len(ours.lstrip())
    assert waiter.startswith(" " * (indent + 2) + "the-waiter")


async def test_sigusr1_logs_the_tree(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="jobsd.tasks")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(dump_on_signal)
        await trio.testing.wait_all_tasks_blocked()
        os.kill(os.getpid(), signal.SIGUSR1)
        with trio.fail_after(5):
            while not caplog.records:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    (record,) = caplog.records
    assert record.getMessage().startswith("received SIGUSR1: ")
    assert "dump_on_signal (taskdump.py:" in record.getMessage()
