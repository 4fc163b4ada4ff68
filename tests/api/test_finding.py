"""Finding runs through the real app and store, held to brute-force oracles.

- Walking any filter x sort with `links.next` while runs are added yields
  each matching run at most once, in order, and every matching run that
  existed before the walk began.
- `last_run_only` equals the newest terminal run per (job, environment)
  among the runs the filters keep, computed the slow way.
- `run_stats` equals counting the inserted runs by hand.
Every response is checked against the served spec of its version.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from jobsd.buckets import BUCKETS_US, bucket_start_us
from jobsd.clock import from_us, iso
from jobsd.intervals import parse_interval
from jobsd.run_filters import RunFilter
from jobsd.run_order import SORT_CHOICES, compare, parse_sort, position, sort_positions
from jobsd.runs import RunStatus
from tests.api.conformance import NEW, SEED, Versioned
from tests.api.finding_data import ENVIRONMENTS, JOBS, TRIGGERS, Made, insert, job_pks, specs
from tests.conftest import make_harness

ENVS = 'environments = ["production", "staging"]'
PROFILE = settings(
    max_examples=25,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_counter = itertools.count()


async def _jobs(v: Versioned) -> None:
    for slug in JOBS:
        doc = {
            "data": {
                "type": "job",
                "id": slug,
                "attributes": {
                    "name": f"Job {slug}",
                    "configuration": {"url": "https://example.invalid/"},
                    "environments": {e: {"enabled": True} for e in ENVIRONMENTS},
                },
            }
        }
        r = await v.post_job(doc)
        assert r.status == 201, r.body


def _bound(us: int, delta: int) -> str:
    return iso(from_us(us + delta)) or "*"


@st.composite
def interval_texts(draw: st.DrawFn, instants: list[int]) -> str | None:
    if not instants or draw(st.booleans()):
        return None
    a, b = sorted(draw(st.lists(st.sampled_from(instants), min_size=2, max_size=2)))
    low = "*" if draw(st.booleans()) else _bound(a, draw(st.sampled_from([-1, 0])))
    high = "*" if draw(st.booleans()) else _bound(b, draw(st.sampled_from([0, 1])))
    return draw(st.sampled_from("[(")) + f"{low},{high}" + draw(st.sampled_from("])"))


@st.composite
def queries(draw: st.DrawFn, made: list[Made]) -> dict[str, str]:
    params: dict[str, str] = {}

    def some(name: str, choices: tuple[str, ...] | list[str]) -> None:
        if draw(st.booleans()):
            values = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3))
            params[name] = ",".join(values)

    some("filter[status]", [s.value for s in RunStatus])
    some("filter[trigger]", [*TRIGGERS, "RETRY"])
    some("filter[environment]", ENVIRONMENTS)
    if draw(st.integers(0, 3)) == 0:
        params["filter[job]"] = draw(st.sampled_from([*JOBS, "nope"]))
    for name in ("created_at", "started_at", "finished_at", "scheduled_for"):
        values = [getattr(m, f"{name}_us") for m in made]
        text = draw(interval_texts([v for v in values if v is not None]))
        if text is not None:
            params[f"filter[{name}]"] = text
    if draw(st.booleans()):
        params["sort"] = draw(st.sampled_from(SORT_CHOICES))
    return params


def run_filter(params: dict[str, str], version: str | None = NEW) -> RunFilter:
    """The filter as `version` means it: the seed shows a retry as a RERUN."""

    def choices(name: str) -> frozenset[str] | None:
        raw = params.get(name)
        values = None if raw is None else frozenset(raw.split(","))
        if name == "filter[trigger]" and version == SEED and values and "RERUN" in values:
            values |= {"RETRY"}
        return values

    intervals = {
        name: parse_interval(params.get(f"filter[{name}]", "(*,*)"))
        for name in ("created_at", "started_at", "finished_at", "scheduled_for")
    }
    return RunFilter(
        job=params.get("filter[job]"),
        statuses=choices("filter[status]"),
        triggers=choices("filter[trigger]"),
        environments=choices("filter[environment]"),
        **intervals,
    )


async def walk(
    v: Versioned, params: dict[str, str], size: int, between: Any = None, max_pages: int = 200
) -> list[str]:
    url = "/api/v1/runs?" + urlencode({**params, "page[size]": str(size)})
    seen: list[str] = []
    for page in range(max_pages):
        r = await v.call("GET", url, "/api/v1/runs")
        assert r.status == 200, (url, r.body)
        assert len(r.body["data"]) <= size
        seen += [run["id"] for run in r.body["data"]]
        nxt = r.body["links"]["next"]
        if nxt is None:
            return seen
        assert r.body["data"], "a next link after an empty page"
        if between is not None:
            await between(page)
        parts = urlsplit(nxt)
        url = f"{parts.path}?{parts.query}"
    raise AssertionError("the walk did not end")


@PROFILE
@given(data=st.data(), rows=st.lists(specs, max_size=40), size=st.integers(1, 7))
async def test_walks_see_each_matching_run_once_in_order(
    tmp_path: Path, data: st.DataObject, rows: list[Any], size: int
) -> None:
    async with make_harness(tmp_path / f"w{next(_counter)}", acme=ENVS) as h:
        await _jobs(Versioned(h))
        v = Versioned(h, data.draw(st.sampled_from([NEW, SEED])))
        pks = await h.store.engine.read(job_pks)
        made = await h.store.engine.write(lambda c: [insert(c, pks, s) for s in rows])
        params = data.draw(queries(made))
        added_specs = data.draw(st.lists(st.lists(specs, max_size=3), max_size=6))
        everything = {m.id: m for m in made}

        async def add(page: int) -> None:
            if page < len(added_specs):
                more = await h.store.engine.write(
                    lambda c: [insert(c, pks, s) for s in added_specs[page]]
                )
                everything.update({m.id: m for m in more})

        seen = await walk(v, params, size, add)
    flt, sort = run_filter(params, v.version), parse_sort(params.get("sort", "-created_at"))
    assert len(seen) == len(set(seen))
    assert all(flt.keeps(**everything[i].fields()) for i in seen)  # type: ignore[arg-type]
    positions = [position(sort, everything[i].keys()) for i in seen]
    assert all(compare(sort, a, b) < 0 for a, b in itertools.pairwise(positions))
    expected = [m.id for m in made if flt.keeps(**m.fields())]  # type: ignore[arg-type]
    assert set(expected) <= set(seen)


def newest_terminal(flt: RunFilter, made: list[Made]) -> set[str]:
    best: dict[tuple[str, str], Made] = {}
    for m in made:
        if not RunStatus(m.status).terminal or not flt.keeps(**m.fields()):  # type: ignore[arg-type]
            continue
        group = (m.job, m.environment)
        if group not in best or (m.created_at_us, m.seq) > (
            best[group].created_at_us,
            best[group].seq,
        ):
            best[group] = m
    return {m.id for m in best.values()}


@PROFILE
@given(data=st.data(), rows=st.lists(specs, max_size=40), size=st.integers(1, 5))
async def test_last_run_only_is_the_newest_terminal_run_per_job_and_environment(
    tmp_path: Path, data: st.DataObject, rows: list[Any], size: int
) -> None:
    async with make_harness(tmp_path / f"l{next(_counter)}", acme=ENVS) as h:
        v = Versioned(h)
        await _jobs(v)
        pks = await h.store.engine.read(job_pks)
        made = await h.store.engine.write(lambda c: [insert(c, pks, s) for s in rows])
        params = {**data.draw(queries(made)), "last_run_only": "true"}
        seen = await walk(v, params, size)
    flt, sort = run_filter(params), parse_sort(params.get("sort", "-created_at"))
    by_id = {m.id: m for m in made}
    expected = newest_terminal(flt, made)
    assert len(seen) == len(set(seen)) and set(seen) == expected
    want = sort_positions(sort, [position(sort, by_id[i].keys()) for i in expected])
    assert [by_id[i].seq for i in seen] == [p.seq for p in want]


@PROFILE
@given(data=st.data(), rows=st.lists(specs, max_size=50))
async def test_run_stats_count_what_a_brute_force_count_does(
    tmp_path: Path, data: st.DataObject, rows: list[Any]
) -> None:
    async with make_harness(tmp_path / f"s{next(_counter)}", acme=ENVS) as h:
        await _jobs(Versioned(h))
        v = Versioned(h, data.draw(st.sampled_from([NEW, SEED])))
        pks = await h.store.engine.read(job_pks)
        made = await h.store.engine.write(lambda c: [insert(c, pks, s) for s in rows])
        # Some runs change status and some are deleted after they were counted.
        changed = data.draw(st.lists(st.sampled_from(made), max_size=5)) if made else []
        for m in changed:
            await h.store.engine.write(
                lambda c, m=m: c.execute(
                    "UPDATE runs SET status = 'CANCELED', failure_reason = NULL, "
                    "finished_at_us = coalesce(finished_at_us, created_at_us) WHERE id = ?",
                    (m.id,),
                )
            )
        gone = data.draw(st.lists(st.sampled_from(made), max_size=3)) if made else []
        for m in gone:
            await h.store.engine.write(
                lambda c, m=m: c.execute("DELETE FROM runs WHERE id = ?", (m.id,))
            )
        params: dict[str, str] = {}
        created = data.draw(interval_texts([m.created_at_us for m in made]))
        if created is not None:
            params["filter[created_at]"] = created
        if data.draw(st.booleans()):
            params["filter[environment]"] = data.draw(st.sampled_from(ENVIRONMENTS))
        bucket = data.draw(st.one_of(st.none(), st.sampled_from(list(BUCKETS_US))))
        if bucket is not None:
            params["bucket"] = bucket
        r = await v.call("GET", "/api/v1/run_stats?" + urlencode(params), "/api/v1/run_stats")
    assert r.status == 200, r.body
    stats = r.body["data"]["attributes"]
    assert r.body["data"]["id"] == "current" and r.body["data"]["type"] == "run_stat"
    interval = parse_interval(params.get("filter[created_at]", "(*,*)"))
    status_now = {m.id: m.status for m in made} | {m.id: "CANCELED" for m in changed}
    kept = [
        m
        for m in made
        if m not in gone
        and m.created_at_us in interval
        and params.get("filter[environment]", m.environment) == m.environment
    ]
    tally = Counter(status_now[m.id] for m in kept)
    assert stats["total"] == len(kept)
    assert stats["tally"] == {s.value.lower(): tally[s.value] for s in RunStatus}
    if bucket is None:
        assert stats["buckets"] is None
    else:
        size = BUCKETS_US[bucket]
        counts = Counter(bucket_start_us(m.created_at_us, size) for m in kept)
        assert stats["buckets"] == [
            {"bucket": iso(from_us(b)), "count": counts[b]} for b in sorted(counts)
        ]
    failed = sorted(
        (m for m in kept if status_now[m.id] == "FAILED"),
        key=lambda m: (m.created_at_us, m.seq),
        reverse=True,
    )[:3]
    assert [
        (f["job"], f["job_name"], f["failure_reason"], f["created_at"])
        for f in stats["recent_failures"]
    ] == [(m.job, f"Job {m.job}", m.failure_reason, iso(from_us(m.created_at_us))) for m in failed]


BAD = [
    ("/api/v1/runs", "filter[status]", "DONE"),
    ("/api/v1/runs", "filter[status]", "FAILED,"),
    ("/api/v1/runs", "filter[trigger]", "manual"),
    ("/api/v1/runs", "filter[environment]", "qa"),
    ("/api/v1/runs", "filter[created_at]", "2026-06-01T00:00:00Z"),
    ("/api/v1/runs", "filter[started_at]", "[2026-06-08T00:00:00Z,2026-06-01T00:00:00Z)"),
    ("/api/v1/runs", "filter[finished_at]", "[2026-06-01,*)"),
    ("/api/v1/runs", "filter[scheduled_for]", "[*,2026-02-30T00:00:00Z)"),
    ("/api/v1/runs", "sort", "name"),
    ("/api/v1/runs", "sort", "--created_at"),
    ("/api/v1/runs", "last_run_only", "yes"),
    ("/api/v1/runs", "page[size]", "0"),
    ("/api/v1/runs", "page[size]", "1001"),
    ("/api/v1/runs", "page[after]", "garbage"),
    ("/api/v1/runs", "filter[colour]", "red"),
    ("/api/v1/run_stats", "bucket", "2h"),
    ("/api/v1/run_stats", "filter[created_at]", "(2026-06-02T00:00:00Z,2026-06-01T00:00:00Z]"),
    ("/api/v1/run_stats", "filter[environment]", "production,qa"),
    ("/api/v1/run_stats", "filter[status]", "FAILED"),
]


async def test_bad_input_is_a_400_naming_the_parameter(tmp_path: Path) -> None:
    async with make_harness(tmp_path, acme=ENVS) as h:
        v = Versioned(h)
        await _jobs(v)
        for path, name, value in BAD:
            for version in (NEW, SEED):
                r = await Versioned(h, version).call(
                    "GET", f"{path}?{urlencode({name: value})}", path
                )
                assert r.status == 400, (name, value, r.body)
                assert r.body["errors"][0]["source"]["parameter"] == name, r.body


async def test_a_cursor_is_bound_to_its_sort_through_the_api(tmp_path: Path) -> None:
    async with make_harness(tmp_path, acme=ENVS) as h:
        v = Versioned(h)
        await _jobs(v)
        for _ in range(3):
            assert (await v.run_now("alpha", {"environment": "staging"})).status == 200
        r = await v.list_runs("?sort=-status&page[size]=1")
        nxt = urlsplit(r.body["links"]["next"])
        assert "sort=-status" in nxt.query
        other = nxt.query.replace("sort=-status", "sort=status")
        bad = await v.call("GET", f"{nxt.path}?{other}", "/api/v1/runs")
        assert bad.status == 400
        assert "issued for sort=-status" in bad.body["errors"][0]["detail"]
        no_sort = "&".join(p for p in nxt.query.split("&") if not p.startswith("sort="))
        assert (await v.call("GET", f"{nxt.path}?{no_sort}", "/api/v1/runs")).status == 400
        ok = await v.call("GET", f"{nxt.path}?{nxt.query}", "/api/v1/runs")
        assert ok.status == 200 and len(ok.body["data"]) == 1


async def test_next_scheduled_and_names_now(tmp_path: Path) -> None:
    async with make_harness(tmp_path, acme=ENVS) as h:
        v = Versioned(h)
        doc = {
            "data": {
                "type": "job",
                "id": "soon",
                "attributes": {
                    "name": "Soon",
                    "schedule": "*/5 * * * *",
                    "configuration": {"url": "https://example.invalid/"},
                    "environments": {"staging": {"enabled": True}},
                },
            }
        }
        assert (await v.post_job(doc)).status == 201
        stats = (await v.call("GET", "/api/v1/run_stats", "/api/v1/run_stats")).body
        assert stats["data"]["attributes"]["next_scheduled"] == {
            "job": "soon",
            "job_name": "Soon",
            "scheduled_for": "2026-06-05T02:05:00Z",
            "environment": "staging",
        }
        only_prod = "/api/v1/run_stats?filter[environment]=production"
        assert (await v.call("GET", only_prod, "/api/v1/run_stats")).body["data"]["attributes"][
            "next_scheduled"
        ] is None
        run = (await v.run_now("soon", {"environment": "staging"})).body["data"]["id"]
        await h.store.engine.write(
            lambda c: c.execute(
                "UPDATE runs SET status = 'FAILED', failure_reason = 'TIMEOUT', "
                "finished_at_us = created_at_us WHERE id = ?",
                (run,),
            )
        )
        assert (await v.delete_job("soon")).status == 204
        stats = (await v.call("GET", "/api/v1/run_stats", "/api/v1/run_stats")).body
        (failure,) = stats["data"]["attributes"]["recent_failures"]
        assert failure["job"] == "soon" and failure["job_name"] is None  # the job is gone
        assert stats["data"]["attributes"]["next_scheduled"] is None
