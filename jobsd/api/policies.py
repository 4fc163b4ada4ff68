"""`/api/v1/retry-policies`: create, list, get, replace, delete.

Served alike to both API versions (VERSIONS.md, "Retry policies"): the
resource is the newer spec's, and the seed's clients may use it too. A
policy belongs to the account, not to an environment, so any of the
account's tokens, scoped or not, manages its policies, but a scoped token
may not replace one that decides how jobs retry in an enabled environment
out of its reach (403 `environment_scope`, as for a job's `PUT`).
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from jobsd.api import jsonapi
from jobsd.api.auth import current_account
from jobsd.api.context import ApiContext
from jobsd.api.listing import MAX_OFFSET
from jobsd.api.params import Query, no_parameters
from jobsd.api.policy_documents import parse_policy_document, render_policy
from jobsd.cursors import page_offset, total_pages
from jobsd.store.policies import SORTS, PolicyQuery

_PARAMETERS = ("filter[name]", "sort", "page[number]", "page[size]", "meta[total]")


def policies_blueprint(ctx: ApiContext) -> Blueprint:
    bp = Blueprint("retry_policies", __name__)

    @bp.post("/api/v1/retry-policies")
    async def create_policy() -> Response:
        caller = current_account(ctx)
        no_parameters(request.args)
        doc = await jsonapi.json_body()
        policy_id, name, rules = parse_policy_document(doc, path_id=None)
        policy = await ctx.store.policies.create(caller.id, policy_id, name, rules)
        return jsonapi.document(
            {"data": render_policy(policy)},
            status=201,
            Location=f"/api/v1/retry-policies/{policy.id}",
        )

    @bp.get("/api/v1/retry-policies")
    async def list_policies() -> Response:
        caller = current_account(ctx)
        query = Query(request.args, _PARAMETERS)
        number = query.integer("page[number]", 1, 1)
        size = query.integer("page[size]", 1000, 1, 1000)
        sort = query.sort("name", SORTS)
        policies, total = await ctx.store.policies.list(
            caller.id,
            PolicyQuery(
                sort=sort,
                offset=min(page_offset(number, size), MAX_OFFSET),
                limit=size,
                with_total=bool(query.boolean("meta[total]")),
                name_contains=query.text("filter[name]"),
            ),
        )
        pagination: dict[str, int] = {"page": number, "size": size}
        if total is not None:
            pagination["total"] = total
            pagination["total_pages"] = total_pages(total, size)
        return jsonapi.document(
            {"data": [render_policy(p) for p in policies], "meta": {"pagination": pagination}}
        )

    @bp.get("/api/v1/retry-policies/<policy_id>")
    async def get_policy(policy_id: str) -> Response:
        caller = current_account(ctx)
        no_parameters(request.args)
        policy = await ctx.store.policies.get(caller.id, policy_id)
        return jsonapi.document({"data": render_policy(policy)})

    @bp.put("/api/v1/retry-policies/<policy_id>")
    async def replace_policy(policy_id: str) -> Response:
        caller = current_account(ctx)
        no_parameters(request.args)
        doc = await jsonapi.json_body()
        # A policy that does not exist is 404 before its document is judged, as for jobs.
        await ctx.store.policies.get(caller.id, policy_id)
        _, name, rules = parse_policy_document(doc, path_id=policy_id)
        out_of_reach = () if caller.scope is None else set(caller.environments) - caller.scope
        policy = await ctx.store.policies.replace(
            caller.id, policy_id, name, rules, out_of_reach=sorted(out_of_reach)
        )
        return jsonapi.document({"data": render_policy(policy)})

    @bp.delete("/api/v1/retry-policies/<policy_id>")
    async def delete_policy(policy_id: str) -> Response:
        caller = current_account(ctx)
        no_parameters(request.args)
        await ctx.store.policies.delete(caller.id, policy_id)
        return jsonapi.no_content()

    return bp
