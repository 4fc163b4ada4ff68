"""A deadline on each request: unanswered `timeout_s` after its head came, it is answered 503.

The app is then cancelled and the connection closed: an answer that never
comes holds a slot and leaves the client guessing. A store write already
handed over still completes (it is shielded), so the request may have
taken effect; the error says so. An answer already begun is left to finish
(each write is bounded by the connection).

The 503 must go out at the deadline even while the app waits in a shielded
write (a database locked by another process), so it cannot come from the
request's own task: something else must be awake then. That was a nursery
per request, the app in a child task and the request's task asleep until
the deadline: a nursery, a task and a timer per request, ~38 us of the
loop's thread each (`tests/bench` README). Here one watcher per server,
started with the ASGI lifespan, holds the requests in flight in the order
they came; since every deadline is the same span after its start, the first
of them is always due first, so the watcher sleeps until that one and a
request costs a cancel scope and two dict operations. Driven without a
lifespan (an app called directly), each request has its own nursery, as
before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)

from jobsd.api.limits import send_closing_error
from jobsd.logs import failure, fields

log = logging.getLogger("jobsd.http")


@dataclass(eq=False)
class _InFlight:
    due: float
    send: ASGISendCallable
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    started: bool = False  # the app's answer has begun: it is left to finish
    late: bool = False  # the deadline passed first: the app's answer is dropped
    answered: trio.Event | None = None  # when late: set once the 503 is out

    async def send_in_time(self, message: ASGISendEvent) -> None:
        if not self.late:
            self.started = True
            await self.send(message)


class RequestDeadline:
    """ASGI middleware: the deadline above, for every `http` request through it."""

    def __init__(self, app: ASGIFramework, timeout_s: float) -> None:
        self._app = app
        self._timeout_s = timeout_s
        # In flight, in the order they came (dicts keep it): the first is due first.
        self._in_flight: dict[_InFlight, None] = {}
        self._watching = False
        self._arrived = trio.Event()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            async with trio.open_nursery() as nursery:
                await nursery.start(self._watch)
                await self._app(scope, receive, send)
                nursery.cancel_scope.cancel()
            return
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if not self._watching:
            await self._with_own_timer(scope, receive, send)
            return
        request = _InFlight(trio.current_time() + self._timeout_s, send)
        self._in_flight[request] = None
        if len(self._in_flight) == 1:
            self._arrived.set()
        try:
            with request.scope:
                await self._app(scope, receive, request.send_in_time)
            if request.answered is not None:
                await request.answered.wait()  # the 503 is out before the stream ends
        finally:
            self._in_flight.pop(request, None)

    async def _watch(self, *, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as answering:
            self._watching = True
            try:
                task_status.started()
                while True:
                    if not self._in_flight:
                        self._arrived = trio.Event()
                        await self._arrived.wait()
                        continue
                    first = next(iter(self._in_flight))
                    # Those that come later are due later: sleeping past `first.due`
                    # misses none, and `first` finishing early costs one wake-up then.
                    await trio.sleep_until(first.due)
                    if first not in self._in_flight:
                        continue  # it finished meanwhile
                    del self._in_flight[first]  # due: answered late, or left to finish
                    if not first.started:
                        first.late = True  # the app's own answer, should it come, is dropped
                        first.answered = trio.Event()
                        answering.start_soon(self._answer_late, first)
            finally:
                self._watching = False

    async def _answer_late(self, request: _InFlight) -> None:
        try:
            await send_closing_error(request.send, 503, "request_timeout", self._detail())
        except Exception as exc:
            # Not on the request's task: a failure here must not end the watcher
            # (and the server with it); the request's own task still ends below.
            log.error("answering a request past its deadline failed", extra=fields(**failure(exc)))
        finally:
            request.scope.cancel()
            assert request.answered is not None
            request.answered.set()

    def _detail(self) -> str:
        return (
            f"the request was not answered within {self._timeout_s:g} s and was stopped;"
            " it may have taken effect: read before retrying"
        )

    async def _with_own_timer(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        request = _InFlight(trio.current_time() + self._timeout_s, send)
        async with trio.open_nursery() as nursery:

            async def answer() -> None:
                await self._app(scope, receive, request.send_in_time)
                nursery.cancel_scope.cancel()

            nursery.start_soon(answer)
            await trio.sleep_until(request.due)
            if not request.started:
                request.late = True
                await send_closing_error(send, 503, "request_timeout", self._detail())
                nursery.cancel_scope.cancel()
