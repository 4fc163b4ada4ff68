"""The API actor: the Quart app served by hypercorn's trio worker.

Hypercorn runs inside the daemon's nursery (never the other way round), with
its limits set on purpose: header size, keep-alive, and a read timeout so a
slow client cannot hold a connection forever. `task_status.started` hands
back the addresses actually bound, so tests and the start-up banner can use
port 0.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from jobsd.api.app import create_app
from jobsd.api.context import ApiContext
from jobsd.config import ServerConfig

READ_TIMEOUT_S = 30
GRACEFUL_TIMEOUT_S = 5.0


def hypercorn_config(server: ServerConfig) -> HyperConfig:
    config = HyperConfig()
    config.bind = [server.listen]
    config.keep_alive_timeout = server.keep_alive_timeout_s
    config.h11_max_incomplete_size = server.max_request_header_bytes
    config.h2_max_header_list_size = server.max_request_header_bytes
    config.read_timeout = READ_TIMEOUT_S
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    config.backlog = min(server.max_connections, 1024)
    config.accesslog = None
    config.errorlog = logging.getLogger("jobsd.http")
    config.include_server_header = False
    return config


async def run_api(
    ctx: ApiContext,
    server: ServerConfig,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    app = create_app(ctx)
    await serve(
        app,  # type: ignore[arg-type]
        hypercorn_config(server),
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
    )
