"""The API's fast read path keeps every guarantee of the slow one.

- Tokens are looked up in an index of the config in force
  (`jobsd.api.tokens`): a reload that removes a token refuses it on the very
  next request, one that narrows a scoped token narrows it at once, one that
  adds a token admits it at once, and a config swapped by any means (not
  only `Reloader`) is never answered from the old index.
- A job is read on the event loop's thread (`Engine.point_read`); when
  SQLite is busy the read is made again on a worker thread, which may wait.
  What `GET /jobs/{id}` answers is, byte for byte, the rendering of the job
  as the worker-thread read gave it, in both versions, for generated jobs.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobsd.api import jsonapi
from jobsd.api.auth import Caller
from jobsd.api.tokens import Tokens
from jobsd.api.versions import dialect
from jobsd.config import API_VERSIONS, load_config, token_sha256
from jobsd.job_model import Job
from jobsd.notify import Notifier
from jobsd.reload import Reloader
from jobsd.settings import Settings
from jobsd.store import environments_sql, jobs_sql
from jobsd.store.engine import Engine
from tests.api.test_documents import valid_documents
from tests.api.test_scoped_tokens import ACME, STAGING_TOKEN
from tests.conftest import TOKEN_A, TOKEN_B, Harness, config_text, job_doc, make_harness

NEW_TOKEN = "jobsd_test-token-added-by-a-reload"
NEW = {"Jobsd-Version": "2026-08-07"}


async def reloadable_with_warm(h: Harness, path: Path) -> Reloader:
    """`h` serving the config written at `path`, which a reload reads again, and a
    job `warm` enabled in production and staging."""
    path.write_text(config_text(path.parent, acme=ACME))
    started = load_config(path)
    h.ctx.settings.config = started
    reloader = Reloader(h.ctx.settings, path, Notifier(None), started)
    envs = {"production": {"enabled": True}, "staging": {"enabled": True}}
    assert (
        await h.post("/api/v1/jobs", job_doc("warm", environments=envs), headers=NEW)
    ).status_code == 201
    return reloader


async def test_a_reload_refuses_a_removed_token_at_once_and_admits_an_added_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobsd.toml"
    async with make_harness(tmp_path, acme=ACME) as h:
        reloader = await reloadable_with_warm(h, path)
        for token in (TOKEN_A, TOKEN_B, STAGING_TOKEN):
            assert (await h.get("/api/v1/usage", token=token)).status_code == 200
        assert (await h.get("/api/v1/usage", token=NEW_TOKEN)).status_code == 401

        revoked = config_text(tmp_path, acme=ACME).replace(
            token_sha256(TOKEN_A), token_sha256(NEW_TOKEN)
        )
        path.write_text(revoked.replace('environments = ["staging"]', 'environments = ["qa"]'))
        assert await reloader.reload()
        assert (await h.get("/api/v1/usage", token=TOKEN_A)).status_code == 401
        assert (await h.get("/api/v1/jobs/warm", token=TOKEN_A)).status_code == 401
        assert (await h.get("/api/v1/usage", token=NEW_TOKEN)).status_code == 200
        assert (await h.get("/api/v1/usage", token=TOKEN_B)).status_code == 200
        # The staging token now reaches qa only, where the job has no entry.
        seen = await h.get(
            "/api/v1/jobs/warm", token=STAGING_TOKEN, headers={"Jobsd-Version": "2026-08-07"}
        )
        assert seen.status_code == 200
        assert (await seen.get_json())["data"]["attributes"]["environments"] == {}

        path.write_text(config_text(tmp_path, acme=ACME))
        assert await reloader.reload()
        assert (await h.get("/api/v1/usage", token=TOKEN_A)).status_code == 200
        assert (await h.get("/api/v1/usage", token=NEW_TOKEN)).status_code == 401


async def test_the_index_follows_any_swap_of_the_config(tmp_path: Path) -> None:
    """Not only `Reloader`: whatever object is in force is the one answered from."""
    first = load_config_text(tmp_path, config_text(tmp_path))
    settings = Settings(first)
    tokens = Tokens()
    assert tokens.match(settings.config, token_sha256(TOKEN_A)) is not None
    # model_copy carries no derived state: the index must not come along with it.
    settings.config = first.model_copy(update={"accounts": first.accounts[1:]})
    assert tokens.match(settings.config, token_sha256(TOKEN_A)) is None
    assert tokens.match(settings.config, token_sha256(TOKEN_B)) is not None
    settings.config = first
    match = tokens.match(settings.config, token_sha256(TOKEN_A))
    assert match is not None and match.account.id == "acme" and match.scope is None


def load_config_text(tmp_path: Path, text: str) -> object:
    path = tmp_path / "swap.toml"
    path.write_text(text)
    return load_config(path)


async def test_a_point_read_runs_on_the_loop_and_waits_on_a_thread_only_when_busy(
    tmp_path: Path,
) -> None:
    """SQLite says busy to a WAL reader only in rare states (recovery after a
    crash); the busy answer is made here by the read itself, the first time,
    on the loop's thread, which is where the fallback decides."""
    engine = Engine(tmp_path / "point.sqlite3")
    engine.start(lambda conn: conn.execute("CREATE TABLE t (x INTEGER)"))
    try:
        await engine.write(lambda conn: conn.execute("INSERT INTO t VALUES (7)"))
        threads: list[str] = []

        def read(conn: sqlite3.Connection) -> int:
            threads.append(threading.current_thread().name)
            return int(conn.execute("SELECT x FROM t").fetchone()[0])

        assert await engine.point_read(read) == 7
        assert threads == [threading.main_thread().name]  # no hand-over to a thread

        def busy_on_the_loop(conn: sqlite3.Connection) -> int:
            if threading.current_thread() is threading.main_thread():
                exc = sqlite3.OperationalError("database is locked")
                exc.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
                raise exc
            return read(conn)

        threads.clear()
        assert await engine.point_read(busy_on_the_loop) == 7
        assert threads and threads[0] != threading.main_thread().name  # read on a worker

        def broken(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT x FROM no_such_table").fetchone()[0])

        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await engine.point_read(broken)  # not busy: raised, not retried
    finally:
        await engine.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await engine.point_read(read)


async def test_one_job_and_one_run_are_read_without_a_worker_thread(tmp_path: Path) -> None:
    """Point reads: with every reader thread's slot taken, both still answer."""
    async with make_harness(tmp_path) as h:
        assert (await h.post("/api/v1/jobs", job_doc("polled"))).status_code == 201
        run = await (await h.post("/api/v1/jobs/polled/actions/run")).get_json()
        limiter = h.store.engine._read_limiter  # type: ignore[attr-defined]
        holders = [object() for _ in range(int(limiter.total_tokens))]
        for holder in holders:
            limiter.acquire_on_behalf_of_nowait(holder)
        try:
            with trio.fail_after(5):
                assert (await h.get("/api/v1/jobs/polled")).status_code == 200
                assert (await h.get(f"/api/v1/runs/{run['data']['id']}")).status_code == 200
        finally:
            for holder in holders:
                limiter.release_on_behalf_of(holder)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents(), st.sampled_from(API_VERSIONS))
def test_a_job_read_on_the_loop_renders_byte_for_byte_as_the_thread_read_did(
    tmp_path_factory: pytest.TempPathFactory, doc: dict[str, object], version: str
) -> None:
    trio.run(compare_reads, tmp_path_factory.mktemp("read"), doc, version)


async def compare_reads(path: Path, doc: dict[str, object], version: str) -> None:
    async with make_harness(path) as h:
        assert (await h.post("/api/v1/jobs", doc)).status_code == 201
        slug = str(doc["data"]["id"])  # type: ignore[index]
        got = await h.get(f"/api/v1/jobs/{slug}", headers={"Jobsd-Version": version})
        assert got.status_code == 200
        jobs = h.store.jobs

        def read(conn: sqlite3.Connection) -> Job:
            row = jobs_sql.live_row(conn, "acme", slug)
            assert row is not None
            envs = environments_sql.env_rows(conn, row["id"])
            return jobs_sql.to_job(row, envs, jobs._keyring)

        job = await jobs._engine.read(read)  # on a worker thread, as every read was
        account = h.config.accounts[0]
        caller = Caller(
            account.id,
            h.config.plan_of(account),
            account.environments,
            None,
            account.api_version,
            version,
        )
        expected = jsonapi.document({"data": dialect(version).render_job(job, caller)})
        assert await got.get_data() == await expected.get_data()


async def test_a_list_that_waited_for_a_snapshot_is_rendered_in_the_scope_a_reload_left(
    tmp_path: Path,
) -> None:
    """`GET /jobs` finds its caller again once it holds a snapshot (`streaming.held_for`):
    a token narrowed by a reload while the list waited sees the job as it now may,
    never with the entries of the environment it no longer reaches."""
    path = tmp_path / "jobsd.toml"
    async with make_harness(tmp_path, acme=ACME) as h:
        reloader = await reloadable_with_warm(h, path)
        pool = h.store.engine.snapshots
        answers: list[Any] = []

        async def list_jobs() -> None:
            answers.append(await h.get("/api/v1/jobs", token=STAGING_TOKEN, headers=NEW))

        # The account's two snapshot slots held: the list waits for one.
        async with (
            trio.open_nursery() as nursery,
            pool.snapshot("acme"),
            pool.snapshot("acme"),
        ):
            nursery.start_soon(list_jobs)
            for _ in range(500):  # the list waits for a slot: at most 5 s
                if pool._owners["acme"].statistics().tasks_waiting:
                    break
                await trio.sleep(0.01)
            assert pool._owners["acme"].statistics().tasks_waiting == 1
            narrowed = config_text(tmp_path, acme=ACME)
            path.write_text(narrowed.replace('environments = ["staging"]', 'environments = ["qa"]'))
            assert await reloader.reload()
        (answer,) = answers
        body = await answer.get_json()
        assert answer.status_code == 200, body
        assert [job["attributes"]["environments"] for job in body["data"]] == [{}]
