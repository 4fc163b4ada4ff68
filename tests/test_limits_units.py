"""The connection cap's and the client shares' bookkeeping, called directly
(`jobsd.api.limits`, `jobsd.api.client_share`): every slot and every share
comes back, and a head is measured as sent. Loopback sockets, no server."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from jobsd.api.client_share import ClientShares
from jobsd.api.limits import CappedListener, head_bytes
from tests.bare_server import bare_server, lifespan


async def test_a_failed_accept_gives_its_slot_back() -> None:
    """An accept that fails (trio.serve_listeners retries after EMFILE and the
    like) must not keep its slot: a few of them would leave none to accept with."""
    limiter = trio.CapacityLimiter(1)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    capped = CappedListener(listeners[0], limiter)
    await listeners[0].aclose()
    with trio.fail_after(2):
        for _ in range(3):
            with pytest.raises(trio.ClosedResourceError):
                await capped.accept()
    assert limiter.borrowed_tokens == 0


async def test_a_client_that_closed_its_connections_is_admitted_again() -> None:
    """A share counts what a client holds now: what it gave back is free to it
    again, and a client holding none is forgotten (the count stays as large as
    the clients connected, not all ever seen). A peer gone already counts
    against no one, and is not refused."""
    shares = ClientShares(2)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    # Client ends: their peer, the listener, is 127.0.0.1 as a client's would be.
    streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
    try:
        for _ in range(2):  # the second round after every slot was given back
            taken = [shares.take(stream) for stream in streams]
            assert taken == [(True, "127.0.0.1"), (True, "127.0.0.1"), (False, None)]
            assert shares.holding("127.0.0.1") == 2
            for admitted, key in taken:
                if admitted:
                    shares.give_back(key)
            assert shares.holding("127.0.0.1") == 0
            assert not shares._held  # forgotten, not kept at zero
        streams[0].socket.close()
        assert shares.take(streams[0]) == (True, None)
    finally:
        for stream in streams:
            stream.socket.close()
        await listeners[0].aclose()


def scope(method: str, path: str, query: str, headers: list[tuple[bytes, bytes]]) -> Any:
    return {
        "method": method,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": headers,
    }


def test_a_head_is_measured_as_sent() -> None:
    """`head_bytes` is the request line and header lines with their CRLFs (the
    `?` before a query left out): the 431's bound is on what the client sent."""
    sent = b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
    headers = [(b"host", b"x"), (b"authorization", b"Bearer t")]
    assert head_bytes(scope("GET", "/api/v1/jobs", "", headers)) == len(sent)
    assert head_bytes(scope("GET", "/api/v1/jobs", "a=1", headers)) == len(sent) + 3


async def test_a_connection_past_its_clients_share_is_refused_and_told() -> None:
    """Refused at the share, before anything is read: 503 too_many_connections,
    and the refusal is told (`on_refusal`: counted and logged as every refusal
    on the wire is), naming the client."""
    told: list[tuple[str, int, str, str | None]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await lifespan(receive, send)

    shares = ClientShares(0)
    async with (
        bare_server(app, keep_alive_s=5, shares=shares, on_refusal=lambda *a: told.append(a)) as (
            port,
            _,
        ),
        await trio.open_tcp_stream("127.0.0.1", port) as stream,
    ):
        got = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                got += chunk
    assert got.startswith(b"HTTP/1.1 503") and b"too_many_connections" in got, got
    assert told == [("OTHER", 503, "too_many_connections", "127.0.0.1")]
