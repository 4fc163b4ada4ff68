"""A real HTTP target on 127.0.0.1 for end-to-end tests.

Served by hypercorn's trio worker on an ephemeral port. It records every
request it receives, so tests can check what jobsd actually sent (header
values in plaintext on the wire) against what jobsd recorded (redacted).
Paths choose behaviour: `/status/<code>`, `/hang` (never answers),
`/held` (answers 200 once the test sets `released`, at once after that),
`/slow` (answers 200 after 50 ms), `/flaky/<name>/<n>/<code>` (`<code>`, or
no answer ever for `hang`, for the first `n` requests to that path, then
200), anything else 200 with
a small JSON body. A `retry_after=<value>` query parameter adds that
`Retry-After` header to the answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import trio
from hypercorn.config import Config
from hypercorn.trio import serve


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    raw_headers: list[tuple[str, str]] = field(default_factory=list)  # repeats kept
    at: float = field(default_factory=trio.current_time)  # trio's clock (a MockClock's too)
    client: tuple[str, int] | None = None  # the connection it came on (address, port)


@dataclass
class Target:
    url: str = ""
    received: list[Received] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)
    released: trio.Event = field(default_factory=trio.Event)  # what `/held` waits for

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        raw = [(k.decode().lower(), v.decode()) for k, v in scope["headers"]]
        client = scope.get("client")
        peer = None if client is None else (str(client[0]), int(client[1]))
        self.received.append(
            Received(scope["method"], scope["path"], dict(raw), body, raw, client=peer)
        )
        self.arrived.set()
        self.arrived = trio.Event()
        status = 200
        path = scope["path"]
        if path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
        if path.startswith("/flaky/"):
            _, _, _, times, code = path.split("/")
            seen = sum(1 for r in self.received if r.path == path)
            if code == "hang" and seen <= int(times):
                await trio.sleep_forever()
            status = int(code) if seen <= int(times) and code != "hang" else 200
        extra: list[tuple[bytes, bytes]] = []
        query = parse_qs(scope.get("query_string", b"").decode())
        if "retry_after" in query:
            extra.append((b"retry-after", query["retry_after"][0].encode()))
        if scope["path"] == "/hang":
            await trio.sleep_forever()
        if scope["path"] == "/held":
            await self.released.wait()
        if scope["path"] == "/slow":
            await trio.sleep(0.05)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"x-target", b"yes"),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ok":true}'})


@asynccontextmanager
async def open_target() -> AsyncIterator[Target]:
    target = Target()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.1
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve, target.app, config)  # type: ignore[arg-type]
        target.url = bound[0]
        yield target
        nursery.cancel_scope.cancel()
