"""The trio task tree, each task with where it waits: what SIGUSR1 logs.

A daemon that is idle in epoll while a run stays RUNNING is waiting on
something logically, not blocked; py-spy shows only the loop. The task tree
names the await that never returns (`kill -USR1 <pid>` for the daemon,
and for each worker process, whose pid the daemon logs at start). Logged
at WARNING, under `jobsd.tasks`, one line (one record) per task.
"""

from __future__ import annotations

import logging
import signal

import trio

log = logging.getLogger("jobsd.tasks")


def task_tree() -> list[str]:
    """One line per task, children indented under their parent; each says the
    awaits it is in, outermost first, as `function (file:line)`."""
    lines: list[str] = []

    def walk(task: trio.lowlevel.Task, depth: int) -> None:
        where = " > ".join(
            f"{frame.f_code.co_name} ({frame.f_code.co_filename.rsplit('/', 1)[-1]}:{lineno})"
            for frame, lineno in task.iter_await_frames()
        )
        lines.append(f"{'  ' * depth}{task.name}: {where}")
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child, depth + 1)

    root = trio.lowlevel.current_root_task()
    if root is not None:
        walk(root, 0)
    return lines


def log_task_tree(why: str) -> None:
    """A record per task after a heading: log lines are one line each (a
    message's line breaks are escaped, `jobsd.logs.one_line`), so the tree
    as one record came out as one unreadable line."""
    lines = task_tree()
    log.warning("%s: %d trio tasks", why, len(lines))
    for line in lines:
        log.warning("%s", line)


async def dump_on_signal() -> None:
    """For a worker process, which has no signal task of its own."""
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            log_task_tree("received SIGUSR1")
