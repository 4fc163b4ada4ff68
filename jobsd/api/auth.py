"""Bearer tokens to accounts.

The config holds only SHA-256 digests. The presented token is hashed and the
digest looked up in an index of the config in force (`jobsd.api.tokens`,
rebuilt when a reload swaps the config), so finding the account costs the
same whether the token is right, wrong by its last character, or wrong
throughout: the time tells nothing about how close a guess came. Only the
answer (401 or not) differs, and that the response says anyway. The token
itself is never stored, compared in the clear, or logged, and no error
detail repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass

from quart import g, request

from jobsd import errors
from jobsd.api.context import ApiContext
from jobsd.config import API_VERSIONS, DEFAULT_API_VERSION, AccountConfig, PlanConfig, token_sha256

VERSION_HEADER = "Jobsd-Version"


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; None if malformed."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, read from one config: account, plan, environments, token scope,
    and the API version in force for this request.

    A reload swaps the whole config; reading the account and its plan from
    the same snapshot means a reload between the two can never pair an
    account with a plan that no longer exists.
    """

    id: str
    plan: PlanConfig
    environments: tuple[str, ...] = ("production",)  # the account's; the first is its default
    scope: frozenset[str] | None = None  # the token's environments; None: all of them
    account_version: str = DEFAULT_API_VERSION
    version: str = DEFAULT_API_VERSION

    @property
    def default_environment(self) -> str:
        return self.environments[0]

    @property
    def visible(self) -> tuple[str, ...]:
        """The environments this caller may see and touch, in the config's order."""
        return tuple(e for e in self.environments if self.scope is None or e in self.scope)


def single_header(name: str) -> str | None:
    """The one value of a header that holds one; 400 when it comes more than once.

    Taking the first of two `Authorization` (or `Jobsd-Version`) lines would
    let whoever adds one ahead of a proxy's own choose who is asking. The
    detail never repeats a value: it may be a token.
    """
    values = request.headers.getlist(name)
    if len(values) > 1:
        raise errors.bad_header(name, f"send {name} once, not {len(values)} times")
    return values[0] if values else None


def requested_version() -> str | None:
    """The version the request names, if any; 400 when it names an unknown one."""
    return known_version(single_header(VERSION_HEADER))


def known_version(raw: str | None) -> str | None:
    """A `Jobsd-Version` value as sent (None: not sent), checked; 400 when unknown."""
    if raw is None:
        return None
    value = raw.strip()
    if value not in API_VERSIONS:
        shown = value if len(value) <= 40 and value.isprintable() else "that value"
        raise errors.bad_header(
            VERSION_HEADER,
            f"{VERSION_HEADER} must be one of {', '.join(API_VERSIONS)}, not {shown}",
        )
    return value


def account_for_token(ctx: ApiContext, token: str) -> AccountConfig | None:
    """The lookup alone: the same work for every token of a given length."""
    match = ctx.tokens.match(ctx.settings.config, token_sha256(token))
    return None if match is None else match.account


def current_account(ctx: ApiContext) -> Caller:
    """The caller, or 401; the version named by the request (400 when unknown) or the account's.

    The version in force is recorded for the response's `Jobsd-Version` only
    once the caller is known: a 401 names the daemon's default.
    """
    g.jobsd_version = DEFAULT_API_VERSION  # none chosen: a 401, or the 400 below
    requested = requested_version()
    caller = caller_for(ctx, single_header("Authorization"), requested)
    g.jobsd_version = caller.version
    return caller


def version_in_force(ctx: ApiContext) -> str:
    """The version named by `Jobsd-Version`, else the account's when a valid token is
    sent, else the default; 400 when the header names an unknown one. For answers no
    caller was sought for (`/api/v1/openapi.json`, and a 404, 405 or 406 answered
    before the route), so that each still names the version the request chose."""
    requested = requested_version()
    if requested is not None:
        return requested
    token = bearer_token(single_header("Authorization"))
    match = None if token is None else ctx.tokens.match(ctx.settings.config, token_sha256(token))
    return DEFAULT_API_VERSION if match is None else match.account.api_version


def caller_for(ctx: ApiContext, authorization: str | None, requested: str | None) -> Caller:
    """Who an `Authorization` value (None: not sent) names, or 401; in the version
    requested (already checked by `known_version`) or else the account's.

    Free of Quart's request so that the read answered below it
    (`jobsd.api.fast_paths`) finds its caller by the same steps.
    """
    if authorization is None:
        raise errors.unauthorized("send Authorization: Bearer <token>")
    token = bearer_token(authorization)
    if token is None:
        raise errors.unauthorized("the Authorization header must be 'Bearer <token>'")
    config = ctx.settings.config
    match = ctx.tokens.match(config, token_sha256(token))
    if match is None:
        raise errors.unauthorized("the bearer token is not valid")
    account = match.account
    return Caller(
        account.id,
        config.plan_of(account),
        account.environments,
        match.scope,
        account.api_version,
        requested or account.api_version,
    )
