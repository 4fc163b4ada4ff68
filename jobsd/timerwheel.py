"""The scheduler's timer: which keys are due, and when the next one is.

Named for its role; built as a binary heap with lazy deletion. `add` and
`remove` only touch a dict of live deadlines and push onto the heap, so
rescheduling a job is O(log n) with no search; heap entries that no longer
match the dict are stale and skipped when they surface. So that a job edited
over and over cannot grow memory without bound, the heap is rebuilt from the
live entries whenever stale ones outnumber them: the heap never holds more
than twice the live entries, and each rebuild is paid for by the
stale pushes before it.

Deadlines are int microseconds since the Unix epoch (UTC), as the store keeps
them: exact, hashable and cheap to compare. Ties pop in insertion order (of
the latest `add` for a key), so firing order is deterministic under test.
Pure: the caller passes `now_us`.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TimerWheel(Generic[K]):
    def __init__(self) -> None:
        self._live: dict[K, tuple[int, int]] = {}  # key -> (deadline_us, ticket)
        self._heap: list[tuple[int, int, K]] = []  # (deadline_us, ticket, key)
        self._tickets = 0  # unique, so the heap never compares keys

    def add(self, key: K, deadline_us: int) -> None:
        """Set `key`'s deadline, replacing any it had."""
        self._tickets += 1
        self._live[key] = (deadline_us, self._tickets)
        heapq.heappush(self._heap, (deadline_us, self._tickets, key))
        self._compact_if_stale()

    def remove(self, key: K) -> None:
        if self._live.pop(key, None) is not None:
            self._compact_if_stale()

    def next_deadline(self) -> int | None:
        self._drop_stale_top()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_us: int) -> list[tuple[K, int]]:
        """Every entry due at `now_us` (deadline <= now), earliest first, removed."""
        due: list[tuple[K, int]] = []
        while True:
            self._drop_stale_top()
            if not self._heap or self._heap[0][0] > now_us:
                self._compact_if_stale()
                return due
            deadline_us, _, key = heapq.heappop(self._heap)
            del self._live[key]
            due.append((key, deadline_us))

    def deadline_of(self, key: K) -> int | None:
        entry = self._live.get(key)
        return None if entry is None else entry[0]

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def _is_live(self, entry: tuple[int, int, K]) -> bool:
        deadline_us, ticket, key = entry
        return self._live.get(key) == (deadline_us, ticket)

    def _drop_stale_top(self) -> None:
        heap = self._heap
        while heap and not self._is_live(heap[0]):
            heapq.heappop(heap)

    def _compact_if_stale(self) -> None:
        if len(self._heap) - len(self._live) > len(self._live):
            self._heap = [(d, t, k) for k, (d, t) in self._live.items()]
            heapq.heapify(self._heap)
