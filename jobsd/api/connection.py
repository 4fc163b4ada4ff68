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
  deadline (`jobsd.api.request_deadline`).
- HTTP/1.1 only: `Upgrade` is ignored (hypercorn would switch to h2c or a
  WebSocket on it); framing that could be read two ways is refused
  (`jobsd.api.framing`); what h11 refuses is answered too; all as JSON:API
  errors, after which the connection closes.

This leans on hypercorn internals, hence the pin to 0.18.x in pyproject:
`H11Protocol._handle_events` (the parse loop, driven here), the protocol's
overrides (`jobsd.api.h11_protocol`), and `TaskGroup`.

The keep-alive timer is one cancel scope per connection whose deadline
moves (from accept, then from each answer; none while a request is served),
where hypercorn's `TrioSingleTask` cancelled a task and started another for
every request: two task switches and a nursery's `start` per request on
the loop's thread.

When jobsd itself closes after an answer, it half-closes and reads what the
client still sends for up to `LINGER_S` (RFC 9112 §9.6): unread bytes at
close would make the kernel reset the connection, and the reset can
destroy the answer before the client reads it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import h11
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState
from hypercorn.utils import parse_socket_addr

from jobsd.api.h11_protocol import JobsdH11
from jobsd.logs import failure, fields
from jobsd.quick_acquire import acquire

MAX_RECV = 2**16
READ_AHEAD_BYTES = 2**16
LINGER_S = 2.0
LINGER_BYTES = 2**20
# The client's states in which what it sends is never parsed: a refused request, and
# one that closes the connection (RFC 9112 §9.6), whose rest is dropped, not held.
_UNREAD = (h11.ERROR, h11.MUST_CLOSE)

log = logging.getLogger("jobsd.http")


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
        on_refusal: Callable[[str, int, str, str | None], None] | None = None,
        crowded: Callable[[], bool] | None = None,
    ) -> None:
        self._on_refusal = on_refusal
        self._crowded = crowded
        self._app = app
        self._config = config
        self._context = context
        self._state = state
        self._stream = stream
        self._write_timeout_s = write_timeout_s
        self._scope = trio.CancelScope()
        self._linger = False
        self._send_lock = trio.Lock()
        # The keep-alive timer: one scope for the connection's life whose deadline
        # moves (from accept, then from each answer; none while a request is served).
        self._idle = trio.CancelScope(deadline=math.inf)
        self._busy = False
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
                    self._protocol = JobsdH11(
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
                    if self._on_refusal is not None:
                        tell, peer = self._on_refusal, _peer(client)
                        self._protocol.on_refusal = lambda m, s, c: tell(m, s, c, peer)
                    if self._crowded is not None:
                        self._protocol.crowded = self._crowded
                    self._set_idle(idle=True)
                    task_group.spawn(self._idle_timer)
                    task_group.spawn(self._parse)
                    await self._read()
        except OSError:
            pass  # the peer left before it could be named
        except Exception as exc:
            # The per-request boundary of the transport: no answer is possible
            # on a connection in an unknown state, but one client's bytes must
            # not take down the listener for everyone (the fuzz test fails on this).
            # Its type and line only: a message may quote those bytes (a token).
            log.error("a connection failed and was closed", extra=fields(**failure(exc)))
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
            if self._protocol.connection.their_state not in _UNREAD:
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
            self._set_idle(idle=event.idle)

    async def _write(self, data: bytes) -> None:
        await acquire(self._send_lock)  # no step when it is free: the send is one
        try:
            with trio.CancelScope(deadline=trio.current_time() + self._write_timeout_s) as cut:
                await self._stream.send_all(data)
            if not cut.cancelled_caught:
                return
            # the peer did not take the bytes in time
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer left
        except trio.Cancelled:
            self._stop(linger=False)  # cut short mid-message: the framing is lost
            raise
        finally:
            self._send_lock.release()
        await self._end(linger=False)

    def _set_idle(self, *, idle: bool) -> None:
        """Start or stop the keep-alive timer: a deadline moved, not a task restarted
        (hypercorn's `TrioSingleTask` spawned and cancelled a task per request)."""
        self._busy = not idle
        if idle:
            self._idle.deadline = trio.current_time() + self._config.keep_alive_timeout
        else:
            self._idle.deadline = math.inf

    async def _idle_timer(self) -> None:
        """Ends the connection when it has waited `keep_alive_timeout` for a request, or
        when the server stops and it is idle (a busy one is closed by the protocol
        after its answer: `H11Protocol._maybe_recycle` sends `Closed` once terminated)."""
        with self._idle:
            await self._context.terminated.wait()
            if self._busy:
                await trio.sleep_forever()
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


def _peer(client: tuple[str, int] | None) -> str | None:
    return None if client is None else client[0]
