"""The README's receiver snippet, run on what a signing daemon really sends.

Operators copy that snippet into their receivers, so it is executed here,
unchanged, on requests a real target on 127.0.0.1 got from the daemon: a
JSON body and a `GET`, which sends none. `standardwebhooks`' `verify`
parses the body as JSON unless told not to, so a snippet that leaves that
on rejects every correctly signed request whose body is not JSON.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trio

from jobsd import signing_secrets
from jobsd.clock import system_utc_now
from jobsd.config import parse_config
from jobsd.crypto import KeyRing
from tests.conftest import JSONAPI, config_text
from tests.inprocess import daemon_at
from tests.target import Received, open_target

ROOT = Path(__file__).resolve().parents[1]


def receiver_snippet() -> str:
    blocks = re.findall(r"```python\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    (snippet,) = [str(b) for b in blocks if "standardwebhooks" in b]
    return snippet


async def received(configuration: dict[str, Any], tmp_path: Path) -> tuple[str, Received]:
    config = parse_config(config_text(tmp_path, acme="sign_requests = true\n"))
    KeyRing.load_or_create(config.secrets.key_file)
    secret = signing_secrets.active_secret(config, "acme")
    async with open_target() as target, daemon_at(config, system_utc_now()) as daemon:
        configuration = {"url": f"{target.url}/hook", **configuration}
        attributes = {"name": "hook", "schedule": "0 0 1 1 *", "configuration": configuration}
        doc = {"data": {"type": "job", "id": "hook", "attributes": attributes}}
        r = await daemon.client.post("/api/v1/jobs", json=doc, headers={"Content-Type": JSONAPI})
        assert r.status_code == 201, r.text
        r = await daemon.client.post("/api/v1/jobs/hook/actions/run")
        assert r.status_code == 200, r.text
        with trio.fail_after(20):
            while not target.received:
                await trio.sleep(0.02)
        daemon.crash()
    return secret, target.received[0]


@pytest.mark.parametrize(
    "configuration",
    [{"method": "POST", "body": '{"hello": "w\u00f6rld"}'}, {"method": "GET"}],
    ids=["json-body", "get-no-body"],
)
async def test_the_readme_snippet_verifies_a_signed_request(
    tmp_path: Path, configuration: dict[str, Any]
) -> None:
    secret, got = await received(configuration, tmp_path)
    assert got.method == configuration["method"]
    exec(receiver_snippet(), {"SECRET": secret, "body": got.body, "headers": got.headers})
