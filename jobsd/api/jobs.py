"""`/api/v1/jobs`: create, list, get, replace, delete, and run now."""

from __future__ import annotations

from quart import Blueprint, Response, request

from jobsd.api import jsonapi
from jobsd.api.auth import current_account
from jobsd.api.context import ApiContext
from jobsd.api.documents import parse_job_document
from jobsd.api.params import Query
from jobsd.api.render import render_job, render_run
from jobsd.cursors import page_offset, total_pages
from jobsd.messages import RunOrder

MAX_OFFSET = 2**62


def jobs_blueprint(ctx: ApiContext) -> Blueprint:
    bp = Blueprint("jobs", __name__)

    @bp.post("/api/v1/jobs")
    async def create_job() -> Response:
        account = current_account(ctx)
        plan = account.plan
        doc = await jsonapi.json_body()
        spec = parse_job_document(doc, path_slug=None, max_timeout_s=plan.max_timeout)
        job = await ctx.store.jobs.create_job(account.id, plan.active_jobs_limit, spec)
        return jsonapi.document(
            {"data": render_job(job)}, status=201, Location=f"/api/v1/jobs/{job.spec.slug}"
        )

    @bp.get("/api/v1/jobs")
    async def list_jobs() -> Response:
        account = current_account(ctx)
        query = Query(
            request.args, ("filter[enabled]", "page[number]", "page[size]", "meta[total]")
        )
        enabled = query.boolean("filter[enabled]")
        number = query.integer("page[number]", 1, 1)
        size = query.integer("page[size]", 1000, 1, 1000)
        with_total = bool(query.boolean("meta[total]"))
        jobs, total = await ctx.store.jobs.list_jobs(
            account.id,
            enabled=enabled,
            # Past any real table; keeps SQLite's 64-bit OFFSET from overflowing.
            offset=min(page_offset(number, size), MAX_OFFSET),
            limit=size,
            with_total=with_total,
        )
        pagination: dict[str, int] = {"page": number, "size": size}
        if total is not None:
            pagination["total"] = total
            pagination["total_pages"] = total_pages(total, size)
        return jsonapi.document(
            {"data": [render_job(j) for j in jobs], "meta": {"pagination": pagination}}
        )

    @bp.get("/api/v1/jobs/<slug>")
    async def get_job(slug: str) -> Response:
        account = current_account(ctx)
        job = await ctx.store.jobs.get_job(account.id, slug)
        return jsonapi.document({"data": render_job(job)})

    @bp.put("/api/v1/jobs/<slug>")
    async def replace_job(slug: str) -> Response:
        account = current_account(ctx)
        plan = account.plan
        doc = await jsonapi.json_body()
        # A job that does not exist is 404 before its document is judged.
        await ctx.store.jobs.get_job(account.id, slug)
        spec = parse_job_document(doc, path_slug=slug, max_timeout_s=plan.max_timeout)
        job = await ctx.store.jobs.replace_job(account.id, plan.active_jobs_limit, slug, spec)
        return jsonapi.document({"data": render_job(job)})

    @bp.delete("/api/v1/jobs/<slug>")
    async def delete_job(slug: str) -> Response:
        account = current_account(ctx)
        await ctx.store.jobs.delete_job(account.id, slug)
        return jsonapi.no_content()

    @bp.post("/api/v1/jobs/<slug>/actions/run")
    async def run_job_now(slug: str) -> Response:
        account = current_account(ctx)
        run = await ctx.store.runs.enqueue_manual(account.id, slug)
        await ctx.orders.send(RunOrder(run.id))
        return jsonapi.document({"data": render_run(run)})

    return bp
