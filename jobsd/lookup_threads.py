"""The threads a process's name lookups run in, shared between accounts.

getaddrinfo blocks, so a lookup runs in a thread (`trio.to_thread`), and a
lookup whose run gave up keeps its thread until the resolver gives up too:
seconds to tens of seconds for a name whose nameserver never answers
(glibc waits `timeout` x `attempts` per nameserver). With one pool for
everyone, one account's jobs naming such hosts held every thread: measured
in a network namespace whose DNS never answered, 8 runs of 1 s held the 8
threads, and every other run to any name (`localhost` included) then
timed out for the resolver's 10 s.

So each scope (an account, for its runs and its alerts alike) may hold at most
`per_scope` of the `total` threads, counted until each thread really ends:
`LookupThreads` is a limiter in the form `trio.to_thread.run_sync`
documents (`acquire_on_behalf_of`, `release_on_behalf_of`), which trio
releases when the thread finishes, not when the run is cancelled. The scope
travels in a context variable that `Delivery.perform` sets for its task
from a run's reuse scope, and the alert actor for each alert it sends
(`LOOKUP_SCOPE`), so resolvers keep their (host, port) form. Alerts once
shared one scope: two accounts whose `alert_url` never resolved held it
all, and every other account's alerts timed out waiting for a thread. One
scope entry per account ever seen: the accounts are the config's, few.
"""

from __future__ import annotations

from contextvars import ContextVar

import trio

TOTAL = 32
PER_SCOPE = 4
LOOKUP_SCOPE: ContextVar[str | None] = ContextVar("jobsd_lookup_scope", default=None)


class LookupThreads:
    def __init__(self, total: int = TOTAL, per_scope: int = PER_SCOPE) -> None:
        self.total = trio.CapacityLimiter(total)
        self.per_scope = min(per_scope, total)
        self._shares: dict[str | None, trio.CapacityLimiter] = {}
        self._held: dict[object, trio.CapacityLimiter] = {}

    def share(self, scope: str | None) -> trio.CapacityLimiter:
        share = self._shares.get(scope)
        if share is None:
            share = self._shares[scope] = trio.CapacityLimiter(self.per_scope)
        return share

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        share = self.share(LOOKUP_SCOPE.get())
        await share.acquire_on_behalf_of(borrower)
        try:
            await self.total.acquire_on_behalf_of(borrower)
        except BaseException:
            share.release_on_behalf_of(borrower)
            raise
        self._held[borrower] = share

    def release_on_behalf_of(self, borrower: object) -> None:
        self.total.release_on_behalf_of(borrower)
        self._held.pop(borrower).release_on_behalf_of(borrower)
