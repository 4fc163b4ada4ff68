"""What the HTTP/1.1 protocol hands its connection to write (`jobsd.api.h11_protocol`).

A sized answer's head goes out with its body in one write (hypercorn wrote
the head, the body and an empty end of message apart); a head whose body
never came still goes out before the connection closes; an unsized answer
goes out chunk by chunk as it comes, its head with the first. Driven without a socket: the
protocol's events are recorded as the connection would receive them.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypercorn.config import Config as HyperConfig
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

from jobsd.api.h11_protocol import JobsdH11

BODY = b'{"data": []}'


async def app(scope: Any, receive: Any, send: Any) -> None:
    path = scope["path"]
    headers = [(b"content-length", b"%d" % len(BODY))] if path == "/sized" else []
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if path == "/fails":
        raise RuntimeError("after the head, before the body")
    if path == "/streamed":
        for part in (b"one", b"two"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    await send({"type": "http.response.body", "body": BODY})


async def exchange(request: bytes) -> list[Event]:
    sent: list[Event] = []

    async def record(event: Event) -> None:
        sent.append(event)

    config = HyperConfig()
    config.errorlog = None
    async with TaskGroup() as task_group:
        protocol = JobsdH11(
            wrap_app(app, 0, "asgi"),
            config,
            WorkerContext(None),
            task_group,
            ConnectionState({}),
            False,
            ("127.0.0.1", 1),
            ("127.0.0.1", 2),
            record,
        )
        protocol.connection.receive_data(request)
        await protocol._handle_events()
        await trio.testing.wait_all_tasks_blocked()
    return sent


def writes(sent: list[Event]) -> list[bytes]:
    return [event.data for event in sent if isinstance(event, RawData)]


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
async def test_a_sized_answer_is_one_write(method: bytes) -> None:
    sent = await exchange(method + b" /sized HTTP/1.1\r\nHost: x\r\n\r\n")
    [data] = writes(sent)
    assert data.startswith(b"HTTP/1.1 200 ") and b"content-length: 12\r\n" in data
    assert data.endswith(b"\r\n\r\n" + (BODY if method == b"GET" else b""))
    assert isinstance(sent[-1], Updated) and sent[-1].idle  # kept for the next request


async def test_a_chunked_answer_goes_out_with_its_head_then_its_end() -> None:
    # Unsized bodies are streamed ones (the API's lists): each chunk goes as it comes.
    head_and_body, end = writes(await exchange(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert head_and_body.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in head_and_body.lower()
    assert head_and_body.endswith(b"\r\n\r\nc\r\n" + BODY + b"\r\n")
    assert end == b"0\r\n\r\n"


async def test_a_streamed_answer_goes_out_as_it_comes_its_head_with_the_first_chunk() -> None:
    parts = writes(await exchange(b"GET /streamed HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert len(parts) == 3, parts
    assert parts[0].startswith(b"HTTP/1.1 200 ") and parts[0].endswith(b"\r\n\r\n3\r\none\r\n")
    assert parts[1:] == [b"3\r\ntwo\r\n", b"0\r\n\r\n"]


async def test_a_head_whose_body_never_came_goes_out_before_the_close() -> None:
    sent = await exchange(b"GET /fails HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [type(e) for e in sent if not isinstance(e, Updated)] == [RawData, Closed], sent
    assert writes(sent)[0].startswith(b"HTTP/1.1 200 ")
