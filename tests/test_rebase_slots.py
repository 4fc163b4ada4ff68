"""The store's side of a step back of the clock (`jobsd.store.slots.rebase`).

Every `next_run_at` was planned on the clock before the step. The scheduler
asks the store, in batches, to plan each enabled recurring environment's
next fire again from the new now when its cadence has an earlier slot; the
scheduler's side is in tests/test_clock_watch.py. Held retries move by
the step. Real SQLite, in small batches, so that going on from a batch's
end is exercised too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.job_model import HttpConfig
from jobsd.retry import Backoff, RetryPolicy
from jobsd.store import open_store
from tests.api.conformance import Versioned
from tests.conftest import job_doc, make_harness
from tests.model import ENV, create_job, seed_job
from tests.test_retry_store import FAILED_500, T0, _fields

BACK = datetime(2026, 6, 4, 23, 58, tzinfo=UTC)  # the harness's clock reads 2026-06-05 02:00


async def test_a_step_back_plans_recurring_next_fires_again_and_nothing_else(
    tmp_path: Path,
) -> None:
    acme = 'environments = ["production", "staging"]'
    async with make_harness(tmp_path, acme=acme, active_jobs_limit=-1) as h:
        v = Versioned(h)
        on = {"enabled": True}
        kathmandu = {"enabled": True, "schedule": "0 2 * * *", "timezone": "Asia/Kathmandu"}
        docs = [
            job_doc(
                "every5",
                schedule="*/5 * * * *",
                environments={"production": on, "staging": kathmandu},
            ),
            job_doc(
                "paused", schedule="*/5 * * * *", environments={"production": {"enabled": False}}
            ),
            job_doc("once", schedule="2026-06-05T03:00:00Z", environments={"production": on}),
            job_doc("hourly", schedule="0 * * * *", environments={"production": on}),
        ]
        for doc in docs:
            assert (await v.post_job(doc)).status == 201
        after, moved, batches = (-1, ""), 0, 0
        while True:
            count, going_on = await h.store.runs.rebase_slots(BACK, after, 1)
            moved, batches = moved + count, batches + 1
            if going_on is None:
                break
            after = going_on
        # A batch of two goes on from its second (last) unit, as two batches of one do.
        _, one = await h.store.runs.rebase_slots(BACK, (-1, ""), 1)
        assert one is not None
        _, two = await h.store.runs.rebase_slots(BACK, one, 1)
        assert two is not None and await h.store.runs.rebase_slots(BACK, (-1, ""), 2) == (0, two)
        shown = {}
        for slug in ("every5", "paused", "once", "hourly"):
            envs = (await v.get_job(slug)).body["data"]["attributes"]["environments"]
            shown[slug] = {env: entry["next_run_at"] for env, entry in envs.items()}
    assert shown == {
        "every5": {"production": "2026-06-05T00:00:00Z", "staging": "2026-06-05T20:15:00Z"},
        "paused": {"production": None},
        "once": {"production": "2026-06-05T03:00:00Z"},
        "hourly": {"production": "2026-06-05T00:00:00Z"},
    }
    assert moved == 2 and batches >= 4  # staging's 02:00 in Kathmandu was already the next


async def test_a_step_back_moves_held_retries_by_the_step_never_before_now(
    tmp_path: Path,
) -> None:
    """Three retries held 60 s after their failures (at T0): an hour back,
    each is due 60 s after its failure on the clock as it is now; in batches
    of two, so going on from a batch's end is exercised too."""
    keyring = KeyRing.load_or_create(tmp_path / "k")
    async with open_store(tmp_path / "db", keyring, Clock(T0)) as store:
        await store.policies.create(
            "acme", "p", "P", RetryPolicy(3, Backoff.FIXED, 60, retry_statuses=("5xx",))
        )
        for n in range(3):
            write = seed_job(f"j{n}", "j", None, True, None, HttpConfig("https://x.invalid/"))
            spec = type(write.spec)(**{**_fields(write.spec), "retry_policy": "p"})
            await create_job(store, "acme", type(write)(spec, write.environments, write.owns))
            run = await store.runs.enqueue_manual(
                "acme", f"j{n}", ENV, require_enabled=False, max_pending=100
            )
            assert await store.runs.claim(run.id, lambda _: -1) is not None
            assert await store.runs.finish(run.id, FAILED_500)
        held = await store.runs.held_retries_before(T0 + timedelta(days=1), 10)
        back, now = -timedelta(hours=1), T0 - timedelta(minutes=59, seconds=30)

        async def shift(by: timedelta, at: datetime) -> int:
            after: tuple[int, str] | None = (-1, "")
            total = 0
            while after is not None:
                count, after = await store.runs.shift_held_retries(by, at, after, 2)
                total += count
            return total

        assert await shift(back, now) == 3
        moved = await store.runs.held_retries_before(T0 + timedelta(days=1), 10)
        assert sorted(m.due for m in moved) == sorted(h.due + back for h in held)
        # Another step back, further than they wait: due now, not before.
        assert await shift(-timedelta(days=1), now) == 3
        again = await store.runs.held_retries_before(T0 + timedelta(days=1), 10)
        assert [m.due for m in again] == [now] * 3
        for m in again:  # the run shows it: a retry's due instant is its scheduled_for
            assert (await store.runs.get_run("acme", m.run_id)).scheduled_for == now
