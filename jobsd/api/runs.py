"""`/api/v1/runs`: list (keyset cursor), get, cancel, rerun.

Shared by every API version: the caller's version renders, and sets the
default page size. A token limited to some environments never sees a run
of another (404, and left out of lists).

The list's filters, sorts, `last_run_only` and cursor are read in
`run_params` and served by `jobsd.store.run_listing` / `last_runs`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncGenerator
from functools import partial

import trio
from quart import Blueprint, Response, request

from jobsd import errors
from jobsd.api import jsonapi, streaming
from jobsd.api.auth import Caller, current_account
from jobsd.api.context import ApiContext
from jobsd.api.params import Query, no_parameters
from jobsd.api.run_params import RUN_PARAMETERS, next_link, run_query
from jobsd.api.versions import Dialect, dialect
from jobsd.messages import CancelRun, RunOrder
from jobsd.store.run_listing import RunQuery

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def canonical_run_id(raw: str) -> str:
    """A canonical run id; anything that is not a UUID names no run (404)."""
    if not _UUID.fullmatch(raw):
        raise errors.not_found(f"no run with id '{raw}'")
    return raw.lower()


def runs_blueprint(ctx: ApiContext) -> Blueprint:
    bp = Blueprint("runs", __name__)

    @bp.get("/api/v1/runs")
    async def list_runs() -> Response:
        caller = current_account(ctx)
        query = Query(request.args, RUN_PARAMETERS)

        def asked_by(caller: Caller) -> tuple[Dialect, RunQuery]:
            version = dialect(caller.version)
            asked = run_query(query, caller, version.runs_page_size)
            return version, dataclasses.replace(asked, filter=version.runs_filter(asked.filter))

        asked_by(caller)  # a bad parameter is a 400 before any wait
        base_url = f"{request.host_url.rstrip('/')}{request.path}"

        async def parts() -> AsyncGenerator[bytes, None]:
            held = streaming.held_for(caller, ctx.store.runs.listing, partial(current_account, ctx))
            async with held as (listing, who):
                version, asked = asked_by(who)
                yield b""  # the snapshot is ours: nothing can be refused now

                async def meta_and_links() -> dict[str, object]:
                    next_url = next_link(base_url, query, asked, listing.next_after)
                    return {"meta": {"page_size": asked.limit}, "links": {"next": next_url}}

                runs = listing.page(asked)
                async for part in streaming.list_document(runs, version.render_run, meta_and_links):
                    yield part

        return await streaming.respond(parts())

    @bp.get("/api/v1/runs/<run_id>")
    async def get_run(run_id: str) -> Response:
        caller = current_account(ctx)
        no_parameters(request.args)
        run = await ctx.store.runs.get_run(
            caller.id, canonical_run_id(run_id), visible=caller.scope
        )
        return jsonapi.document({"data": dialect(caller.version).render_run(run)})

    @bp.post("/api/v1/runs/<run_id>/actions/cancel")
    async def cancel_run(run_id: str) -> Response:
        caller = current_account(ctx)
        no_parameters(request.args)
        run, was_running = await ctx.store.runs.cancel_run(
            caller.id, canonical_run_id(run_id), visible=caller.scope
        )
        if was_running:
            # Shielded: the write is done whatever happens to this request (its
            # deadline's 503, a client gone), and the send's first act would be to
            # raise that cancellation, leaving a CANCELED run's request open.
            with trio.CancelScope(shield=True):
                await ctx.cancels.send(CancelRun(run.id))
        return jsonapi.document({"data": dialect(caller.version).render_run(run)})

    @bp.post("/api/v1/runs/<run_id>/actions/rerun")
    async def rerun_run(run_id: str) -> Response:
        caller = current_account(ctx)
        no_parameters(request.args)
        run = await ctx.store.runs.enqueue_rerun(
            caller.id,
            canonical_run_id(run_id),
            visible=caller.scope,
            configured=caller.environments,
            max_pending=ctx.settings.config.scheduler.max_pending_runs,
        )
        ctx.orders.offer(RunOrder(run.id, run.account_id))  # never waits: see jobsd.dispatch
        return jsonapi.document({"data": dialect(caller.version).render_run(run)})

    return bp
