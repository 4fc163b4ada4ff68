"""2026-06-04, the seed version: the API jobsd spoke first, and the default.

Its documents are parsed by `documents.py` here (over the readers both
versions share, `jobsd.api.documents`) and rendered by `jobsd.api.render`; this
package says how that view maps onto the one model (VERSIONS.md, "Seen
through 2026-06-04"):

- A job is its base plus the default environment: `enabled` and
  `next_run_at` are that environment's, and a write sets that environment's
  `enabled` and nothing else of the environments: their overrides, and every
  other environment, stay as stored. `timezone` and `retry_policy`, which
  this version's clients do not know, are kept by a PUT.
- A manual job (no schedule) has no form here: it is not listed and reads
  as 404. Run now runs in the default environment, paused or not.
- `active_jobs` counts the jobs enabled in the default environment;
  `filter[enabled]` and `filter[scheduled]` ask about that environment too.
- A token whose scope leaves out the default environment cannot use this
  version's job endpoints (403): everything they do is about that
  environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from werkzeug.datastructures import MultiDict

from jobsd import errors
from jobsd.api.auth import Caller
from jobsd.api.extensions import EXTENSIONS
from jobsd.api.listing import JOB_PARAMETERS, job_query
from jobsd.api.params import Query
from jobsd.api.render import render_job, render_run
from jobsd.api.spec import served_spec
from jobsd.api.v2026_06_04.documents import parse_seed_job
from jobsd.job_model import EnvironmentSpec, Job, JobCounting, JobKind, JobWrite
from jobsd.messages import Run
from jobsd.run_filters import RunFilter
from jobsd.store.jobs import JobQuery

VERSION = "2026-06-04"
_SHOWN = frozenset({JobKind.RECURRING, JobKind.ONE_OFF})


class SeedDialect:
    version = VERSION
    kinds = _SHOWN
    runs_page_size = 100
    run_now_body = False  # whether run now reads a request body

    def guard(self, caller: Caller) -> None:
        if caller.default_environment not in caller.visible:
            raise errors.forbidden(
                "environment_scope",
                f"version {VERSION} acts on the account's default environment "
                f"({caller.default_environment}), which this token may not reach; "
                "send Jobsd-Version: 2026-08-07 and name an environment it may",
            )

    def parse_job(
        self, doc: object, *, path_slug: str | None, caller: Caller, stored: Job | None = None
    ) -> JobWrite:
        spec, enabled, given = parse_seed_job(
            doc, path_slug=path_slug, max_timeout_s=caller.plan.max_timeout
        )
        default = caller.default_environment
        # A replace that leaves the default environment off adds no entry there:
        # none reads as off, so a job written back as read is unchanged.
        entry = EnvironmentSpec(enabled, overlay=None, add=enabled or path_slug is None)
        return JobWrite(
            spec,
            {default: entry},
            owns=frozenset({default}),
            keep=EXTENSIONS - given,
        )

    def render_job(self, job: Job, caller: Caller) -> dict[str, object]:
        return render_job(job, caller.default_environment)

    def render_run(self, run: Run) -> dict[str, object]:
        return render_run(run)

    def runs_filter(self, flt: RunFilter) -> RunFilter:
        """A retry shows here as a RERUN (`render_run`), so `filter[trigger]=RERUN`
        keeps retries too: a list filtered by what it shows."""
        if flt.triggers is None or "RERUN" not in flt.triggers:
            return flt
        return dataclasses.replace(flt, triggers=flt.triggers | {"RETRY"})

    def job_query(self, args: MultiDict[str, str], caller: Caller) -> tuple[JobQuery, int, int]:
        query = Query(args, ("filter[enabled]", *JOB_PARAMETERS))
        enabled = query.boolean("filter[enabled]")
        return job_query(
            query,
            caller,
            shown=_SHOWN,
            listed=_SHOWN,
            default_sort="-created_at",
            enabled_in=None if enabled is None else (caller.default_environment, enabled),
            # The seed shows the default environment's `next_run_at`: a job scheduled
            # only elsewhere reads null here, so it is not "scheduled" here either.
            scheduled_in=(caller.default_environment,),
        )

    def run_now_target(
        self, job: Callable[[], Job], body: object, caller: Caller
    ) -> tuple[str, bool]:
        return caller.default_environment, False

    def counting(self, default_environment: str) -> JobCounting:
        return JobCounting(enabled_in=default_environment)

    def served_spec(self) -> bytes:
        return _SPEC


_SPEC = served_spec(VERSION)
DIALECT = SeedDialect()
