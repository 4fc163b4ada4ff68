"""Migration 5: finding runs, kept apart from `schema.py`'s machinery."""

from __future__ import annotations

from jobsd.store import count_tables

# Finding runs fast (`jobsd.store.run_listing`, `jobsd.store.run_stats`):
# - one index per sort and per equality filter, each ending in the tie order
#   (created_at_us, seq), so any of them walks in `created_at` order once
#   its leading columns are fixed, and a keyset cursor resumes with a seek;
#   they replace the seq-ordered runs_by_account and runs_by_slug;
# - `total_duration_ms` as the API renders it, a virtual column to index;
# - runs_last: the terminal runs per (job, environment), newest last, with
#   their status, for `last_run_only`;
# - run_counts, run_counts_hourly: see `jobsd.store.count_tables`.
FINDING: tuple[str, ...] = (
    "ALTER TABLE runs ADD COLUMN total_duration_ms INTEGER "
    "GENERATED ALWAYS AS (max(0, (finished_at_us - created_at_us) / 1000)) VIRTUAL",
    "DROP INDEX runs_by_account",
    "DROP INDEX runs_by_slug",
    "CREATE INDEX runs_created ON runs (account_id, created_at_us, seq)",
    "CREATE INDEX runs_job_created ON runs (account_id, job_slug, created_at_us, seq)",
    "CREATE INDEX runs_status_created ON runs (account_id, status, created_at_us, seq)",
    "CREATE INDEX runs_trigger_created ON runs (account_id, trigger, created_at_us, seq)",
    "CREATE INDEX runs_env_created ON runs (account_id, environment, created_at_us, seq)",
    "CREATE INDEX runs_started ON runs (account_id, started_at_us, created_at_us, seq)",
    "CREATE INDEX runs_finished_at ON runs (account_id, finished_at_us, created_at_us, seq)",
    "CREATE INDEX runs_scheduled ON runs (account_id, scheduled_for_us, created_at_us, seq)",
    "CREATE INDEX runs_duration ON runs (account_id, total_duration_ms, created_at_us, seq)",
    "CREATE INDEX runs_last ON runs "
    "(account_id, job_slug, environment, created_at_us, seq, status) "
    "WHERE finished_at_us IS NOT NULL",
    *count_tables.statements(),
)
