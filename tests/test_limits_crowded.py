"""A client that keeps its connections busy cannot hold the slots others wait for.

`max_connections` caps the open connections, and every way of holding one
idle is cut short (`tests/test_limits_slots.py`). But a connection kept
alive by a steady stream of cheap requests was never idle for long: one
client holding every slot that way (256 pooled connections, a request on
each every few seconds) kept every other client in the listen backlog for
as long as it liked, up to hypercorn's 1,000 requests a connection (over
an hour at one request per keep-alive period). Served on
`jobsd.api.limits.serve` directly, with a small cap, so the limiter can be
watched; the server's own per-connection request bound is pushed here too.
"""

from __future__ import annotations

from typing import Any

import trio

from jobsd.api.server import hypercorn_config
from jobsd.config import ServerConfig
from tests.bare_server import bare_server, lifespan
from tests.test_limits import wait_until
from tests.wire import split_answers

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
END = b"\r\n\r\nhello"  # the end of every answer of `hello_app`


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Five bytes, sized: answers can be counted and split."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


async def _answer(stream: trio.SocketStream) -> bytes:
    """One whole answer, or what came before the server closed."""
    answer = b""
    while not answer.endswith(END):
        data = await stream.receive_some(4096)
        if not data:
            return answer
        answer += data
    return answer


async def _busy_client(port: int, until: float, heard: list[bytes]) -> None:
    """One pooled connection of a greedy client: a request every 50 ms, reconnecting
    whenever the server closes it."""
    while trio.current_time() < until:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            while trio.current_time() < until:
                await stream.send_all(GET)
                answer = await _answer(stream)
                if not answer:
                    break
                heard.append(answer)
                if b"connection: close" in answer.lower():
                    break
                await trio.sleep(0.05)


async def test_a_client_keeping_every_slot_busy_does_not_lock_others_out() -> None:
    slots = trio.CapacityLimiter(3)
    async with bare_server(hello_app, keep_alive_s=60, connections=slots, graceful_s=0.1) as (
        port,
        _,
    ):
        heard: list[bytes] = []
        async with trio.open_nursery() as greedy:
            until = trio.current_time() + 8
            for _ in range(3):
                greedy.start_soon(_busy_client, port, until, heard)
            # Every slot is taken: the accept loop waits for one.
            await wait_until(lambda: slots.statistics().tasks_waiting == 1 and len(heard) > 6)
            began = trio.current_time()
            other = await trio.open_tcp_stream("127.0.0.1", port)  # waits in the backlog
            async with other:
                await other.send_all(GET)
                answer = b""
                with trio.move_on_after(5):
                    answer = await _answer(other)
                waited = trio.current_time() - began
            greedy.cancel_scope.cancel()
        print(f"the other client waited {waited:.3f} s")
        assert answer.startswith(b"HTTP/1.1 200") and b"hello" in answer, (waited, answer)
        assert waited < 3
        # The greedy client was told, not cut off mid-exchange.
        assert any(b"connection: close" in a.lower() for a in heard)


async def test_an_uncrowded_server_keeps_connections_alive() -> None:
    slots = trio.CapacityLimiter(8)
    async with (
        bare_server(hello_app, keep_alive_s=60, connections=slots, graceful_s=0.1) as (
            port,
            _,
        ),
        await trio.open_tcp_stream("127.0.0.1", port) as stream,
    ):
        for _ in range(20):
            await stream.send_all(GET)
            answer = await _answer(stream)
            assert answer.startswith(b"HTTP/1.1 200")
            assert b"connection: close" not in answer.lower()


async def test_a_connection_is_answered_at_most_1000_requests() -> None:
    """Hypercorn's `keep_alive_max_requests`, which jobsd leaves at its default: the
    1,000th answer says `Connection: close` and the connection ends there, so the
    1,001st request pipelined behind it is never answered."""
    assert hypercorn_config(ServerConfig()).keep_alive_max_requests == 1000
    async with bare_server(hello_app, keep_alive_s=60, graceful_s=0.1) as (port, _):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            raw = b""
            with trio.fail_after(30):
                for start in range(0, 1001, 50):  # within the server's 64 KiB read-ahead
                    await stream.send_all(GET * min(50, 1001 - start))
                    while raw.count(END) < min(start + 50, 1000):
                        data = await stream.receive_some(65536)
                        if not data:
                            break
                        raw += data
                while data := await stream.receive_some(65536):
                    raw += data
        answers = split_answers(raw)
        assert len(answers) == 1000
        assert all(a.status == 200 for a in answers)
        assert b"connection: close" in raw.lower().split(b"http/1.1 200")[-1]
        assert raw.lower().count(b"connection: close") == 1
