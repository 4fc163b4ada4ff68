"""The server's keep-alive timer, over real sockets (`jobsd.api.connection`).

The timer is one deadline per connection, moved rather than restarted: it
runs from accept, stops while a request is served, runs again from each
answer; when the server stops, an idle connection closes at once and a
busy one after its answer. Each property is watched on the wire, with
`jobsd.api.limits.serve` and a small app whose `/slow` takes `SLOW_S`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from tests.bare_server import bare_server, lifespan

KEEP_ALIVE_S = 0.5
SLOW_S = 1.2
GET = b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["path"] == "/slow":
        await trio.sleep(SLOW_S)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def serving() -> AbstractAsyncContextManager[tuple[int, trio.Event]]:
    return bare_server(app, keep_alive_s=KEEP_ALIVE_S)


async def answer(stream: trio.SocketStream) -> bytes:
    """One whole chunked answer (the app sends no length)."""
    got = b""
    with trio.fail_after(10):
        while not got.endswith(b"0\r\n\r\n"):
            data = await stream.receive_some(4096)
            assert data, f"closed before the answer was whole: {got!r}"
            got += data
    assert got.startswith(b"HTTP/1.1 200") and b"hello" in got, got
    return got


async def closed_after(stream: trio.SocketStream) -> float:
    """Seconds until the server closes `stream` (it sends nothing more)."""
    began = trio.current_time()
    with trio.fail_after(10):
        assert await stream.receive_some(4096) == b""
    return trio.current_time() - began


async def test_a_connection_that_never_asks_is_closed_at_the_keep_alive_deadline() -> None:
    async with serving() as (port, _):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        waited = await closed_after(stream)
        assert KEEP_ALIVE_S - 0.05 <= waited < KEEP_ALIVE_S + 3.0


async def test_the_timer_runs_from_each_answer_not_from_accept() -> None:
    async with serving() as (port, _):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        for _ in range(3):  # 3 x 0.35 s: past one keep-alive period from accept
            await trio.sleep(0.7 * KEEP_ALIVE_S)
            await stream.send_all(GET % b"fast")
            await answer(stream)
        waited = await closed_after(stream)
        assert KEEP_ALIVE_S - 0.05 <= waited < KEEP_ALIVE_S + 3.0


async def test_a_request_served_longer_than_the_timer_is_answered() -> None:
    async with serving() as (port, _):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(GET % b"slow")
        began = trio.current_time()
        await answer(stream)
        assert trio.current_time() - began >= SLOW_S - 0.05
        await stream.send_all(GET % b"fast")  # still open: the timer ran from the answer
        await answer(stream)


async def test_at_a_stop_idle_connections_close_at_once_and_busy_ones_after_answering() -> None:
    async with serving() as (port, stop):
        idle = await trio.open_tcp_stream("127.0.0.1", port)
        busy = await trio.open_tcp_stream("127.0.0.1", port)
        await idle.send_all(GET % b"fast")
        await answer(idle)
        await busy.send_all(GET % b"slow")
        await trio.sleep(0.1)  # the slow request is being served
        stopped = trio.current_time()
        stop.set()
        assert await closed_after(idle) < KEEP_ALIVE_S / 2  # not its keep-alive deadline
        await answer(busy)
        assert trio.current_time() - stopped >= SLOW_S - 0.2
        assert await closed_after(busy) < KEEP_ALIVE_S / 2
