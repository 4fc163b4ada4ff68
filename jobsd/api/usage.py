"""`/api/v1/usage`: runs metered in a UTC month, and the jobs counted now.

What `active_jobs` counts is the request's version's (2026-06-04: jobs
enabled in the default environment; 2026-08-07: permanent jobs).
"""

from __future__ import annotations

import re

from quart import Blueprint, Response, request

from jobsd import errors
from jobsd.api import jsonapi
from jobsd.api.auth import current_account
from jobsd.api.context import ApiContext
from jobsd.api.params import Query
from jobsd.api.render import render_usage
from jobsd.api.versions import dialect
from jobsd.clock import month_of

_MONTH = re.compile(r"[0-9]{4}-(?:0[1-9]|1[0-2])", re.ASCII)  # fullmatch, not `$` (a final \n)


def usage_blueprint(ctx: ApiContext) -> Blueprint:
    bp = Blueprint("usage", __name__)

    @bp.get("/api/v1/usage")
    async def get_usage() -> Response:
        caller = current_account(ctx)
        query = Query(request.args, ("filter[period]",))
        current = month_of(ctx.store.jobs.now())
        raw = query.text("filter[period]")
        if raw is None or raw == "current":
            period, resource_id = current, "current"
        elif _MONTH.fullmatch(raw) and raw <= current:
            period, resource_id = raw, raw
        else:
            raise errors.bad_parameter(
                "filter[period]",
                f"filter[period] must be 'current' or a month up to {current} as YYYY-MM, "
                f"not '{raw}'",
            )
        plan = caller.plan
        counting = dialect(caller.version).counting(caller.default_environment)
        runs_used, active_jobs = await ctx.store.jobs.usage(caller.id, period, counting)
        return jsonapi.document(
            {
                "data": render_usage(
                    period=period,
                    runs_used=runs_used,
                    runs_included=plan.runs_included,
                    active_jobs=active_jobs,
                    active_jobs_limit=plan.active_jobs_limit,
                    resource_id=resource_id,
                )
            }
        )

    return bp
