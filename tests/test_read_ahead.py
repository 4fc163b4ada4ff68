"""What a connection reads ahead of the request in hand (`jobsd.api.connection`).

While the app serves a request, a client may go on sending. What it sends
behind a request the connection will serve next waits in h11's buffer, and
only `READ_AHEAD_BYTES` of it: past that the connection stops reading, the
kernel's buffers fill and the client's sends block, so a client cannot
grow the daemon's memory by pipelining. What it sends behind a request
that closes the connection (`Connection: close`) is never parsed: it is
read and dropped, never held, so the client is not stalled by it either
(RFC 9112 §9.6, the reset a close with unread bytes would cause).
Served on `jobsd.api.limits.serve` directly, with an app held on purpose.
"""

from __future__ import annotations

import socket
import tracemalloc
from typing import Any

import trio

from jobsd.api.connection import READ_AHEAD_BYTES
from tests.bare_server import bare_server, lifespan

PUSH = 16 * 2**20  # what the client tries to send behind the request in hand
WINDOW_S = 1.0  # how long it tries


class Held:
    """An app whose first answer waits until `release` is set."""

    def __init__(self) -> None:
        self.entered = trio.Event()
        self.release = trio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        self.entered.set()
        await self.release.wait()
        headers = [(b"content-length", b"5")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello"})


async def pushed_behind(first: bytes) -> int:
    """Bytes of pipelined requests the client got sent within `WINDOW_S` while the
    server held `first`'s answer (at most `PUSH`)."""
    app = Held()
    async with bare_server(app, keep_alive_s=60, graceful_s=0.1) as (port, _):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        # A small send buffer of its own: what the client got sent is what the
        # server's side took (its reads and its receive buffer), give or take 64 KiB.
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2**16)
        async with stream:
            await stream.send_all(first)
            with trio.fail_after(10):
                await app.entered.wait()
            chunk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
            pushed = 0
            with trio.move_on_after(WINDOW_S):
                while pushed < PUSH:
                    await stream.send_all(chunk)
                    pushed += len(chunk)
            app.release.set()
    return pushed


async def test_requests_pipelined_behind_one_in_hand_are_read_no_further_than_the_bound() -> None:
    pushed = await pushed_behind(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    print(f"pushed {pushed} bytes behind a request in hand (read-ahead {READ_AHEAD_BYTES})")
    # The read-ahead, one read past it and the kernel's buffers: a few MiB at
    # most; unbounded, the whole push is read into h11's buffer within the window.
    assert pushed < 4 * 2**20


async def test_what_follows_a_request_that_closes_the_connection_is_dropped_not_held() -> None:
    first = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    tracemalloc.start()
    try:
        pushed = await pushed_behind(first)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"pushed {pushed} bytes behind a request closing its connection, peak {peak} B")
    assert pushed >= PUSH  # read all along: the client is never stalled by it
    assert peak < 4 * 2**20  # and dropped as read: handed to h11, it piled up there
