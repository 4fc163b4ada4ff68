"""A bare ASGI app served by `jobsd.api.limits.serve` on 127.0.0.1, for tests of the server's
own machinery (the connection cap, the keep-alive timer, the request deadline) without the
daemon around it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.utils import wrap_app

from jobsd.api import client_share, limits


async def lifespan(receive: Any, send: Any) -> None:
    """Answers the ASGI lifespan: startup, then shutdown."""
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


@asynccontextmanager
async def bare_server(
    app: Any,
    *,
    keep_alive_s: float,
    connections: trio.CapacityLimiter | None = None,
    graceful_s: float = 10,
    shares: client_share.ClientShares | None = None,
    on_refusal: Callable[[str, int, str, str | None], None] | None = None,
) -> AsyncIterator[tuple[int, trio.Event]]:
    """(the port, an event that stops the server when set); stopped on leaving."""
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.keep_alive_timeout = keep_alive_s
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = graceful_s
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            lambda task_status: limits.serve(
                wrap_app(app, 0, "asgi"),
                config,
                connections or trio.CapacityLimiter(64),
                write_timeout_s=10,
                shutdown_trigger=stop.wait,
                shares=shares,
                on_refusal=on_refusal,
                task_status=task_status,
            )
        )
        yield int(bound[0].rsplit(":", 1)[1]), stop
        stop.set()
