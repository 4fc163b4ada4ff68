"""A free trio lock or semaphore taken without a trip through trio's scheduler.

`async with` on a trio `Lock` or `Semaphore` yields even when it is free (its
`acquire` ends in a checkpoint). On a path every run or every answer takes,
that step is a cost of its own (`Engine.write`: each run's claim and finish;
`Connection._write`: each answer). Their callers' next await is a checkpoint
anyway, so they take it here: at once when free, else waiting in turn.
Not a checkpoint itself when the lock is free.
"""

from __future__ import annotations

import trio


async def acquire(sync: trio.Lock | trio.Semaphore) -> None:
    try:
        sync.acquire_nowait()
    except trio.WouldBlock:
        await sync.acquire()
