"""Mock time that jumps only when nothing is under way, threads included.

trio's own autojump (`MockClock.autojump_threshold`) jumps once the loop has
seen no I/O for that many real seconds. Work handed to a thread is no I/O to
the loop: the store's writer committing, a read on trio's worker threads.
On a loaded machine a thread can wait longer than any threshold for a CPU,
and the clock then jumps to the next deadline with a write in flight: a
retry released before the test looked at it, a request cut at its 60 s
deadline, a `Retry-After` date already past (every test in
tests/test_retry_runs.py failed so once the writer paused 100 ms a batch).

`jump_when_idle` is that autojump with the hole closed: it jumps only once
the loop has been idle for `cushion_s` and no task is waiting on a thread,
which the task tree shows (a task awaiting in `trio.to_thread.run_sync` or
in the store's `Engine.write`). Whatever the load, mock time then moves at
the same points of a test as on an idle machine. Requests over loopback
need no such care: the daemon, its clients and its targets share this
loop, and a loopback send is readable at once.
"""

from __future__ import annotations

import math
import time
from typing import NoReturn

import trio
import trio.testing

from jobsd.store.engine import Engine

THREAD_WAITS = frozenset({trio.to_thread.run_sync.__code__, Engine.write.__code__})


def waiting_on_a_thread() -> bool:
    """Whether some task awaits work handed to a thread (its answer will wake the loop)."""

    def waits(task: trio.lowlevel.Task) -> bool:
        if any(frame.f_code in THREAD_WAITS for frame, _ in task.iter_await_frames()):
            return True
        children = (child for nursery in task.child_nurseries for child in nursery.child_tasks)
        return any(waits(child) for child in children)

    root = trio.lowlevel.current_root_task()
    return root is not None and waits(root)


async def jump_when_idle(cushion_s: float = 0.05, patience_s: float = 60.0) -> NoReturn:
    """Run beside a test on a `MockClock` without autojump: jump it to the next
    deadline whenever the loop is idle and no thread is at work. A thread busy
    for `patience_s` real seconds is a hang, not load: it fails the test
    rather than freezing its mock time for good."""
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold == math.inf
    busy_since: float | None = None
    while True:
        # The loop saw no I/O and ran nothing for cushion_s (real seconds).
        await trio.testing.wait_all_tasks_blocked(cushion_s)
        if waiting_on_a_thread():
            busy_since = busy_since or time.monotonic()
            if time.monotonic() - busy_since > patience_s:
                raise AssertionError(f"a thread has held mock time still for {patience_s} s")
            continue
        busy_since = None
        jump = trio.lowlevel.current_statistics().seconds_to_next_deadline
        if 0 < jump < math.inf:
            clock.jump(jump)
