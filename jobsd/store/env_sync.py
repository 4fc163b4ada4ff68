"""Environment rows brought in line with the config, a bounded batch per transaction.

At every start and reload (`JobStore.sync_environments`): an environment an
account no longer lists goes dormant (its rows lose `next_run_at`, its held
retries are canceled), and one listed again wakes (its enabled rows get a
next fire from now). Done in one transaction, a reload that listed an
environment again for an account of 100,000 jobs held the one writer ~4 s
(each woken row reads its job), tens of seconds for a million across
accounts: every other account's writes, and every run's claim and end,
waited behind one account's config change. So each step changes at most
`BATCH_ROWS` rows per writer transaction and goes on from the job where the
last stopped (a keyset walk of the same indexes, never a rescan); the writes
queued meanwhile run between its batches. Held retries to cancel are read
once and canceled in batches of as many, each only if still held.

Each batch's rows are those that still need the change (a firing row in an
environment not listed, an enabled row without a next fire in one listed),
so running the sync again is harmless and finishes what an interrupted one
left: committed batches stay, the rest is as it was, and the next start
(which syncs from the config file before serving) or reload completes it.

While it runs the new config is already in force. Dormancy comes first: a
row not yet reached may still fire in the environment just removed, as it
would had the reload come that much later. A row not yet woken is simply
not firing yet; woken, its next fire counts from its batch's instant. A
job written meanwhile is written under the new config, so nothing the sync
has not reached is shown or accepted wrongly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial

from jobsd.clock import from_us, to_us
from jobsd.errors import ScheduleError
from jobsd.messages import JobChanged
from jobsd.schedule import unreadable_reason
from jobsd.store import environments_sql, job_writes, jobs_sql, retries
from jobsd.store.ends import RunObserver, write_ending
from jobsd.store.engine import Engine
from jobsd.store.keyring import Sealer

# Rows changed per writer transaction: a wake reads its job (~40 us a row),
# so a batch holds the writer for about a tenth of a second at most.
BATCH_ROWS = 2_000

# batch(conn, after=job pk, now=instant) -> (its changes, its last pk if it was full)
Batch = Callable[..., tuple[list[JobChanged], int | None]]


async def sync(
    engine: Engine,
    observer: RunObserver | None,
    keyring: Sealer,
    now: Callable[[], datetime],
    configured: Mapping[str, Sequence[str]],
    tell: Callable[[Sequence[JobChanged]], None],
) -> int:
    """`configured`: account id -> its environments (accounts not named are left
    alone). `tell` hears each batch's changes once it has committed. Returns how
    many environment rows changed."""

    def first(conn: sqlite3.Connection) -> tuple[list[str], list[tuple[str, str]]]:
        return environments_sql.stored_environments(conn), retries.held_outside(conn, configured)

    stored, held = await engine.write(first)
    # Retries held in an environment no longer listed: fires to come, like slots.
    for start in range(0, len(held), BATCH_ROWS):
        cancel = partial(_cancel, held[start : start + BATCH_ROWS], to_us(now()))
        await write_ending(engine, observer, cancel)
    changed = 0
    for env in stored:
        lacking = [account for account, envs in configured.items() if env not in envs]
        if lacking:
            changed += await _walk(engine, partial(_dormant, env, lacking), now, tell)
    for account_id, envs in configured.items():
        for env in envs:
            wake = partial(_wake, keyring, account_id, env)
            changed += await _walk(engine, wake, now, tell)
    return changed


async def _walk(
    engine: Engine,
    batch: Batch,
    now: Callable[[], datetime],
    tell: Callable[[Sequence[JobChanged]], None],
) -> int:
    """Run `batch` in its own writer transactions until one is not full."""
    after, changed = 0, 0
    while True:
        changes, last = await engine.write(partial(batch, after=after, now=now()))
        tell(changes)
        changed += len(changes)
        if last is None:
            return changed
        after = last


def _cancel(
    held: Sequence[tuple[str, str]], now_us: int, conn: sqlite3.Connection, ended: list[str]
) -> None:
    ended += retries.cancel_held(conn, held, now_us=now_us)


def _full(pks: Sequence[int]) -> int | None:
    return pks[-1] if len(pks) >= BATCH_ROWS else None


def _dormant(
    env: str, accounts: Sequence[str], conn: sqlite3.Connection, *, after: int, now: datetime
) -> tuple[list[JobChanged], int | None]:
    pks = environments_sql.make_dormant(conn, env, accounts, after=after, limit=BATCH_ROWS)
    return [JobChanged(pk, env, None, None, None) for pk in pks], _full(pks)


def _wake(
    keyring: Sealer,
    account_id: str,
    env: str,
    conn: sqlite3.Connection,
    *,
    after: int,
    now: datetime,
) -> tuple[list[JobChanged], int | None]:
    """An enabled row listed again, dormant until now, fires from now (a one-off
    not yet fired fires late rather than never)."""
    pks = environments_sql.dormant_enabled(conn, account_id, env, after=after, limit=BATCH_ROWS)
    changes = []
    for pk in pks:
        job = jobs_sql.job_by_pk(conn, pk, keyring)
        overlay = job.environments[env].overlay
        schedule, timezone = environments_sql.effective_cadence(job.spec, overlay)
        try:
            next_us = job_writes.next_fire_us(job.spec, overlay, enabled=True, now=now)
        except ScheduleError as problem:  # a zone the installed tzdata no longer ships
            conn.execute(
                "UPDATE job_environments SET enabled = 0, next_run_at_us = NULL, "
                "paused_reason = ? WHERE job_id = ? AND environment = ?",
                (unreadable_reason(problem), pk, env),
            )
            changes.append(JobChanged(job.pk, env, None, None, None))
            continue
        conn.execute(
            "UPDATE job_environments SET next_run_at_us = ? WHERE job_id = ? AND environment = ?",
            (next_us, pk, env),
        )
        at = None if next_us is None else from_us(next_us)
        changes.append(JobChanged(job.pk, env, schedule, timezone, at))
    return changes, _full(pks)
