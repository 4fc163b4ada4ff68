"""2026-08-07, the product's newest published version (VERSIONS.md).

Jobs have a `kind` (a manual job has no schedule), `environments` with
sparse overlays and their own `next_run_at`, headers as a name -> value
object; run now takes `{environment}`; runs carry `environment`; usage
counts permanent jobs. A write owns the environments the caller may see
(the token's scope): a PUT replaces those entries and keeps every other.
"""

from __future__ import annotations

from collections.abc import Callable

from werkzeug.datastructures import MultiDict

from jobsd import errors
from jobsd.api.auth import Caller
from jobsd.api.listing import JOB_PARAMETERS, job_query
from jobsd.api.params import Query
from jobsd.api.spec import served_spec
from jobsd.api.v2026_08_07.documents import parse_job_document
from jobsd.api.v2026_08_07.render import render_job, render_run
from jobsd.job_model import Job, JobCounting, JobKind, JobWrite
from jobsd.messages import Run
from jobsd.run_filters import RunFilter
from jobsd.store.jobs import JobQuery

VERSION = "2026-08-07"
_SHOWN = frozenset(JobKind)
_LISTED = frozenset({JobKind.RECURRING, JobKind.MANUAL})  # one-offs only when asked for


class Dialect20260807:
    version = VERSION
    kinds = _SHOWN
    runs_page_size = 50
    run_now_body = True  # whether run now reads a request body

    def guard(self, caller: Caller) -> None:
        return None

    def parse_job(
        self, doc: object, *, path_slug: str | None, caller: Caller, stored: Job | None = None
    ) -> JobWrite:
        # Entries the caller cannot see stay as stored, so a one-off read with its
        # map narrowed to nothing is still aimed there: sent back, it aims nowhere new.
        aimed = stored is not None and any(e not in caller.visible for e in stored.environments)
        spec, entries = parse_job_document(
            doc,
            path_slug=path_slug,
            max_timeout_s=caller.plan.max_timeout,
            environments=caller.visible,
            aimed_elsewhere=aimed,
            stored_headers=() if stored is None else stored.spec.config.headers,
        )
        keep = frozenset() if _sets_overlap(doc) else frozenset({"overlap_policy"})
        return JobWrite(spec, entries, owns=frozenset(caller.visible), keep=keep)

    def render_job(self, job: Job, caller: Caller) -> dict[str, object]:
        return render_job(job, caller.visible)

    def render_run(self, run: Run) -> dict[str, object]:
        return render_run(run)

    def runs_filter(self, flt: RunFilter) -> RunFilter:
        return flt

    def job_query(self, args: MultiDict[str, str], caller: Caller) -> tuple[JobQuery, int, int]:
        query = Query(args, JOB_PARAMETERS)
        return job_query(query, caller, shown=_SHOWN, listed=_LISTED, default_sort="name")

    def run_now_target(
        self, job: Callable[[], Job], body: object, caller: Caller
    ) -> tuple[str, bool]:
        """The named environment, else the token's only one, else the job's only enabled one."""
        named = _named_environment(body)
        visible = caller.visible
        if named is not None:
            if named not in visible:
                raise errors.ValidationFailed(
                    [
                        errors.invalid(
                            "unknown_environment",
                            "/environment",
                            f"No environment {named!r} here; this token may name: "
                            f"{', '.join(visible)}.",
                        )
                    ]
                )
            return named, True
        if len(visible) == 1:
            return visible[0], True
        environments = job().environments
        enabled = [e for e in visible if (s := environments.get(e)) is not None and s.enabled]
        if len(enabled) == 1:
            return enabled[0], True
        where = f"it is enabled in {', '.join(enabled)}" if enabled else "it is enabled in none"
        raise errors.ValidationFailed(
            [
                errors.invalid(
                    "environment_required",
                    "/environment",
                    f"Name the environment to run in: {where} of {', '.join(visible)}.",
                )
            ]
        )

    def counting(self, default_environment: str) -> JobCounting:
        return JobCounting(enabled_in=None)

    def served_spec(self) -> bytes:
        return _SPEC


def _sets_overlap(doc: object) -> bool:
    """Whether a (valid) job document sets `overlap_policy`, an extension here too."""
    assert isinstance(doc, dict)
    data = doc["data"]
    return isinstance(data, dict) and "overlap_policy" in data["attributes"]


def _named_environment(body: object) -> str | None:
    """`environment` of a run-now body (`{environment}`, null, or none at all)."""
    if body is None:
        return None
    if not isinstance(body, dict):
        raise errors.ValidationFailed(
            [
                errors.invalid(
                    "invalid_type",
                    "",
                    'The body must be an object like {"environment": "production"}.',
                )
            ]
        )
    named = body.get("environment")
    if named is not None and not isinstance(named, str):
        raise errors.ValidationFailed(
            [errors.invalid("invalid_type", "/environment", "`environment` must be a string.")]
        )
    return named


_SPEC = served_spec(VERSION)
DIALECT = Dialect20260807()
