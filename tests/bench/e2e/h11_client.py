"""A minimal HTTP/1.1 client on trio + h11: the cheapest client Python offers.

Used where the client's own cost must stay small beside what is measured
(the bare new-connection loop, the API read loops, the run-now pacer). One
`H11Conn` is one TCP connection; `exchange` sends a request and reads the
whole answer, and the connection is reusable after it when both sides keep
it alive. Bodies are capped: a benchmark never buffers without bound.
"""

from __future__ import annotations

import h11
import trio

MAX_BODY_BYTES = 1 << 20


class H11Conn:
    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self._stream = stream
        self._conn = h11.Connection(h11.CLIENT)
        self._host = host

    @classmethod
    async def open(cls, host: str, port: int) -> H11Conn:
        return cls(await trio.open_tcp_stream(host, port), f"{host}:{port}")

    async def exchange(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> tuple[int, bytes]:
        """(status, body); raises ConnectionError when the peer closes mid-way."""
        conn = self._conn
        if conn.our_state is h11.DONE:
            conn.start_next_cycle()
        head = [("Host", self._host), *headers]
        if body or method in ("POST", "PUT"):
            head.append(("Content-Length", str(len(body))))
        data = conn.send(h11.Request(method=method, target=target, headers=head))
        if body:
            data += conn.send(h11.Data(data=body))
        await self._stream.send_all(data + conn.send(h11.EndOfMessage()))
        status, chunks, size = 0, [], 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await self._stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY_BYTES:
                    raise ConnectionError("answer over the benchmark's 1 MiB cap")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection mid-exchange")

    async def aclose(self) -> None:
        await self._stream.aclose()
