"""Bearer tokens to accounts.

The config holds only SHA-256 digests. The presented token is hashed and
compared against every digest with `hmac.compare_digest` (inside
`Config.account_for_digest`), so finding the account costs the same whether
the token is right, wrong by its last character, or wrong throughout: the
time tells nothing about how close a guess came. Only the answer (401 or
not) differs, and that the response says anyway. The token itself is never
stored, compared in the clear, or logged, and no error detail repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass

from quart import request

from jobsd import errors
from jobsd.api.context import ApiContext
from jobsd.config import AccountConfig, PlanConfig, token_sha256


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
    """The account making a request and its plan, read from one config.

    A reload swaps the whole config; reading the account and its plan from
    the same snapshot means a reload between the two can never pair an
    account with a plan that no longer exists.
    """

    id: str
    plan: PlanConfig


def account_for_token(ctx: ApiContext, token: str) -> AccountConfig | None:
    """The constant-time part: the same work for every token of a given length."""
    return ctx.settings.config.account_for_digest(token_sha256(token))


def current_account(ctx: ApiContext) -> Caller:
    header = request.headers.get("Authorization")
    if header is None:
        raise errors.unauthorized("send Authorization: Bearer <token>")
    token = bearer_token(header)
    if token is None:
        raise errors.unauthorized("the Authorization header must be 'Bearer <token>'")
    config = ctx.settings.config
    account = config.account_for_digest(token_sha256(token))
    if account is None:
        raise errors.unauthorized("the bearer token is not valid")
    return Caller(account.id, config.plan_of(account))
