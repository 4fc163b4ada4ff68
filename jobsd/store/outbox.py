"""Alerts written in the transaction that records a run's end.

`AlertRecorder.record` runs inside every transaction that ends runs for a
reason that can alert (finished by an executor, lost at a stop or a crash,
failed before sending: `jobsd.store.ends`), after those runs have their
final state and any retry has been inserted. For each run of an account
whose alerts are on (an `alert_url`, or a plan with `auto_pause_after`) it
reads the job and environment's `alert_state`, lets the pure rules decide
(`jobsd.alert_rules.decide`), and writes what they say (the rows'
SQL is `jobsd.store.outbox_rows`): outbox rows with
their final bodies, the new state, and an auto-pause with its
`paused_reason`. So a run's end and its alerts commit together or not at
all: no crash can leave a failure recorded without its alert, or an alert
for an end that rolled back. What the commit changed is told afterwards
(`committed`): the scheduler hears of paused environments, the alert actor
is woken, alerts dropped by the rate limit or the cap are counted.

An account with neither costs nothing here: no statement is run for its
runs, and nothing at all while no account alerts. The outbox of each
account holds at most `cap` alerts (`OUTBOX_CAP`): one more drops the
account's oldest not being sent, so the newest word about each job wins.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import trio

from jobsd.alert_rules import (
    Act,
    AlertType,
    Verdict,
    decide,
    verdict,
)
from jobsd.logs import fields
from jobsd.messages import JobChanged, RunEnded, SchedulerNews
from jobsd.store.outbox_rows import (
    OutboxWriter,
    Recorded,
    pause,
    read_state,
    unsent,
    write_state,
)

log = logging.getLogger("jobsd.alerts")

OUTBOX_CAP = 1_000


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """One account's alert settings: an `alert_url`, and its plan's `auto_pause_after`."""

    alerting: bool = False
    auto_pause_after: int = 0

    @property
    def active(self) -> bool:
        return self.alerting or self.auto_pause_after > 0


class AlertPolicies(Protocol):
    """The live config's answer (it follows a reload)."""

    def any_active(self) -> bool: ...

    def of(self, account_id: str) -> AlertPolicy: ...


class AlertCounter(Protocol):
    def alerts_dropped(self, account: str, alert_type: str, outcome: str) -> None: ...


_FACTS = (
    "SELECT r.id, r.account_id, r.job_id, r.environment, r.status, r.failure_reason, "
    "r.finished_at_us, e.enabled, "
    "r.status = 'FAILED' AND EXISTS (SELECT 1 FROM runs AS n WHERE n.trigger = 'RETRY' "
    "AND n.retry_of = coalesce(r.retry_of, r.id) "
    "AND n.retry_attempt = coalesce(r.retry_attempt, 0) + 1) AS retried "
    "FROM runs AS r JOIN jobs AS j ON j.id = r.job_id AND j.deleted_at_us IS NULL "
    "LEFT JOIN job_environments AS e ON e.job_id = r.job_id AND e.environment = r.environment "
    "WHERE r.finished_at_us IS NOT NULL AND r.id IN ({marks})"
)


class AlertRecorder:
    def __init__(
        self,
        policies: AlertPolicies,
        *,
        cap: int = OUTBOX_CAP,
        news: trio.MemorySendChannel[SchedulerNews] | None = None,
        counter: AlertCounter | None = None,
    ) -> None:
        self._policies = policies
        self._cap = cap
        self._news = news
        self._counter = counter
        self._written = trio.Event()

    # -- inside the transaction --------------------------------------------------

    def record(
        self,
        conn: sqlite3.Connection,
        ended: Sequence[str],
        known: Mapping[str, RunEnded] | None = None,
    ) -> Recorded:
        """`known`: the ends whose facts the transaction has (a finish's); those of
        an account whose alerts are off are left out before anything is read."""
        done = Recorded()
        if not ended or not self._policies.any_active():
            return done
        if known:
            ended = [
                run_id
                for run_id in ended
                if (end := known.get(run_id)) is None or self._policies.of(end.account_id).active
            ]
            if not ended:
                return done
        order = {run_id: n for n, run_id in enumerate(ended)}
        facts: list[sqlite3.Row] = []
        for start in range(0, len(ended), 500):
            chunk = ended[start : start + 500]
            query = _FACTS.format(marks=", ".join("?" * len(chunk)))
            facts.extend(conn.execute(query, chunk))
        facts.sort(key=lambda row: order[row["id"]])
        for row in facts:
            policy = self._policies.of(row["account_id"])
            if policy.active:
                seen = verdict(row["status"], row["failure_reason"], retried=bool(row["retried"]))
                if seen is not Verdict.NEUTRAL:
                    self._apply(conn, row, seen, policy, done)
        return done

    def _apply(
        self,
        conn: sqlite3.Connection,
        row: sqlite3.Row,
        seen: Verdict,
        policy: AlertPolicy,
        done: Recorded,
    ) -> None:
        job_pk, env, at_us = int(row["job_id"]), str(row["environment"]), int(row["finished_at_us"])
        # `enabled` was read before any end of this transaction: a run of the same
        # job ended earlier in it may have paused the environment since (runs lost
        # together at a stop or a crash). Seen as enabled, the next failure paused
        # nothing yet started the count again.
        paused_here = any(c.job_pk == job_pk and c.environment == env for c in done.paused)
        state = read_state(conn, job_pk, env)
        deferred_open = state.deferred is not None and unsent(conn, state.deferred)
        decision = decide(
            state,
            seen,
            at_us,
            deferred_open=deferred_open,
            enabled=bool(row["enabled"]) and not paused_here,
            auto_pause_after=policy.auto_pause_after,
            alerting=policy.alerting,
        )
        new = decision.state
        writer = OutboxWriter(conn, row, self._cap, done)
        for act in decision.acts:
            if act is Act.SEND_FAILED:
                writer.insert(AlertType.FAILED, at_us)
            elif act is Act.DEFER_FAILED:
                assert decision.due_us is not None
                new = replace(new, deferred=writer.insert(AlertType.FAILED, decision.due_us))
            elif act is Act.FOLD_FAILED:
                assert new.deferred is not None
                writer.fold(new.deferred)  # the failure it named gets no alert of its own
                done.dropped.append((row["account_id"], AlertType.FAILED.value, "suppressed"))
            elif act is Act.SUPPRESS_FAILED:
                done.dropped.append((row["account_id"], AlertType.FAILED.value, "suppressed"))
            elif act is Act.DROP_DEFERRED:
                assert state.deferred is not None
                conn.execute("DELETE FROM alert_outbox WHERE id = ?", (state.deferred,))
                done.dropped.append((row["account_id"], AlertType.FAILED.value, "suppressed"))
            elif act is Act.SEND_RECOVERED:
                writer.insert(AlertType.RECOVERED, at_us)
            elif act is Act.PAUSE and pause(conn, row, state.streak + 1):
                done.paused.append(JobChanged(job_pk, env, None, None, None))
                if policy.alerting:
                    writer.insert(AlertType.PAUSED, at_us)
        if new != state:
            write_state(conn, job_pk, env, new)

    # -- after the commit --------------------------------------------------------

    def committed(self, done: Recorded) -> None:
        """Tell what committed: never waits (an executor must not wait on the scheduler)."""
        if self._news is not None:
            for change in done.paused:
                with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
                    self._news.send_nowait(change)  # a full channel: it reads the store back
        for account, alert_type, outcome in done.dropped:
            if outcome == "overflow":
                log.warning(
                    "alert dropped: the account's outbox is full",
                    extra=fields(account=account, type=alert_type, cap=self._cap),
                )
            if self._counter is not None:
                self._counter.alerts_dropped(account, alert_type, outcome)
        if done.written:
            self._written.set()
            self._written = trio.Event()

    def next_write(self) -> trio.Event:
        """Set by the next commit that writes an alert: taken before the actor
        reads the outbox, so a write between its read and its wait still wakes it."""
        return self._written
