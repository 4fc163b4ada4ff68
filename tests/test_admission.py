"""The accounts' write budgets (`jobsd.api.admission`): weights, order, cancellation."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from jobsd.api.admission import UNITS_PER_ACCOUNT, AccountAdmission, Budget, weight


def _scope(*headers: tuple[bytes, bytes]) -> Any:
    return {"type": "http", "method": "PUT", "headers": list(headers)}


def test_a_request_weighs_a_unit_per_started_64_kib_of_its_declared_body() -> None:
    auth = (b"authorization", b"Bearer t")
    assert weight(_scope(auth)) == (1, b"Bearer t")
    assert weight(_scope((b"content-length", b"65536")))[0] == 1
    assert weight(_scope((b"content-length", b"65537")))[0] == 2
    assert weight(_scope((b"content-length", b"1300000")))[0] == 20  # three fit in 64
    assert weight(_scope((b"content-length", b"99999999")))[0] == UNITS_PER_ACCOUNT
    assert weight(_scope((b"transfer-encoding", b"chunked")))[0] == UNITS_PER_ACCOUNT
    assert weight(_scope((b"content-length", b"x")))[0] == 1
    assert weight(_scope(auth, auth)) == (1, None)  # two: no caller (the app's 401)


async def test_the_budget_serves_in_order_and_a_heavy_head_is_not_overtaken() -> None:
    budget = Budget(4)
    got: list[str] = []

    async def take(name: str, units: int, hold: trio.Event) -> None:
        await budget.acquire(units)
        got.append(name)
        await hold.wait()
        budget.release(units)

    first, heavy, light = trio.Event(), trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(take, "first", 3, first)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(take, "heavy", 4, heavy)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(take, "light", 1, light)  # one unit is free, but heavy came first
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["first"]
        first.set()
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["first", "heavy"]
        heavy.set()
        light.set()
    assert got == ["first", "heavy", "light"] and budget.free == 4


async def test_a_waiter_cancelled_gives_its_place_and_units_back() -> None:
    budget = Budget(4)
    await budget.acquire(3)
    got: list[str] = []

    async def take(name: str, units: int) -> None:
        await budget.acquire(units)
        got.append(name)

    async with trio.open_nursery() as nursery:
        heavy_scope = trio.CancelScope()
        nursery.start_soon(_in, heavy_scope, take, "heavy", 4)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(take, "light", 1)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # behind the heavy one
        heavy_scope.cancel()  # the head leaves: the light one fits now
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["light"]
    budget.release(3)
    budget.release(1)
    assert budget.free == 4


async def _in(scope: trio.CancelScope, work: Any, *args: Any) -> None:
    with scope:
        await work(*args)


async def test_a_request_cancelled_before_its_at_once_grant_keeps_no_units() -> None:
    # A request task cancelled before it first runs (its peer left, its deadline
    # passed) meets its first checkpoint in `acquire`: the units must not leak,
    # or an account loses its budget for good, 64 such requests at most.
    budget = Budget(4)
    with trio.CancelScope() as scope:
        scope.cancel()
        await budget.acquire(3)
    assert scope.cancelled_caught
    assert budget.free == 4


async def test_acquire_says_whether_it_waited() -> None:
    """What `jobsd_api_write_wait_seconds` counts: only the writes that waited."""
    budget = Budget(2)
    assert await budget.acquire(2) is False
    waited: list[bool] = []

    async def second() -> None:
        waited.append(await budget.acquire(1))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(second)
        await trio.testing.wait_all_tasks_blocked()
        assert waited == []
        budget.release(2)
    assert waited == [True]


async def test_a_waiter_granted_as_it_is_cancelled_gives_its_units_back() -> None:
    # Cancelled while still queued, then granted by a release in the same step:
    # it leaves with the grant in hand, which must go back to the budget.
    budget = Budget(4)
    await budget.acquire(4)
    scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_in, scope, budget.acquire, 2)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
        budget.release(4)  # grants the cancelled waiter before it runs
    assert scope.cancelled_caught
    assert budget.free == 4


async def test_a_delete_waits_for_its_budget_and_a_read_never_does() -> None:
    reached: list[str] = []
    gate = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["method"])
        if scope["method"] == "PUT":
            await gate.wait()

    layer = AccountAdmission(app, SimpleNamespace(observer=None), units=1)  # type: ignore[arg-type]

    async def call(method: str) -> None:
        await layer({**_scope(), "method": method}, None, None)  # type: ignore[arg-type]

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "PUT")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(call, "DELETE")
            nursery.start_soon(call, "GET")
            await trio.testing.wait_all_tasks_blocked()
            assert reached == ["PUT", "GET"]  # the DELETE waits for the one unit
            gate.set()
    assert reached == ["PUT", "GET", "DELETE"]
