"""Accounts together cannot hold every name-lookup thread (`jobsd.lookup_threads`).

Each account may hold at most 4 lookup threads, so one account whose
nameserver never answers cannot hold them all. With 8 threads in all, two
such accounts did: every other account's run to any name then waited for
the resolver to give up on theirs (glibc: `timeout` x `attempts`, 10 s) and
a run with a shorter timeout failed. Pushed here with a lookup that never
answers for the two accounts' names (a nameserver that drops queries).
"""

from __future__ import annotations

import trio

from jobsd.delivery import Delivery, default_resolver
from jobsd.lookup_threads import LOOKUP_SCOPE, LookupThreads
from jobsd.runs import RunStatus
from tests.test_delivery import LOCAL, config, ok, serving, silent_nameserver


async def test_two_accounts_whose_lookups_never_answer_leave_threads_to_a_third() -> None:
    never, started, lookup = silent_nameserver()
    threads = LookupThreads()
    delivery = Delivery(LOCAL, resolver=default_resolver(threads, lookup))
    try:
        async with serving(ok) as server, trio.open_nursery() as nursery:
            for account in ("noisy1", "noisy2"):
                for i in range(threads.per_scope + 2):
                    slow = config(f"http://{account}-{i}.test/", timeout_s=1, reuse_scope=account)
                    nursery.start_soon(delivery.perform, slow)
            with trio.fail_after(10):
                while len(started) < 2 * threads.per_scope:
                    await trio.sleep(0.01)
            await trio.sleep(1.5)  # every noisy run has given up; its lookups have not
            assert len(started) == 2 * threads.per_scope  # each held its share, no more
            fine = config(f"http://fine.test:{server.port}/", timeout_s=3, reuse_scope="quiet")
            began = trio.current_time()
            outcome = await delivery.perform(fine)
            print(
                f"the third account's run: {outcome.status} in {trio.current_time() - began:.3f} s"
            )
        assert outcome.status is RunStatus.SUCCEEDED, outcome
    finally:
        never.set()


async def test_each_lookup_gives_its_thread_back_when_it_ends() -> None:
    """More lookups, one after another, than there are threads: each ends and
    frees its thread (and its account's share) for the next."""
    resolve = default_resolver(LookupThreads(total=1, per_scope=1))
    with trio.fail_after(5):
        for _ in range(3):
            assert [str(ip) for ip in await resolve("localhost", 80)]


async def test_a_lookup_cancelled_while_waiting_for_a_thread_gives_its_share_back() -> None:
    """A run whose lookup waited for a thread (every one busy) and was cancelled
    holds nothing: its account's share is whole again, or after `per_scope`
    such runs the account could never look a name up again."""
    threads = LookupThreads(total=1, per_scope=1)
    busy, waiting, next_one = object(), object(), object()
    token = LOOKUP_SCOPE.set("other")
    try:
        await threads.acquire_on_behalf_of(busy)  # every thread busy
    finally:
        LOOKUP_SCOPE.reset(token)
    token = LOOKUP_SCOPE.set("acme")
    try:
        with trio.move_on_after(0.1) as waited:
            await threads.acquire_on_behalf_of(waiting)
        assert waited.cancelled_caught
        threads.release_on_behalf_of(busy)
        with trio.fail_after(2):
            await threads.acquire_on_behalf_of(next_one)
        threads.release_on_behalf_of(next_one)
    finally:
        LOOKUP_SCOPE.reset(token)
