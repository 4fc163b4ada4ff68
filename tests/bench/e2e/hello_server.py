"""A hello-world quart-trio endpoint served the way jobsd serves its API.

The floor `GET /api/v1/jobs/{id}` is compared with: the same hypercorn trio
worker under jobsd's own connection handling (`jobsd.api.limits.serve`:
the connection cap, write timeouts, the early-EOF watch), the same
hypercorn config and the same request-level guards (head limit, request
deadline), with a Quart app of one route that answers a small JSON object.
What it lacks is exactly jobsd's own work per request: the access log and
metrics, the token, the version, the store read and the rendering.

    python -m tests.bench.e2e.hello_server    (prints its URL; SIGTERM stops it)
"""

from __future__ import annotations

import signal

import trio
from hypercorn.utils import wrap_app
from quart_trio import QuartTrio

from jobsd.api import limits
from jobsd.api.request_deadline import RequestDeadline
from jobsd.api.server import hypercorn_config
from jobsd.config import ServerConfig

HELLO_PATH = "/hello"


def hello_app() -> QuartTrio:
    app = QuartTrio("hello")

    @app.get(HELLO_PATH)
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


async def main() -> None:
    server = ServerConfig(listen="127.0.0.1:0")
    config = hypercorn_config(server)
    timed = RequestDeadline(hello_app(), server.request_timeout_s)  # type: ignore[arg-type]
    guarded = limits.HeadLimit(timed, server.max_request_header_bytes)
    stop = trio.Event()

    async def shutdown_trigger() -> None:
        await stop.wait()

    async with trio.open_nursery() as nursery:

        async def on_sigterm() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    stop.set()
                    return

        nursery.start_soon(on_sigterm)
        binds = await nursery.start(
            lambda task_status: limits.serve(
                wrap_app(guarded, config.wsgi_max_body_size, "asgi"),  # type: ignore[arg-type]
                config,
                trio.CapacityLimiter(server.max_connections),
                write_timeout_s=server.write_timeout_s,
                shutdown_trigger=shutdown_trigger,
                task_status=task_status,
            )
        )
        print(binds[0], flush=True)


if __name__ == "__main__":
    trio.run(main)
