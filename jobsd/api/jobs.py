"""`/api/v1/jobs`: create, list, get, replace, delete, and run now.

Shared by every API version: the caller's version (`jobsd.api.versions`)
parses and renders, the store applies one model.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from functools import partial

from quart import Blueprint, Response, request

from jobsd.api import jsonapi, streaming
from jobsd.api.auth import Caller, current_account
from jobsd.api.context import ApiContext
from jobsd.api.params import no_parameters
from jobsd.api.versions import Dialect, dialect, limit_of
from jobsd.cursors import total_pages
from jobsd.messages import Run, RunOrder


def jobs_blueprint(ctx: ApiContext) -> Blueprint:
    bp = Blueprint("jobs", __name__)

    def caller_and_dialect() -> tuple[Caller, Dialect]:
        caller = current_account(ctx)
        version = dialect(caller.version)
        version.guard(caller)
        return caller, version

    @bp.post("/api/v1/jobs")
    async def create_job() -> Response:
        caller, version = caller_and_dialect()
        no_parameters(request.args)
        doc = await jsonapi.json_body()
        write = version.parse_job(doc, path_slug=None, caller=caller)
        job = await ctx.store.jobs.create_job(
            caller.id, write, configured=caller.environments, limit=limit_of(caller)
        )
        return jsonapi.document(
            {"data": version.render_job(job, caller)},
            status=201,
            Location=f"/api/v1/jobs/{job.spec.slug}",
        )

    @bp.get("/api/v1/jobs")
    async def list_jobs() -> Response:
        caller, version = caller_and_dialect()
        version.job_query(request.args, caller)  # a bad parameter is a 400 before any wait

        def ask() -> Caller:
            return caller_and_dialect()[0]

        async def parts() -> AsyncGenerator[bytes, None]:
            async with streaming.held_for(caller, ctx.store.jobs.listing, ask) as (listing, who):
                version = dialect(who.version)
                query, number, size = version.job_query(request.args, who)
                pagination: dict[str, int] = {"page": number, "size": size}
                yield b""  # the snapshot is ours: nothing can be refused now

                async def meta() -> dict[str, object]:
                    if query.with_total:
                        total = await listing.count(query)
                        pagination["total"] = total
                        pagination["total_pages"] = total_pages(total, size)
                    return {"meta": {"pagination": pagination}}

                jobs = listing.page(query)
                render = partial(version.render_job, caller=who)
                async for part in streaming.list_document(jobs, render, meta):
                    yield part

        return await streaming.respond(parts())

    @bp.get("/api/v1/jobs/<slug>")
    async def get_job(slug: str) -> Response:
        caller, version = caller_and_dialect()
        no_parameters(request.args)
        job = await ctx.store.jobs.get_job(caller.id, slug, version.kinds)
        return jsonapi.document({"data": version.render_job(job, caller)})

    @bp.put("/api/v1/jobs/<slug>")
    async def replace_job(slug: str) -> Response:
        caller, version = caller_and_dialect()
        no_parameters(request.args)
        doc = await jsonapi.json_body()
        # A job that does not exist (for this version) is 404 before its document is judged.
        stored = await ctx.store.jobs.get_job(caller.id, slug, version.kinds)
        write = version.parse_job(doc, path_slug=slug, caller=caller, stored=stored)
        job = await ctx.store.jobs.replace_job(
            caller.id,
            slug,
            write,
            configured=caller.environments,
            limit=limit_of(caller),
            guard=caller.scope,
            kinds=version.kinds,
        )
        return jsonapi.document({"data": version.render_job(job, caller)})

    @bp.delete("/api/v1/jobs/<slug>")
    async def delete_job(slug: str) -> Response:
        caller, version = caller_and_dialect()
        no_parameters(request.args)
        await ctx.store.jobs.get_job(caller.id, slug, version.kinds)
        await ctx.store.jobs.delete_job(caller.id, slug, guard=caller.scope, kinds=version.kinds)
        return jsonapi.no_content()

    @bp.post("/api/v1/jobs/<slug>/actions/run")
    async def run_job_now(slug: str) -> Response:
        caller, version = caller_and_dialect()
        no_parameters(request.args)
        job = await ctx.store.jobs.get_job(caller.id, slug, version.kinds)
        body = await jsonapi.optional_json_body() if version.run_now_body else None
        environment, require_enabled = version.run_now_target(lambda: job, body, caller)
        run = await run_now(ctx, caller, version, slug, environment, require_enabled)
        return jsonapi.document({"data": version.render_run(run)})

    return bp


async def run_now(
    ctx: ApiContext,
    caller: Caller,
    version: Dialect,
    slug: str,
    environment: str,
    require_enabled: bool,
) -> Run:
    """A MANUAL run queued and handed to the executors, with no await between the two
    (`jobsd.dispatch`); also `jobsd.api.fast_run_now`'s."""
    run = await ctx.store.runs.enqueue_manual(
        caller.id,
        slug,
        environment,
        require_enabled=require_enabled,
        kinds=version.kinds,
        max_pending=ctx.settings.config.scheduler.max_pending_runs,
    )
    ctx.orders.offer(RunOrder(run.id, run.account_id))  # never waits: see jobsd.dispatch
    return run
