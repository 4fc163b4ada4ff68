"""`/api/v1/runs`: list (keyset cursor), get, cancel, rerun.

Shared by every API version: the caller's version renders, and sets the
default page size. A token limited to some environments never sees a run
of another (404, and left out of lists).

The 2026-08-07 runs filters beyond `filter[job]` and `filter[environment]`,
`last_run_only`, and sorts other than the default `-created_at` are not
served yet (the served spec leaves them out; `sort` with another value is
a 400 naming it).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from urllib.parse import urlencode

from quart import Blueprint, Response, request

from jobsd import errors
from jobsd.api import jsonapi, streaming
from jobsd.api.auth import current_account
from jobsd.api.context import ApiContext
from jobsd.api.listing import environments_filter
from jobsd.api.params import Query
from jobsd.api.versions import dialect
from jobsd.cursors import decode_after, encode_after
from jobsd.messages import CancelRun, RunOrder

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _run_id(raw: str) -> str:
    """A canonical run id; anything that is not a UUID names no run (404)."""
    if not _UUID.match(raw):
        raise errors.not_found(f"no run with id '{raw}'")
    return raw.lower()


def runs_blueprint(ctx: ApiContext) -> Blueprint:
    bp = Blueprint("runs", __name__)

    @bp.get("/api/v1/runs")
    async def list_runs() -> Response:
        caller = current_account(ctx)
        version = dialect(caller.version)
        query = Query(
            request.args,
            ("filter[job]", "filter[environment]", "sort", "page[size]", "page[after]"),
        )
        size = query.integer("page[size]", version.runs_page_size, 1, 1000)
        slug = query.text("filter[job]")
        environments = environments_filter(query, caller)
        sort = query.text("sort")
        if sort is not None and sort != "-created_at":
            raise errors.bad_parameter(
                "sort", f"sort: jobsd lists runs newest first (-created_at) only, not '{sort}'"
            )
        after_raw = query.text("page[after]")
        after: int | None = None
        if after_raw is not None:
            try:
                after = decode_after(after_raw)
            except ValueError:
                raise errors.bad_parameter(
                    "page[after]", "page[after] is not a cursor this server issued"
                ) from None
        base_url = f"{request.host_url.rstrip('/')}{request.path}"
        carried = {
            name: value
            for name in ("filter[job]", "filter[environment]", "sort")
            if (value := query.text(name)) is not None
        }

        async def parts() -> AsyncGenerator[bytes, None]:
            async with ctx.store.runs.listing(caller.id) as listing:
                yield b""  # the snapshot is ours: nothing can be refused now

                async def meta_and_links() -> dict[str, object]:
                    next_url = None
                    if listing.next_after is not None:
                        params = {
                            **carried,
                            "page[size]": str(size),
                            "page[after]": encode_after(listing.next_after),
                        }
                        next_url = f"{base_url}?{urlencode(params)}"
                    return {"meta": {"page_size": size}, "links": {"next": next_url}}

                runs = listing.page(
                    slug=slug, after_seq=after, limit=size, environments=environments
                )
                async for part in streaming.list_document(runs, version.render_run, meta_and_links):
                    yield part

        return await streaming.respond(parts())

    @bp.get("/api/v1/runs/<run_id>")
    async def get_run(run_id: str) -> Response:
        caller = current_account(ctx)
        run = await ctx.store.runs.get_run(caller.id, _run_id(run_id), visible=caller.scope)
        return jsonapi.document({"data": dialect(caller.version).render_run(run)})

    @bp.post("/api/v1/runs/<run_id>/actions/cancel")
    async def cancel_run(run_id: str) -> Response:
        caller = current_account(ctx)
        run, was_running = await ctx.store.runs.cancel_run(
            caller.id, _run_id(run_id), visible=caller.scope
        )
        if was_running:
            await ctx.cancels.send(CancelRun(run.id))
        return jsonapi.document({"data": dialect(caller.version).render_run(run)})

    @bp.post("/api/v1/runs/<run_id>/actions/rerun")
    async def rerun_run(run_id: str) -> Response:
        caller = current_account(ctx)
        run = await ctx.store.runs.enqueue_rerun(
            caller.id,
            _run_id(run_id),
            visible=caller.scope,
            configured=caller.environments,
            max_pending=ctx.settings.config.scheduler.max_pending_runs,
        )
        ctx.orders.offer(RunOrder(run.id, run.account_id))  # never waits: see jobsd.dispatch
        return jsonapi.document({"data": dialect(caller.version).render_run(run)})

    return bp
