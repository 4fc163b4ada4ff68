"""`GET [metrics] path` (default `/metrics`): the Prometheus text exposition.

Served on the API listener, only to clients in `metrics.allow_cidrs`
(default loopback; behind a trusted proxy the forwarded client is what
counts) and, when `metrics.token_sha256` is set, only with that bearer
token, its digest compared in constant time. Every refusal is the same
403 JSON:API error, whatever the reason, so a refused client learns
neither which check failed nor anything the metrics say.

The two run gauges and the outbox's (`jobsd_alerts_pending`, at most
`OUTBOX_CAP` rows an account) are read from the store at each scrape (the
partial index on live runs makes that cheap), so they agree with the
database rather than with a count kept beside it.
"""

from __future__ import annotations

import hashlib
import hmac

from quart import Blueprint, Response, request

from jobsd import errors
from jobsd.api import jsonapi
from jobsd.api.auth import bearer_token
from jobsd.api.context import ApiContext
from jobsd.api.edge import address_in, client_of
from jobsd.config import MetricsConfig
from jobsd.observer import Observer

_REFUSED = errors.ApiError(
    403,
    [errors.ErrorItem(403, "forbidden", "Forbidden", "metrics are not served to this client")],
)


def allowed(config: MetricsConfig, client: str | None, authorization: str | None) -> bool:
    """Both checks always run, so the time taken says no more than the answer."""
    peer_ok = address_in(client, config.allow_cidrs)
    if not config.token_sha256:
        return peer_ok
    token = bearer_token(authorization) or ""
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    token_ok = hmac.compare_digest(digest.encode(), config.token_sha256.encode())
    return peer_ok and token_ok


def metrics_blueprint(ctx: ApiContext, observer: Observer, config: MetricsConfig) -> Blueprint:
    bp = Blueprint("metrics", __name__)

    @bp.get(config.path)
    async def metrics() -> Response:
        client = client_of(request.scope)
        # Sent twice, no token is presented: the same 403 as any refusal, where
        # `single_header`'s 400 told a refused peer something the 403 does not.
        sent = request.headers.getlist("Authorization")
        if not allowed(config, client, sent[0] if len(sent) == 1 else None):
            return jsonapi.error_response(_REFUSED)
        pending, running = await ctx.store.runs.count_live()
        alerts = observer.alerts_held(await ctx.store.outbox.held())
        accept = request.headers.get("Accept")
        body, content_type = observer.metrics.exposition(pending, running, accept, alerts)
        return Response(body, content_type=content_type)

    return bp
