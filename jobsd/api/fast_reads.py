"""`GET /api/v1/jobs/{job_id}` answered below Quart when nothing about the request is unusual.

Reading one job is what clients do most (a dashboard, the SDK, a script
polling its job), and Quart's machinery around a request (request and
response objects and their contexts, routing over every rule, six hooks)
costs about what the read itself does: a plain Quart endpoint takes
~250 us of CPU per request where the same answer sent directly takes ~65
(tests/bench/bench_api_read.py). So this layer answers the plain case
itself, with the parts the route uses (`auth.caller_for`, the version's
`guard` and `render_job`, the store's point read, `jsonapi.encoded`), and
sends the status, headers and bytes the route would
(tests/test_fast_reads.py compares the two, request by request).

The plain case: GET of `/api/v1/jobs/<one segment>`, no body framing (a
GET that says it carries a body goes to the app, which reads and bounds
it), one `Authorization` naming a caller, at most one known
`Jobsd-Version`, the version's guard passed, and the job read without
waiting for SQLite. Anything else (an error to answer, a header sent
twice, a busy database, any exception at all) and this layer has sent
nothing and changed nothing: the request goes on to the app, which
answers it as it always has. It never awaits before its answer is whole,
so the request deadline behind it has nothing to bound, and its two sends
are bounded by the connection like any other.
"""

from __future__ import annotations

from typing import Any

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPScope,
    Scope,
)

from jobsd.api.auth import VERSION_HEADER, caller_for, known_version
from jobsd.api.context import ApiContext
from jobsd.api.edge import ROUTE_KEY, route_template
from jobsd.api.jsonapi import MEDIA_TYPE, encoded
from jobsd.api.versions import dialect

PREFIX = "/api/v1/jobs/"
_ROUTE = route_template(PREFIX + "<slug>")
_AUTHORIZATION = b"authorization"
_VERSION = VERSION_HEADER.lower().encode()
# Headers that say a body follows: such a GET is the app's (it reads and bounds bodies).
_FRAMING = (b"content-length", b"transfer-encoding")
_TYPE = (b"content-type", MEDIA_TYPE.encode())


class FastReads:
    """ASGI middleware in front of the app: see the module note."""

    def __init__(self, app: ASGIFramework, ctx: ApiContext) -> None:
        self._app = app
        self._ctx = ctx

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            try:
                answer = self._answer(scope)
            except Exception:  # the app answers it, errors and all
                answer = None
            if answer is not None:
                version, body = answer
                scope[ROUTE_KEY] = _ROUTE  # type: ignore[literal-required]
                head = [_TYPE, (b"content-length", b"%d" % len(body)), (_VERSION, version)]
                await send({"type": "http.response.start", "status": 200, "headers": head})
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
        await self._app(scope, receive, send)

    def _answer(self, scope: HTTPScope) -> tuple[bytes, bytes] | None:
        """(the version served, the document) for the plain case; None for anything else."""
        path = scope["path"]
        slug = path[len(PREFIX) :]
        if not path.startswith(PREFIX) or not slug or "/" in slug or scope.get("root_path"):
            return None
        authorization: list[bytes] = []
        versions: list[bytes] = []
        for name, value in scope["headers"]:
            if name == _AUTHORIZATION:
                authorization.append(value)
            elif name == _VERSION:
                versions.append(value)
            elif name in _FRAMING:
                return None
        if len(authorization) != 1 or len(versions) > 1:
            return None
        requested = known_version(versions[0].decode("latin-1")) if versions else None
        caller = caller_for(self._ctx, authorization[0].decode("latin-1"), requested)
        version = dialect(caller.version)
        version.guard(caller)
        job = self._ctx.store.jobs.get_job_now(caller.id, slug, version.kinds)
        payload: dict[str, Any] = {"data": version.render_job(job, caller)}
        return caller.version.encode(), encoded(payload).encode()
