"""One client connection: hypercorn's HTTP/1.1 protocol, driven so its slot comes back.

Hypercorn 0.18's trio `TCPServer` can hold a connection, and so a slot of
`max_connections`, for good; this replaces it (keeping hypercorn's
`H11Protocol`, `HTTPStream` and task group) where it does:

- Its read loop stops reading while a pipelined request waits its turn
  (h11 PAUSED). A peer that sent eight requests and left was never seen
  to leave: the first answer hit the dead socket, the request was dropped,
  and nothing resumed the paused loop. Here a reader task always reads, so
  EOF or a reset is seen at once, and hands the bytes to a parser task; it
  stops only while 64 KiB wait unparsed, which bounds a connection's input
  (a peer that pipelined more than that and left is noticed when the parser
  has caught up, or at the first answer its kernel refuses).
- It ended a connection by closing the stream, which stops neither a parser
  blocked on the app's body queue nor the app. Here every way out (the peer
  left, a write timed out, the keep-alive timer, the protocol's `Closed`)
  cancels one scope around all the connection's tasks, app included:
  pipelined requests of a peer that left are dropped, never answered into
  a dead socket. EOF counts as leaving, as in Go's net/http: a client that
  half-closes and waits for its answer is not served.
- Its writes waited without bound for a client that does not read. Here
  each write (a response head, a body the app handed over) must be taken
  by the client within `write_timeout_s`, or the connection ends.
- Its read timeout ran while the app worked, dropping slow requests
  unanswered. Here no read has a timeout: waiting for the client is bounded
  by the keep-alive timer (a whole head), the body timeout and the request
  deadline (`jobsd.api.limits.RequestDeadline`).
- HTTP/1.1 only: `Upgrade` is ignored (hypercorn would switch to h2c or a
  WebSocket on it); framing that could be read two ways is refused
  (`jobsd.api.framing`); what h11 refuses is answered too; all as JSON:API
  errors, after which the connection closes.

This leans on hypercorn internals, hence the pin to 0.18.x in pyproject:
`H11Protocol._handle_events` (the parse loop, driven here),
`_check_protocol`, `_create_stream`, `_send_error_response` and
`_send_h11_event` (overridden), and `TaskGroup`, `TrioSingleTask`.

When jobsd itself closes after an answer, it half-closes and reads what the
client still sends for up to `LINGER_S` (RFC 9112 §9.6): unread bytes at
close would make the kernel reset the connection, and the reset can
destroy the answer before the client reads it.
"""

from __future__ import annotations

import logging
from typing import Any

import h11
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.worker_context import TrioSingleTask, WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState
from hypercorn.utils import parse_socket_addr

from jobsd.api import jsonapi
from jobsd.api.framing import Refusal, folded, folding_refusal, refuse_head

MAX_RECV = 2**16
READ_AHEAD_BYTES = 2**16
LINGER_S = 2.0
LINGER_BYTES = 2**20
_DETAIL_CHARS = 300

log = logging.getLogger("jobsd.http")


class _StrictH11(h11.Connection):
    """h11 that refuses folded header lines (it would unfold them) and says why it refused.

    It also keeps the method of the request in hand: an answer to `HEAD`
    carries no body, and h11 refuses one.
    """

    refusal: Refusal | None = None
    method: bytes | None = None

    def __init__(self, max_head_bytes: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self.max_head_bytes = max_head_bytes

    def start_next_cycle(self) -> None:
        super().start_next_cycle()
        self.method = None

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
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
                detail = f"not a valid HTTP/1.1 request: {error}"[:_DETAIL_CHARS]
                self.refusal = Refusal(400, "bad_request", detail)
            raise


class _H11(H11Protocol):
    """Hypercorn's HTTP/1.1 protocol, without upgrades, refusing what `framing` refuses.

    Once its connection is ending (`ending`), nothing more is sent: the
    tasks being cancelled would otherwise try to finish or fail their
    answers (hypercorn's 500 for an app stopped before it answered) on an
    h11 state that a cut-short write has left behind.
    """

    ending = False

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.connection = _StrictH11(self.config.h11_max_incomplete_size)
        self._refused = False

    async def _check_protocol(self, event: h11.Request) -> None:
        refusal = refuse_head(event.http_version, event.headers)
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
        assert isinstance(self.connection, _StrictH11)
        refusal = self.connection.refusal or Refusal(400, "bad_request", "not valid HTTP/1.1")
        await self._send_refusal(refusal)

    async def _send_h11_event(self, event: Any) -> None:
        if self.ending:
            await trio.lowlevel.checkpoint()  # raises Cancelled: this task is on its way out
            return
        await super()._send_h11_event(event)

    async def _send_refusal(self, refusal: Refusal) -> None:
        headers, body = jsonapi.closing_error(refusal.status, refusal.code, refusal.detail)
        headers += self.config.response_headers("h11")
        await self._send_h11_event(h11.Response(status_code=refusal.status, headers=headers))
        assert isinstance(self.connection, _StrictH11)
        if self.connection.method != b"HEAD":
            await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())


class Connection:
    """Serve one accepted stream until it ends; `run` returns once the socket is closed."""

    def __init__(
        self,
        app: AppWrapper,
        config: HyperConfig,
        context: WorkerContext,
        state: ConnectionState,
        stream: trio.SocketStream,
        write_timeout_s: float,
    ) -> None:
        self._app = app
        self._config = config
        self._context = context
        self._state = state
        self._stream = stream
        self._write_timeout_s = write_timeout_s
        self._scope = trio.CancelScope()
        self._linger = False
        self._send_lock = trio.Lock()
        self._idle = TrioSingleTask()
        self._unparsed = 0
        self._input = trio.Event()
        self._room = trio.Event()

    async def run(self) -> None:
        try:
            with self._scope:
                socket = self._stream.socket
                client = parse_socket_addr(socket.family, socket.getpeername())
                server = parse_socket_addr(socket.family, socket.getsockname())
                async with TaskGroup() as task_group:
                    self._task_group = task_group
                    self._protocol = _H11(
                        self._app,
                        self._config,
                        self._context,
                        task_group,
                        self._state,
                        False,
                        client,
                        server,
                        self._protocol_send,
                    )
                    await self._idle.restart(task_group, self._idle_timeout)
                    task_group.spawn(self._parse)
                    await self._read()
        except OSError:
            pass  # the peer left before it could be named
        except Exception:
            # The per-request boundary of the transport: no answer is possible
            # on a connection in an unknown state, but one client's bytes must
            # not take down the listener for everyone (the fuzz test fails on this).
            log.exception("a connection failed and was closed")
        finally:
            await self._close()

    async def _read(self) -> None:
        while True:
            if self._unparsed >= READ_AHEAD_BYTES:
                self._room = trio.Event()
                await self._room.wait()
            try:
                data = await self._stream.receive_some(MAX_RECV)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                await self._end(linger=False)
            if self._protocol.connection.their_state is not h11.ERROR:
                self._protocol.connection.receive_data(data)
                self._unparsed += len(data)
                self._input.set()

    async def _parse(self) -> None:
        while True:
            await self._input.wait()
            self._input = trio.Event()
            await self._protocol._handle_events()
            self._unparsed = 0
            self._room.set()

    async def _protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData):
            await self._write(event.data)
        elif isinstance(event, Closed):
            await self._end(linger=True)
        elif isinstance(event, Updated):
            if event.idle:
                await self._idle.restart(self._task_group, self._idle_timeout)
            else:
                await self._idle.stop()

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                with trio.fail_after(self._write_timeout_s):
                    await self._stream.send_all(data)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                pass  # the peer left, or did not take the bytes in time
            except trio.Cancelled:
                self._stop(linger=False)  # cut short mid-message: the framing is lost
                raise
        await self._end(linger=False)

    async def _idle_timeout(self) -> None:
        with trio.move_on_after(self._config.keep_alive_timeout):
            await self._context.terminated.wait()
        self._stop(linger=False)

    def _stop(self, *, linger: bool) -> None:
        """End the connection: every task on it is cancelled; the first reason decides."""
        if not self._scope.cancel_called:
            self._linger = linger
            self._protocol.ending = True
            self._scope.cancel()

    async def _end(self, *, linger: bool) -> None:
        """`_stop`, then raise `Cancelled` here: the caller runs inside the scope."""
        self._stop(linger=linger)
        await trio.lowlevel.checkpoint()

    async def _close(self) -> None:
        try:
            if self._linger:
                with trio.move_on_after(LINGER_S):
                    await self._stream.send_eof()
                    drained = 0
                    while drained < LINGER_BYTES:
                        data = await self._stream.receive_some(MAX_RECV)
                        if not data:
                            break
                        drained += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await self._stream.aclose()
