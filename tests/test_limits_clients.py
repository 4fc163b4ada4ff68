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

from jobsd.api.client_share import ClientShares, client_key, default_share
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
