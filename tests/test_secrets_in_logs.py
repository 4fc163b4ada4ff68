"""Tokens and header values: not timed out of us, never written to a log.

Timing: the auth check hashes the presented token and looks its digest up
in the index of configured digests (`jobsd.api.tokens`), so a right token, a
wrong one that shares all but its last character with it, and a wrong one
that shares nothing cost the same. Measured on `Tokens.match` and on
`current_account` inside a real request context, interleaved so that load
on the machine hits every kind alike, and judged by medians against the
spread of the samples rather than against an absolute threshold.

Logs: the daemon runs with the `logging` root at DEBUG (hypercorn's error
log and httpx2's included) and its file descriptors captured, then in a
child process whose stderr and stdout are kept, while it serves
authenticated requests, refused ones, jobs with secret header values, and
runs that fail (connection refused, SSRF-blocked, timed out, a 500), whose
alerts go to an `alert_url` with a secret in its query that refuses them. No
token, no header value and no URL secret may appear in any of it, in text or in JSON
lines (`[log] format = "json"`, where every line must also be one JSON
object, with one structured line per finished run and per request).
"""

from __future__ import annotations

import json
import logging
import re
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from quart import request

from jobsd import errors
from jobsd.api.app import create_app
from jobsd.api.auth import account_for_token, bearer_token, current_account
from jobsd.api.tokens import Tokens
from jobsd.config import token_sha256
from tests.conftest import JSONAPI, TOKEN_A, TOKEN_B, config_text, make_config, make_harness
from tests.daemon_process import DaemonProcess
from tests.target import open_target
from tests.test_limits import serving_daemon

NEAR_MISS = TOKEN_A[:-1] + ("x" if TOKEN_A[-1] != "x" else "y")
FAR_MISS = "q" * len(TOKEN_A)

# -- timing -----------------------------------------------------------------------


def spread_ns(samples: list[int]) -> float:
    q1, _, q3 = statistics.quantiles(samples, n=4)
    return q3 - q1


def assert_same_cost(named: dict[str, list[int]]) -> None:
    medians = {name: statistics.median(xs) for name, xs in named.items()}
    # Generous: half the interquartile range, or 10% of the median if that is larger.
    tolerance = max(max(spread_ns(xs) for xs in named.values()) / 2, 0.1 * max(medians.values()))
    assert max(medians.values()) - min(medians.values()) <= tolerance, (medians, tolerance)


def interleaved(timers: dict[str, Callable[[], int]], rounds: int) -> dict[str, list[int]]:
    samples: dict[str, list[int]] = {name: [] for name in timers}
    for i in range(rounds):
        order = list(timers.items())
        if i % 2:
            order.reverse()
        for name, timer in order:
            samples[name].append(timer())
    return samples


def test_the_digest_lookup_costs_the_same_for_right_and_wrong_tokens(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    tokens = Tokens()

    def timer(token: str) -> Callable[[], int]:
        def once() -> int:
            start = time.perf_counter_ns()
            tokens.match(config, token_sha256(token))
            return time.perf_counter_ns() - start

        return once

    assert tokens.match(config, token_sha256(TOKEN_A)) is not None
    assert tokens.match(config, token_sha256(NEAR_MISS)) is None
    samples = interleaved(
        {"right": timer(TOKEN_A), "near": timer(NEAR_MISS), "far": timer(FAR_MISS)}, 20_000
    )
    assert_same_cost(samples)


async def test_the_auth_check_costs_the_same_for_right_and_wrong_tokens(tmp_path: Path) -> None:
    """Through a real request context: header parsing, hashing, the lookup."""
    async with make_harness(tmp_path) as h:
        app = create_app(h.ctx)
        tokens = {"right": TOKEN_A, "near": NEAR_MISS, "far": FAR_MISS}
        lookup: dict[str, list[int]] = {name: [] for name in tokens}
        refusal: dict[str, list[int]] = {"near": [], "far": []}
        for i in range(1_500):
            names = list(tokens) if i % 2 else list(reversed(tokens))
            for name in names:
                headers = {"Authorization": f"Bearer {tokens[name]}"}
                async with app.test_request_context("/api/v1/jobs", headers=headers):
                    start = time.perf_counter_ns()
                    token = bearer_token(request.headers.get("Authorization"))
                    assert token is not None
                    found = account_for_token(h.ctx, token)
                    lookup[name].append(time.perf_counter_ns() - start)
                    assert (found is not None) == (name == "right")
                    if name != "right":
                        # The whole check, 401 included: a near miss is no quicker.
                        start = time.perf_counter_ns()
                        with suppress(errors.ApiError):
                            current_account(h.ctx)
                        refusal[name].append(time.perf_counter_ns() - start)
        assert_same_cost(lookup)
        assert_same_cost(refusal)


# -- logs ---------------------------------------------------------------------------

URL_SECRET = "url-secret-3c4d5e6f"  # a webhook's signature, say: not a header
SECRET_VALUES = (
    "hdr-secret-value-0f1e2d3c",
    "Bearer upstream-credential-9a8b7c",
    "sk_live_51HxSecretPaymentKey",
    "cookie-session-77aa66bb",
)


def secrets_in(text: str) -> list[str]:
    # Tokens without their `jobsd_` prefix, so a truncated one is caught too;
    # their digests as well, which are as good as a token to whoever reads them.
    needles = [TOKEN_A[6:], TOKEN_B[6:-1], NEAR_MISS[6:], FAR_MISS, *SECRET_VALUES]
    needles += [token_sha256(TOKEN_A), token_sha256(TOKEN_B)]
    return [n for n in needles if n in text]


class Everything(logging.Handler):
    """Keeps each record fully rendered: message, arguments and traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{self.format(record)} args={record.args!r}")


@contextmanager
def everything_logged() -> Iterator[Everything]:
    root = logging.getLogger()
    handler, level = Everything(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    try:
        yield handler
    finally:
        logging.captureWarnings(False)
        root.setLevel(level)
        root.removeHandler(handler)


def job(slug: str, url: str, **config: Any) -> dict[str, Any]:
    headers = [
        {"name": "X-Api-Key", "value": SECRET_VALUES[0]},
        {"name": "Authorization", "value": SECRET_VALUES[1]},
        {"name": "X-Payment", "value": SECRET_VALUES[2]},
    ]
    configuration = {"url": url, "headers": headers, **config}
    attributes = {"name": slug, "schedule": "0 0 1 1 *", "configuration": configuration}
    return {"data": {"type": "job", "id": slug, "attributes": attributes}}


async def exercise(base_url: str, target_url: str) -> None:
    """Every path a secret could travel; returns how the runs ended."""
    good = {"Authorization": f"Bearer {TOKEN_A}", "Cookie": f"s={SECRET_VALUES[3]}"}
    body = {"Content-Type": JSONAPI}
    async with httpx2.AsyncClient(base_url=base_url, trust_env=False, verify=False) as c:
        for token in (NEAR_MISS, FAR_MISS, TOKEN_B[:-1]):
            r = await c.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401
        for header in (f"Basic {TOKEN_A}", TOKEN_A, f"Bearer{TOKEN_A}", "Bearer"):
            r = await c.get("/api/v1/jobs", headers={"Authorization": header})
            assert r.status_code == 401
        r = await c.get("/api/v1/jobs", headers={**good, "X-Extra": SECRET_VALUES[0]})
        assert r.status_code == 200
        r = await c.get("/api/v1/usage", headers={"Authorization": f"Bearer {TOKEN_B}"})
        assert r.status_code == 200

        targets = {
            "ok": f"{target_url}/fine?sig={URL_SECRET}",
            "status": f"{target_url}/status/500",
            "refused": "http://127.0.0.1:9/refused",
            "ssrf": "http://127.0.0.2:9/blocked",
            "hangs": f"{target_url}/hang",
        }
        for slug, url in targets.items():
            timeout = {"timeout": 1} if slug == "hangs" else {}
            r = await c.post(
                "/api/v1/jobs", json=job(slug, url, **timeout), headers={**good, **body}
            )
            assert r.status_code == 201, r.text
            r = await c.post(f"/api/v1/jobs/{slug}/actions/run", headers=good)
            assert r.status_code == 200
        # Refused documents that carry the secrets too.
        bad = job("bad", "not a url")
        bad["data"]["attributes"]["configuration"]["headers"].append(
            {"name": "X-Broken", "value": f"{SECRET_VALUES[0]}\r\nInjected: 1"}
        )
        r = await c.post("/api/v1/jobs", json=bad, headers={**good, **body})
        assert r.status_code == 422
        r = await c.put("/api/v1/jobs/ok", json=bad, headers={**good, **body})
        assert r.status_code in (409, 422)
        r = await c.post(
            "/api/v1/jobs", content=b'{"data": ' + SECRET_VALUES[0].encode(), headers=good
        )
        assert r.status_code in (400, 415)

        with trio.fail_after(30):
            while True:
                runs = (await c.get("/api/v1/runs", headers=good)).json()["data"]
                if all(x["attributes"]["status"] not in ("PENDING", "RUNNING") for x in runs):
                    break
                await trio.sleep(0.05)
        reasons = {x["attributes"]["job"]: x["attributes"]["failure_reason"] for x in runs}
        assert reasons == {
            "ok": None,
            "status": "NON_SUCCESS_STATUS",
            "refused": "CONNECTION_ERROR",
            "ssrf": "SSRF_BLOCKED",
            "hangs": "TIMEOUT",
        }, reasons


async def test_no_secret_reaches_a_log_in_process(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with everything_logged() as logged:
        async with open_target() as target, serving_daemon(tmp_path) as live:
            await exercise(live.url, target.url)
    out, err = capfd.readouterr()
    assert logged.lines, "the root logger at DEBUG saw nothing: the capture is broken"
    text = "\n".join(logged.lines)
    assert not secrets_in(text), secrets_in(text)
    assert not secrets_in(out + err), secrets_in(out + err)


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_secret_reaches_a_child_process_log(tmp_path: Path, log_format: str) -> None:
    cfg = tmp_path / "jobsd.toml"
    # Alerts of the failing runs go to a URL that refuses them: tried, logged, never its URL.
    alerts = f'alert_url = "http://127.0.0.1:9/alerts?sig={URL_SECRET}"'
    cfg.write_text(
        config_text(
            tmp_path, acme=alerts, extra=f'[log]\nformat = "{log_format}"\nlevel = "debug"\n'
        )
    )
    async with open_target() as target:
        process = await trio.to_thread.run_sync(
            lambda: DaemonProcess(["serve", "--config", str(cfg)], tmp_path).start()
        )
        try:
            await exercise(process.url, target.url)
        finally:
            code = await trio.to_thread.run_sync(process.stop)
    assert code == 0
    stderr, stdout = process.stderr(), "".join(process.stdout_lines)
    assert process.proc is not None and process.proc.stdout is not None
    stdout += process.proc.stdout.read()
    assert "stopped" in stderr, stderr[-2000:]  # the log was really captured
    assert not secrets_in(stderr + stdout), (secrets_in(stderr + stdout), stderr[-3000:])
    # httpx2 logs every outbound request line ("HTTP Request: POST <url>") at
    # INFO; `jobsd serve` quiets it, so a secret in a job's URL stays out.
    assert URL_SECRET not in stderr + stdout
    if log_format == "json":
        assert_structured(stderr, stdout)


def assert_structured(stderr: str, stdout: str) -> None:
    """Every line one JSON object; one line per finished run and per request."""
    lines = [json.loads(line) for line in (stderr + stdout).splitlines() if line.strip()]
    assert all(isinstance(x, dict) and {"ts", "level", "logger", "msg"} <= x.keys() for x in lines)
    runs = {x["job"]: x for x in lines if x["msg"] == "run finished"}
    assert set(runs) == {"ok", "status", "refused", "ssrf", "hangs"}, runs
    ok, hangs = runs["ok"], runs["hangs"]
    assert (ok["account"], ok["environment"], ok["status"], ok["reason"]) == (
        "acme", "production", "SUCCEEDED", None,
    )  # fmt: skip
    assert ok["trigger"] == "MANUAL" and ok["lateness_ms"] is None
    assert all(isinstance(ok[k], int) for k in ("pending_ms", "run_ms", "total_ms"))
    assert re.fullmatch(r"[0-9a-f-]{36}", ok["run"])
    assert (hangs["status"], hangs["reason"]) == ("FAILED", "TIMEOUT") and hangs["run_ms"] >= 1000
    requests = [x for x in lines if x["msg"] == "request"]
    assert len(requests) >= 20
    routes = {x["route"] for x in requests}
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}/actions/run", "/api/v1/runs"} <= routes
    assert all(x["client"] == "127.0.0.1" and x["duration_ms"] >= 0 for x in requests)
    assert {x["status"] for x in requests} >= {200, 201, 401, 422}
    assert any(x["msg"].startswith("jobsd listening on") for x in lines)
    tries = [x for x in lines if x["msg"] == "alert not delivered; tried again later"]
    assert tries and {x["reason"] for x in tries} == {"CONNECTION_ERROR"}, tries
