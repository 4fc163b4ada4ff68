"""The requests clients repeat most, answered below Quart when nothing about them is unusual.

Reading one job (a dashboard, the SDK, a script polling its job), running
one now (a CI step, a script's `curl -X POST`) and reading one run (a
client waiting for that run to end) are most of what clients send, and
Quart's machinery around a request (request and response objects and
their contexts, routing over every rule, six hooks) costs more CPU than
any of them: a read took ~600 us in one process through the route and
~170 us here (tests/bench/bench_api_read.py). So these layers answer the
plain case themselves, with the parts the routes use (`auth.caller_for`,
the version's `guard`, `run_now_target` and rendering, the store's
methods, `jsonapi.encoded`), and send the status, headers and bytes the
route would (tests/api/test_fast_paths.py, test_fast_run_now.py and
test_fast_run_reads.py compare the two, request by request).

The plain case: the route's method and exact path, no query string (the
route refuses a JSON:API family parameter, `include` say), no body (none framed,
or `Content-Length: 0`; a run-now may also carry the small body naming its
environment that the official SDK sends: `jobsd.api.fast_run_now`), one
`Authorization` naming a caller, at most one known `Jobsd-Version`, an
`Accept` the app would answer (`jsonapi.check_accept`), the version's guard
passed (where the route checks it). Anything else, and
anything that goes wrong while the layer only reads (an error to answer, a
header sent twice, a busy database, any exception at all), and it has sent
nothing and changed nothing: the request goes on to the app, which answers
it as it always has (a body the layer read, byte for byte as it came).

- `FastReads` and `FastRunReads` sit in front of the request deadline:
  they never await before their answer is whole (the job or the run is read
  on the loop's thread, and a read that would wait for SQLite is the
  app's), so there is nothing to bound. The runs' route checks no
  version's guard (a run shows in every version), so neither does
  `FastRunReads`.
- `FastRunNow` (`jobsd.api.fast_run_now`) sits behind the deadline, as
  its write waits for the writer (and it may wait for a body). Up to the
  write it only reads, and passes on whatever is not plain; from the write
  on the answer is its own, never passed on (the run is attempted once):
  the run, offered to the executors with no await in between
  (`jobsd.dispatch`), or the write's refusal, a busy database's 503 or a
  500, each as the app's error boundary words it.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPScope,
    Scope,
)

from jobsd import errors
from jobsd.api.auth import VERSION_HEADER, Caller, caller_for, known_version
from jobsd.api.context import ApiContext
from jobsd.api.edge import ROUTE_KEY, route_template
from jobsd.api.jsonapi import FRAMING_HEADERS, MEDIA_TYPE, check_accept, encoded, error_payload
from jobsd.api.runs import canonical_run_id
from jobsd.api.versions import Dialect, dialect

Plan = TypeVar("Plan")

JOBS = "/api/v1/jobs/"
RUNS = "/api/v1/runs/"
RUN_NOW = "/actions/run"
_AUTHORIZATION = b"authorization"
_ACCEPT = b"accept"
_VERSION = VERSION_HEADER.lower().encode()
_TYPE = (b"content-type", MEDIA_TYPE.encode())


def segment(scope: HTTPScope, prefix: str, suffix: str = "") -> str | None:
    """The one path segment after `prefix` (and before `suffix`), if that is the path
    and no query string follows it (the route judges its parameters)."""
    path = scope["path"]
    if scope.get("root_path") or scope.get("query_string") or not path.startswith(prefix):
        return None
    if not path.endswith(suffix):
        return None
    segment = path[len(prefix) : len(path) - len(suffix)]
    return segment if segment and "/" not in segment else None


def caller_of(
    ctx: ApiContext, scope: HTTPScope, *, guarded: bool = True, framed: bool = False
) -> tuple[Caller, Dialect] | None:
    """The caller and its version, for a request with one `Authorization`, at most one
    `Jobsd-Version` and no body (unless `framed`: the caller judges the body); None for
    any other; raises as the route would (the version's guard only where the route
    checks it: the jobs' routes)."""
    authorization: list[bytes] = []
    versions: list[bytes] = []
    framing: list[bytes] = []
    accept: list[bytes] = []
    for name, value in scope["headers"]:
        if name == _AUTHORIZATION:
            authorization.append(value)
        elif name == _VERSION:
            versions.append(value)
        elif name in FRAMING_HEADERS:
            framing.append(name + b":" + value.strip())
        elif name == _ACCEPT:
            accept.append(value)
    unframed = framed or framing in ([], [b"content-length:0"])
    if len(authorization) != 1 or len(versions) > 1 or not unframed:
        return None
    check_accept(b", ".join(accept).decode("latin-1"))  # the app's 406, raised as it would
    requested = known_version(versions[0].decode("latin-1")) if versions else None
    caller = caller_for(ctx, authorization[0].decode("latin-1"), requested)
    version = dialect(caller.version)
    if guarded:
        version.guard(caller)
    return caller, version


async def send_document(
    send: ASGISendCallable,
    version: str,
    payload: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
    *,
    closing: bool = False,
) -> None:
    """The answer as Quart sends a `jsonapi.document`, `Jobsd-Version` last (its hook's)
    but for `Connection: close` where the app's `drain_body` adds it (after: the
    hooks run last registered first)."""
    body = encoded(payload).encode()
    head = [_TYPE, (b"content-length", b"%d" % len(body))]
    head += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    head.append((_VERSION, version.encode()))
    if closing:
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(
    send: ASGISendCallable, version: str, err: errors.ApiError, *, closing: bool = False
) -> None:
    """`jsonapi.error_response` as Quart would send it."""
    await send_document(send, version, error_payload(err), err.status, err.headers, closing=closing)


class _FastPath(Generic[Plan]):
    """One route answered here when `_plan` finds the request plain; see the module note."""

    method: str
    route: str

    def __init__(self, app: ASGIFramework, ctx: ApiContext) -> None:
        self._app = app
        self._ctx = ctx

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "http" and scope["method"] == self.method:
            try:
                plan = self._plan(scope)
            except Exception:  # the app answers it, errors and all
                plan = None
            if plan is not None:
                scope[ROUTE_KEY] = self.route  # type: ignore[literal-required]
                await self._answer(scope, send, plan)
                return
        await self._app(scope, receive, send)

    def _plan(self, scope: HTTPScope) -> Plan | None:
        """What to answer with, for the plain case; None for anything else. Reads only."""
        raise NotImplementedError

    async def _answer(self, scope: HTTPScope, send: ASGISendCallable, plan: Plan) -> None:
        raise NotImplementedError


class _Read(_FastPath[tuple[Caller, dict[str, Any]]]):
    """A read: the plan is the whole answer, its document in hand."""

    async def _answer(
        self, scope: HTTPScope, send: ASGISendCallable, plan: tuple[Caller, dict[str, Any]]
    ) -> None:
        caller, payload = plan
        await send_document(send, caller.version, payload)


class FastReads(_Read):
    """`GET /api/v1/jobs/{job_id}`."""

    method = "GET"
    route = route_template(JOBS + "<slug>")

    def _plan(self, scope: HTTPScope) -> tuple[Caller, dict[str, Any]] | None:
        slug = segment(scope, JOBS)
        found = None if slug is None else caller_of(self._ctx, scope)
        if slug is None or found is None:
            return None
        caller, version = found
        job = self._ctx.store.jobs.get_job_now(caller.id, slug, version.kinds)
        return caller, {"data": version.render_job(job, caller)}


class FastRunReads(_Read):
    """`GET /api/v1/runs/{run_id}`: a client waiting for its run to end polls it."""

    method = "GET"
    route = route_template(RUNS + "<run_id>")

    def _plan(self, scope: HTTPScope) -> tuple[Caller, dict[str, Any]] | None:
        raw = segment(scope, RUNS)
        found = None if raw is None else caller_of(self._ctx, scope, guarded=False)
        if raw is None or found is None:
            return None
        caller, version = found
        run = self._ctx.store.runs.get_run_now(caller.id, canonical_run_id(raw), caller.scope)
        return caller, {"data": version.render_run(run)}
