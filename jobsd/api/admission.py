"""Each account's share of the API's writes, weighed by their bodies.

One event loop parses every request and one writer thread stores every
write, and neither had a notion of accounts: whoever had the most requests
in flight got the most of both. Measured (`tests/bench/bench_shares.py
writes`): one account PUTting jobs near the configuration bound (1.19 MiB:
a 1 MiB body and 64 sealed headers of 3 KB) on 250 connections, another
account's small create took 5.7 s at the median (7.6 s at worst), its
run-now 1.9-2.6 s, its cancel 0.8-0.9 s, and its one-offs fired up to 3.4 s
late: each of those requests waited its turn on the loop behind every
flooding connection's body being read, decoded, checked and sealed, and in
the writer's queue behind their rows.

So a request that may write (any method but GET, HEAD and OPTIONS) takes
units from its account's budget before anything of its body is read, and
gives them back when it is answered: one unit per started 64 KiB of its
declared `Content-Length` (a body without one, chunked, takes the whole
budget), and 64 units to an account. Sixty-four run-nows, cancels or small
creates of one account proceed at once, as before (the writer batches
them); of requests near the 1.25 MiB bound, three. The rest wait, their
bodies unread but for what the server reads ahead (hypercorn's app queue of
10 events and one 64 KiB read: up to ~700 KiB a waiting connection, no more
than before, when every body was read whole; past it the kernel's buffers
push back on their clients), first come first served
within the account, under the request deadline (`server.request_timeout_s`
counts the wait; past it, `503 request_timeout` as for any slow request).
Another account's requests never wait on this account's budget, so they meet
at most three such bodies in work at once, whatever the flood.

The account is found as the routes find it (the bearer token's digest in
the config's token index); a request naming none (no or an unknown token:
it will be a 401) counts against one budget shared by all such requests.
Reads are not weighed: they hold no writer time, and lists have their own
bound (`jobsd.store.snapshots`).
"""

from __future__ import annotations

from collections import deque

import trio
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope

from jobsd.api.auth import bearer_token
from jobsd.api.context import ApiContext
from jobsd.config import token_sha256

UNIT_BYTES = 64 * 1024
UNITS_PER_ACCOUNT = 64
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def weight(scope: HTTPScope, units: int = UNITS_PER_ACCOUNT) -> tuple[int, bytes | None]:
    """(units a request takes, its one Authorization value or None) from its head."""
    length: int | None = 0
    authorization: bytes | None = None
    seen_authorization = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value) if length is not None else None
            except ValueError:
                length = 0  # refused by the framing checks; nothing will be read
        elif name == b"transfer-encoding":
            length = None
        elif name == b"authorization":
            authorization = None if seen_authorization else value
            seen_authorization = True
    if length is None:
        return units, authorization
    return min(units, 1 + max(0, length - 1) // UNIT_BYTES), authorization


class Budget:
    """A weighted semaphore served in arrival order: a heavy request at the head
    is not overtaken by light ones behind it, so it cannot be starved."""

    def __init__(self, units: int) -> None:
        self.free = units
        self._waiting: deque[tuple[int, trio.Event]] = deque()

    async def acquire(self, units: int) -> bool:
        """Takes `units`, waiting in turn if need be; True if it waited."""
        if not self._waiting and self.free >= units:
            # Cancelled here, nothing is taken; once taken, no cancel can come
            # before the caller's `try` (a task cancelled before it first ran
            # would otherwise leave with its units, and the account without them).
            await trio.lowlevel.checkpoint_if_cancelled()
            self.free -= units
            await trio.lowlevel.cancel_shielded_checkpoint()
            return False
        entry = (units, trio.Event())
        self._waiting.append(entry)
        try:
            await entry[1].wait()
        except BaseException:
            if entry[1].is_set():
                self.release(units)  # granted as it was cancelled: give it back
            else:
                self._waiting.remove(entry)
                self._grant()  # it may have been the head others waited behind
            raise
        return True

    def release(self, units: int) -> None:
        self.free += units
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self._waiting[0][0] <= self.free:
            units, event = self._waiting.popleft()
            self.free -= units
            event.set()


class AccountAdmission:
    """ASGI middleware: each account's writes within its budget (module note)."""

    def __init__(self, app: ASGIFramework, ctx: ApiContext, units: int = UNITS_PER_ACCOUNT) -> None:
        self._app = app
        self._ctx = ctx
        self._units = units
        # One budget per account of the config (few), and one for requests naming none.
        self._budgets: dict[str | None, Budget] = {}

    def account_of(self, authorization: bytes | None) -> str | None:
        token = None if authorization is None else bearer_token(authorization.decode("latin-1"))
        if token is None:
            return None
        match = self._ctx.tokens.match(self._ctx.settings.config, token_sha256(token))
        return None if match is None else match.account.id

    def budget(self, account: str | None) -> Budget:
        budget = self._budgets.get(account)
        if budget is None:
            budget = self._budgets[account] = Budget(self._units)
        return budget

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http" or scope["method"] in _READS:
            await self._app(scope, receive, send)
            return
        units, authorization = weight(scope, self._units)
        account = self.account_of(authorization)
        budget = self.budget(account)
        began = trio.current_time()
        if await budget.acquire(units) and self._ctx.observer is not None:
            self._ctx.observer.write_waited(account, trio.current_time() - began)
        try:
            await self._app(scope, receive, send)
        finally:
            budget.release(units)
