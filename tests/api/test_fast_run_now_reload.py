"""A reload while a run-now's body is on its way: the run-now below Quart asks who is
calling as the route does, once the body is whole.

The route learns its caller after `body_within_bound` has read the body (up
to `server.body_timeout_s`); `jobsd.api.fast_run_now` learns it from the head,
to know whether the request is plain. A token revoked, or narrowed to other
environments, by a reload during those seconds must then be refused as the
route refuses it, not run the job with what the token could do before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobsd.config import Config
from tests.api.test_fast_paths import STAGING
from tests.api.test_fast_run_now import both_ways, comparable
from tests.api.test_fast_run_now_body import Wire, answer, run_now
from tests.conftest import TOKEN_A, Harness


class Reloading(Wire):
    """A receive that swaps the side's config in force before the body's first bytes."""

    def __init__(self, side: Harness, config: Config, chunks: list[bytes]) -> None:
        super().__init__(chunks)
        self.side = side
        self.config = config

    async def receive(self) -> dict[str, Any]:
        self.side.ctx.settings.config = self.config
        return await super().receive()


def revoked(config: Config, token: str) -> Config:
    """`config` with acme's full-scope tokens gone, or its scoped token narrowed to production."""
    accounts = []
    for account in config.accounts:
        if account.id == "acme":
            if token == TOKEN_A:
                account = account.model_copy(update={"tokens_sha256": ()})
            else:
                scoped = [
                    s.model_copy(update={"environments": ("production",)})
                    for s in account.scoped_tokens
                ]
                account = account.model_copy(update={"scoped_tokens": tuple(scoped)})
        accounts.append(account)
    return config.model_copy(update={"accounts": tuple(accounts)})


async def test_a_token_revoked_while_the_body_comes_runs_nothing(tmp_path: Path) -> None:
    body = b'{"environment":"staging"}'
    async with both_ways(tmp_path, "max_pending_runs = 100") as sides:
        for token in (TOKEN_A, STAGING):
            request = run_now(body)
            request["headers"] = [
                (n, f"Bearer {token}".encode() if n == b"authorization" else v)
                for n, v in request["headers"]
            ]
            replies = []
            for side, app in ((sides.fast_side, sides.fast), (sides.routed_side, sides.routed)):
                before = side.ctx.settings.config
                wire = Reloading(side, revoked(before, token), [body])
                replies.append(comparable(await answer(app, request, wire)))
                side.ctx.settings.config = before
            assert replies[0] == replies[1], token
            assert replies[0][0] in (401, 422), replies[0]
        await sides.same_stores()
        assert sides.fast_side.orders.orders == []
