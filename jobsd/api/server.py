"""The API actor: the Quart app served by hypercorn's trio worker.

Hypercorn runs inside the daemon's nursery (never the other way round), with
every limit set on purpose, because the API listens for anyone who can reach
the socket and a slow or abusive client must not starve the others. Each
stage of a request has its own bound, and none runs while another party is
the one being waited for:

- the request head must arrive whole within `server.keep_alive_timeout_s`
  of the connection opening (or of its last answer): hypercorn's idle timer
  is not reset by partial data, so trickling header bytes (slowloris) buys
  nothing; a head over `server.max_request_header_bytes` -> 431 and close;
- the body: 2 MiB (Quart's MAX_CONTENT_LENGTH, set in app.py) -> 413; the
  whole body within `server.body_timeout_s` -> 408, then the connection
  closes (its unread rest would be taken for the next request);
- the answer: within `server.request_timeout_s` of the head -> otherwise
  503 `request_timeout` and close (`jobsd.api.request_deadline`);
- the client must take each write within `server.write_timeout_s`, or the
  connection closes (`jobsd.api.connection`);
- a peer that leaves (EOF, reset) is noticed at once, even while its
  requests wait, and its connection closed with all its requests;
- at most `server.max_connections` open at once (jobsd.api.limits: hypercorn
  has no cap of its own); the rest wait in the listen backlog. One client
  (a peer address, not a trusted proxy) may hold at most
  `server.max_connections_per_client` of them (all but an eighth by
  default): past it, 503 at once (`jobsd.api.client_share`). While every
  slot is taken, each answer says `Connection: close`, so a client keeping
  its connections busy cannot hold the slots others wait for; otherwise a
  connection carries at most 1,000 requests (hypercorn's default).

There is no per-read timeout: a read waits only while the client is the one
expected to act, and the head, body and request bounds cover that.

Each account's writes take units of its budget before their bodies are read
(`jobsd.api.admission`), inside the request deadline, so one account's
heavy writes cannot hold up another's on the loop or in the writer's queue.

In front of the app `jobsd.api.fast_paths` answers the plain `GET` of one
job or run (behind the head and Host checks, ahead of the deadline) and
`jobsd.api.fast_run_now` the plain run-now (behind the deadline, its body
read within `server.body_timeout_s` as the app reads it) itself, and both
hand everything else on.

Outside those limits sit `jobsd.api.edge`'s layers: trusted proxies'
forwarded headers, then the per-request metrics and access log.

`task_status.started` hands back the addresses actually bound, so tests and
the start-up banner can use port 0.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.typing import ASGIFramework
from hypercorn.utils import wrap_app

from jobsd.api import edge, limits
from jobsd.api.admission import AccountAdmission
from jobsd.api.app import create_app
from jobsd.api.client_share import ClientShares
from jobsd.api.context import ApiContext
from jobsd.api.fast_paths import FastReads, FastRunReads
from jobsd.api.fast_run_now import FastRunNow
from jobsd.api.request_deadline import RequestDeadline
from jobsd.config import ServerConfig

GRACEFUL_TIMEOUT_S = 5.0


def hypercorn_config(server: ServerConfig) -> HyperConfig:
    config = HyperConfig()
    config.bind = [server.listen]
    config.keep_alive_timeout = server.keep_alive_timeout_s
    config.h11_max_incomplete_size = server.max_request_header_bytes
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    # Past the cap, as many again wait in the kernel's queue; beyond that SYNs
    # are dropped and clients retry. A deep queue would only lengthen the
    # wait: under a slowloris flood, a queue of 1024 behind a cap of 50 kept
    # a normal client ~4.5 s, a queue of 50 about 1 s (tests/test_limits.py).
    config.backlog = min(server.max_connections, 1024)
    config.accesslog = None
    config.errorlog = logging.getLogger("jobsd.http")
    config.include_server_header = False
    return config


def served_app(ctx: ApiContext, server: ServerConfig, *, fast_paths: bool = True) -> ASGIFramework:
    """The app with every layer a request passes on its way in (see the module note);
    without `fast_paths`, the same with every request answered by the app (to compare)."""
    quart = create_app(ctx)
    quart.config["BODY_TIMEOUT"] = server.body_timeout_s
    app: ASGIFramework = quart  # type: ignore[assignment]
    run_now = FastRunNow(app, ctx, body_timeout_s=server.body_timeout_s) if fast_paths else app
    timed = RequestDeadline(AccountAdmission(run_now, ctx), server.request_timeout_s)
    reads = FastReads(FastRunReads(timed, ctx), ctx) if fast_paths else timed
    guarded = limits.HeadLimit(edge.ValidHost(reads), server.max_request_header_bytes)
    return edge.outer_layers(guarded, ctx.observer, server.trusted_proxies)


async def run_api(
    ctx: ApiContext,
    server: ServerConfig,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    config = hypercorn_config(server)
    outer = served_app(ctx, server)
    await limits.serve(
        wrap_app(outer, config.wsgi_max_body_size, "asgi"),  # type: ignore[arg-type]
        config,
        trio.CapacityLimiter(server.max_connections),
        write_timeout_s=server.write_timeout_s,
        shutdown_trigger=shutdown_trigger,
        on_refusal=None if ctx.observer is None else ctx.observer.api_refused,
        shares=ClientShares(server.client_share, server.trusted_proxies),
        task_status=task_status,
    )
