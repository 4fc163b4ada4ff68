"""HTTP/1.1 as jobsd speaks it: hypercorn's protocol without upgrades, with
strict framing, every refusal answered as a JSON:API error and told.

Split from `jobsd.api.connection`, which drives this protocol over one
socket. Overrides hypercorn 0.18 internals (pinned in pyproject):
`_check_protocol`, `_create_stream`, `_send_error_response` and
`_send_h11_event`; h11's `next_event` to refuse folded header lines.

A response's head is held until its body's first bytes (or its end) and
goes out with them in one write: hypercorn wrote the head, the body and
the (empty, for a sized body) end of message apart, three bounded writes
and two TCP segments where nearly every answer of the API is one body.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import h11
import trio
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.h11 import H11Protocol

from jobsd.api import jsonapi
from jobsd.api.framing import (
    Refusal,
    folded,
    folding_refusal,
    refuse_head,
    refuse_method,
    refuse_target,
)

_DETAIL_CHARS = 300
_QUOTED = re.compile(r":? *(?:bytearray\()?b['\"].*\Z", re.DOTALL)


def without_bytes(message: str) -> str:
    """h11's reason less the bytes it quotes (`illegal header line: bytearray(b'...')`).

    Those bytes are the client's own line, and may hold its bearer token; an
    error body is what proxies and clients log. The reason alone says enough.
    """
    return _QUOTED.sub("", message)[:_DETAIL_CHARS]


class StrictH11(h11.Connection):
    """h11 that refuses folded header lines (it would unfold them) and says why it refused.

    It also keeps the method of the request in hand: an answer to `HEAD`
    carries no body, and h11 refuses one. And after a request that closes
    the connection (`Connection: close`, HTTP/1.0) it reads nothing more:
    RFC 9112 §9.6 says not to process what follows, where h11 raises on it
    (a stray CRLF, a pipelined request), which answered the request 400
    while it went on to take effect.
    """

    refusal: Refusal | None = None
    method: bytes | None = None

    def __init__(self, max_head_bytes: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self.max_head_bytes = max_head_bytes

    def _skip_empty_lines(self) -> bool:
        """Drops empty lines before a request line (RFC 9112 §2.2: a server SHOULD
        ignore at least one): some clients send a CRLF after a body, and on a
        kept connection h11 refused the next request for it. Through h11's
        receive buffer (0.16); should that change, such requests are refused
        400 as before, never misread. Costs nothing to the connection's
        bounds: idle, it still closes at the keep-alive timeout. True when all
        that is left is a CR, the start of one more empty line or of nothing
        (h11 would refuse it as a request line's first byte)."""
        buffer: Any = getattr(self, "_receive_buffer", None)
        data = getattr(buffer, "_data", None)
        if not isinstance(data, bytearray) or not hasattr(buffer, "_extract"):
            return False
        empty = 0
        while True:
            if data[empty : empty + 2] == b"\r\n":
                empty += 2
            elif data[empty : empty + 1] == b"\n":
                empty += 1
            else:
                break
        if empty:
            buffer._extract(empty)
        return data == b"\r" and not self.trailing_data[1]

    def start_next_cycle(self) -> None:
        super().start_next_cycle()
        self.method = None

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        if self.their_state is h11.MUST_CLOSE:
            return h11.NEED_DATA  # the rest is never read; the connection closes after the answer
        if self.their_state is h11.IDLE and self._skip_empty_lines():
            return h11.NEED_DATA  # a CR whose LF is yet to come
        if self.their_state is h11.IDLE and folded(self.trailing_data[0]):
            self.refusal = folding_refusal()
            raise h11.RemoteProtocolError(self.refusal.detail)
        try:
            event = super().next_event()
            if isinstance(event, h11.Request):
                self.method = event.method
            return event
        except h11.RemoteProtocolError as error:
            if error.error_status_hint == 431:
                detail = f"the request line and headers are over {self.max_head_bytes} bytes"
                self.refusal = Refusal(431, "header_too_large", detail)
            else:  # h11's 501 (a transfer coding other than chunked) is faulty framing too
                detail = f"not a valid HTTP/1.1 request: {without_bytes(str(error))}"
                self.refusal = Refusal(400, "bad_request", detail)
            raise


class JobsdH11(H11Protocol):
    """Hypercorn's HTTP/1.1 protocol, without upgrades, refusing what `framing` refuses.

    Once its connection is ending (`ending`), nothing more is sent: the
    tasks being cancelled would otherwise try to finish or fail their
    answers (hypercorn's 500 for an app stopped before it answered) on an
    h11 state that a cut-short write has left behind.
    """

    ending = False
    # Told of each refusal (method, status, code): the metrics and the access log.
    on_refusal: Callable[[str, int, str], None] | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.connection = StrictH11(self.config.h11_max_incomplete_size)
        self._refused = False
        self._held = b""  # a response head, to go out with what follows it
        self._deliver = self.send
        self.send = self._send_held_first
        # Whether every connection slot is taken (`jobsd.api.limits`): an answer given
        # then says `Connection: close`, so its slot goes to a client still waiting.
        self.crowded: Callable[[], bool] = _never

    async def _check_protocol(self, event: h11.Request) -> None:
        refusal = (
            refuse_head(event.http_version, event.headers)
            or refuse_method(event.method)
            or refuse_target(event.target)
        )
        if refusal is not None:
            self._refused = True
            await self._send_refusal(refusal)
            await self.send(Closed())

    async def _create_stream(self, request: h11.Request) -> None:
        if self._refused:
            return
        if any(name == b"upgrade" for name, _ in request.headers):
            request = h11.Request(
                method=request.method,
                target=request.target,
                http_version=request.http_version,
                headers=[(n, v) for n, v in request.headers if n != b"upgrade"],
            )
        await super()._create_stream(request)

    async def _send_error_response(self, status_code: int) -> None:
        assert isinstance(self.connection, StrictH11)
        refusal = self.connection.refusal or Refusal(400, "bad_request", "not valid HTTP/1.1")
        await self._send_refusal(refusal)

    async def _send_h11_event(self, event: Any) -> None:
        if self.ending:
            await trio.lowlevel.checkpoint()  # raises Cancelled: this task is on its way out
            return
        if isinstance(event, h11.Response) and self.crowded():
            event = _closing(event)
        try:
            data = self.connection.send(event) or b""
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return
        if isinstance(event, h11.Response):
            self._held += data
            return
        data, self._held = self._held + data, b""
        if data:
            await self._deliver(RawData(data=data))

    async def _send_held_first(self, event: Event) -> None:
        """The protocol's way out: a head whose body never came (the app failed
        after starting its answer) still goes out before the connection closes."""
        if self._held and isinstance(event, Closed):
            held, self._held = self._held, b""
            await self._deliver(RawData(data=held))
        await self._deliver(event)

    async def _send_refusal(self, refusal: Refusal) -> None:
        assert isinstance(self.connection, StrictH11)
        if self.on_refusal is not None:
            method = (self.connection.method or b"").decode("ascii", "replace")
            self.on_refusal(method, refusal.status, refusal.code)
        headers, body = jsonapi.closing_error(refusal.status, refusal.code, refusal.detail)
        headers += self.config.response_headers("h11")
        await self._send_h11_event(h11.Response(status_code=refusal.status, headers=headers))
        if self.connection.method != b"HEAD":
            await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())


def _never() -> bool:
    return False


def _closing(response: h11.Response) -> h11.Response:
    """`response` saying `Connection: close` (once), so h11 ends the connection after it."""
    if any(n == b"connection" and v.lower() == b"close" for n, v in response.headers):
        return response
    headers = [*response.headers, (b"connection", b"close")]
    return h11.Response(status_code=response.status_code, headers=headers, reason=response.reason)
