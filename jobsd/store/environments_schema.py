"""Migration 3: environments and job kinds, kept apart from `schema.py`'s machinery.

It needs to know which environment each account's existing jobs and runs
belong to: the caller passes `default_environments` (account id -> the first
environment in the config) from the config it starts with; an account the
config does not name gets `production`, the default an account's
`environments` has.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from jobsd.config_sections import DEFAULT_ENVIRONMENT
from jobsd.errors import ScheduleError
from jobsd.schedule import CronSchedule, parse_schedule

# `name_key` is the name case-folded (`jobsd_fold`), what listings sort and
# search by. Jobs lose `enabled` and `next_run_at_us` to one row per (job, environment),
# which also holds that environment's sparse overrides; `schedule` may be
# NULL (a manual job) and `kind` follows from it. Every existing job is
# enabled (or not) in its account's default environment, with the
# `next_run_at_us` it had, so no slot is fired twice or lost; every run
# belongs to that environment, and a slot is unique per environment.
_V3 = """
    CREATE TABLE jobs_v3 (
        id              INTEGER PRIMARY KEY,
        account_id      TEXT    NOT NULL,
        slug            TEXT    NOT NULL,
        name            TEXT    NOT NULL,
        name_key        TEXT    NOT NULL,
        description     TEXT,
        kind            TEXT    NOT NULL CHECK (kind IN ('recurring', 'manual', 'one_off')),
        schedule        TEXT,
        timezone        TEXT,
        retry_policy    TEXT,
        method          TEXT    NOT NULL,
        url             TEXT    NOT NULL,
        headers         TEXT    NOT NULL DEFAULT '[]',
        success_status  TEXT    NOT NULL,
        tls_verify      INTEGER NOT NULL CHECK (tls_verify IN (0, 1)),
        ca_cert         TEXT,
        body            TEXT,
        timeout_s       INTEGER NOT NULL CHECK (timeout_s >= 1),
        created_at_us   INTEGER NOT NULL,
        updated_at_us   INTEGER NOT NULL,
        deleted_at_us   INTEGER,
        version         INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
        CHECK ((kind = 'manual') = (schedule IS NULL)),
        CHECK (kind = 'recurring' OR timezone IS NULL)
    );
    INSERT INTO jobs_v3 (id, account_id, slug, name, name_key, description, kind, schedule,
        method, url, headers, success_status, tls_verify, ca_cert, body, timeout_s,
        created_at_us, updated_at_us, deleted_at_us, version)
    SELECT id, account_id, slug, name, jobsd_fold(name), description,
        jobsd_schedule_kind(schedule), schedule,
        method, url, headers, success_status, tls_verify, ca_cert, body, timeout_s,
        created_at_us, updated_at_us, deleted_at_us, version
    FROM jobs;
    CREATE TABLE job_environments (
        job_id          INTEGER NOT NULL REFERENCES jobs (id),
        environment     TEXT    NOT NULL,
        enabled         INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        next_run_at_us  INTEGER,
        schedule        TEXT,
        timezone        TEXT,
        retry_policy    TEXT,
        overlay         TEXT    NOT NULL DEFAULT '{}',
        headers         TEXT    NOT NULL DEFAULT '[]',
        CHECK (enabled = 1 OR next_run_at_us IS NULL),
        PRIMARY KEY (job_id, environment)
    ) WITHOUT ROWID;
    INSERT INTO job_environments (job_id, environment, enabled, next_run_at_us)
    SELECT id, jobsd_default_environment(account_id), enabled, next_run_at_us
    FROM jobs WHERE deleted_at_us IS NULL;
    DROP TABLE jobs;
    ALTER TABLE jobs_v3 RENAME TO jobs;
    CREATE UNIQUE INDEX jobs_live_slug ON jobs (account_id, slug)
        WHERE deleted_at_us IS NULL;
    CREATE INDEX jobs_listing ON jobs (account_id, created_at_us DESC, slug)
        WHERE deleted_at_us IS NULL;
    CREATE INDEX jobs_by_name ON jobs (account_id, name_key, name, slug)
        WHERE deleted_at_us IS NULL;
    CREATE INDEX jobs_by_update ON jobs (account_id, updated_at_us, slug)
        WHERE deleted_at_us IS NULL;
    CREATE INDEX job_environments_due ON job_environments (next_run_at_us)
        WHERE next_run_at_us IS NOT NULL;
    ALTER TABLE runs ADD COLUMN environment TEXT NOT NULL DEFAULT '';
    UPDATE runs SET environment = jobsd_default_environment(account_id);
    DROP INDEX runs_slot;
    CREATE UNIQUE INDEX runs_slot ON runs (job_id, environment, scheduled_for_us)
        WHERE trigger = 'SCHEDULE'
"""


def schedule_kind(schedule: str | None) -> str:
    """`kind` from a schedule as stored (validated when it was written)."""
    if schedule is None:
        return "manual"
    try:
        parsed = parse_schedule(schedule)
    except ScheduleError:
        return "recurring"  # never stored; the scheduler reports it if it ever is
    return "recurring" if isinstance(parsed, CronSchedule) else "one_off"


def environments(conn: sqlite3.Connection, defaults: Mapping[str, str]) -> None:
    def default_environment(account_id: str) -> str:
        return defaults.get(account_id, DEFAULT_ENVIRONMENT)

    conn.create_function("jobsd_schedule_kind", 1, schedule_kind, deterministic=True)
    conn.create_function("jobsd_default_environment", 1, default_environment, deterministic=True)
    # Our statements hold no literal `;` (see schema._statements).
    for statement in (s.strip() for s in _V3.split(";")):
        if statement:
            conn.execute(statement)
