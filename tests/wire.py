"""Raw HTTP/1.1 on real sockets, for tests that must send what no client library would.

Answers are split by hand (status line, headers, Content-Length body): the
daemon always frames its answers with Content-Length, and a test that
counts answers must not trust a parser that would resynchronise for it.
Sockets are counted in /proc/self/fd, the daemon being in-process.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass
from typing import Any

import trio


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error_code(self) -> str:
        doc = json.loads(self.body)
        (item,) = doc["errors"]
        assert item["status"] == str(self.status), doc
        assert self.headers["content-type"] == "application/vnd.api+json", self.headers
        return str(item["code"])


def split_answers(raw: bytes) -> list[Answer]:
    answers: list[Answer] = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, f"an incomplete answer: {raw[:300]!r}"
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, status, *_ = status_line.split(" ")
        assert version == "HTTP/1.1", status_line
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        answers.append(Answer(int(status), headers, rest[:length]))
        raw = rest[length:]
    return answers


async def connect(host: str, port: int, *, receive_buffer: int | None = None) -> trio.SocketStream:
    """A connection whose receive buffer can be made small, so a non-reader stalls soon."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.connect((host, port))
    return trio.SocketStream(sock)


async def read_answer(stream: trio.SocketStream, timeout_s: float = 10.0) -> Answer:
    """The first whole answer on `stream` (by its Content-Length), without waiting for more."""
    raw = b""
    with trio.fail_after(timeout_s):
        while True:
            head, sep, rest = raw.partition(b"\r\n\r\n")
            if sep:
                (answer,) = split_answers(head + sep)
                length = int(answer.headers.get("content-length", "0"))
                if len(rest) >= length:
                    return Answer(answer.status, answer.headers, rest[:length])
            chunk = await stream.receive_some(65536)
            assert chunk, f"closed before a whole answer: {raw[:300]!r}"
            raw += chunk


async def read_to_close(stream: trio.SocketStream, timeout_s: float = 10.0) -> bytes:
    """Everything the server sends until it closes; fails if it has not closed in time."""
    raw = b""
    with trio.fail_after(timeout_s):
        try:
            while chunk := await stream.receive_some(65536):
                raw += chunk
        except trio.BrokenResourceError:
            pass  # a reset once the server is gone: what came before still counts
    return raw


async def exchange(host: str, port: int, request: bytes, timeout_s: float = 10.0) -> bytes:
    """Send `request` on a fresh connection and read until the server closes it."""
    async with await trio.open_tcp_stream(host, port) as stream:
        await stream.send_all(request)
        return await read_to_close(stream, timeout_s)


async def healthz_latency_s(host: str, port: int, timeout_s: float = 30.0) -> float:
    """Seconds a fresh connection takes to get /healthz answered 200."""
    start = trio.current_time()
    raw = await exchange(
        host, port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout_s
    )
    (answer,) = split_answers(raw)
    assert answer.status == 200, answer
    return trio.current_time() - start


def socket_count() -> int:
    """Socket descriptors this process holds (SQLite's readers come and stay; sockets must not)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own, closed already
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


async def sockets_back_to(baseline: int, timeout_s: float) -> float:
    """Seconds until this process holds no more sockets than `baseline`."""
    start = trio.current_time()
    with trio.move_on_after(timeout_s):
        while socket_count() > baseline:
            await trio.sleep(0.02)
    if socket_count() > baseline:
        raise AssertionError(f"{socket_count()} sockets open, not {baseline}")
    return trio.current_time() - start


def request(method: str, path: str, *headers: str, body: bytes = b"", **kw: Any) -> bytes:
    """A request head (HTTP/1.1, Host: x) with `headers` as written, then `body`."""
    version = kw.get("version", "1.1")
    lines = [f"{method} {path} HTTP/{version}", "Host: x", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
