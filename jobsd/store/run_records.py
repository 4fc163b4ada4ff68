"""The executors' side of the runs: claim, finish, mark lost (`RunRecords`).

Each is one write transaction through `write_ending`, so the runs it ends
are told to the observer only once they have committed. A claim is
`jobsd.store.claims`'; a finish writes the outcome and, in the same
transaction, the retry its policy asks for (`jobsd.store.retries`), and
tells the scheduler of that retry only after the commit, never waiting on
it. The alerts the ends make are written in the same transactions
(`jobsd.store.outbox`).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from typing import TypeVar

import trio

from jobsd.clock import Clock, to_us
from jobsd.messages import Outcome, RetryHeld, SchedulerNews
from jobsd.store import claims, ended_sql, retries, runs_sql, usage_sql
from jobsd.store.claims import Claim
from jobsd.store.ends import Ended, RunObserver, write_ending
from jobsd.store.engine import Engine
from jobsd.store.keyring import Sealer
from jobsd.store.outbox import AlertRecorder
from jobsd.store.waiting_writes import write_when_free

T = TypeVar("T")


class RunRecordStore:
    def __init__(
        self,
        engine: Engine,
        keyring: Sealer,
        clock: Clock,
        observer: RunObserver | None = None,
        news: trio.MemorySendChannel[SchedulerNews] | None = None,
        alerts: AlertRecorder | None = None,
    ) -> None:
        self._news = news
        self._alerts = alerts
        self._engine = engine
        self._keyring = keyring
        self._clock = clock
        self._observer = observer

    async def _ending(
        self, tx: Callable[[sqlite3.Connection, Ended], T], *, waiting: str | None = None
    ) -> T:
        """`tx` in the writer; the runs it ended told after the commit, and their
        alerts written in the same transaction (`write_ending`). With `waiting`, a
        database another process keeps locked is waited out: the daemon's own writes
        have no client to try them again (`jobsd.store.waiting_writes`)."""
        return await write_ending(self._engine, self._observer, tx, self._alerts, waiting=waiting)

    async def claim(self, run_id: str, runs_included_of: Callable[[str], int]) -> Claim | None:
        """PENDING -> RUNNING, metered; or FAILED/QUOTA_EXCEEDED. None: not ours to run."""
        now = self._clock.now()

        def tx(conn: sqlite3.Connection, ended: list[str]) -> Claim | None:
            return claims.claim(
                conn,
                ended,
                run_id,
                now=now,
                keyring=self._keyring,
                runs_included_of=runs_included_of,
            )

        return await self._ending(tx, waiting=f"the claim of run {run_id}")

    async def finish(self, run_id: str, outcome: Outcome) -> bool:
        """Record the outcome of a RUNNING run, and, in the same transaction, the
        retry its policy asks for after a failure (`jobsd.store.retries`)."""
        now = self._clock.now()

        def tx(conn: sqlite3.Connection, ended: Ended) -> tuple[bool, RetryHeld | None]:
            row = runs_sql.finish(conn, run_id, outcome, now_us=to_us(now))
            if not outcome.sent:
                # No request left for this run, ever (a run is claimed once): its
                # meter goes back, also when a user's cancel recorded it first.
                usage_sql.unmeter_run(conn, run_id)
            if row is None:
                if outcome.sent and outcome.request:
                    # A user's cancel committed while the response came in: the
                    # run reads CANCELED, and its request did leave, so the record
                    # says what it was, as for a cancel that cut the request short.
                    runs_sql.record_request(conn, run_id, json.dumps(outcome.request))
                return False, None
            ended.add(ended_sql.to_ended(row))
            return True, retries.schedule_retry(conn, row, outcome, now)

        finished, retry = await self._ending(tx, waiting=f"the record of run {run_id}")
        if retry is not None:
            self._retry_held(retry)
        return finished

    def _retry_held(self, retry: RetryHeld) -> None:
        """Tell the observer and the scheduler of a retry that has committed.

        Never waits: an executor must not wait on the scheduler. Should the
        scheduler's channel be full, the news is dropped; the scheduler sees
        the full channel when it next reads it and reads the held retries
        back from the store (`jobsd.scheduler`), so nothing is lost.
        """
        if self._observer is not None:
            self._observer.retry_scheduled()
        if self._news is not None:
            with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
                self._news.send_nowait(retry)

    async def mark_lost(
        self, run_ids: list[str], error: str, *, request: dict[str, object] | None = None
    ) -> int:
        """RUNNING -> FAILED/WORKER_LOST; with `request`, what was being sent."""
        now_us = to_us(self._clock.now())
        sent = None if request is None else json.dumps(request)

        def tx(conn: sqlite3.Connection, ended: list[str]) -> int:
            for r in run_ids:
                if runs_sql.mark_lost(conn, r, now_us=now_us, error=error, request=sent):
                    ended.append(r)
                elif sent is not None:
                    # A user's cancel committed as the stop's grace ran out: the run
                    # reads CANCELED, and says what it was sending all the same.
                    runs_sql.record_request(conn, r, sent)
            return len(ended)

        return await self._ending(tx, waiting=f"the record of {len(run_ids)} runs lost")

    async def record_request(self, run_id: str, request: dict[str, object]) -> bool:
        """The request a run canceled in flight was sending, on its CANCELED record."""
        sent = json.dumps(request)

        def tx(conn: sqlite3.Connection) -> bool:
            return runs_sql.record_request(conn, run_id, sent)

        return await write_when_free(self._engine, tx, f"the record of run {run_id}")
