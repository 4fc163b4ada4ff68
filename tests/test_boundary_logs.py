"""The boundaries that catch a bug log its type and line, never its message.

A run that fails inside jobsd (a bug, not the remote side) is recorded
FAILED/WORKER_LOST and logged. The message of such an exception is whatever
the code that raised put in it, and the code around a run holds the job's
URL, its header values and its body: logged whole (a traceback ends with
the message), a secret reaches stderr and the journal, which the README
promises never happens ("No line holds a token, a header value, a body, a
run's error text or a job's URL"). The alert actor's boundary already
logged only the type and the line; the executor's, in the daemon and in a
worker process, logged the traceback, and the API's (a 500) the message
beside it, while a request's body holds header values. Each line is read
here as the daemon writes it, in both formats.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from jobsd.job_model import HttpConfig
from jobsd.logs import JsonFormatter, TextFormatter
from jobsd.messages import Outcome
from jobsd.runs import FailureReason, RunStatus
from jobsd.workers import wire
from jobsd.workers.child import Worker
from tests.conftest import job_doc, make_harness
from tests.test_executor import pool_rig

SECRET = "s3cr3t-in-the-message"


def bug() -> RuntimeError:
    """A fresh one each time: raising one instance again grows its traceback."""
    return RuntimeError(f"cannot send https://example.invalid/?token={SECRET}: Bearer {SECRET}")


def written(records: Sequence[logging.LogRecord]) -> list[str]:
    """Every record as the daemon writes it, text and JSON."""
    return [f.format(r) for r in records for f in (TextFormatter(journal=False), JsonFormatter())]


def assert_told_without_the_message(
    records: Sequence[logging.LogRecord], what: str, raiser: str
) -> None:
    """Some line says `what`, with the type and the line that raised (in `raiser`);
    no line holds the message."""
    lines = [line for line in written(records) if what in line]
    assert lines, f"no line says {what!r}"
    for line in written(records):
        assert SECRET not in line, line
    assert all("RuntimeError" in line and ".py:" in line for line in lines)
    assert all(f" in {raiser}" in line for line in lines)


async def test_a_run_that_fails_inside_the_daemon_logs_no_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with pool_rig(tmp_path, 1) as rig:
        rig.performer.fail_with = bug()
        (run_id,) = await rig.submit(1)
        with trio.fail_after(10):
            while (await rig.statuses([run_id]))[0] in (RunStatus.PENDING, RunStatus.RUNNING):
                await trio.sleep(0.02)
        run = await rig.store.runs.get_run("acme", run_id)
        assert run.failure_reason is FailureReason.WORKER_LOST
        await rig.pool.stop(1)
    assert_told_without_the_message(caplog.records, "failed inside jobsd", "perform")


async def test_a_request_that_fails_inside_a_worker_process_logs_no_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's loop, in this process over a real socket pair; its delivery's
    perform is the one part replaced, by a bug."""
    caplog.set_level(logging.ERROR)

    async def perform(config: HttpConfig, *, stamp: Sequence[tuple[str, str]] = ()) -> Outcome:
        raise bug()

    ours, theirs = socket.socketpair()
    hello = {
        "kind": "hello",
        "capacity": 8,
        "allow_cidrs": ["127.0.0.1/32"],
        "body_keep_bytes": 65536,
        "body_cap_bytes": 1 << 20,
        "keepalive_s": 0.0,
        "log_format": "text",
        "log_level": "info",
    }
    worker_stream = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    worker = Worker(worker_stream, hello)
    worker._delivery.perform = perform  # type: ignore[method-assign]
    config = HttpConfig(url="http://127.0.0.1:9/", reuse_scope="acme")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.serve, wire.FrameReader(worker_stream))
            reader = wire.FrameReader(stream)
            assert (await reader.receive() or {}).get("kind") == "ready"
            await stream.send_all(wire.encode(wire.perform_doc(1, config, [])))
            done = await reader.receive()
            assert done is not None and done["kind"] == "done"
            assert done["failure_reason"] == FailureReason.WORKER_LOST.value
            assert SECRET not in str(done["error"])  # the run's error names the type only
            assert not worker._in_flight  # an ended request leaves no scope behind
            await stream.aclose()
    assert_told_without_the_message(caplog.records, "failed inside the worker process", "perform")


async def test_a_request_that_meets_a_bug_logs_no_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 500: the app's boundary names the method, the path, the type and the line."""
    caplog.set_level(logging.ERROR)
    async with make_harness(tmp_path) as h:

        async def create_job(*args: object, **kwargs: object) -> object:
            raise bug()  # a bug whose message quotes what the request carried

        h.store.jobs.create_job = create_job  # type: ignore[method-assign]
        header = {"name": "Authorization", "value": SECRET}
        doc = job_doc(
            "quoted", configuration={"url": "https://example.invalid/", "headers": [header]}
        )
        response = await h.post("/api/v1/jobs", doc)
        assert response.status_code == 500
        assert SECRET not in (await response.get_data(as_text=True))
    assert_told_without_the_message(
        caplog.records, "unhandled error in POST /api/v1/jobs", "create_job"
    )
