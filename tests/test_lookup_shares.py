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
from jobsd.lookup_threads import LookupThreads
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
