"""The query parameters of `GET /runs` and `GET /run_stats`, read strictly.

Both API versions take all of them (query parameters are additive); only
the page size's default differs, and the caller's version passes it in.
Every refusal is a 400 naming the parameter and saying what would do, and
is raised before the store is asked anything.

`links.next` repeats the request's own parameters (as the client spelt
them) with the next cursor, so following it keeps the filters and the sort
the cursor is bound to. The parameter names keep their brackets literal
(`page[after]=`, as JSON:API writes them): the official SDK reads the
platform's cursors by slicing `links.next` at `page[after]=` (its audit
client's `_extract_next_cursor`), so a percent-encoded name would end a
client's walk after one page. Values stay fully encoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from jobsd import errors
from jobsd.api.auth import Caller
from jobsd.api.listing import environments_filter
from jobsd.api.params import Query
from jobsd.cursors import CursorError, decode_cursor, encode_cursor
from jobsd.intervals import Interval, IntervalError, parse_interval
from jobsd.run_filters import STATUS_CHOICES, TRIGGER_CHOICES, RunFilter, parse_choices
from jobsd.run_order import DEFAULT_SORT, Position, RunSort, parse_sort
from jobsd.store.run_listing import RunQuery

INTERVALS = ("created_at", "started_at", "finished_at", "scheduled_for")
RUN_PARAMETERS = (
    "filter[job]",
    "filter[status]",
    "filter[trigger]",
    "filter[environment]",
    *(f"filter[{name}]" for name in INTERVALS),
    "last_run_only",
    "sort",
    "page[size]",
    "page[after]",
)
STATS_PARAMETERS = ("filter[created_at]", "filter[environment]", "bucket")
MAX_PAGE_SIZE = 1000


def interval(query: Query, name: str) -> Interval:
    raw = query.text(name)
    if raw is None:
        return Interval()
    try:
        return parse_interval(raw)
    except IntervalError as exc:
        raise errors.bad_parameter(name, f"{name} {exc}") from None


def _choices(query: Query, name: str, choices: Sequence[str]) -> frozenset[str] | None:
    raw = query.text(name)
    if raw is None:
        return None
    try:
        return parse_choices(raw, choices)
    except ValueError as exc:
        raise errors.bad_parameter(name, f"{name} {exc}") from None


def run_sort(query: Query) -> RunSort:
    raw = query.text("sort")
    if raw is None:
        return DEFAULT_SORT
    try:
        return parse_sort(raw)
    except ValueError as exc:
        raise errors.bad_parameter("sort", str(exc)) from None


def run_query(query: Query, caller: Caller, default_size: int) -> RunQuery:
    size = query.integer("page[size]", default_size, 1, MAX_PAGE_SIZE)
    flt = RunFilter(
        job=query.text("filter[job]"),
        statuses=_choices(query, "filter[status]", STATUS_CHOICES),
        triggers=_choices(query, "filter[trigger]", TRIGGER_CHOICES),
        environments=environments_filter(query, caller),
        **{name: interval(query, f"filter[{name}]") for name in INTERVALS},
    )
    sort = run_sort(query)
    after: Position | None = None
    if (raw := query.text("page[after]")) is not None:
        try:
            after = decode_cursor(raw, sort)
        except CursorError as exc:
            raise errors.bad_parameter("page[after]", str(exc)) from None
    last_run_only = bool(query.boolean("last_run_only"))
    return RunQuery(flt, sort, size, after, last_run_only)


def next_link(base_url: str, query: Query, asked: RunQuery, after: Position | None) -> str | None:
    if after is None:
        return None
    params = {
        name: value
        for name in RUN_PARAMETERS
        if name not in ("page[size]", "page[after]") and (value := query.text(name)) is not None
    }
    params["page[size]"] = str(asked.limit)
    params["page[after]"] = encode_cursor(asked.sort, after)
    # Names are RUN_PARAMETERS (letters, `_`, brackets): safe as written.
    return f"{base_url}?" + "&".join(f"{n}={quote(v, safe='')}" for n, v in params.items())
