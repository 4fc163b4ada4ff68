"""The request deadline (`jobsd.api.request_deadline`), over real sockets and called directly.

Served (hypercorn runs the ASGI lifespan, so one watcher holds the deadlines):
a request still unanswered at its deadline is answered 503 then, even while
its app waits in a shielded step (as a store write does), and the
connection closes; an answer begun in time is left to finish; requests that
finish leave nothing behind. Called without a lifespan, each request has
its own timer, with the same answers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from jobsd.api.request_deadline import RequestDeadline
from tests.bare_server import bare_server, lifespan

DEADLINE_S = 0.5
SHIELDED_S = 2.0  # the app's shielded step: past the deadline


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["path"] == "/shielded":
        with trio.CancelScope(shield=True):
            await trio.sleep(SHIELDED_S)
    if scope["path"] == "/begun":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await trio.sleep(2 * DEADLINE_S)
        await send({"type": "http.response.body", "body": b"late but whole"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


@asynccontextmanager
async def serving(deadline: RequestDeadline) -> AsyncIterator[int]:
    async with bare_server(deadline, keep_alive_s=30) as (port, _):
        yield port


# The end of a chunked body: the answer is whole, though keep-alive leaves it open.
LAST_CHUNK = b"0\r\n\r\n"


async def exchange(port: int, path: str, *, until: bytes = b"") -> tuple[bytes, float, float]:
    """(everything the server sent until it closed, sent what ends in `until`
    if given, or 5 s passed; when the first bytes came; when it closed, else
    -1); seconds from the request."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        began = trio.current_time()
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got, first_s, closed_s = b"", -1.0, -1.0
        with trio.move_on_after(5):
            while not (until and got.endswith(until)):
                data = await stream.receive_some(65536)
                if not data:
                    closed_s = trio.current_time() - began
                    break
                if not got:
                    first_s = trio.current_time() - began
                got += data
        return got, first_s, closed_s


async def test_a_request_in_a_shielded_step_is_answered_503_at_its_deadline() -> None:
    deadline = RequestDeadline(app, DEADLINE_S)
    async with serving(deadline) as port:
        got, first_s, closed_s = await exchange(port, "/shielded")
        assert got.startswith(b"HTTP/1.1 503"), got
        assert b"connection: close" in got.lower()
        assert json.loads(got.split(b"\r\n\r\n", 1)[1])["errors"][0]["code"] == "request_timeout"
        assert DEADLINE_S <= first_s < SHIELDED_S  # at the deadline, not when the app let go
        assert closed_s >= 0, "the connection was left open"
        assert deadline.in_flight == 0
        # With none in flight the watcher sleeps until one comes: the next is caught too.
        got, first_s, _ = await exchange(port, "/shielded")
        assert got.startswith(b"HTTP/1.1 503") and DEADLINE_S <= first_s < SHIELDED_S, got


async def test_an_answer_begun_in_time_is_left_to_finish() -> None:
    deadline = RequestDeadline(app, DEADLINE_S)
    async with serving(deadline) as port:
        got, _, _ = await exchange(port, "/begun", until=LAST_CHUNK)
        assert got.startswith(b"HTTP/1.1 200") and b"late but whole" in got, got
        assert got.endswith(LAST_CHUNK), got


async def test_requests_that_finish_leave_nothing_behind() -> None:
    deadline = RequestDeadline(app, 60)  # none is due while the loop runs
    async with serving(deadline) as port, await trio.open_tcp_stream("127.0.0.1", port) as stream:
        for _ in range(200):
            await stream.send_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            with trio.fail_after(10):
                while not got.endswith(b"0\r\n\r\n"):
                    got += await stream.receive_some(65536)
            assert got.startswith(b"HTTP/1.1 200"), got
            assert deadline.in_flight <= 1  # at most this one, ending just after its answer


async def test_without_a_lifespan_each_request_has_its_own_timer() -> None:
    deadline = RequestDeadline(app, DEADLINE_S)
    for path, status in (("/shielded", 503), ("/fast", 200), ("/begun", 200)):
        sent, first_s = await call_directly(deadline, path)
        assert sent[0]["status"] == status, (path, sent)
        # One answer only: no 503 after an answer begun in time, nor the app's after a 503.
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"], sent
        if status == 503:
            assert DEADLINE_S <= first_s < SHIELDED_S


async def call_directly(deadline: RequestDeadline, path: str) -> tuple[list[Any], float]:
    """What the app sent for a GET of `path`, and when its first message came."""
    sent: list[Any] = []
    began = trio.current_time()
    first_s = -1.0

    async def send(message: Any) -> None:
        nonlocal first_s
        if not sent:
            first_s = trio.current_time() - began
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    await deadline({"type": "http", "path": path}, receive, send)  # type: ignore[arg-type]
    return sent, first_s


async def test_under_the_watcher_a_late_app_is_stopped_and_its_503_goes_out_whole() -> None:
    """Past its deadline under the lifespan's watcher: the 503 alone is sent (the
    app's own answer, coming later, is dropped), the request ends only once that
    503 is out however slowly it goes, and an app still running is cancelled then,
    not left to run on."""
    began = trio.current_time()
    stopped_s: list[float] = []

    async def late_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["path"] == "/stuck":
            try:
                await trio.sleep(30)
            finally:
                stopped_s.append(trio.current_time() - began)
            return
        with trio.CancelScope(shield=True):
            await trio.sleep(0.075)  # ends while the 503 is still being written
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"too late"})

    deadline = RequestDeadline(late_app, 0.05)
    started, stopping = trio.Event(), trio.Event()
    steps = iter(({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}))

    async def lifespan_receive() -> Any:
        if started.is_set():
            await stopping.wait()
        return next(steps)

    async def lifespan_send(message: Any) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[Any] = []

    async def slow_send(message: Any) -> None:
        await trio.sleep(0.05)  # a slow reader: each write takes a while
        sent.append(message)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadline, {"type": "lifespan"}, lifespan_receive, lifespan_send)  # type: ignore[arg-type]
        with trio.fail_after(5):
            await started.wait()
            await deadline({"type": "http", "path": "/late"}, receive, slow_send)  # type: ignore[arg-type]
            assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
            assert sent[0]["status"] == 503, sent
            began = trio.current_time()
            sent.clear()
            await deadline({"type": "http", "path": "/stuck"}, receive, slow_send)  # type: ignore[arg-type]
            assert sent[0]["status"] == 503 and len(stopped_s) == 1 and stopped_s[0] < 1, stopped_s
        stopping.set()
