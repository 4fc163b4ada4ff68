"""The API's outer ASGI layers: who the client is, and what each request cost.

`TrustedProxies` decides, per request, whether the direct peer is one of
`server.trusted_proxies`. Only then does hypercorn's `ProxyFixMiddleware`
(legacy mode: `X-Forwarded-For`, `-Proto`, `-Host`, trusting the one hop
our proxy appended) rewrite the scope's client, scheme and host, so links
(`links.next`), logs and the metrics allowlist see the real client and the
URL it used. Hypercorn's middleware trusts a hop count whoever sends the
headers, so it is applied only behind this check; from any other peer the
headers are left unread. A forwarded scheme other than http or https, or a
forwarded host that is not `host[:port]`, is ignored (links must stay
http(s) URLs on a host).

The client is then read from `X-Forwarded-For`'s end past every hop that
is itself a trusted proxy (`forwarded_client`): behind two proxies, both
listed (a TLS terminator before nginx, both on loopback), the last hop is
the outer proxy's address, and taking it for the client made every client
on the internet a loopback one to the metrics allowlist. A client cannot
forge a trusted hop to the right of its own address (each proxy appends
after what it was sent), and the walk stops at `MAX_HOPS`.

`Observed` times each request from arrival to its last body chunk and
reports the method, the route template, the status and the client to the
`Observer` (metrics, one access log line). The route template is left in
the scope by the app (`ROUTE_KEY`, set before routing's answer is acted
on), so a request that matched no route counts as `(unmatched)` and no
concrete path, id or query string is ever a label or a log field. It is
told before the last chunk is handed to the server, so a client that has
read its answer can count on the request being counted. A request whose
client left before any response started is not counted: nothing was
answered.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from hypercorn.middleware import ProxyFixMiddleware
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from jobsd.api.client_share import holds
from jobsd.api.limits import REFUSED_KEY, refuse
from jobsd.api.spec import base_spec
from jobsd.clock import perf_s
from jobsd.config import API_VERSIONS
from jobsd.metrics import UNMATCHED_ROUTE
from jobsd.observer import Observer

ROUTE_KEY = "jobsd.route"
MAX_HOPS = 16  # trusted proxies in a row, at most; bounds the work a long header costs
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def address_in(address: str | None, networks: Sequence[Network]) -> bool:
    """Whether an address (as a scope's client gives it) is in any of `networks`.

    An IPv4 address and its IPv4-mapped form (`::ffff:127.0.0.1`, how a peer
    on a dual-stack socket reads, and the logs show it) are one address: a
    network named either way holds both (`client_share.holds`; named only as
    the log shows it, a trusted proxy was silently untrusted). Anything that
    is not an IP address is in none.
    """
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return any(holds(net, ip) for net in networks)


_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>|\{[^{}]+\}")


def _shape(path: str) -> str:
    return _PARAM.sub("{}", path)


_CONTRACT = {_shape(path): path for version in API_VERSIONS for path in base_spec(version)["paths"]}


@functools.lru_cache(maxsize=256)  # the app's rules: a few dozen, asked about per request
def route_template(rule: str) -> str:
    """A Werkzeug rule as the contract names it: `/api/v1/jobs/<slug>` ->
    `/api/v1/jobs/{job_id}`; a route outside the contract keeps its own names."""
    shape = _shape(rule)
    return _CONTRACT.get(shape) or _PARAM.sub(lambda m: "{" + (m[1] or "") + "}", rule)


def client_of(scope: Scope) -> str | None:
    client: Any = scope.get("client")
    return None if not client else str(client[0])


_HOST = re.compile(
    r"(?:[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*|\[([0-9A-Fa-f:.]+)\])(?::([1-9][0-9]{0,4}))?"
)


def is_host(value: bytes) -> bool:
    """Whether a Host value is `host[:port]` (an IPv6 literal in brackets, a
    port 1-65535 with no leading zero): what Werkzeug reads whole and links
    can be built on. A name's IDNA labels (`xn--...`) must decode, as
    Werkzeug decodes them for a link (and raises past the app's error
    handlers where it cannot). Werkzeug reads a port such as `080` as no
    host at all, and built `links.next` on it as `http:/api/...`."""
    match = _HOST.fullmatch(value.decode("latin-1"))
    if match is None or (match[2] is not None and not 1 <= int(match[2]) <= 65535):
        return False
    try:
        if match[1] is None:
            return bool(match[0].partition(":")[0].lower().encode("ascii").decode("idna"))
        return ipaddress.IPv6Address(match[1]) is not None
    except (ValueError, UnicodeError):
        return False


def server_authority(scope: Scope) -> bytes | None:
    """`host:port` of the address the client reached (an IPv6 literal bracketed), if
    it is one a Host may name."""
    server: Any = scope.get("server")
    if not server or server[1] is None:
        return None
    host = str(server[0])
    authority = (f"[{host}]" if ":" in host else host) + f":{server[1]}"
    return authority.encode() if is_host(authority.encode()) else None


class ValidHost:
    """ASGI middleware: a request whose Host is not `host[:port]` is a JSON:API 400.

    Werkzeug raises on a Host it cannot encode (a label over 63 characters)
    before any of the app's error handlers can answer, which hypercorn turns
    into a 500 with no body and a traceback in the log, and it builds links
    such as `links.next` as `http:/api/...` from a Host it cannot read. RFC
    9112 (3.2) asks for a 400 for a Host with an invalid value. Sits where the
    app's scope is final: after a trusted proxy's forwarded host is applied.

    A request with no Host (HTTP/1.0 needs none; h11 requires it of 1.1) is
    given the address it reached, as a WSGI server names it: Quart would
    make its host `""`, and its links `http:/api/...`.
    """

    def __init__(self, app: ASGIFramework) -> None:
        self._app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "http":
            hosts = [v for k, v in scope["headers"] if k.lower() == b"host"]
            if hosts and not is_host(hosts[-1]):
                detail = "the Host header must be host[:port]"
                await refuse(scope, send, 400, "invalid_host", detail)
                return
            if not hosts and (authority := server_authority(scope)) is not None:
                scope["headers"] = [*scope["headers"], (b"host", authority)]
        await self._app(scope, receive, send)


def forwarded_client(
    headers: Sequence[tuple[bytes, bytes]], proxies: Sequence[Network]
) -> str | None:
    """The client `X-Forwarded-For` names (split and stripped as hypercorn does):
    from its end, the first hop that is not a trusted proxy; if the last
    `MAX_HOPS` all are, the furthest of them. None without the header."""
    hops = [
        hop.decode("latin-1").strip()
        for name, value in headers
        if name.lower() == b"x-forwarded-for"
        for hop in value.split(b",")
    ]
    seen = hops[-MAX_HOPS:]
    if not seen:
        return None
    for hop in reversed(seen):
        if not address_in(hop, proxies):
            return hop
    return seen[0]


class _LinkSafe:
    """Undo what a link may not carry: a forwarded scheme other than http(s),
    a forwarded host that is not `host[:port]`; and take the client past the
    trusted hops (`forwarded_client`)."""

    def __init__(self, app: ASGIFramework, original: Scope, proxies: Sequence[Network]) -> None:
        self._app = app
        self._original: Any = original
        self._proxies = proxies

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        fixed: Any = scope
        if (client := forwarded_client(fixed["headers"], self._proxies)) is not None:
            fixed["client"] = (client, 0)
        scheme = str(fixed.get("scheme", "")).lower()  # a scheme is case-insensitive (RFC 3986)
        fixed["scheme"] = scheme if scheme in ("http", "https") else self._original["scheme"]
        hosts = [v for k, v in fixed["headers"] if k.lower() == b"host"]
        if hosts and not is_host(hosts[-1]):
            fixed["headers"] = self._original["headers"]
        await self._app(scope, receive, send)


class TrustedProxies:
    def __init__(self, app: ASGIFramework, proxies: Sequence[Network]) -> None:
        self._app = app
        self._proxies = tuple(proxies)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if (
            self._proxies
            and scope["type"] == "http"
            and address_in(client_of(scope), self._proxies)
        ):
            inner = _LinkSafe(self._app, scope, self._proxies)
            fixed = ProxyFixMiddleware(inner, mode="legacy", trusted_hops=1)  # type: ignore[arg-type]
            await fixed(scope, receive, send)
            return
        await self._app(scope, receive, send)


class Observed:
    def __init__(self, app: ASGIFramework, observer: Observer) -> None:
        self._app = app
        self._observer = observer

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        began = perf_s()
        status: int | None = None
        told = False

        def tell() -> None:
            nonlocal told
            if status is not None and not told:
                told = True
                refused = scope.get(REFUSED_KEY)
                if refused is not None:  # by a layer ahead of the app: see `limits.refuse`
                    self._observer.api_refused(
                        scope["method"], status, str(refused), client_of(scope)
                    )
                    return
                route = str(scope.get(ROUTE_KEY, UNMATCHED_ROUTE))
                seconds = perf_s() - began
                self._observer.api_request(
                    scope["method"], route, status, seconds, client_of(scope)
                )

        async def watched(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                tell()  # before the last bytes go: the client never sees an uncounted answer
            await send(message)

        try:
            await self._app(scope, receive, watched)
        finally:
            tell()


def outer_layers(
    app: ASGIFramework, observer: Observer | None, proxies: Sequence[Network]
) -> ASGIFramework:
    """`app` seen through the trusted-proxy check, then observed (when an observer is given)."""
    observed: ASGIFramework = app if observer is None else Observed(app, observer)
    return TrustedProxies(observed, proxies)
