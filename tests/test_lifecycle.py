"""Clean stop and config reload, with real processes and in-process.

A gate target holds `/gate` requests until the test opens the gate, so "a
run that answers within the grace" is a run the test releases after the
stop began, and `/hang` never answers: no timing rests on a real sleep.
The child-process tests drive `python -m jobsd serve` with signals, as
systemd would; they run their blocking calls in threads so the target keeps
serving on the test's event loop.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from jobsd.api.app import create_app
from jobsd.config import Config, load_config, parse_config, token_sha256
from jobsd.daemon import DaemonOptions, run_daemon
from jobsd.job_model import HttpConfig
from jobsd.lifecycle import Lifecycle, essential, run_signals
from jobsd.notify import Notifier
from jobsd.plans import NO_PLAN
from jobsd.reload import Reloader, describe_change, runs_included_now, signs_requests_now
from jobsd.settings import Health, Settings
from tests.conftest import JSONAPI, TOKEN_A, TOKEN_B, config_text
from tests.daemon_process import DaemonProcess
from tests.model import create_job, seed_job
from tests.target import Target
from tests.test_notify import FakeSystemd

TOKEN_C = "jobsd_test-token-added-by-a-reload"
GRACE_S = 2


@dataclass
class GateTarget(Target):
    gate: trio.Event = field(default_factory=trio.Event)
    paths_seen: set[str] = field(default_factory=set)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths_seen.add(scope["path"])
            if scope["path"] == "/gate":
                await self.gate.wait()
        await super().app(scope, receive, send)

    async def wait_for(self, *paths: str) -> None:
        with trio.fail_after(20):
            while not set(paths) <= self.paths_seen:
                await trio.sleep(0.02)


@asynccontextmanager
async def open_gate_target() -> AsyncIterator[GateTarget]:
    target = GateTarget()
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.1
    async with trio.open_nursery() as nursery:
        target.url = (await nursery.start(serve, target.app, config))[0]  # type: ignore[arg-type]
        yield target
        target.gate.set()
        nursery.cancel_scope.cancel()


def lifecycle_config(tmp_path: Path, *, workers: int, **kwargs: Any) -> str:
    text = config_text(tmp_path, **kwargs)
    return text.replace("workers = 4", f"workers = {workers}\nshutdown_grace_s = {GRACE_S}")


def job(slug: str, url: str, **configuration: Any) -> dict[str, Any]:
    attributes = {
        "name": slug,
        "schedule": "0 0 1 1 *",
        "enabled": False,  # only the test's run-now requests make runs
        "configuration": {"url": url, "timeout": 30, **configuration},
    }
    return {"data": {"type": "job", "id": slug, "attributes": attributes}}


class Api:
    def __init__(self, url: str) -> None:
        self.client = httpx2.AsyncClient(base_url=url, trust_env=False, timeout=10)

    async def call(self, method: str, path: str, token: str = TOKEN_A, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": JSONAPI}
        return await self.client.request(method, path, headers=headers, **kw)

    async def create(self, doc: dict[str, Any]) -> None:
        r = await self.call("POST", "/api/v1/jobs", json=doc)
        assert r.status_code == 201, r.text

    async def run_now(self, slug: str) -> str:
        r = await self.call("POST", f"/api/v1/jobs/{slug}/actions/run")
        assert r.status_code == 200, r.text
        return str(r.json()["data"]["id"])

    async def run(self, run_id: str) -> dict[str, Any]:
        r = await self.call("GET", f"/api/v1/runs/{run_id}")
        return r.json()["data"]["attributes"]  # type: ignore[no-any-return]

    async def wait_terminal(self, run_id: str) -> dict[str, Any]:
        with trio.fail_after(20):
            while (attrs := await self.run(run_id))["status"] in ("PENDING", "RUNNING"):
                await trio.sleep(0.05)
        return attrs

    async def aclose(self) -> None:
        await self.client.aclose()


async def wait_refused(url: str) -> None:
    """Until a new connection is refused: the API stopped accepting."""
    with trio.fail_after(10):
        while True:
            try:
                async with httpx2.AsyncClient(trust_env=False, timeout=2) as fresh:
                    await fresh.get(f"{url}/healthz")
            except httpx2.ConnectError:
                return
            await trio.sleep(0.02)


async def run_until_stopped(
    options: DaemonOptions,
    stop: trio.Event,
    stopped: trio.Event,
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    await run_daemon(options, stop, task_status=task_status)
    stopped.set()


def stored_runs(db: Path) -> dict[str, sqlite3.Row]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM runs").fetchall()
    return {row["id"]: row for row in rows}


# -- real processes -------------------------------------------------------------


async def test_sigterm_stops_cleanly_and_queued_runs_survive(tmp_path: Path) -> None:
    config = tmp_path / "jobsd.toml"
    config.write_text(lifecycle_config(tmp_path, workers=2))
    async with open_gate_target() as target:
        daemon = DaemonProcess(["serve", "--config", str(config)], tmp_path)
        await trio.to_thread.run_sync(daemon.start)
        try:
            api = Api(daemon.url)
            await api.create(job("slow", f"{target.url}/gate"))
            await api.create(job("hang", f"{target.url}/hang"))
            await api.create(job("queued", f"{target.url}/fast"))
            slow, hang = await api.run_now("slow"), await api.run_now("hang")
            await target.wait_for("/gate", "/hang")  # both workers busy
            queued = await api.run_now("queued")
            assert (await api.run(queued))["status"] == "PENDING"
            await api.aclose()

            began = trio.current_time()
            daemon.signal(signal.SIGTERM)
            await wait_refused(daemon.url)
            target.gate.set()  # answers well within the grace
            status = await trio.to_thread.run_sync(daemon.stop)
            took_s = trio.current_time() - began
        finally:
            daemon.__exit__(None, None, None)
        assert status == 0, daemon.stderr()
        assert GRACE_S <= took_s < GRACE_S + 2.5, took_s

        runs = stored_runs(tmp_path / "jobsd.sqlite3")
        assert runs[slow]["status"] == "SUCCEEDED"
        assert (runs[hang]["status"], runs[hang]["failure_reason"]) == ("FAILED", "WORKER_LOST")
        assert runs[hang]["error"] == (
            f"jobsd stopped and shutdown_grace_s ({GRACE_S} s) ran out before this run's "
            "request finished"
        )
        assert runs[queued]["status"] == "PENDING" and runs[queued]["started_at_us"] is None
        assert "/fast" not in target.paths_seen
        assert "stopping (received SIGTERM)" in daemon.stderr()

        # The next start (in-process: quicker) runs what was queued, and a stop
        # with nothing in flight does not wait out the grace.
        bound: list[str] = []
        options = DaemonOptions(load_config(config), announce=bound.extend)
        stop, stopped = trio.Event(), trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(run_until_stopped, options, stop, stopped)
            api = Api(bound[0])
            assert (await api.wait_terminal(queued))["status"] == "SUCCEEDED"
            assert (await api.run(hang))["failure_reason"] == "WORKER_LOST"
            await api.aclose()
            began = trio.current_time()
            stop.set()
            await stopped.wait()
            assert trio.current_time() - began < GRACE_S / 2, "waited out a grace nobody needed"


async def test_sighup_reloads_tokens_and_plans_and_refuses_a_bad_file(tmp_path: Path) -> None:
    config = tmp_path / "jobsd.toml"
    original = lifecycle_config(tmp_path, workers=1)
    config.write_text(original)
    async with open_gate_target() as target:
        daemon = DaemonProcess(["serve", "--config", str(config)], tmp_path)
        await trio.to_thread.run_sync(daemon.start)
        api = Api(daemon.url)
        try:
            await api.create(job("slow", f"{target.url}/gate"))
            await api.create(job("next", f"{target.url}/next"))
            slow = await api.run_now("slow")
            await target.wait_for("/gate")
            queued = await api.run_now("next")  # waits behind slow: one worker

            edited = (
                original.replace(
                    f'["{token_sha256(TOKEN_A)}"]',
                    f'["{token_sha256(TOKEN_A)}", "{token_sha256(TOKEN_C)}"]',
                )
                .replace(f'["{token_sha256(TOKEN_B)}"]', "[]")
                .replace("runs_included = 100", "runs_included = 1")
            )
            assert edited.count("runs_included = 1\n") == 1
            config.write_text(edited)
            daemon.signal(signal.SIGHUP)
            with trio.fail_after(10):
                while (await api.call("GET", "/api/v1/usage", TOKEN_C)).status_code != 200:
                    await trio.sleep(0.05)
            assert (await api.call("GET", "/api/v1/usage", TOKEN_B)).status_code == 401
            usage = (await api.call("GET", "/api/v1/usage")).json()["data"]["attributes"]
            assert usage["runs_included"] == 1 and usage["runs_used"] == 1

            target.gate.set()
            # In flight across the reload: finishes. Queued before it: claimed under
            # the plan in force when it starts, which the slow run has used up.
            assert (await api.wait_terminal(slow))["status"] == "SUCCEEDED"
            queued_attrs = await api.wait_terminal(queued)
            assert queued_attrs["failure_reason"] == "QUOTA_EXCEEDED", queued_attrs
            assert "/next" not in target.paths_seen

            config.write_text(edited.replace("[scheduler]", "[scheduler]\nwrokers = 2"))
            daemon.signal(signal.SIGHUP)
            with trio.fail_after(10):
                while "reload refused" not in daemon.stderr():
                    await trio.sleep(0.05)
            assert "scheduler.wrokers: unknown key" in daemon.stderr()
            assert (await api.call("GET", "/api/v1/usage", TOKEN_C)).status_code == 200
            assert (await api.call("GET", "/api/v1/usage", TOKEN_B)).status_code == 401
            assert (await api.call("GET", "/healthz")).status_code == 200
            await api.aclose()
            assert await trio.to_thread.run_sync(daemon.stop) == 0
        finally:
            daemon.__exit__(None, None, None)


# -- in-process ---------------------------------------------------------------


async def test_stop_in_process(tmp_path: Path) -> None:
    """Health turns 503 at once, nothing new fires, the grace is kept, then no more."""
    fake = FakeSystemd(str(tmp_path / "notify.sock"))
    config = parse_config(lifecycle_config(tmp_path, workers=2))
    bound: list[str] = []
    stop, stopped = trio.Event(), trio.Event()
    options = DaemonOptions(config, announce=bound.extend, notifier=Notifier(fake.address))
    async with open_gate_target() as target, trio.open_nursery() as nursery:
        ctx = await nursery.start(run_until_stopped, options, stop, stopped)
        assert fake.receive(5)["READY"] == "1"
        api = Api(bound[0])
        await api.create(job("slow", f"{target.url}/gate"))
        await api.create(job("hang", f"{target.url}/hang"))
        slow, hang = await api.run_now("slow"), await api.run_now("hang")
        await target.wait_for("/gate", "/hang")
        await api.aclose()

        began = trio.current_time()
        stop.set()
        with trio.fail_after(5):
            while not ctx.health.stopping:
                await trio.sleep(0)
        assert (await create_app(ctx).test_client().get("/healthz")).status_code == 503
        assert fake.receive(5) == {
            "STOPPING": "1",
            "STATUS": "stopping (asked to stop)",
            "EXTEND_TIMEOUT_USEC": str((GRACE_S + 15) * 1_000_000),
        }
        await wait_refused(bound[0])
        # A job due at once, written behind the API's back: the scheduler is gone.
        spec = seed_job("late", "late", None, True, "now", HttpConfig(f"{target.url}/late"))
        await create_job(ctx.store, "acme", spec, -1)
        target.gate.set()
        await stopped.wait()
        took_s = trio.current_time() - began
    assert GRACE_S <= took_s < GRACE_S + 1.5, took_s
    runs = stored_runs(config.storage.path)
    assert runs[slow]["status"] == "SUCCEEDED"
    assert runs[hang]["failure_reason"] == "WORKER_LOST"
    assert "shutdown_grace_s" in runs[hang]["error"]
    assert not [r for r in runs.values() if r["job_slug"] == "late"]
    assert "/late" not in target.paths_seen
    fake.close()


async def test_asked_to_stop_while_starting(tmp_path: Path) -> None:
    fake = FakeSystemd(str(tmp_path / "notify.sock"))
    config = parse_config(lifecycle_config(tmp_path, workers=1))
    bound: list[str] = []
    stop = trio.Event()
    stop.set()
    options = DaemonOptions(config, announce=bound.extend, notifier=Notifier(fake.address))
    with trio.fail_after(10):
        await run_daemon(options, stop)
    assert bound == [] and fake.drain() == []
    fake.close()


async def test_an_actor_that_returns_while_serving_is_an_error() -> None:
    lifecycle = Lifecycle(Health(), Notifier(), trio.Event(), 1)

    async def quits(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    with pytest.raises(RuntimeError, match="the scheduler stopped while jobsd was not stopping"):
        await essential("scheduler", lifecycle, quits)
    lifecycle.stop.set()
    await essential("scheduler", lifecycle, quits)


# -- the reloader ---------------------------------------------------------------


async def test_reloader_swaps_accounts_plans_and_tokens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jobsd.toml"
    path.write_text(config_text(tmp_path))
    started = load_config(path)
    # As with `--listen`: the running config differs from the file.
    running = started.model_copy(
        update={"server": started.server.model_copy(update={"listen": "127.0.0.1:9"})}
    )
    settings = Settings(running)
    runs_included_of = runs_included_now(settings)
    fake = FakeSystemd(str(tmp_path / "notify.sock"))
    reloader = Reloader(settings, path, Notifier(fake.address), started)
    assert runs_included_of("acme") == 100

    path.write_text(
        config_text(tmp_path, runs_included=7, max_timeout=30)
        .replace('[[accounts]]\nid = "other"', '[[accounts]]\nid = "newco"')
        .replace('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nkeep_alive_timeout_s = 9')
    )
    with caplog.at_level(logging.INFO, logger="jobsd.reload"):
        assert await reloader.reload()
    assert runs_included_of("acme") == 7
    assert runs_included_of("other") == NO_PLAN  # removed: may spend nothing
    assert settings.config.server.listen == "127.0.0.1:9"  # restart-only, untouched
    assert settings.config.server.keep_alive_timeout_s == 5
    assert "[server] changed; that takes a restart" in caplog.text
    assert "plan 'free': max_timeout 60 -> 30" in caplog.text
    assert "plan 'free': runs_included 100 -> 7" in caplog.text
    assert "account 'newco' added" in caplog.text
    assert "account 'other' removed" in caplog.text
    assert token_sha256(TOKEN_B) not in caplog.text
    assert [next(iter(m)) for m in fake.drain()] == ["RELOADING", "READY"]

    caplog.clear()
    before = settings.config
    path.write_text("[plans.free]\nruns_included = 1\n")
    with caplog.at_level(logging.INFO, logger="jobsd.reload"):
        assert not await reloader.reload()
    assert settings.config is before
    assert "reload refused, the running config stays: plans.free.active_jobs_limit" in caplog.text
    messages = fake.drain()
    assert [next(iter(m)) for m in messages] == ["RELOADING", "READY"]
    assert messages[1]["STATUS"].startswith("reload refused (plans.free.active_jobs_limit")

    path.unlink()
    assert not await reloader.reload()
    assert "cannot read the config file" in caplog.text
    assert settings.config is before
    fake.close()


def test_describe_change_names_ids_never_digests(tmp_path: Path) -> None:
    old = parse_config(config_text(tmp_path))
    new = parse_config(
        config_text(tmp_path, active_jobs_limit=2).replace('plan = "big"', 'plan = "free"')
    )
    assert describe_change(old, new) == [
        "account 'other' moved from plan 'big' to 'free'",
        "plan 'free': active_jobs_limit 5 -> 2",
    ]
    assert describe_change(old, old) == []


def test_describe_change_names_environments_gone_dormant(tmp_path: Path) -> None:
    config = parse_config(config_text(tmp_path))
    acme = config.accounts[0]
    both = acme.model_copy(update={"environments": ("production", "staging")})
    old = config.model_copy(update={"accounts": (both, *config.accounts[1:])})
    assert describe_change(old, config) == [
        f"account {acme.id!r}: environments production, staging -> production"
        " (staging dormant: nothing fires there)"
    ]


def test_describe_change_tells_alert_urls_without_them(tmp_path: Path) -> None:
    """An `alert_url` set, changed or removed is told, the URL never (it may carry a
    receiver's token in its query)."""
    url = "https://alerts.example/hook?token=SECRETQUERY"
    base = parse_config(config_text(tmp_path))
    accounts = [a.model_copy(update={"alert_url": url}) for a in base.accounts]
    with_url = base.model_copy(update={"accounts": accounts})
    moved = [a.model_copy(update={"alert_url": url + "2"}) for a in accounts[:1]] + accounts[1:]
    ids = [a.id for a in base.accounts]
    set_notes = describe_change(base, with_url)
    assert set_notes == [f"account {i!r}: alert_url set" for i in ids]
    assert describe_change(with_url, with_url.model_copy(update={"accounts": moved})) == [
        f"account {ids[0]!r}: alert_url changed"
    ]
    removed = describe_change(with_url, base)
    assert removed == [
        f"account {i!r}: alert_url removed (alerts not yet delivered are dropped)" for i in ids
    ]
    assert "SECRETQUERY" not in repr(set_notes + removed)


def test_the_executors_views_of_accounts_follow_each_config_swapped_in(tmp_path: Path) -> None:
    """Quotas and signing are looked up by account on every run, from an index
    built once per config: each reload's config must be indexed afresh."""
    settings = Settings(parse_config(config_text(tmp_path)))
    runs_included_of, signs = runs_included_now(settings), signs_requests_now(settings)
    assert (runs_included_of("acme"), signs("acme"), runs_included_of("newco")) == (
        100,
        False,
        NO_PLAN,
    )
    settings.config = parse_config(
        config_text(tmp_path, runs_included=7, acme="sign_requests = true").replace(
            '[[accounts]]\nid = "other"', '[[accounts]]\nid = "newco"'
        )
    )
    assert (runs_included_of("acme"), signs("acme"), runs_included_of("newco")) == (7, True, -1)
    assert (runs_included_of("other"), signs("other"), signs("nobody")) == (NO_PLAN, False, False)


async def test_work_begun_after_the_stop_is_cut_at_once() -> None:
    """A start's environment sync that begins once a stop was asked for (a
    SIGTERM during recovery) is cut before its first batch, not run whole."""
    lifecycle = Lifecycle(Health(), Notifier(), trio.Event(), 1)
    lifecycle.begin_stop("asked to stop")
    with lifecycle.cut_by_stop() as scope:
        await trio.lowlevel.checkpoint()
    assert scope.cancelled_caught


async def test_no_ready_after_stopping(tmp_path: Path) -> None:
    """READY=1 after STOPPING=1 would tell systemd the stopping daemon serves."""
    fake = FakeSystemd(str(tmp_path / "notify.sock"))
    lifecycle = Lifecycle(Health(), Notifier(fake.address), trio.Event(), 1)
    lifecycle.begin_stop("asked to stop")
    lifecycle.mark_ready(["127.0.0.1:1"])
    assert [m.get("READY") for m in fake.drain()] == [None]  # the STOPPING message alone
    fake.close()


async def test_sigint_stops_as_sigterm_does(tmp_path: Path) -> None:
    """Ctrl-C on a `jobsd serve` in a terminal stops it; only SIGHUP reloads."""
    config = parse_config(config_text(tmp_path))
    lifecycle = Lifecycle(Health(), Notifier(), trio.Event(), 1)
    reloader = Reloader(Settings(config), None, Notifier(), config)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_signals, lifecycle, reloader)
        os.kill(os.getpid(), signal.SIGINT)
        with trio.move_on_after(2):
            await lifecycle.stop.wait()
        nursery.cancel_scope.cancel()
    assert lifecycle.stopping


class _SlowReloads(Reloader):
    """Each reload waits for `release`; `started` counts them."""

    def __init__(self, config: Config) -> None:
        super().__init__(Settings(config), None, Notifier(), config)
        self.started = 0
        self.release = trio.Event()

    async def reload(self) -> bool:
        self.started += 1
        await self.release.wait()
        return True


async def test_a_sighup_during_a_reload_reloads_again_after_it(tmp_path: Path) -> None:
    """The file may have changed after the reload under way read it: one more
    SIGHUP waits its turn (and more than one are the same one)."""
    config = parse_config(config_text(tmp_path))
    lifecycle = Lifecycle(Health(), Notifier(), trio.Event(), 1)
    reloader = _SlowReloads(config)

    async def started(count: int) -> None:
        with trio.move_on_after(2):
            while reloader.started < count:
                await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        await nursery.start(run_signals, lifecycle, reloader)
        os.kill(os.getpid(), signal.SIGHUP)
        await started(1)
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGHUP)
            await trio.sleep(0.05)
        reloader.release.set()
        await started(2)
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert reloader.started == 2
