"""Run-now answered below Quart, with no body or the small one the official SDK sends.

`jobsd.api.fast_paths` says why and by which rules; this is the run-now
(`POST /api/v1/jobs/{job_id}/actions/run`). The official SDK (`smplkit-sdk`)
always names its environment in a body (`{"environment": "production"}`,
`application/vnd.api+json`), so answering only body-less run-nows left every
SDK user on Quart's path, ~4x the CPU. So the layer also takes a body when:

- HTTP/1.1 framing says exactly `Content-Length: N`, N <= `BODY_BOUND`
  (4 KiB), no `Transfer-Encoding`; and one `Content-Type`, a media type the
  route accepts (`jsonapi.check_media_type`, before anything is read: a
  body the route would refuse is left unread, to the app). 4 KiB holds
  any plain document with room to spare (an environment name is at most 64
  characters, 384 bytes spelled as `\\u` escapes), and bounds what one
  request holds here to far below the app's 2 MiB, so the app's 413 is
  never a question here;
- the body is parsed by the route's own function (`jsonapi.optional_document`:
  media type, 2 MiB, JSON value count, strict JSON, duplicate names) and is
  plain: none (or whitespace), or an object whose only member, if any, is
  `environment`, a string or null. The version's `run_now_target` then
  chooses as the route's does.

The caller found from the head is found again once the body is whole, as
the route finds it only then: a reload in between may have revoked the
token or narrowed its environments.

Anything else (a parse that raises, an odd document, an environment the
token may not name) and the request goes on to the app with the messages
already received replayed exactly, then the rest from the client: the app
sees the same bytes in the same `http.request` messages, `more_body` and
all.

The body is read under the app's own bound (`server.body_timeout_s`, which
is Quart's `BODY_TIMEOUT`), from when the layer starts to read, as the app
reads it first thing (`body_within_bound`). A body not whole by then is
answered as the app answers it: 408 `http_error` worded by
`jsonapi.http_error`, `Connection: close` (the app's `drain_body`), in the
version the request chose (the head's caller's, as the app names it before
any route sought the caller: `jobsd.api.app`). Handing it on
instead would restart the app's timer on a client already given the full
span: the 408 would come after twice the bound (an old bug of the trickle
bench, tests/bench/README.md). A body that stops otherwise (the client
left: `http.disconnect`) goes on to the app, replayed.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from functools import partial

import trio
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    HTTPScope,
    Scope,
)
from werkzeug.exceptions import RequestTimeout

from jobsd import errors
from jobsd.api import jsonapi
from jobsd.api.auth import Caller
from jobsd.api.context import ApiContext
from jobsd.api.edge import ROUTE_KEY, route_template
from jobsd.api.fast_paths import JOBS, RUN_NOW, caller_of, segment, send_document, send_error
from jobsd.api.jobs import run_now
from jobsd.api.versions import Dialect
from jobsd.logs import failure, fields

log = logging.getLogger("jobsd.api")

BODY_BOUND = 4096
_CONTENT_LENGTH = b"content-length"
_CONTENT_TYPE = b"content-type"


@dataclass(frozen=True)
class _Head:
    """What the request's head says: who asks, in which version, to run which job, and
    the body to expect (`length` bytes, typed `content_type`)."""

    caller: Caller
    version: Dialect
    slug: str
    length: int
    content_type: str | None


_Plan = tuple[Caller, Dialect, str, str, bool]


class FastRunNow:
    """`POST /api/v1/jobs/{job_id}/actions/run`."""

    route = route_template(JOBS + "<slug>" + RUN_NOW)

    def __init__(self, app: ASGIFramework, ctx: ApiContext, *, body_timeout_s: float) -> None:
        self._app = app
        self._ctx = ctx
        self._body_timeout_s = body_timeout_s

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        try:
            head = self._head(scope)
        except Exception:  # the app answers it, errors and all
            head = None
        if head is None:
            await self._app(scope, receive, send)
            return
        received: list[ASGIReceiveEvent] = []
        body: bytes | None = b""
        if head.length:
            with trio.move_on_after(self._body_timeout_s) as timer:
                body = await _read_body(receive, received, head.length)
            if timer.cancelled_caught:
                scope[ROUTE_KEY] = self.route  # type: ignore[literal-required]
                await _send_late(send, head.caller.version)
                return
        try:
            # None: the client stopped (or sent other than it framed), for the app to hear.
            # The caller is asked again once a body came, as the route asks only then: a
            # reload meanwhile may have revoked or narrowed the token.
            fresh = self._head(scope) if head.length and body is not None else head
            plan = None if body is None or fresh is None else self._plan(fresh, body)
        except Exception:
            plan = None
        if plan is None:
            await self._app(scope, _replaying(received, receive), send)
            return
        scope[ROUTE_KEY] = self.route  # type: ignore[literal-required]
        await self._answer(scope, send, plan)

    def _head(self, scope: HTTPScope) -> _Head | None:
        """The caller and the body to expect, if the head is plain; None for any other;
        raises as the route would. Reads only."""
        slug = segment(scope, JOBS, RUN_NOW)
        if slug is None:
            return None
        framing = [(n, v.strip()) for n, v in scope["headers"] if n in jsonapi.FRAMING_HEADERS]
        types = [v.decode("latin-1") for n, v in scope["headers"] if n == _CONTENT_TYPE]
        length = 0
        if framing:  # one Content-Length within the bound; Transfer-Encoding is the app's
            if len(framing) != 1:
                return None
            ((name, value),) = framing
            if name != _CONTENT_LENGTH or not value.isdigit() or int(value) > BODY_BOUND:
                return None
            length = int(value)
        if length:
            if len(types) != 1:
                return None
            jsonapi.check_media_type(types[0])
        found = caller_of(self._ctx, scope, framed=True)
        if found is None:
            return None
        caller, version = found
        return _Head(caller, version, slug, length, types[0] if types else None)

    def _plan(self, head: _Head, body: bytes) -> _Plan | None:
        """(caller, version, job, environment, whether it must be enabled there), for a
        plain body; None for any other; raises as the route would. Reads only."""
        doc = jsonapi.optional_document(body, head.content_type)
        if not _plain(doc):
            return None
        caller, version, slug = head.caller, head.version, head.slug
        # Read only if the environment depends on the job: otherwise the write's own
        # read answers a job that is not there, with the same 404 (the body is plain
        # and its environment one the token may name: nothing else could be refused
        # first).
        environment, require_enabled = version.run_now_target(
            partial(self._ctx.store.jobs.get_job_now, caller.id, slug, version.kinds),
            doc if version.run_now_body else None,
            caller,
        )
        return caller, version, slug, environment, require_enabled

    async def _answer(self, scope: HTTPScope, send: ASGISendCallable, plan: _Plan) -> None:
        """The write, and its answer: the run, or why not, as the app's boundary would say.

        Answered here, never passed on, so a refusal (a 429 past
        `max_pending_runs`, say) costs one attempt, not two."""
        caller, version, slug, environment, require_enabled = plan
        try:
            run = await run_now(self._ctx, caller, version, slug, environment, require_enabled)
            payload = {"data": version.render_run(run)}
        except errors.ApiError as err:
            await send_error(send, caller.version, err)
            return
        except Exception as exc:
            where = f"{scope['method']} {scope['path']}"
            unavailable = errors.store_unavailable(exc)
            if unavailable is not None:
                log.warning("%s: %s; answered 503", where, unavailable[1])
                await send_error(send, caller.version, unavailable[0])
            else:
                # Its type and line only, as the app's boundary logs it.
                log.error("unhandled error in %s", where, extra=fields(**failure(exc)))
                await send_error(send, caller.version, errors.internal())
            return
        await send_document(send, caller.version, payload)


async def _read_body(
    receive: ASGIReceiveCallable, received: list[ASGIReceiveEvent], length: int
) -> bytes | None:
    """The body, once whole; None if the client stopped first, or its messages do not
    add up to the `length` it framed. Every message received is added to
    `received`, to be replayed (also when the caller's timeout cancels this)."""
    size = 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return None
        size += len(message.get("body", b""))
        if size > length:  # never held past what was framed
            return None
        if not message.get("more_body", False):
            if size != length:
                return None
            return b"".join(m.get("body", b"") for m in received)  # type: ignore[misc]


def _replaying(
    received: list[ASGIReceiveEvent], receive: ASGIReceiveCallable
) -> ASGIReceiveCallable:
    """`receive` as the app must see it: the messages the layer took first, as they
    came, then the client's own."""
    if not received:
        return receive
    queued = deque(received)

    async def replay() -> ASGIReceiveEvent:
        return queued.popleft() if queued else await receive()

    return replay


def _plain(doc: object) -> bool:
    """No body, or one that only chooses the environment (as the SDK sends it)."""
    if doc is None:
        return True
    if not isinstance(doc, dict) or not doc.keys() <= {"environment"}:
        return False
    named = doc.get("environment")
    return named is None or isinstance(named, str)


async def _send_late(send: ASGISendCallable, version: str) -> None:
    """The app's answer to a body not whole within `body_timeout_s` (see the module note)."""
    err = jsonapi.http_error(RequestTimeout(), "POST")
    await send_error(send, version, err, closing=True)
