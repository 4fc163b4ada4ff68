"""The real daemon in this process, for tests that need its whole nursery tree.

`daemon_at(config, anchor)` runs `run_daemon` with its wall clock anchored at
`anchor` (so schedules fire within seconds of real time) and yields an API
client plus a way to "crash" it: cancelling the whole nursery skips the stop
sequence, leaving in-flight runs RUNNING in the file as a SIGKILL would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import httpx2
import trio

from jobsd.clock import Clock
from jobsd.config import Config
from jobsd.daemon import DaemonOptions, run_daemon
from tests.conftest import TOKEN_A


@dataclass
class Daemon:
    client: httpx2.AsyncClient
    scope: trio.CancelScope

    def crash(self) -> None:
        """Die without the stop sequence: in-flight runs stay RUNNING in the file.

        Must be the last thing done inside `daemon_at`'s block.
        """
        self.scope.cancel()


@asynccontextmanager
async def daemon_at(config: Config, anchor: datetime) -> AsyncIterator[Daemon]:
    bound: list[str] = []
    options = DaemonOptions(config=config, announce=bound.extend, clock=Clock(anchor))
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_daemon, options, stop)
        async with httpx2.AsyncClient(
            base_url=bound[0], headers={"Authorization": f"Bearer {TOKEN_A}"}, trust_env=False
        ) as client:
            yield Daemon(client, nursery.cancel_scope)
        stop.set()
