"""Which run a free worker takes next: per-account lanes, served fairly.

Pure: no trio, no sqlite3. The dispatcher (`jobsd.dispatch`) holds one
`FairQueue` and asks it `pick(cap)` whenever a worker is free.

- Each account has its own lane: a FIFO of committed PENDING run ids,
  oldest first, holding at most `depth` runs.
- A free worker serves the account with the fewest runs in flight, and
  among equals the one served least recently. An account that has nothing
  running is therefore served first, so one that saturates the workers gets
  only what the others leave, and nobody waits behind another's backlog.
- `cap` bounds one account's runs in flight (`account_cap`): with more than
  one account configured, 1/8 of the workers are kept for accounts other
  than the busiest, so another account's run starts at once instead of
  waiting for a busy account's request to end.
- A lane is a bounded window onto the store, which holds every PENDING run
  anyway. A run offered to a full lane is not held: the lane is marked
  spilled, and once it has drained to half, the dispatcher reads the
  account's oldest PENDING runs from the store into it (`refills`,
  `refilled`). While a lane is spilled new offers go to the store too, so
  the lane stays in commit order. Nothing is dropped, nothing blocks, and
  memory stays at lanes x `depth` however deep the backlog.

A run id is handed out at most once while the queue knows it (queued or in
flight). The store's claim (PENDING -> RUNNING, one conditional UPDATE) is
what makes execution exactly-once; this queue only avoids wasted claims.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


def account_cap(workers: int, accounts: int) -> int:
    """Runs of one account in flight at once: all workers when it is alone."""
    if accounts <= 1:
        return workers
    return max(1, workers - workers // 8)


@dataclass
class _Lane:
    queued: deque[str] = field(default_factory=deque)
    queued_ids: set[str] = field(default_factory=set)
    in_flight: set[str] = field(default_factory=set)
    spilled: bool = False
    # Bumped whenever a run is left to the store: a refill that read the
    # store before a bump may have missed that run.
    spills: int = 0

    def knows(self, run_id: str) -> bool:
        return run_id in self.queued_ids or run_id in self.in_flight


@dataclass(frozen=True, slots=True)
class Refill:
    """A request to read an account's oldest PENDING runs from the store."""

    account_id: str
    known: frozenset[str]
    room: int
    spills: int

    @property
    def limit(self) -> int:
        """Rows to read: those known (oldest, mostly still PENDING) and `room` more."""
        return len(self.known) + self.room


class FairQueue:
    def __init__(self, depth: int) -> None:
        if depth < 2:
            raise ValueError("depth must be at least 2")
        self._depth = depth
        self._lanes: dict[str, _Lane] = {}
        # When each account was last served (a pick count): the round-robin among
        # equals. Kept when a lane empties, so coming back idle gains no place;
        # one int per account that ever had a run.
        self._served: dict[str, int] = {}
        self._picks = 0

    def offer(self, account_id: str, run_id: str) -> bool:
        """Queue a committed run; False: left to the store (the lane is spilled)."""
        lane = self._lanes.setdefault(account_id, _Lane())
        if lane.knows(run_id):
            return True
        if lane.spilled or len(lane.queued) >= self._depth:
            lane.spilled = True
            lane.spills += 1
            return False
        lane.queued.append(run_id)
        lane.queued_ids.add(run_id)
        return True

    def spill(self, account_id: str) -> None:
        """The store holds PENDING runs of this account that may not be queued here."""
        lane = self._lanes.setdefault(account_id, _Lane())
        lane.spilled = True
        lane.spills += 1

    def pick(self, cap: int) -> tuple[str, str] | None:
        """The next (account, run) for a free worker, or None (nothing, or all capped)."""
        best: tuple[int, int, str] | None = None
        for account_id, lane in self._lanes.items():
            running = len(lane.in_flight)
            if not lane.queued or running >= cap:
                continue
            key = (running, self._served.get(account_id, 0), account_id)
            if best is None or key < best:
                best = key
        if best is None:
            return None
        account_id = best[2]
        lane = self._lanes[account_id]
        run_id = lane.queued.popleft()
        lane.queued_ids.discard(run_id)
        lane.in_flight.add(run_id)
        self._picks += 1
        self._served[account_id] = self._picks
        return account_id, run_id

    def done(self, account_id: str, run_id: str) -> bool:
        """A picked run's worker is free again; True if its account has runs queued."""
        lane = self._lanes.get(account_id)
        if lane is None:
            return False
        lane.in_flight.discard(run_id)
        if lane.queued:
            return True
        if not lane.in_flight and not lane.spilled:
            del self._lanes[account_id]
        return False

    def wants_refill(self, account_id: str) -> bool:
        lane = self._lanes.get(account_id)
        return lane is not None and lane.spilled and len(lane.queued) <= self._depth // 2

    def refills(self) -> list[Refill]:
        """Spilled lanes that have drained to half: read these from the store."""
        return [
            Refill(
                account_id,
                frozenset(lane.queued_ids | lane.in_flight),
                self._depth - len(lane.queued),
                lane.spills,
            )
            for account_id, lane in self._lanes.items()
            if self.wants_refill(account_id)
        ]

    def refilled(self, refill: Refill, run_ids: list[str]) -> int:
        """Queue what the store returned for `refill` (oldest first); returns how many.

        `run_ids` are at most `refill.limit` of the account's PENDING runs,
        oldest first; fewer means the store had no more. The lane stays
        spilled unless the store had no more, all of it fitted, and nothing
        was left to the store since the read was asked for.
        """
        lane = self._lanes.setdefault(refill.account_id, _Lane())
        fresh = [r for r in run_ids if r not in refill.known and not lane.knows(r)]
        room = self._depth - len(lane.queued)
        taken = fresh[:room]
        for run_id in taken:
            lane.queued.append(run_id)
            lane.queued_ids.add(run_id)
        exhausted = len(run_ids) < refill.limit and len(taken) == len(fresh)
        if exhausted and lane.spills == refill.spills:
            lane.spilled = False
            if not lane.queued and not lane.in_flight:
                del self._lanes[refill.account_id]
        return len(taken)

    def queued_of(self, account_id: str) -> int:
        lane = self._lanes.get(account_id)
        return 0 if lane is None else len(lane.queued)

    def __len__(self) -> int:
        """Runs queued in memory (not those left to the store)."""
        return sum(len(lane.queued) for lane in self._lanes.values())
