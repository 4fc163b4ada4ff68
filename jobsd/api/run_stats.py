"""`/api/v1/run_stats`: counts by status and over time, recent failures, what fires next.

Served to both API versions (an added endpoint breaks no seed client); the
shape is the 2026-08-07 spec's `RunStatsResponse` either way. `bucket`
must be one of the spec's sizes, and the span the request covers (its
`filter[created_at]`, narrowed to where runs of the environments it covers
exist) may hold at most `MAX_BUCKETS` of them: the 400 names the sizes
that would fit.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from jobsd import errors
from jobsd.api import jsonapi
from jobsd.api.auth import current_account
from jobsd.api.context import ApiContext
from jobsd.api.listing import environments_filter
from jobsd.api.params import Query
from jobsd.api.run_params import STATS_PARAMETERS, interval
from jobsd.buckets import BUCKETS_US, MAX_BUCKETS, buckets_spanned, sizes_that_fit
from jobsd.clock import from_us, iso, to_us
from jobsd.store.run_stats import RunStats, StatsQuery


def render_run_stats(stats: RunStats) -> dict[str, object]:
    def at(us: int) -> str | None:
        return iso(from_us(us))

    nxt = stats.next_scheduled
    return {
        "id": "current",
        "type": "run_stat",
        "attributes": {
            "total": stats.total,
            "tally": {status.lower(): count for status, count in stats.tally.items()},
            "buckets": None
            if stats.buckets is None
            else [{"bucket": at(start), "count": count} for start, count in stats.buckets],
            "recent_failures": [
                {
                    "job": f.job,
                    "job_name": f.job_name,
                    "failure_reason": f.failure_reason,
                    "created_at": at(f.created_at_us),
                }
                for f in stats.recent_failures
            ],
            "next_scheduled": None
            if nxt is None
            else {
                "job": nxt.job,
                "job_name": nxt.job_name,
                "scheduled_for": at(nxt.scheduled_for_us),
                "environment": nxt.environment,
            },
        },
    }


def run_stats_blueprint(ctx: ApiContext) -> Blueprint:
    bp = Blueprint("run_stats", __name__)

    @bp.get("/api/v1/run_stats")
    async def get_run_stats() -> Response:
        caller = current_account(ctx)
        query = Query(request.args, STATS_PARAMETERS)
        created_at = interval(query, "filter[created_at]")
        environments = environments_filter(query, caller)
        bucket = query.text("bucket")
        bucket_us = None
        if bucket is not None:
            if bucket not in BUCKETS_US:
                raise errors.bad_parameter(
                    "bucket", f"bucket must be one of {', '.join(BUCKETS_US)}, not '{bucket}'"
                )
            bucket_us = BUCKETS_US[bucket]
            span = await ctx.store.stats.created_span(caller.id, created_at, environments)
            if span is not None and buckets_spanned(*span, bucket_us) > MAX_BUCKETS:
                fit = sizes_that_fit(*span)
                raise errors.bad_parameter(
                    "bucket",
                    f"bucket={bucket} over runs created from {iso(from_us(span[0]))} to "
                    f"{iso(from_us(span[1]))} is {buckets_spanned(*span, bucket_us)} buckets; "
                    f"at most {MAX_BUCKETS}: narrow filter[created_at]"
                    + (f" or use {', '.join(fit)}" if fit else ""),
                )
        stats = await ctx.store.stats.run_stats(
            caller.id,
            StatsQuery(created_at, environments, bucket_us, to_us(ctx.store.jobs.now())),
        )
        return jsonapi.document({"data": render_run_stats(stats)})

    return bp
