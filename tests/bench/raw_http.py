"""A minimal HTTP/1.1 client over a trio stream, for benches that open hundreds
of connections: httpx's per-request CPU would compete with the daemon for the
machine's two cores and measure the client instead."""

from __future__ import annotations

import trio


def request_bytes(method: str, path: str, token: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/vnd.api+json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def exchange(stream: trio.abc.Stream, request: bytes) -> tuple[int, bool]:
    """Send one request, read its answer (Content-Length framed); (status, closes)."""
    await stream.send_all(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        if not data:
            return 0, True
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").lower().split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    closes = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name == "content-length":
            length = int(value)
        elif name == "connection" and "close" in value:
            closes = True
    while len(rest) < length:
        data = await stream.receive_some(65536)
        if not data:
            return status, True
        rest += data
    return status, closes
