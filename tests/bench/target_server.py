"""A fast HTTP/1.1 target for the benchmarks: trio + h11, nothing else.

Run in its own process (`python tests/bench/target_server.py`) so the
clients under test do not share its GIL; the first stdout line is its URL
(127.0.0.1, an ephemeral port). Every request is answered `200` with a
short body, keep-alive as the client asks. It is cheaper per request than
hypercorn by a wide margin, so what a benchmark measures is the client.

It counts what it receives: requests overall, and per `X-Jobsd-Run-Id`
value, so a benchmark can prove every run was delivered exactly once.
`GET /_bench/take` answers those counts as JSON and resets them (that
request is not counted); `{"requests": N, "ids": {run_id: count}}`.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter

import h11
import trio

RESPONSE_BODY = b"ok\n"
TAKE_PATH = b"/_bench/take"
RECEIVE_BYTES = 65536
MAX_BODY_BYTES = 1 << 20


class Counts:
    """What arrived since the last take."""

    def __init__(self) -> None:
        self.requests = 0
        self.connections = 0  # those that carried a counted request: reuse shows here
        self.ids: Counter[str] = Counter()

    def take(self) -> bytes:
        doc = {"requests": self.requests, "connections": self.connections, "ids": dict(self.ids)}
        self.requests = 0
        self.connections = 0
        self.ids = Counter()
        return json.dumps(doc).encode()


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


async def _serve_connection(stream: trio.SocketStream, counts: Counts) -> None:
    conn = h11.Connection(h11.SERVER)
    counted = False
    try:
        while True:
            request: h11.Request | None = None
            body_bytes = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(RECEIVE_BYTES)
                    conn.receive_data(data)  # b"" is EOF: next_event says ConnectionClosed
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body_bytes += len(event.data)
                    if body_bytes > MAX_BODY_BYTES:
                        return
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
            assert request is not None
            if request.target == TAKE_PATH:
                body = counts.take()
                content_type = b"application/json"
            else:
                counts.requests += 1
                if not counted:
                    counts.connections += 1
                    counted = True
                run_id = _header(list(request.headers), b"x-jobsd-run-id")
                if run_id is not None:
                    counts.ids[run_id.decode("ascii", "replace")] += 1
                body = RESPONSE_BODY
                content_type = b"text/plain"
            headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
            await stream.send_all(
                conn.send(h11.Response(status_code=200, headers=headers))
                + conn.send(h11.Data(data=body))
                + conn.send(h11.EndOfMessage())
            )
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
        return
    finally:
        await stream.aclose()


async def serve(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    counts = Counts()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=4096)
    port = listeners[0].socket.getsockname()[1]

    async def handler(stream: trio.SocketStream) -> None:
        await _serve_connection(stream, counts)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(f"http://127.0.0.1:{port}")
        await trio.sleep_forever()


async def _main() -> None:
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve)
        print(url, flush=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(_main)
