"""Migration 8: the alert outbox, each job's alert state, and `paused_reason`.

`alert_outbox` holds the alerts not yet delivered, each with the exact body
it will be sent with (`jobsd.alert_body`), written in the transaction that
records the run's end (`jobsd.store.outbox`) and deleted once delivered or
given up. `sending` marks an alert the alert actor has taken: from then on
its body never changes (a deferred `job.failed` is folded into only while
`attempts = 0 AND sending = 0`), and a start after a crash puts every
`sending` alert back in line, so it is sent again under the same id and
with the same bytes. `alert_outbox_by_job` keeps each job's alerts in order
(one is sent only once every older one of its job and environment is
gone); `alert_outbox_due` serves the actor's "what is due" and "when next".

`alert_state` is one row per (job, environment) that has failed since
alerts were on: the rules' `AlertState` (`jobsd.alert_rules`). It is not
part of `job_environments`, whose rows a job write replaces whole.

`job_environments.paused_reason` says why an environment was auto-paused;
only a disabled environment may have one, and enabling it clears it.
"""

from __future__ import annotations

ALERTS: tuple[str, ...] = (
    "CREATE TABLE alert_outbox ("
    " seq            INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id             TEXT    NOT NULL UNIQUE,"
    " account_id     TEXT    NOT NULL,"
    " job_id         INTEGER NOT NULL,"
    " environment    TEXT    NOT NULL,"
    " type           TEXT    NOT NULL"
    "     CHECK (type IN ('job.failed', 'job.recovered', 'job.paused')),"
    " body           TEXT    NOT NULL,"
    " created_at_us  INTEGER NOT NULL,"
    " due_us         INTEGER NOT NULL,"
    " expires_at_us  INTEGER NOT NULL CHECK (expires_at_us >= due_us),"
    " attempts       INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),"
    " sending        INTEGER NOT NULL DEFAULT 0 CHECK (sending IN (0, 1)),"
    " CHECK (sending = 0 OR attempts >= 1)"
    ")",
    "CREATE INDEX alert_outbox_due ON alert_outbox (sending, due_us)",
    "CREATE INDEX alert_outbox_by_account ON alert_outbox (account_id, seq)",
    "CREATE INDEX alert_outbox_by_job ON alert_outbox (job_id, environment, seq)",
    "CREATE TABLE alert_state ("
    " job_id          INTEGER NOT NULL,"
    " environment     TEXT    NOT NULL,"
    " streak          INTEGER NOT NULL DEFAULT 0 CHECK (streak >= 0),"
    " failing         INTEGER NOT NULL DEFAULT 0 CHECK (failing IN (0, 1)),"
    " last_failed_us  INTEGER,"
    " deferred        TEXT,"
    " PRIMARY KEY (job_id, environment)"
    ") WITHOUT ROWID",
    "ALTER TABLE job_environments ADD COLUMN paused_reason TEXT "
    "CHECK (paused_reason IS NULL OR enabled = 0)",
)
