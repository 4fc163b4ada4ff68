"""Behind a proxy: X-Forwarded-* honoured from `server.trusted_proxies` only.

Real sockets: the daemon listens on 127.0.0.1; the trusted proxy connects
from 127.0.0.1 and an untrusted peer from 127.0.0.2 (its socket bound
there), both sending the same forwarded headers.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any

import httpx2
import pytest

from jobsd.api.client_share import client_key
from jobsd.api.edge import address_in, route_template
from tests.conftest import JSONAPI, TOKEN_A, job_doc
from tests.test_limits import Live, serving_daemon
from tests.test_metrics import client_from

FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "jobs.example.com",
    "X-Forwarded-For": "198.51.100.1, 203.0.113.9",
}
TRUSTED = 'trusted_proxies = ["127.0.0.1/32"]\n'


async def next_link(live: Live, address: str, headers: dict[str, str]) -> str:
    async with client_from(live, address, headers={"Authorization": f"Bearer {TOKEN_A}"}) as c:
        r = await c.get("/api/v1/runs", params={"page[size]": "1"}, headers=headers)
        assert r.status_code == 200, r.text
        link: str = r.json()["links"]["next"]
        return link


async def two_runs(live: Live) -> None:
    async with live.client() as c:
        r = await c.post("/api/v1/jobs", json=job_doc("j"), headers={"Content-Type": JSONAPI})
        assert r.status_code == 201
        for _ in range(2):
            assert (await c.post("/api/v1/jobs/j/actions/run")).status_code == 200


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.name == "jobsd.access"]  # type: ignore[attr-defined]


async def test_links_and_logs_follow_a_trusted_proxy_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving_daemon(tmp_path, server=TRUSTED) as live:
        await two_runs(live)
        direct = f"http://127.0.0.1:{live.port}/api/v1/runs?"
        with caplog.at_level(logging.INFO, logger="jobsd.access"):
            caplog.clear()
            via_proxy = await next_link(live, "127.0.0.1", FORWARDED)
            assert via_proxy.startswith("https://jobs.example.com/api/v1/runs?page[size]=1")
            assert access_lines(caplog)[-1]["client"] == "203.0.113.9"  # the hop our proxy added
            untrusted = await next_link(live, "127.0.0.2", FORWARDED)
            assert untrusted.startswith(direct)
            assert access_lines(caplog)[-1]["client"] == "127.0.0.2"
            # A scheme is case-insensitive: HTTPS is https (it used to be ignored).
            upper = await next_link(live, "127.0.0.1", {**FORWARDED, "X-Forwarded-Proto": "HTTPS"})
            assert upper.startswith("https://jobs.example.com/api/v1/runs?"), upper
            # A scheme a link must not carry is ignored, even from the proxy.
            odd = await next_link(
                live, "127.0.0.1", {**FORWARDED, "X-Forwarded-Proto": "javascript"}
            )
            assert odd.startswith("http://jobs.example.com/")
            for host in ("evil.example/x?y=", "jobs.example.com:0443"):  # Werkzeug reads neither
                bad_host = {**FORWARDED, "X-Forwarded-Host": host}
                odd = await next_link(live, "127.0.0.1", bad_host)
                assert odd.startswith(f"https://127.0.0.1:{live.port}/api/v1/runs?"), odd
            # No forwarded headers: the proxy itself is the client.
            plain = await next_link(live, "127.0.0.1", {})
            assert plain.startswith(direct)
            assert access_lines(caplog)[-1]["client"] == "127.0.0.1"


async def test_without_trusted_proxies_the_headers_are_ignored(tmp_path: Path) -> None:
    async with serving_daemon(tmp_path) as live:
        await two_runs(live)
        link = await next_link(live, "127.0.0.1", FORWARDED)
        assert link.startswith(f"http://127.0.0.1:{live.port}/")


async def test_the_metrics_allowlist_sees_the_forwarded_client(tmp_path: Path) -> None:
    extra = '[metrics]\nallow_cidrs = ["127.0.0.1/32"]\n'
    async with serving_daemon(tmp_path, server=TRUSTED, extra=extra) as live:
        async with client_from(live, "127.0.0.1") as c:
            internet = {"X-Forwarded-For": "203.0.113.9"}
            assert (await c.get("/metrics", headers=internet)).status_code == 403
            local = {"X-Forwarded-For": "127.0.0.1"}
            assert (await c.get("/metrics", headers=local)).status_code == 200
        async with client_from(live, "127.0.0.2") as c:  # claiming loopback from elsewhere
            r = await c.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
            assert r.status_code == 403


async def test_a_proxy_named_as_a_dual_stack_socket_shows_it_is_trusted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On a dual-stack listener an IPv4 peer reads `::ffff:127.0.0.1`, as the access
    log shows it; a proxy listed so was matched only as 127.0.0.1, so it was
    silently untrusted: links said http://, the log named the proxy, and every
    client behind it scraped the metrics as the (loopback) proxy."""
    server = 'trusted_proxies = ["::ffff:127.0.0.1/128"]\n'
    async with serving_daemon(tmp_path, server=server, listen="[::ffff:127.0.0.1]:0") as live:
        await two_runs(live)
        async with httpx2.AsyncClient(
            base_url=f"http://127.0.0.1:{live.port}",
            headers={"Authorization": f"Bearer {TOKEN_A}"},
            trust_env=False,
        ) as c:
            with caplog.at_level(logging.INFO, logger="jobsd.access"):
                r = await c.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
                assert r.status_code == 403
                assert access_lines(caplog)[-1]["client"] == "203.0.113.9"
                r = await c.get("/api/v1/runs", params={"page[size]": "1"}, headers=FORWARDED)
                assert r.json()["links"]["next"].startswith("https://jobs.example.com/api/v1/runs?")
                assert (await c.get("/metrics")).status_code == 200  # the proxy itself
                assert access_lines(caplog)[-1]["client"] == "::ffff:127.0.0.1"
    nets = [ipaddress.ip_network("::ffff:127.0.0.1/128")]
    assert address_in("::ffff:127.0.0.1", nets) and not address_in("::ffff:127.0.0.2", nets)
    assert client_key("::ffff:127.0.0.1", nets) is None  # exempt from the per-client share
    assert client_key("::ffff:127.0.0.2", nets) == "127.0.0.2"
    # One address in either form, whichever form the network is named in.
    assert address_in("127.0.0.1", nets) and client_key("127.0.0.1", nets) is None
    v4 = [ipaddress.ip_network("127.0.0.1/32")]
    assert address_in("::ffff:127.0.0.1", v4) and client_key("::ffff:127.0.0.1", v4) is None
    wide = [ipaddress.ip_network("::ffff:127.0.0.0/104")]
    assert address_in("127.0.0.5", wide) and address_in("::ffff:127.0.0.5", wide)
    # An IPv6 network beyond the mapped range holds no IPv4 peer, in either form.
    every_v6 = [ipaddress.ip_network("::/0")]
    assert not address_in("127.0.0.1", every_v6) and not address_in("::ffff:127.0.0.1", every_v6)
    assert client_key("::ffff:127.0.0.1", every_v6) == "127.0.0.1"


async def test_behind_two_trusted_proxies_the_client_is_the_first_untrusted_hop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A TLS terminator (127.0.0.2) before nginx (127.0.0.1), both on loopback and
    # both trusted: nginx appends the terminator's address to what it was sent.
    # Taking that last hop for the client made every client a loopback one, and
    # the metrics (allowed to loopback by default) anyone's.
    server = 'trusted_proxies = ["127.0.0.0/8"]\n'
    async with serving_daemon(tmp_path, server=server) as live:
        async with client_from(live, "127.0.0.1") as c:
            with caplog.at_level(logging.INFO, logger="jobsd.access"):
                for chain, client in [
                    ("203.0.113.9, 127.0.0.2", "203.0.113.9"),
                    ("127.0.0.1, 203.0.113.9, 127.0.0.2", "203.0.113.9"),  # a forged first hop
                    ("198.51.100.7, 203.0.113.9, 127.0.0.3, 127.0.0.2", "203.0.113.9"),
                    ("not-an-address, 127.0.0.2", "not-an-address"),
                ]:
                    caplog.clear()
                    r = await c.get("/metrics", headers={"X-Forwarded-For": chain})
                    assert r.status_code == 403, chain
                    assert access_lines(caplog)[-1]["client"] == client
                # Every hop a trusted one: the furthest is the client.
                r = await c.get("/metrics", headers={"X-Forwarded-For": "127.0.0.5, 127.0.0.2"})
                assert r.status_code == 200
                assert access_lines(caplog)[-1]["client"] == "127.0.0.5"
                # A long run of trusted hops is read only so far back (edge.MAX_HOPS, 16).
                many = ", ".join(["203.0.113.9"] + ["127.0.0.2"] * 20)
                r = await c.get("/metrics", headers={"X-Forwarded-For": many})
                assert r.status_code == 200
        async with client_from(live, "127.0.0.2") as c:  # the outer proxy, direct
            r = await c.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
            assert r.status_code == 403


def test_address_in() -> None:
    import ipaddress

    nets = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    assert address_in("127.0.0.2", nets)
    assert address_in("::1", nets) and address_in("[::1]", nets)
    assert address_in("::ffff:127.0.0.1", nets)  # IPv4 on a dual-stack socket
    assert not address_in("10.0.0.1", nets)
    assert not address_in("unix:/sock", nets) and not address_in(None, nets)
    assert not address_in("", nets)


def test_route_templates_are_the_contracts() -> None:
    assert route_template("/api/v1/jobs/<slug>") == "/api/v1/jobs/{job_id}"
    assert route_template("/api/v1/runs/<run_id>/actions/cancel") == (
        "/api/v1/runs/{run_id}/actions/cancel"
    )
    assert route_template("/api/v1/jobs") == "/api/v1/jobs"
    assert route_template("/metrics") == "/metrics"
    assert route_template("/things/<int:n>") == "/things/{n}"
