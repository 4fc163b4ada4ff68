"""`/healthz` and `/api/v1/openapi.json`: the unauthenticated endpoints.

The spec served is the one of the version in force (`jobsd.api.spec` builds
them): the one `Jobsd-Version` names, else the account's when the request
carries a valid token, else the default. A bad or missing token is no error
here: the document is public.
"""

from __future__ import annotations

from quart import Blueprint, Response, g

from jobsd import errors
from jobsd.api import jsonapi
from jobsd.api.auth import version_in_force
from jobsd.api.context import ApiContext
from jobsd.api.versions import dialect


def meta_blueprint(ctx: ApiContext) -> Blueprint:
    bp = Blueprint("meta", __name__)

    @bp.get("/healthz")
    async def healthz() -> Response:
        if ctx.health.ready and not ctx.health.stopping:
            return jsonapi.document({"meta": {"status": "ok"}})
        state = "stopping" if ctx.health.stopping else "starting"
        err = errors.ApiError(
            503, [errors.ErrorItem(503, state, "Service Unavailable", f"jobsd is {state}")]
        )
        return jsonapi.error_response(err)

    @bp.get("/api/v1/openapi.json")
    async def openapi() -> Response:
        version = version_in_force(ctx)
        g.jobsd_version = version
        return Response(dialect(version).served_spec(), content_type="application/json")

    return bp
