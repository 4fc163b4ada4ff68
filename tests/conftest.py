"""Fixtures shared by the suite: a config, a real store, the real app.

Nothing is session-wide: every test gets its own SQLite file under
`tmp_path`, its own key file and its own channels.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from jobsd.api.app import create_app
from jobsd.api.context import ApiContext
from jobsd.clock import Clock
from jobsd.config import Config, parse_config, token_sha256
from jobsd.crypto import KeyRing
from jobsd.messages import CancelRun, JobChanged, RunOrder
from jobsd.settings import Health, Settings
from jobsd.store import Store, open_store

TOKEN_A = "jobsd_test-token-for-account-acme"
TOKEN_B = "jobsd_test-token-for-account-other"
JSONAPI = "application/vnd.api+json"


EXAMPLE = Path(__file__).resolve().parent.parent / "etc" / "jobsd.toml"
# The example's token placeholders are not digests, so jobsd refuses the file as
# shipped; these tests read it with digests in their place.
EXAMPLE_PLACEHOLDERS = {
    "PASTE-the-sha256-that-jobsd-token-prints": "example-token",
    "PASTE-another-sha256-that-jobsd-token-prints": "example-scoped-token",
}


def example_text() -> str:
    """etc/jobsd.toml with each token placeholder replaced by a digest, as an operator would."""
    from jobsd.config import token_sha256

    text = EXAMPLE.read_text()
    for placeholder, token in EXAMPLE_PLACEHOLDERS.items():
        assert placeholder in text, placeholder
        text = text.replace(placeholder, token_sha256(token))
    return text


def config_text(
    tmp_path: Path,
    *,
    runs_included: int = 100,
    active_jobs_limit: int = 5,
    max_timeout: int = 60,
    workers: int = 4,
    scheduler: str = "",
    extra: str = "",
    acme: str = "",
    plan: str = "",
) -> str:
    """Two accounts: acme (plan free) and other (plan big).

    `scheduler`: more lines for [scheduler]; `acme`: more keys for the account
    acme (api_version, environments, ...); `plan`: more keys for acme's plan.
    """
    return f"""
[storage]
path = "{tmp_path / "jobsd.sqlite3"}"
[secrets]
key_file = "{tmp_path / "secret.key"}"
[server]
listen = "127.0.0.1:0"
[scheduler]
workers = {workers}
{scheduler}
[outbound]
allow_cidrs = ["127.0.0.1/32"]
[plans.free]
runs_included = {runs_included}
active_jobs_limit = {active_jobs_limit}
max_timeout = {max_timeout}
{plan}
[plans.big]
runs_included = -1
active_jobs_limit = -1
max_timeout = 300
[[accounts]]
id = "acme"
plan = "free"
tokens_sha256 = ["{token_sha256(TOKEN_A)}"]
{acme}
[[accounts]]
id = "other"
plan = "big"
tokens_sha256 = ["{token_sha256(TOKEN_B)}"]
{extra}
"""


def make_config(tmp_path: Path, **kwargs: Any) -> Config:
    return parse_config(config_text(tmp_path, **kwargs))


def auth(token: str = TOKEN_A) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def job_doc(slug: str = "nightly", **attrs: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "name": f"Job {slug}",
        "schedule": "0 2 * * *",
        "configuration": {"url": "https://example.invalid/hook"},
    }
    attributes.update(attrs)
    return {"data": {"type": "job", "id": slug, "attributes": attributes}}


@dataclass
class RecordedIntake:
    """Stands in for the executor pool's intake: what the API handed over, in order."""

    orders: list[RunOrder] = field(default_factory=list)

    def offer(self, order: RunOrder) -> None:
        self.orders.append(order)


@dataclass
class Harness:
    client: Any
    ctx: ApiContext
    store: Store
    config: Config
    orders: RecordedIntake
    cancels: trio.MemoryReceiveChannel[CancelRun]
    changes: trio.MemoryReceiveChannel[JobChanged]

    async def post(self, path: str, doc: Any = None, token: str = TOKEN_A, **kw: Any) -> Any:
        if doc is not None:
            kw.setdefault("json", doc)
            kw.setdefault("headers", {"Content-Type": JSONAPI})
        headers = {**auth(token), **kw.pop("headers", {})}
        return await self.client.post(path, headers=headers, **kw)

    async def put(
        self, path: str, doc: Any, token: str = TOKEN_A, headers: dict[str, str] | None = None
    ) -> Any:
        return await self.client.put(
            path, json=doc, headers={**auth(token), "Content-Type": JSONAPI, **(headers or {})}
        )

    async def get(self, path: str, token: str = TOKEN_A, **kw: Any) -> Any:
        return await self.client.get(path, headers={**auth(token), **kw.pop("headers", {})}, **kw)

    async def delete(
        self, path: str, token: str = TOKEN_A, headers: dict[str, str] | None = None
    ) -> Any:
        return await self.client.delete(path, headers={**auth(token), **(headers or {})})


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_harness(tmp_path) as h:
        yield h


from contextlib import asynccontextmanager  # noqa: E402


@asynccontextmanager
async def make_harness(tmp_path: Path, **config_kwargs: Any) -> AsyncIterator[Harness]:
    config = make_config(tmp_path, **config_kwargs)
    keyring = KeyRing.load_or_create(config.secrets.key_file)
    clock = Clock(datetime(2026, 6, 5, 2, 0, tzinfo=UTC))
    changes_tx, changes_rx = trio.open_memory_channel[JobChanged](10_000)
    orders = RecordedIntake()
    cancels_tx, cancels_rx = trio.open_memory_channel[CancelRun](10_000)
    async with open_store(config.storage.path, keyring, clock, changes_tx) as store:
        health = Health(ready=True)
        ctx = ApiContext(store, Settings(config), orders, cancels_tx, health)
        app = create_app(ctx)
        yield Harness(app.test_client(), ctx, store, config, orders, cancels_rx, changes_rx)
