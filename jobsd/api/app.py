"""The app factory: routes from the blueprints, one boundary for errors.

The per-request boundary is here and nowhere else: an `ApiError` becomes its
JSON:API document, a Werkzeug HTTP error (unknown route, wrong method,
oversized body) becomes the same shape, a database another process kept
locked past the busy timeout, or a write connection gone bad, a 503 with
Retry-After (its transaction rolled back: nothing changed), and anything
unexpected a logged 500 without a stack trace on the wire.
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from jobsd import errors
from jobsd.api import jsonapi
from jobsd.api.auth import VERSION_HEADER, version_in_force
from jobsd.api.context import ApiContext
from jobsd.api.edge import ROUTE_KEY, route_template
from jobsd.api.jobs import jobs_blueprint
from jobsd.api.meta import meta_blueprint
from jobsd.api.policies import policies_blueprint
from jobsd.api.run_stats import run_stats_blueprint
from jobsd.api.runs import runs_blueprint
from jobsd.api.scrape import metrics_blueprint
from jobsd.api.usage import usage_blueprint
from jobsd.config import DEFAULT_API_VERSION

log = logging.getLogger("jobsd.api")


def _framed(scope: Any) -> bool:
    """Whether HTTP/1.1 framing says a body was sent. Read from the scope (header
    names are lower-case there) rather than Werkzeug's Headers, whose lookup of a
    missing name raises and catches an exception: two hooks ask on every request."""
    return any(name in jsonapi.FRAMING_HEADERS for name, _ in scope["headers"])


def create_app(ctx: ApiContext) -> QuartTrio:
    app = QuartTrio("jobsd")
    app.config["MAX_CONTENT_LENGTH"] = jsonapi.MAX_BODY_BYTES
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    app.url_map.strict_slashes = False
    # Werkzeug would answer a path with `//` by a 308 and an HTML page, past
    # the error handlers below; an empty segment names nothing: a JSON 404.
    app.url_map.merge_slashes = False
    blueprints = [
        jobs_blueprint(ctx),
        runs_blueprint(ctx),
        run_stats_blueprint(ctx),
        policies_blueprint(ctx),
        usage_blueprint(ctx),
        meta_blueprint(ctx),
    ]
    metrics = ctx.settings.config.metrics
    if ctx.observer is not None and metrics.enabled:
        blueprints.append(metrics_blueprint(ctx, ctx.observer, metrics))
    for blueprint in blueprints:
        app.register_blueprint(blueprint)

    @app.before_request
    async def note_route() -> None:
        # For the metrics and the access log (jobsd.api.edge): the template,
        # never the concrete path. Routing has run; a miss leaves no rule.
        if request.url_rule is not None:
            request.scope[ROUTE_KEY] = route_template(request.url_rule.rule)  # type: ignore[literal-required]

    @app.before_request
    async def body_within_bound() -> None:
        # Run now through 2026-06-04, rerun, cancel and DELETE take no body,
        # so they acted before anything read one: a body over 2 MiB got a 200
        # and a new run. Reading it here (bounded by MAX_CONTENT_LENGTH and
        # BODY_TIMEOUT, as any read) makes it a 413 before anything happens;
        # the handlers that parse a body get these bytes from Quart's cache.
        if not _framed(request.scope):
            return
        if len(await request.get_data(cache=True)) > jsonapi.MAX_BODY_BYTES:
            raise errors.payload_too_large("the request body is over 2 MiB")

    @app.before_request
    async def accepts_jsonapi() -> None:
        # JSON:API's 406 (jsonapi.check_accept), on the API's JSON:API answers (the
        # spec document is plain JSON); a header sent on several lines is one list.
        if request.path.startswith("/api/v1/") and request.path != "/api/v1/openapi.json":
            jsonapi.check_accept(", ".join(request.headers.getlist("Accept")))

    @app.after_request
    async def drain_body(response: Response) -> Response:
        # A connection whose request body was left unread closes after the
        # answer (its rest would be taken for the next request), and a client
        # still sending may then see a reset instead of the answer; so read
        # what is left, bounded by MAX_CONTENT_LENGTH and BODY_TIMEOUT,
        # before answering. A body that already ran out of time (408) is not
        # waited for twice.
        if response.status_code == 408:
            response.headers["Connection"] = "close"
            return response
        if not _framed(request.scope):
            return response  # HTTP/1.1 framing: no body was sent, none is left to read
        try:
            await request.get_data(cache=False)
        except Exception:
            response.headers["Connection"] = "close"
        return response

    @app.after_request
    async def no_type_without_content(response: Response) -> Response:
        # A 204, or the automatic answer to OPTIONS, has no content to type;
        # Quart would still label it text/html, which no answer of ours is.
        # Nor may a 204 carry Content-Length (RFC 9110 §8.6: it ends at its
        # head), which Quart sets to 0 for the empty body; h11 frames it alone.
        if response.status_code == 204:
            response.headers.pop("Content-Length", None)
        if response.status_code == 204 or (
            request.method == "OPTIONS" and response.content_length == 0
        ):
            response.headers.pop("Content-Type", None)
        return response

    @app.after_request
    async def say_version(response: Response) -> Response:
        # The version the request was served in; where none could be chosen
        # (no valid token, an unknown Jobsd-Version) the daemon's default. An
        # answer given before any route sought a caller (a 404, 405, 406, 413)
        # names the version the request chose all the same: it said which.
        if "jobsd_version" not in g:
            try:
                g.jobsd_version = version_in_force(ctx)
            except errors.ApiError:
                g.jobsd_version = DEFAULT_API_VERSION
        response.headers[VERSION_HEADER] = g.jobsd_version
        return response

    @app.errorhandler(errors.ApiError)
    async def api_error(exc: errors.ApiError) -> Response:
        return jsonapi.error_response(exc)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        return jsonapi.http_exception_response(exc)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        unavailable = errors.store_unavailable(exc)
        if unavailable is not None:
            err, why = unavailable
            log.warning("%s %s: %s; answered 503", request.method, request.path, why)
            return jsonapi.error_response(err)
        return jsonapi.internal_error_response(exc)

    return app
