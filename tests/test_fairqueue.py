"""The fair queue against a model store, by hypothesis.

A model store keeps each account's PENDING runs in commit order; random
sequences of commits (offered, or left unoffered as if the hand-over were
lost), picks by free workers, finished runs, cancels, refills and sweeps
are applied to a `FairQueue`, and after every step:

- a pick is the oldest queued run of an account that has the fewest runs in
  flight among those under the cap (ties: the one served least recently);
- no account ever has more than `cap` in flight, no run is handed out twice;
- memory stays within `depth` per account.

At the end the queue is drained (sweep, refill, pick, finish until nothing
moves) and every run committed and not canceled has been picked exactly
once: nothing is stranded, whatever was offered or lost.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.fairqueue import FairQueue, account_cap

ACCOUNTS = ("a", "b", "c")

ops = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.sampled_from(ACCOUNTS), st.integers(1, 12)),
        st.tuples(st.just("lost"), st.sampled_from(ACCOUNTS), st.just(1)),
        st.tuples(st.just("pick"), st.just(""), st.integers(1, 6)),
        st.tuples(st.just("finish"), st.just(""), st.integers(0, 50)),
        st.tuples(st.just("cancel"), st.sampled_from(ACCOUNTS), st.integers(0, 50)),
        st.tuples(st.just("refill"), st.just(""), st.just(0)),
        st.tuples(st.just("sweep"), st.just(""), st.just(0)),
    ),
    max_size=80,
)


class Model:
    def __init__(self, depth: int, workers: int, cap: int) -> None:
        self.queue = FairQueue(depth)
        self.depth = depth
        self.workers = workers
        self.cap = cap
        self.pending: dict[str, list[str]] = {a: [] for a in ACCOUNTS}
        self.in_flight: list[tuple[str, str]] = []
        self.picked: Counter[str] = Counter()
        self.canceled: set[str] = set()
        self.committed: list[str] = []
        self.last_served: dict[str, int] = {}
        self.picks = 0
        self.lost: set[str] = set()  # accounts with a hand-over lost: order not promised

    def commit(self, account: str, count: int, *, offer: bool) -> None:
        for _ in range(count):
            run_id = f"{account}{len(self.committed)}"
            self.committed.append(run_id)
            self.pending[account].append(run_id)
            if offer:
                self.queue.offer(account, run_id)
            else:
                self.lost.add(account)

    def running(self, account: str) -> int:
        return sum(1 for a, _ in self.in_flight if a == account)

    def pick(self) -> bool:
        if len(self.in_flight) >= self.workers:
            return False
        eligible = {
            a: (self.running(a), self.last_served.get(a, 0))
            for a in ACCOUNTS
            if self.queue.queued_of(a) and self.running(a) < self.cap
        }
        picked = self.queue.pick(self.cap)
        if picked is None:
            assert not eligible
            return False
        account, run_id = picked
        assert eligible[account] == min(eligible.values()), "not the fewest in flight"
        assert self.picked[run_id] == 0, f"{run_id} handed out twice"
        self.picks += 1
        self.last_served[account] = self.picks
        self.picked[run_id] += 1
        self.in_flight.append(picked)
        if run_id not in self.canceled:
            if account not in self.lost:
                assert run_id == self.pending[account][0], "started before older runs"
            self.pending[account].remove(run_id)  # the claim: PENDING -> RUNNING
        return True

    def finish(self, index: int) -> None:
        if self.in_flight:
            account, run_id = self.in_flight.pop(index % len(self.in_flight))
            # True exactly when its account has runs queued: only then may a
            # parked worker have something new to pick (jobsd.dispatch).
            assert self.queue.done(account, run_id) == (self.queue.queued_of(account) > 0)

    def cancel(self, account: str, index: int) -> None:
        if self.pending[account]:
            run_id = self.pending[account].pop(index % len(self.pending[account]))
            self.canceled.add(run_id)

    def refill(self) -> None:
        for refill in self.queue.refills():
            rows = self.pending[refill.account_id][: refill.limit]
            self.queue.refilled(refill, rows)

    def sweep(self) -> None:
        for account, runs in self.pending.items():
            if runs:
                self.queue.spill(account)

    def check_bounds(self) -> None:
        for account in ACCOUNTS:
            assert self.queue.queued_of(account) <= self.depth
            assert self.running(account) <= self.cap


@pytest.mark.parametrize(("depth", "workers", "accounts"), [(2, 1, 1), (4, 3, 3), (6, 8, 3)])
@settings(max_examples=150, deadline=None)
@given(steps=ops)
def test_fair_and_lossless(
    depth: int, workers: int, accounts: int, steps: list[tuple[str, str, int]]
) -> None:
    model = Model(depth, workers, account_cap(workers, accounts))
    for op, account, n in steps:
        if op in ("commit", "lost"):
            model.commit(account, n, offer=op == "commit")
        elif op == "pick":
            for _ in range(n):
                model.pick()
        elif op == "finish":
            model.finish(n)
        elif op == "cancel":
            model.cancel(account, n)
        elif op == "refill":
            model.refill()
        else:
            model.sweep()
        model.check_bounds()
    # Drain: what a running dispatcher does, until nothing moves.
    model.sweep()
    for _ in range(10_000):
        model.refill()
        moved = model.pick()
        if not moved and model.in_flight:
            model.finish(0)
            moved = True
        if not moved:
            break
    stranded = [r for r in model.committed if r not in model.canceled and not model.picked[r]]
    assert not stranded
    assert all(count == 1 for run_id, count in model.picked.items() if run_id not in model.canceled)
    assert not any(model.pending.values())


def test_account_cap_keeps_an_eighth_for_others() -> None:
    assert [account_cap(w, 2) for w in (1, 2, 4, 7, 8, 16, 64, 1024)] == [
        1,
        2,
        4,
        7,
        7,
        14,
        56,
        896,
    ]
    assert account_cap(64, 1) == 64


# -- edges that mutation testing found unpinned --------------------------------------


def _spilled_queue(depth: int, offered: int) -> FairQueue:
    queue = FairQueue(depth)
    results = [queue.offer("a", f"a{i}") for i in range(1, offered + 1)]
    assert results == [i < depth for i in range(offered)]
    return queue


@pytest.mark.parametrize("how", ["offer", "sweep"])
def test_a_run_left_to_the_store_during_a_refill_keeps_the_lane_spilled(how: str) -> None:
    queue = _spilled_queue(2, 3)  # a1 a2 queued, a3 left to the store
    assert queue.pick(10) == ("a", "a1")
    (refill,) = queue.refills()
    # while the store is read (it returns a2, a3), a4 is committed and left to the store
    if how == "offer":
        assert not queue.offer("a", "a4")
    else:
        queue.spill("a")
    assert queue.refilled(refill, ["a2", "a3"]) == 1
    assert [queue.pick(10), queue.pick(10)] == [("a", "a2"), ("a", "a3")]
    (again,) = queue.refills()  # a4 is still owed a read
    assert queue.refilled(again, ["a4"]) == 1 and queue.pick(10) == ("a", "a4")


def test_a_spilled_lane_outlives_its_last_run_in_flight() -> None:
    queue = _spilled_queue(2, 3)
    picked = [queue.pick(10), queue.pick(10)]
    assert picked == [("a", "a1"), ("a", "a2")]
    for _, run_id in picked:
        assert not queue.done("a", run_id)
    assert [r.account_id for r in queue.refills()] == ["a"]  # a3 is still in the store


def test_a_lane_drained_to_exactly_half_asks_for_a_refill_of_its_room() -> None:
    queue = _spilled_queue(4, 5)
    assert queue.pick(10) == ("a", "a1")
    assert queue.refills() == []  # 3 queued: more than half
    assert queue.pick(10) == ("a", "a2")
    (refill,) = queue.refills()
    assert refill.room == 2 and refill.limit == 6


def test_a_run_done_while_the_store_is_read_is_not_queued_again() -> None:
    queue = _spilled_queue(2, 3)
    assert queue.pick(10) == ("a", "a1")
    (refill,) = queue.refills()
    queue.done("a", "a1")  # read as PENDING just before its claim landed
    assert queue.refilled(refill, ["a1", "a2", "a3"]) == 1
    assert [queue.pick(10), queue.pick(10), queue.pick(10)] == [("a", "a2"), ("a", "a3"), None]
