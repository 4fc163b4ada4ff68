"""One client may not hold every connection slot (`jobsd.api.client_share`).

Every way of holding a slot is bounded in time, but legally: a body may take
`body_timeout_s` (30 s) to arrive. One client trickling a body on each of
`max_connections` connections kept every other client in the listen backlog
for that long. Here the greedy client is 127.0.0.1 and the other 127.0.0.2
(both loopback), against the whole daemon with its default body timeout.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import trio

from jobsd.api.client_share import REFUSING_AT_ONCE, ClientShares, client_key, default_share
from tests.conftest import JSONAPI, TOKEN_A
from tests.test_limits import serving_daemon
from tests.wire import request

CAP = 8


async def _from(host: str, port: int, source: str) -> trio.SocketStream:
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect((host, port))
    return trio.SocketStream(sock)


async def _read_to_close(stream: trio.SocketStream, limit_s: float) -> bytes:
    raw = b""
    with trio.move_on_after(limit_s):
        try:
            while chunk := await stream.receive_some(65536):
                raw += chunk
        except trio.BrokenResourceError:
            pass
    return raw


async def test_one_client_trickling_bodies_on_every_slot_does_not_lock_others_out(
    tmp_path: Path,
) -> None:
    server = f"max_connections = {CAP}\n"  # body_timeout_s stays 30
    head = request(
        "PUT",
        "/api/v1/jobs/slow",
        f"Authorization: Bearer {TOKEN_A}",
        f"Content-Type: {JSONAPI}",
        "Content-Length: 100",
    )
    async with serving_daemon(tmp_path, server) as live, trio.open_nursery() as greedy:
        refused: list[bytes] = []

        async def trickler() -> None:
            stream = await _from(live.host, live.port, "127.0.0.1")
            async with stream:
                await stream.send_all(head)
                for _ in range(100):  # a byte every 0.25 s: 25 s, inside body_timeout_s
                    await stream.send_all(b" ")
                    with trio.move_on_after(0.25):
                        if answer := await stream.receive_some(65536):  # refused at once
                            refused.append(answer + await _read_to_close(stream, 2))
                            return

        for _ in range(CAP):
            greedy.start_soon(trickler)
        await trio.sleep(1.5)  # every slot the greedy client may have is taken
        began = trio.current_time()
        other = await _from(live.host, live.port, "127.0.0.2")
        async with other:
            await other.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await _read_to_close(other, 10)
        waited = trio.current_time() - began
        greedy.cancel_scope.cancel()
    print(f"the other client waited {waited:.3f} s; the greedy one was refused {len(refused)}x")
    assert answer.startswith(b"HTTP/1.1 200"), (waited, answer[:80])
    assert waited < 3
    # The greedy client's connection past its share was told why.
    assert len(refused) == CAP - default_share(CAP) == 1
    assert refused[0].startswith(b"HTTP/1.1 503") and b"too_many_connections" in refused[0]
    # Like every answer below the app, it names the version that answered: the default.
    assert b"\r\njobsd-version: 2026-06-04\r\n" in refused[0].lower(), refused[0]
    assert b"\r\nretry-after: 1\r\n" in refused[0].lower(), refused[0]


def test_shares_leave_an_eighth_and_count_ipv6_by_its_64() -> None:
    assert [default_share(n) for n in (1, 2, 3, 8, 64, 256)] == [1, 1, 2, 7, 56, 224]
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("::ffff:127.0.0.1") == "127.0.0.1"
    proxies = [ipaddress.ip_network("10.0.0.0/8")]
    assert client_key("10.1.2.3", proxies) is None  # a trusted proxy counts against no one
    shares = ClientShares(2)
    assert shares.share == 2


async def test_at_most_32_refusals_are_written_at_once_the_rest_closed_unanswered() -> None:
    """Each refusal may take up to a second (its answer, then reading what the
    client still sends), so a client refused over and over must not hold more
    than `REFUSING_AT_ONCE` of them: past that, closed without a word."""
    shares = ClientShares(0)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    extra = 8
    clients: list[trio.SocketStream] = []
    async with trio.open_nursery() as nursery:

        async def refuse_each(listener: trio.SocketListener) -> None:
            while True:
                nursery.start_soon(shares.refuse, await listener.accept())

        nursery.start_soon(refuse_each, listeners[0])
        for n in range(REFUSING_AT_ONCE + extra):
            clients.append(await trio.open_tcp_stream("127.0.0.1", port))
            if n == REFUSING_AT_ONCE - 1:
                await trio.sleep(0.2)  # the first 32 are being refused: each holds its place
        answers = []
        for client in clients:  # none of them sends anything, or closes: each holds ~1 s
            answers.append(await _read_to_close(client, 3))
            await client.aclose()
        nursery.cancel_scope.cancel()
    for listener in listeners:
        await listener.aclose()
    answered = sum(1 for a in answers if a.startswith(b"HTTP/1.1 503"))
    assert answers[0].startswith(b"HTTP/1.1 503") and b"too_many_connections" in answers[0]
    assert answered == REFUSING_AT_ONCE, [a[:12] for a in answers]
    assert answers[-extra:] == [b""] * extra  # closed unanswered
