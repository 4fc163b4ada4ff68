"""Fifty clients fighting over a few slugs, against the real daemon.

The daemon runs in-process with its real hypercorn on an ephemeral port;
each client has its own connection and does a seeded random mix of create,
replace, pause, delete and read on the same four slugs, under a plan that
allows three enabled jobs. Meanwhile a watcher reads the SQLite file
read-only, over and over. What must hold:

- no 5xx, and only the statuses the spec gives these races (201, 200, 204;
  403 active_jobs_limit, 404 gone, 409 slug taken);
- at most one live job per slug, and at most `active_jobs_limit` enabled,
  at every moment the watcher looks, and at the end;
- versions: a job incarnation (told apart by `created_at`) starts at 1, each
  client sees its versions never go back, each successful PUT gives a
  version no one else got, and they add up: the PUTs of an incarnation
  produced exactly 2..N, where N is what the file holds at the end.
"""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from jobsd.clock import from_us, iso
from tests.conftest import JSONAPI
from tests.test_limits import Live, serving_daemon

CLIENTS = 50
OPS_PER_CLIENT = 16
SLUGS = ("s0", "s1", "s2", "s3")
LIMIT = 3
BODY = {"Content-Type": JSONAPI}
ALLOWED = {
    "POST": {201, 403, 409},
    "PUT": {200, 403, 404},
    "DELETE": {204, 404},
    "GET": {200, 404},
}


def document(slug: str, *, enabled: bool, name: str) -> dict[str, Any]:
    attributes = {
        "name": name,
        "enabled": enabled,
        "schedule": "0 0 1 1 *",
        "configuration": {"url": "http://127.0.0.1:9/never"},
    }
    return {"data": {"type": "job", "id": slug, "attributes": attributes}}


@dataclass
class Seen:
    """What every client observed, keyed by (slug, created_at): one incarnation."""

    put_versions: dict[tuple[str, str], list[int]] = field(
        default_factory=lambda: defaultdict(list)
    )
    created: list[tuple[str, str]] = field(default_factory=list)
    statuses: dict[str, dict[int, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    problems: list[str] = field(default_factory=list)


async def client_storm(live: Live, seed: int, seen: Seen) -> None:
    rng = random.Random(seed)
    last: dict[tuple[str, str], int] = {}
    async with live.client(timeout=60) as client:
        for i in range(OPS_PER_CLIENT):
            slug = rng.choice(SLUGS)
            op = rng.choice(["create", "create", "update", "pause", "delete", "get"])
            path = f"/api/v1/jobs/{slug}"
            if op == "create":
                doc = document(slug, enabled=rng.random() < 0.7, name=f"c{seed}-{i}")
                method, r = "POST", await client.post("/api/v1/jobs", json=doc, headers=BODY)
            elif op in ("update", "pause"):
                enabled = op == "update" and rng.random() < 0.7
                doc = document(slug, enabled=enabled, name=f"u{seed}-{i}")
                method, r = "PUT", await client.put(path, json=doc, headers=BODY)
            elif op == "delete":
                method, r = "DELETE", await client.delete(path)
            else:
                method, r = "GET", await client.get(path)
            seen.statuses[method][r.status_code] += 1
            if r.status_code not in ALLOWED[method]:
                seen.problems.append(f"{method} {path}: {r.status_code} {r.text[:300]}")
                continue
            if r.status_code in (403, 409):
                code = r.json()["errors"][0]["code"]
                expected = "active_jobs_limit" if r.status_code == 403 else "slug_taken"
                if code != expected:
                    seen.problems.append(f"{method} {path}: {r.status_code} {code}")
            if r.status_code not in (200, 201):
                continue
            attrs = r.json()["data"]["attributes"]
            key, version = (slug, attrs["created_at"]), attrs["version"]
            if method == "POST":
                if version != 1 or key in last:
                    seen.problems.append(f"create {key} answered version {version}")
                seen.created.append(key)
            elif method == "PUT":
                seen.put_versions[key].append(version)
                if version <= last.get(key, 1):
                    seen.problems.append(f"PUT {key}: {version} after {last.get(key)}")
            elif version < last.get(key, 0):
                seen.problems.append(f"GET {key}: {version} after {last[key]}")
            last[key] = max(version, last.get(key, 0))


def read_state(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        live_per_slug = conn.execute(
            "SELECT slug, COUNT(*) FROM jobs WHERE deleted_at_us IS NULL"
            " GROUP BY account_id, slug HAVING COUNT(*) > 1"
        ).fetchall()
        enabled = conn.execute(
            "SELECT COUNT(*) FROM jobs AS j JOIN job_environments AS e ON e.job_id = j.id"
            " WHERE j.account_id = 'acme' AND e.environment = 'production' AND e.enabled = 1"
            " AND j.deleted_at_us IS NULL"
        ).fetchone()[0]
        rows = conn.execute("SELECT id, slug, created_at_us, version FROM jobs").fetchall()
    finally:
        conn.close()
    return {"duplicates": live_per_slug, "enabled": enabled, "rows": rows}


@dataclass
class Watch:
    looks: int = 0
    max_enabled: int = 0
    violations: list[str] = field(default_factory=list)
    versions: dict[int, int] = field(default_factory=dict)

    def check(self, state: dict[str, Any]) -> None:
        self.looks += 1
        self.max_enabled = max(self.max_enabled, state["enabled"])
        if state["duplicates"]:
            self.violations.append(f"two live jobs per slug: {state['duplicates']}")
        if state["enabled"] > LIMIT:
            self.violations.append(f"{state['enabled']} enabled jobs, limit {LIMIT}")
        for pk, _slug, _created, version in state["rows"]:
            if version < self.versions.get(pk, 0):
                self.violations.append(f"job {pk} went from v{self.versions[pk]} to v{version}")
            self.versions[pk] = version


async def watch(db: Path, watcher: Watch, done: trio.Event) -> None:
    while not done.is_set():
        watcher.check(await trio.to_thread.run_sync(read_state, db))
        await trio.sleep(0.01)


async def test_fifty_clients_on_four_slugs(tmp_path: Path) -> None:
    seen, watcher, done = Seen(), Watch(), trio.Event()
    async with serving_daemon(tmp_path, active_jobs_limit=LIMIT) as live:
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch, live.db, watcher, done)
                async with trio.open_nursery() as storm:
                    for seed in range(CLIENTS):
                        storm.start_soon(client_storm, live, seed, seen)
                done.set()
        final = read_state(live.db)
    watcher.check(final)

    assert not seen.problems, seen.problems[:20]
    assert not watcher.violations, watcher.violations[:20]
    assert watcher.looks >= 3
    # The storm really raced: every kind of answer turned up.
    statuses = {m: dict(s) for m, s in seen.statuses.items()}
    assert sum(sum(s.values()) for s in statuses.values()) == CLIENTS * OPS_PER_CLIENT
    for method, status in [("POST", 201), ("POST", 409), ("PUT", 200), ("DELETE", 204)]:
        assert statuses[method].get(status, 0) > 0, statuses

    # Every incarnation a client created is in the file, and its PUTs add up.
    by_key: dict[tuple[str, str], int] = {
        (slug, iso(from_us(created)) or ""): version for _, slug, created, version in final["rows"]
    }
    assert len(by_key) == len(final["rows"])  # created_at tells incarnations apart
    assert set(seen.created) <= set(by_key)
    for key, versions in seen.put_versions.items():
        assert sorted(versions) == list(range(2, by_key[key] + 1)), (key, versions)
    for key in set(by_key) - set(seen.put_versions):
        assert by_key[key] == 1, key
