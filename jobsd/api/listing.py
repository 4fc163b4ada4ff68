"""`GET /jobs` and `GET /runs` parameters that both versions share.

Query parameters are additive across versions (VERSIONS.md): the newer
spec's job filters and sort work through 2026-06-04 too, each version with
its own default order and its own idea of which kinds a plain listing shows.
A bad value is a 400 naming the parameter, as for every parameter.
"""

from __future__ import annotations

from jobsd import errors
from jobsd.api.auth import Caller
from jobsd.api.params import Query
from jobsd.cursors import page_offset
from jobsd.job_model import JobKind
from jobsd.store.jobs import JobQuery
from jobsd.store.listing_sql import SORTS

JOB_PARAMETERS = (
    "filter[kind]",
    "filter[scheduled]",
    "filter[name]",
    "sort",
    "page[number]",
    "page[size]",
    "meta[total]",
)
MAX_OFFSET = 2**62  # past any real table; keeps SQLite's 64-bit OFFSET from overflowing


def job_query(
    query: Query,
    caller: Caller,
    *,
    shown: frozenset[JobKind],
    listed: frozenset[JobKind],
    default_sort: str,
    enabled_in: tuple[str, bool] | None = None,
    scheduled_in: tuple[str, ...] | None = None,
) -> tuple[JobQuery, int, int]:
    """(the store's query, page number, page size).

    `shown`: the kinds the version can show at all; `listed`: those a plain
    listing shows (a kind or scheduled filter widens it to `shown`).
    `scheduled_in`: the environments whose `next_run_at` the version shows,
    which `filter[scheduled]` asks about (None: every one the caller sees).
    """
    number = query.integer("page[number]", 1, 1)
    size = query.integer("page[size]", 1000, 1, 1000)
    raw_kind = query.text("filter[kind]")
    scheduled = query.boolean("filter[scheduled]")
    if raw_kind is not None:
        if raw_kind not in {k.value for k in JobKind}:
            choices = ", ".join(k.value for k in JobKind)
            raise errors.bad_parameter(
                "filter[kind]", f"filter[kind] must be one of {choices}, not '{raw_kind}'"
            )
        kinds = shown & {JobKind(raw_kind)}
    else:
        kinds = shown if scheduled is not None else listed
    sort = query.sort(default_sort, SORTS)
    return (
        JobQuery(
            kinds=frozenset(kinds),
            sort=sort,
            offset=min(page_offset(number, size), MAX_OFFSET),
            limit=size,
            with_total=bool(query.boolean("meta[total]")),
            enabled_in=enabled_in,
            scheduled_in=None
            if scheduled is None
            else (caller.visible if scheduled_in is None else scheduled_in, scheduled),
            name_contains=query.text("filter[name]"),
        ),
        number,
        size,
    )


def environments_filter(query: Query, caller: Caller) -> frozenset[str] | None:
    """`filter[environment]` of `GET /runs`, narrowed to what the caller may see.

    Omitted: every environment an unscoped token sees (history in one no longer
    configured included), or the scoped token's own. A name the caller does
    not have is a 400, as for an unknown one.
    """
    raw = query.text("filter[environment]")
    if raw is None:
        return caller.scope
    names = [name.strip() for name in raw.split(",")]
    unknown = [name for name in names if name not in caller.visible]
    if unknown or not names:
        raise errors.bad_parameter(
            "filter[environment]",
            f"filter[environment] names environments this token may see "
            f"({', '.join(caller.visible)}), comma-separated; not '{raw}'",
        )
    return frozenset(names)
