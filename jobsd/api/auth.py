"""Bearer tokens to accounts.

The config holds only SHA-256 digests. The presented token is hashed and
compared against every digest with `hmac.compare_digest` (inside
`Config.account_for_digest`), so a wrong token costs the same time as a
right one and the token itself is never stored, compared in the clear, or
logged.
"""

from __future__ import annotations

from quart import request

from jobsd import errors
from jobsd.api.context import ApiContext
from jobsd.config import AccountConfig, token_sha256


def current_account(ctx: ApiContext) -> AccountConfig:
    header = request.headers.get("Authorization")
    if header is None:
        raise errors.unauthorized("send Authorization: Bearer <token>")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise errors.unauthorized("the Authorization header must be 'Bearer <token>'")
    account = ctx.settings.config.account_for_digest(token_sha256(token))
    if account is None:
        raise errors.unauthorized("the bearer token is not valid")
    return account
