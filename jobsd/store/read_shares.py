"""Each account's share of the store's read threads (`Engine.read(owner=...)`).

The engine reads on a few threads (4 by default) that everyone shares: the
API's reads that are not lists (`GET /usage`, `/run_stats`, retry
policies, a point read that met a busy database) and the daemon's own (the
scheduler's horizon, the dispatcher's refill of an account's lane, the
alert outbox, retention). One account's `GET /usage` counts its jobs, 11 ms
at 50,000 of them; 64 of its clients asking it over and over held every
thread, and another account's `GET /usage` waited 0.4 s instead of 0.7 ms
(measured in one process), the daemon's own reads behind them too, so
another account's runs waited for their lane to be refilled.

So a read made for an account (`owner`) first takes a place in that
account's share, half the threads, then one of the places all accounts
share, all the threads but one: one account never holds more than half,
and the daemon's reads (no owner) always find a thread that no account
can take. Each wait is first come, first served (`trio.CapacityLimiter`).
Lists have their own bound (`jobsd.store.snapshots`); writes theirs
(`jobsd.api.admission`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


class ReadShares:
    def __init__(self, readers: int) -> None:
        self.per_owner = max(1, readers // 2)
        self.owners = trio.CapacityLimiter(max(1, readers - 1))
        # Keyed by account id (one of the config's, once authenticated); a
        # share is dropped as soon as nobody holds or waits for it.
        self._shares: dict[str, trio.CapacityLimiter] = {}

    @asynccontextmanager
    async def held(self, owner: str | None) -> AsyncIterator[None]:
        """Within `owner`'s share and the accounts' places; nothing for no owner."""
        if owner is None:
            yield
            return
        share = self._shares.get(owner)
        if share is None:
            share = self._shares[owner] = trio.CapacityLimiter(self.per_owner)
        try:
            async with share, self.owners:
                yield
        finally:
            if not share.borrowed_tokens and not share.statistics().tasks_waiting:
                self._shares.pop(owner, None)

    def shares_kept(self) -> int:
        """How many accounts have a share right now (for the tests' bound)."""
        return len(self._shares)
