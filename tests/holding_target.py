"""A target on 127.0.0.1 that holds requests open, for tests of requests in flight.

trio + h11 in the test's own process (port 0). `/ok` answers 200 at once;
any other path holds the request, never answering, until the client hangs
up, and records that moment. So a test sees exactly which runs' requests
are open right now (`open_ids`), the most ever open at once (`peak`), and
when a cancelled request's connection really closed (`closed_at`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h11
import trio

RUN_ID = "x-jobsd-run-id"


@dataclass
class Holder:
    url: str = ""
    peak: int = 0
    open_ids: set[str] = field(default_factory=set)
    closed_at: dict[str, float] = field(default_factory=dict)  # run id -> trio time
    headers: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            request = await self._request(stream, conn)
            if request is None:
                return
            headers = {n.decode().lower(): v.decode() for n, v in request.headers}
            self.headers.append(headers)
            if request.target == b"/ok":
                body = b"ok"
                response = h11.Response(status_code=200, headers=[("Content-Length", "2")])
                await stream.send_all(conn.send(response) + conn.send(h11.Data(data=body)))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                return
            run_id = headers.get(RUN_ID, "")
            self.open_ids.add(run_id)
            self.peak = max(self.peak, len(self.open_ids))
            try:
                while await stream.receive_some(4096):
                    pass
            except trio.BrokenResourceError:
                pass
            finally:
                self.open_ids.discard(run_id)
                self.closed_at[run_id] = trio.current_time()
        except (trio.BrokenResourceError, h11.ProtocolError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _request(self, stream: trio.SocketStream, conn: h11.Connection) -> h11.Request | None:
        request: h11.Request | None = None
        for _ in range(1000):
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return None
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage):
                return request
        return None

    async def until(self, predicate: object, timeout_s: float = 15.0) -> None:
        assert callable(predicate)
        with trio.fail_after(timeout_s):
            while not predicate():
                await trio.sleep(0.02)


@asynccontextmanager
async def holding_target() -> AsyncIterator[Holder]:
    holder = Holder()
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    holder.url = f"http://127.0.0.1:{listener.socket.getsockname()[1]}"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, holder.handle, [listener])
        try:
            yield holder
        finally:
            nursery.cancel_scope.cancel()
