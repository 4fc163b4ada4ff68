"""Serving HTTP with a cap on open connections and a deadline on each request.

Hypercorn's trio worker accepts in `trio.serve_listeners` without bound, so
a client opening thousands of idle sockets costs a task and buffers each.
Here the accept loop takes a slot from a `trio.CapacityLimiter` *before* it
accepts, and the slot comes back when the connection closes: at the cap, new
connections wait in the kernel's listen backlog and are accepted in turn as
slots free, rather than being refused or costing memory. Every slot comes
back within a bound (`jobsd.api.connection` says how each way of holding
one is cut short), and a busy one is not kept alive while every slot is
taken (`crowded`: its answers say `Connection: close`, so a client whose
steady requests kept its connections from ever going idle held every slot
for good): a whole request head must arrive within
`keep_alive_timeout` (hypercorn's idle timer runs from accept, or from the
last answer, until the head is complete, so trickling header bytes does not
reset it); hypercorn answers 431 to a head that grows past
`h11_max_incomplete_size` and `HeadLimit` to one that arrived whole; Quart
bounds a body by `BODY_TIMEOUT`; `jobsd.api.request_deadline` bounds the
app; the connection bounds each write.

`serve` is hypercorn's `worker_serve` (hypercorn/trio/run.py) for plain TCP,
without TLS, QUIC or worker recycling, with the capped listener in place of
the plain one (hypercorn builds its listeners inside `worker_serve`, so a cap
cannot be slid in from outside) and `jobsd.api.connection.Connection` in
place of hypercorn's `TCPServer`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import (
    AppWrapper,
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ConnectionState,
    HTTPScope,
    LifespanState,
    Scope,
)
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr

from jobsd.api import client_share, jsonapi
from jobsd.api.connection import Connection
from jobsd.errors import ConfigError


class HeadLimit:
    """ASGI middleware: 431 for a request head over `max_bytes`, however it came.

    Hypercorn's `h11_max_incomplete_size` only bounds a head still being
    received: one that arrives whole in a single read (up to 64 KiB) is
    parsed and passed on. So the size is checked again here, on what the
    app would see, and answered as a JSON:API error like every other.
    """

    def __init__(self, app: ASGIFramework, max_bytes: int) -> None:
        self._app = app
        self._max_bytes = max_bytes

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "http" and head_bytes(scope) > self._max_bytes:
            detail = f"the request line and headers are over {self._max_bytes} bytes"
            await refuse(scope, send, 431, "header_too_large", detail)
            return
        await self._app(scope, receive, send)


# Set on a request's scope, to its code, by a layer that refuses it ahead of the app:
# `jobsd.api.edge.Observed` then counts and logs it as the connection's refusals are
# (`route="(refused)"`, not timed, `request refused` with the code), not as a request
# some route answered, so the same head refused whole or trickled shows the same.
REFUSED_KEY = "jobsd.refused"


async def refuse(
    scope: HTTPScope, send: ASGISendCallable, status: int, code: str, detail: str
) -> None:
    """Refuse the request ahead of the app (`send_closing_error`), marked as a refusal."""
    scope[REFUSED_KEY] = code  # type: ignore[literal-required]
    await send_closing_error(send, status, code, detail)


async def send_closing_error(send: ASGISendCallable, status: int, code: str, detail: str) -> None:
    headers, body = jsonapi.closing_error(status, code, detail)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def head_bytes(scope: HTTPScope) -> int:
    """The size of the request line and headers as sent, give or take whitespace."""
    line = len(scope["method"]) + len(scope["raw_path"]) + len(scope["query_string"]) + 12
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


def _peer_of(stream: trio.SocketStream) -> str | None:
    try:
        address = stream.socket.getpeername()[0]
    except OSError:
        return None
    return address if isinstance(address, str) else None


class CappedListener(trio.abc.Listener[trio.SocketStream]):
    """A listener that accepts only while the limiter has a slot free."""

    def __init__(self, inner: trio.SocketListener, limiter: trio.CapacityLimiter) -> None:
        self._inner = inner
        self._limiter = limiter
        self._slots: dict[trio.SocketStream, object] = {}

    async def accept(self) -> trio.SocketStream:
        slot = object()
        await self._limiter.acquire_on_behalf_of(slot)
        try:
            stream = await self._inner.accept()
        except BaseException:
            self._limiter.release_on_behalf_of(slot)
            raise
        self._slots[stream] = slot
        return stream

    def release(self, stream: trio.SocketStream) -> None:
        """Give back the slot `stream` was accepted with; call once it is closed."""
        self._limiter.release_on_behalf_of(self._slots.pop(stream))

    async def aclose(self) -> None:
        await self._inner.aclose()


async def serve(
    app: AppWrapper,
    config: HyperConfig,
    connections: trio.CapacityLimiter,
    *,
    write_timeout_s: float,
    shutdown_trigger: Callable[[], Awaitable[None]],
    on_refusal: Callable[[str, int, str, str | None], None] | None = None,
    shares: client_share.ClientShares | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on `config.bind` with at most `connections` open at once,
    and at most `shares.share` of them for one client (`jobsd.api.client_share`).

    A client must take each write (a response head, a body) within
    `write_timeout_s`, or its connection ends. `on_refusal(method, status,
    code, client)` hears of each request refused on the wire, before the app.
    """
    if config.ssl_enabled:
        raise ValueError("jobsd.api.limits.serve speaks plain HTTP only")
    config.set_statsd_logger_class(StatsdLogger)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, config, lifespan_state)
    context = WorkerContext(None)

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()

        async with trio.open_nursery() as server_nursery:
            listeners: list[CappedListener] = []
            binds: list[str] = []
            try:
                sockets = config.create_sockets().insecure_sockets
            except OSError as exc:  # a message and exit 2 (jobsd.cli), not a traceback
                where = ", ".join(config.bind)
                raise ConfigError(
                    "server.listen", f"cannot listen on {where}: {exc.strerror or exc}"
                ) from exc
            for sock in sockets:
                sock.listen(config.backlog)
                inner = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                listeners.append(CappedListener(inner, connections))
                binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")

            async def handle(listener: CappedListener, stream: trio.SocketStream) -> None:
                admitted, key = (True, None) if shares is None else shares.take(stream)
                if not admitted:  # past its client's share: the slot is free again at once
                    assert shares is not None
                    listener.release(stream)
                    if on_refusal is not None:
                        on_refusal("OTHER", 503, client_share.CODE, _peer_of(stream))
                    await shares.refuse(stream)
                    return
                try:
                    state = ConnectionState(lifespan_state.copy())
                    await Connection(
                        app, config, context, state, stream, write_timeout_s, on_refusal, crowded
                    ).run()
                finally:
                    if shares is not None:
                        shares.give_back(key)
                    listener.release(stream)

            def crowded() -> bool:
                """Every slot taken: an accept loop waits for one (it takes its slot
                before it accepts, so a client may be waiting in the backlog)."""
                return connections.statistics().tasks_waiting > 0

            task_status.started(binds)
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    nursery.start_soon(raise_shutdown, shutdown_trigger)
                    for listener in listeners:
                        nursery.start_soon(
                            partial(
                                trio.serve_listeners,
                                partial(handle, listener),
                                [listener],
                                handler_nursery=server_nursery,
                            )
                        )
            except BaseExceptionGroup as error:
                _, others = error.split(ShutdownError)
                if others is not None:
                    raise others from None
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout

        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
