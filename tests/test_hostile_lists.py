"""Big lists against the real daemon: memory, fairness, and slots that come back.

A free-plan account may store a thousand paused jobs of a megabyte each, and
runs whose request snapshots hold a megabyte body; one `page[size]=1000`
list of them once built the whole response in memory (300 jobs: +900 MiB).
Lists are now streamed from a snapshot (`jobsd.api.streaming`), so:

- in a real `jobsd serve` process, the peak RSS a list adds (VmHWM, reset
  through /proc/PID/clear_refs before it) stays within tens of MiB while the
  response is a hundred times that, for `/jobs` and for `/runs`, and for four
  concurrent lists; the documents are whole and schema-valid; another
  account's `/healthz`, get and list are answered throughout; and a flood
  of 60,000-header creates is refused quickly (before it is decoded)
  without holding anyone up;
- in-process (hypercorn on a socket), a client that asks for a big list and
  reads it slowly holds its snapshot only until the stream timeout, and one
  that never reads only until the write timeout; after either, the
  account's next list is served.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

from jobsd.api import streaming
from tests.api.test_documents import request_schema
from tests.conftest import TOKEN_A, TOKEN_B, config_text, job_doc
from tests.daemon_process import DaemonProcess
from tests.test_limits import JSON_BODY, serving_daemon

MiB = 1024 * 1024
JOBS = 64  # of 1 MiB each: a 64 MiB list
RUNS = 32  # whose request snapshots hold a 1 MiB body
GROWTH_MIB = 40  # what one list may add to the daemon's peak RSS


def paused(slug: str, **config: Any) -> dict[str, Any]:
    doc = job_doc(slug, enabled=False)
    doc["data"]["attributes"]["configuration"].update(config)
    return doc


async def slow_reader(host: str, port: int, got: list[bytes]) -> None:
    """Asks for every job and reads 16 KiB every 50 ms: about 300 KiB/s."""
    async with await trio.open_tcp_stream(host, port) as stream:
        await stream.send_all(
            b"GET /api/v1/jobs?page[size]=1000 HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {TOKEN_A}\r\n\r\n".encode()
        )
        received = bytearray()
        with trio.move_on_after(30):
            while chunk := await stream.receive_some(16384):
                received += chunk
                await trio.sleep(0.05)
        got.append(bytes(received))


async def test_a_slow_reader_holds_its_snapshot_only_until_the_stream_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "STREAM_TIMEOUT_S", 1.0)
    async with (
        serving_daemon(tmp_path, active_jobs_limit=-1) as live,
        live.client(timeout=30) as client,
    ):
        for n in range(16):  # 16 MiB: 50 s at the slow readers' pace
            r = await client.post(
                "/api/v1/jobs", json=paused(f"big-{n}", body="b" * MiB), headers=JSON_BODY
            )
            assert r.status_code == 201, r.text
        got: list[bytes] = []
        async with trio.open_nursery() as nursery:
            for _ in range(2):  # the account's two snapshots
                nursery.start_soon(slow_reader, live.host, live.port, got)
            await trio.sleep(0.3)
            async with live.client(timeout=30) as other:
                other.headers["Authorization"] = f"Bearer {TOKEN_B}"
                with trio.fail_after(2):  # another account is not held up
                    assert (await other.get("/api/v1/jobs")).status_code == 200
            start = trio.current_time()
            r = await client.get("/api/v1/jobs?page[size]=2")
            waited = trio.current_time() - start
            assert r.status_code == 200, r.text
            assert len(r.json()["data"]) == 2 and waited < 8  # well before 429's 10 s
        for received in got:  # cut short: never a whole document
            assert received.startswith(b"HTTP/1.1 200")
            assert 0 < len(received) < 16 * MiB and not received.endswith(b"0\r\n\r\n")


async def test_a_reader_that_never_reads_holds_its_snapshot_only_until_the_write_timeout(
    tmp_path: Path,
) -> None:
    async with (
        serving_daemon(tmp_path, "write_timeout_s = 1", active_jobs_limit=-1) as live,
        live.client(timeout=30) as client,
    ):
        for n in range(24):  # 24 MiB: more than loopback's socket buffers hold
            r = await client.post(
                "/api/v1/jobs", json=paused(f"big-{n}", body="b" * MiB), headers=JSON_BODY
            )
            assert r.status_code == 201, r.text
        stalled = []
        for _ in range(2):  # the account's two snapshots
            stream = await trio.open_tcp_stream(live.host, live.port)
            await stream.send_all(
                b"GET /api/v1/jobs?page[size]=1000 HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {TOKEN_A}\r\n\r\n".encode()
            )
            stalled.append(stream)
        await trio.sleep(0.3)
        start = trio.current_time()
        r = await client.get("/api/v1/jobs?page[size]=2")
        assert r.status_code == 200, r.text
        assert trio.current_time() - start < 8  # well before 429's 10 s
        for stream in stalled:
            await stream.aclose()


# -- a real `jobsd serve` process ---------------------------------------------------


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class Peak:
    """The daemon's peak RSS over a stretch, from a reset VmHWM."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self) -> Peak:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        self.before_kib = status_kib(self.pid, "VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth_mib = (status_kib(self.pid, "VmHWM") - self.before_kib) / 1024


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(config_text(tmp_path, active_jobs_limit=10, runs_included=3000))
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as process:
        yield process


def client(daemon: DaemonProcess, token: str = TOKEN_A) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        base_url=daemon.url,
        headers={"Authorization": f"Bearer {token}", **JSON_BODY},
        timeout=60,
        trust_env=False,
    )


async def fill(a: httpx2.AsyncClient) -> list[str]:
    """JOBS paused jobs of 1 MiB, and RUNS finished runs of a 1 MiB job; their ids."""
    body = "b" * MiB
    for n in range(JOBS):
        r = await a.post("/api/v1/jobs", json=paused(f"big-{n:03d}", body=body))
        assert r.status_code == 201, r.text[:300]
    doc = paused("runner", body=body, url="http://127.0.0.1:9/refused", timeout=1)
    assert (await a.post("/api/v1/jobs", json=doc)).status_code == 201
    ids = [
        (await a.post("/api/v1/jobs/runner/actions/run")).json()["data"]["id"] for _ in range(RUNS)
    ]
    with trio.fail_after(60):
        for run_id in ids:
            while (await a.get(f"/api/v1/runs/{run_id}")).json()["data"]["attributes"][
                "status"
            ] in ("PENDING", "RUNNING"):
                await trio.sleep(0.05)
    return ids


async def read_list(c: httpx2.AsyncClient, path: str, keep: bool) -> tuple[int, bytes, int]:
    """(status, the body if `keep`, its size), read as it arrives."""
    kept = bytearray()
    size = 0
    async with c.stream("GET", path) as r:
        async for chunk in r.aiter_raw():
            size += len(chunk)
            if keep:
                kept += chunk
        return r.status_code, bytes(kept), size


async def one_big_list_of_each(daemon: DaemonProcess, run_ids: list[str]) -> None:
    """Whole, schema-valid, and the daemon's peak RSS barely moves."""
    assert daemon.proc is not None
    pid = daemon.proc.pid
    async with client(daemon) as a:
        with Peak(pid) as jobs_peak:
            status, raw, _ = await read_list(
                a, "/api/v1/jobs?page[size]=1000&meta[total]=true", True
            )
        assert status == 200 and len(raw) > JOBS * MiB
        doc = json.loads(raw)
        del raw
        assert request_schema("JobListResponse").is_valid(doc)
        assert doc["meta"]["pagination"]["total"] == len(doc["data"]) == JOBS + 1
        assert all(len(j["attributes"]["configuration"]["body"]) == MiB for j in doc["data"])
        del doc
        with Peak(pid) as runs_peak:
            status, raw, _ = await read_list(a, "/api/v1/runs?page[size]=1000", True)
        assert status == 200 and len(raw) > RUNS * MiB
        doc = json.loads(raw)
        del raw
        assert request_schema("RunListResponse").is_valid(doc)
        assert [r["id"] for r in doc["data"]] == run_ids[::-1] and doc["links"]["next"] is None
        assert all(len(r["attributes"]["request"]["body"]) == MiB for r in doc["data"])
        del doc
    print(
        f"one list of jobs: +{jobs_peak.growth_mib:.1f} MiB peak;"
        f" of runs: +{runs_peak.growth_mib:.1f} MiB"
    )
    assert jobs_peak.growth_mib < GROWTH_MIB, jobs_peak.growth_mib
    assert runs_peak.growth_mib < GROWTH_MIB, runs_peak.growth_mib


async def poll(daemon: DaemonProcess, path: str, until: trio.Event, seen: list[float]) -> None:
    """Account B's requests, one after another, while A does its worst."""
    async with client(daemon, TOKEN_B) as b:
        while not until.is_set():
            start = trio.current_time()
            r = await b.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            seen.append(trio.current_time() - start)
            await trio.sleep(0.02)


async def test_big_lists_and_header_floods_cost_tens_of_mib_and_hold_up_no_one(
    daemon: DaemonProcess,
) -> None:
    assert daemon.proc is not None
    async with client(daemon) as a, client(daemon, TOKEN_B) as b:
        await one_big_list_of_each(daemon, await fill(a))
        assert (await b.post("/api/v1/jobs", json=paused("mine"))).status_code == 201
        before = (await a.get("/api/v1/jobs?meta[total]=true&page[size]=1")).json()
        flood = [{"name": f"H{i}", "value": "v"} for i in range(60_000)]
        answers: list[tuple[int, int]] = []
        floods: list[tuple[float, str]] = []

        async def one_list() -> None:
            async with client(daemon) as c:
                status, _, size = await read_list(c, "/api/v1/jobs?page[size]=1000", False)
                answers.append((status, size))

        async def flood_creates() -> None:
            async with client(daemon) as c:
                for n in range(4):
                    start = trio.current_time()
                    r = await c.post("/api/v1/jobs", json=paused(f"flood-{n}", headers=flood))
                    floods.append((trio.current_time() - start, r.json()["errors"][0]["code"]))

        done = trio.Event()
        latencies: dict[str, list[float]] = {
            "/healthz": [],
            "/api/v1/jobs/mine": [],
            "/api/v1/jobs": [],
        }
        with Peak(daemon.proc.pid) as peak:
            async with trio.open_nursery() as watchers:
                for path, seen in latencies.items():
                    watchers.start_soon(poll, daemon, path, done, seen)
                async with trio.open_nursery() as attackers:
                    for _ in range(4):
                        attackers.start_soon(one_list)
                    attackers.start_soon(flood_creates)
                done.set()
        after = (await a.get("/api/v1/jobs?meta[total]=true&page[size]=1")).json()
    # Two of A's lists stream at once; the others wait for them (or, past 10 s, get 429).
    assert all(status in (200, 429) for status, _ in answers) and len(answers) == 4
    assert sum(status == 200 for status, _ in answers) >= 2
    assert all(size > JOBS * MiB for status, size in answers if status == 200)
    assert [code for _, code in floods] == ["too_many_values"] * 4  # never decoded
    assert max(t for t, _ in floods) < 5
    assert after == before  # the floods changed nothing
    for path, seen in latencies.items():
        assert seen and max(seen) < 3, (path, max(seen), len(seen))
    print(f"four lists and four floods at once: +{peak.growth_mib:.1f} MiB peak, {answers}")
    assert peak.growth_mib < 2 * GROWTH_MIB, peak.growth_mib
