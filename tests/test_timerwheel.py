"""The timer against a dict oracle: a stateful hypothesis machine drives add,
remove and pop_due in any order and checks every answer and the memory bound.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from jobsd.timerwheel import TimerWheel

keys = st.integers(0, 15)
deadlines = st.integers(0, 50)


def test_basic_order_ties_and_replacement() -> None:
    wheel: TimerWheel[str] = TimerWheel()
    assert wheel.next_deadline() is None and wheel.pop_due(10**18) == []
    wheel.add("b", 20)
    wheel.add("a", 10)
    wheel.add("c", 20)
    wheel.add("d", 30)
    assert len(wheel) == 4 and "a" in wheel and "z" not in wheel
    assert wheel.next_deadline() == 10
    wheel.add("a", 25)  # replaces: "a" now ties after nothing at 25
    assert wheel.deadline_of("a") == 25 and wheel.next_deadline() == 20
    assert wheel.pop_due(19) == []
    assert wheel.pop_due(25) == [("b", 20), ("c", 20), ("a", 25)]
    wheel.remove("d")
    wheel.remove("d")  # absent: no error
    assert len(wheel) == 0 and wheel.next_deadline() is None and wheel.deadline_of("d") is None


def test_ties_follow_the_latest_add() -> None:
    wheel: TimerWheel[int] = TimerWheel()
    for key in (1, 2, 3):
        wheel.add(key, 5)
    wheel.add(1, 5)  # re-added: now the newest of the tie
    assert wheel.pop_due(5) == [(2, 5), (3, 5), (1, 5)]


def test_rescheduling_one_key_forever_keeps_memory_bounded() -> None:
    wheel: TimerWheel[str] = TimerWheel()
    wheel.add("other", 10**12)
    for i in range(10_000):
        wheel.add("job", i)
        assert len(wheel._heap) <= 2 * len(wheel)
    assert wheel.pop_due(10**6) == [("job", 9_999)]


def test_removing_everything_empties_the_heap() -> None:
    wheel: TimerWheel[int] = TimerWheel()
    for i in range(1000):
        wheel.add(i, i)
    for i in range(1000):
        wheel.remove(i)
    assert len(wheel._heap) == 0 and wheel.next_deadline() is None


def test_popping_keeps_the_heap_within_twice_the_live_entries() -> None:
    # stale entries buried behind live ones survive the pop; the pop must compact
    wheel: TimerWheel[str] = TimerWheel()
    wheel.add("a", 1)
    wheel.add("d", 50)
    for key in ("b", "c"):
        wheel.add(key, 500)
        wheel.add(key, 100)
        wheel.add(key, 90)
    assert len(wheel._heap) <= 2 * len(wheel)
    assert wheel.pop_due(1) == [("a", 1)]
    assert len(wheel._heap) <= 2 * len(wheel)
    assert wheel.pop_due(100) == [("d", 50), ("b", 90), ("c", 90)]


class TimerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.wheel: TimerWheel[int] = TimerWheel()
        self.oracle: dict[int, tuple[int, int]] = {}  # key -> (deadline, add order)
        self.adds = 0

    @rule(key=keys, deadline=deadlines)
    def add(self, key: int, deadline: int) -> None:
        self.adds += 1
        self.wheel.add(key, deadline)
        self.oracle[key] = (deadline, self.adds)

    @rule(key=keys)
    def remove(self, key: int) -> None:
        self.wheel.remove(key)
        self.oracle.pop(key, None)

    @rule(now=deadlines)
    def pop_due(self, now: int) -> None:
        due = sorted((d, order, k) for k, (d, order) in self.oracle.items() if d <= now)
        assert self.wheel.pop_due(now) == [(k, d) for d, _, k in due]
        for _, _, k in due:
            del self.oracle[k]

    @rule(key=keys)
    def lookups(self, key: int) -> None:
        entry = self.oracle.get(key)
        assert self.wheel.deadline_of(key) == (None if entry is None else entry[0])
        assert (key in self.wheel) == (entry is not None)

    @invariant()
    def agrees(self) -> None:
        assert len(self.wheel) == len(self.oracle)
        expected = min((d for d, _ in self.oracle.values()), default=None)
        assert self.wheel.next_deadline() == expected
        assert len(self.wheel._heap) <= 2 * len(self.oracle)


TimerMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_timer_machine = TimerMachine.TestCase
