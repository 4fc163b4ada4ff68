"""SIGUSR1's task tree (`jobsd.taskdump`): every task, indented under its parent,
with the await it waits in, so a logical stall names its culprit."""

from __future__ import annotations

import io
import logging
import os
import signal

import pytest
import trio
import trio.testing

from jobsd.logs import TextFormatter
from jobsd.taskdump import dump_on_signal, log_task_tree, task_tree


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
    heading, *tasks = [record.getMessage() for record in caplog.records]
    assert heading == f"received SIGUSR1: {len(tasks)} trio tasks"
    assert any("dump_on_signal (taskdump.py:" in task for task in tasks)


async def test_the_tree_is_written_one_line_per_task() -> None:
    """As the daemon's text log writes it (the journal's): a line per task, each
    indented under its parent. One record holding the whole tree came out as a
    single line with its breaks escaped (`\\x0a`), which no one can read."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter(journal=False))
    tasks_log = logging.getLogger("jobsd.tasks")
    tasks_log.addHandler(handler)
    event = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_waits_for_an_event, event, name="the-waiter")
            await trio.testing.wait_all_tasks_blocked()
            log_task_tree("received SIGUSR1")
            expected = len(task_tree())
            event.set()
    finally:
        tasks_log.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert "\\x0a" not in out.getvalue()
    assert lines[0].endswith(f"WARNING jobsd.tasks: received SIGUSR1: {expected} trio tasks")
    assert len(lines) == 1 + expected
    (waiter,) = [line for line in lines if "the-waiter" in line]
    ours = next(line for line in lines if "test_the_tree_is_written_one_line" in line)
    task_part = ours.split("jobsd.tasks: ", 1)[1]
    indent = len(task_part) - len(task_part.lstrip())
    assert waiter.split("jobsd.tasks: ", 1)[1].startswith(" " * (indent + 2) + "the-waiter")
