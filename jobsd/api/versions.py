"""API versions: what a request's dated version decides, behind one interface.

Stripe-style dated versions (VERSIONS.md): an account has `api_version` in
the config, a request may name another with `Jobsd-Version`, and every
response says which one it got (`jobsd.api.auth`, `jobsd.api.app`). The
handlers are shared; everything the versions say differently is a method of
the version's `Dialect`, one package per version (`v2026_06_04`,
`v2026_08_07`), so no handler branches on a version string and the store,
scheduler and executors know one model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from werkzeug.datastructures import MultiDict

from jobsd.api import v2026_06_04, v2026_08_07
from jobsd.api.auth import Caller
from jobsd.config import API_VERSIONS
from jobsd.job_model import Job, JobCounting, JobKind, JobWrite
from jobsd.messages import Run
from jobsd.run_filters import RunFilter
from jobsd.store.job_writes import Limit
from jobsd.store.jobs import JobQuery


class Dialect(Protocol):
    """One API version's parse and render layer."""

    version: str
    kinds: frozenset[JobKind]  # the kinds of job this version can show
    runs_page_size: int  # `page[size]` of `GET /runs` when none is asked for
    run_now_body: bool  # whether run now reads a request body (`{environment}`)

    def guard(self, caller: Caller) -> None:
        """Refuse (403) a caller this version cannot serve jobs to."""

    def parse_job(
        self, doc: object, *, path_slug: str | None, caller: Caller, stored: Job | None = None
    ) -> JobWrite:
        """A POST (`path_slug` None) or PUT body; `stored`: the job a PUT replaces."""

    def render_job(self, job: Job, caller: Caller) -> dict[str, object]: ...

    def render_run(self, run: Run) -> dict[str, object]: ...

    def runs_filter(self, flt: RunFilter) -> RunFilter:
        """The runs filter as this version's rendering means it."""

    def job_query(self, args: MultiDict[str, str], caller: Caller) -> tuple[JobQuery, int, int]: ...

    def run_now_target(
        self, job: Callable[[], Job], body: object, caller: Caller
    ) -> tuple[str, bool]:
        """(environment, whether it must be enabled there) for a run now; `job()` reads
        the job, called only where the choice depends on it (so a caller that has
        not read it yet reads it only then)."""

    def counting(self, default_environment: str) -> JobCounting:
        """What `active_jobs` counts, in `/usage` and against the plan's limit."""

    def served_spec(self) -> bytes:
        """`/api/v1/openapi.json`: the version's contract plus jobsd's additions."""


_DIALECTS: dict[str, Dialect] = {
    v2026_06_04.DIALECT.version: v2026_06_04.DIALECT,
    v2026_08_07.DIALECT.version: v2026_08_07.DIALECT,
}
assert tuple(_DIALECTS) == API_VERSIONS


def dialect(version: str) -> Dialect:
    return _DIALECTS[version]


def limit_of(caller: Caller) -> Limit:
    """The plan's job limits: `active_jobs_limit`, counted as the account's configured
    version counts, and `max_jobs`, which counts every job alike in both."""
    counting = dialect(caller.account_version).counting(caller.default_environment)
    return Limit(caller.plan.active_jobs_limit, counting, caller.plan.max_jobs)
