"""A worker process that writes what it should not: the daemon's end must survive it.

A worker parses what remote servers send, so what it writes back is
treated as hostile (`jobsd.workers.wire`): whatever it sends may end its
own pair, never the daemon. Here the daemon's end of one pair
(`jobsd.workers.child_link.Child`) is fed frames by hand.
"""

from __future__ import annotations

import json
import signal
import socket
from typing import Any, cast

import pytest
import trio
import trio.testing

from jobsd.delivery import request_record
from jobsd.job_model import HttpConfig
from jobsd.runs import FailureReason, RunStatus
from jobsd.workers import wire
from jobsd.workers.child_link import Child, Waiter
from jobsd.workers.sender import WRITTEN


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _frame(text: str) -> bytes:
    body = text.encode()
    return len(body).to_bytes(4, "big") + body


async def _serve_against(frames: bytes) -> tuple[Child, list[Any]]:
    """A Child whose worker wrote `frames` then closed; the outcomes its waiter got."""
    ours, theirs = socket.socketpair()
    child = Child(
        0, cast(trio.Process, None), trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    )
    got: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def wait() -> None:
            # A waiter belongs to the task that waits (it is rescheduled by hand).
            child.waiting[0] = waiter = Waiter(HttpConfig(url="http://127.0.0.1/"), ())
            waiter.state = WRITTEN  # the worker had its request
            got.append(await waiter.wait())

        nursery.start_soon(wait)
        worker = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))

        async def write() -> None:
            async with worker:
                await worker.send_all(frames)

        nursery.start_soon(write)
        with trio.fail_after(5):
            await child.serve(capacity=4)
        child.lose_all()
    await child.stream.aclose()
    return child, got


async def test_a_frame_nested_past_the_parsers_depth_ends_only_its_pair() -> None:
    """json.loads raises RecursionError (not ValueError) on deep nesting: before,
    it escaped `Child.serve` and, through the pool, stopped the daemon."""
    _, got = await _serve_against(_frame(_nested(100_000)))
    [outcome] = got
    assert outcome.failure_reason is FailureReason.WORKER_LOST


async def test_a_done_with_a_record_nested_too_deep_is_refused() -> None:
    """A record the daemon could store but not read back (json.loads deeper in
    the API's stack gives RecursionError) is a broken frame, not an outcome."""
    doc = {
        "kind": "done",
        "seq": 0,
        "status": "SUCCEEDED",
        "failure_reason": None,
        "error": None,
        "result": json.loads(_nested(200)),
    }
    with pytest.raises(wire.FrameError, match="nested"):
        wire.outcome_of(doc, {})
    ok = {**doc, "result": {"status": 200, "headers": [{"name": "a", "value": "b"}]}}
    assert wire.outcome_of(ok, {}).status is RunStatus.SUCCEEDED


async def test_the_record_of_the_request_sent_is_the_daemons_not_the_workers() -> None:
    """What a run says it sent comes from what the daemon asked the worker to
    send: a worker cannot write it (nor send a job's body back for it)."""
    forged = {"method": "GET", "url": "http://forged.invalid/", "headers": [], "body": None}
    done = {"kind": "done", "seq": 0, "status": "SUCCEEDED", "failure_reason": None}
    frame = wire.encode({**done, "error": None, "request": forged, "result": None})
    _, got = await _serve_against(frame)
    [outcome] = got
    assert outcome.status is RunStatus.SUCCEEDED
    assert outcome.request == request_record(HttpConfig(url="http://127.0.0.1/"), ())


async def test_a_frame_exactly_at_the_bound_is_read_and_one_past_is_not() -> None:
    pad = "y" * (100 - len('{"kind":"x","p":""}'))
    exact = _frame('{"kind":"x","p":"' + pad + '"}')
    assert len(exact) == 4 + 100
    send, receive = trio.testing.memory_stream_pair()
    await send.send_all(exact + _frame('{"kind":"x","p":"' + pad + 'y"}'))
    reader = wire.FrameReader(receive, max_bytes=100)
    assert (await reader.receive()) == {"kind": "x", "p": pad}
    with pytest.raises(wire.FrameError, match="past the bound"):
        await reader.receive()


@pytest.mark.parametrize(
    "frames",
    [
        _frame('{"kind":"ready"}'),  # a kind it may not send now
        # ... even one that holds a whole outcome for a run it has
        _frame(
            '{"kind":"ready","seq":0,"status":"SUCCEEDED","failure_reason":null,'
            '"error":null,"result":null}'
        ),
        _frame('{"kind":"done","seq":0}'),  # a done without an outcome
        _frame("[1]"),
        b"\x00\x00",  # truncated length
    ],
)
async def test_garbage_ends_the_pair_and_its_runs_are_lost(frames: bytes) -> None:
    child, got = await _serve_against(frames)
    [outcome] = got
    assert (outcome.status, outcome.failure_reason) == (RunStatus.FAILED, FailureReason.WORKER_LOST)
    assert not child.alive


async def test_a_done_never_given_or_given_twice_answers_nothing_else() -> None:
    done = {
        "kind": "done",
        "status": "SUCCEEDED",
        "failure_reason": None,
        "error": None,
        "result": None,
    }
    frames = b"".join(wire.encode({**done, "seq": s}) for s in (7, 0, 0))
    _, got = await _serve_against(frames)
    [outcome] = got
    assert outcome.status is RunStatus.SUCCEEDED


@pytest.mark.parametrize(
    "doc",
    [
        {"kind": "k" * 100_000},  # a kind it may not send, quoted in the reason
        {"kind": "done", "seq": 0, "status": "s" * 100_000},  # a status quoted by the enum
    ],
)
async def test_a_broken_frames_reason_is_logged_bounded(
    doc: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The reason quotes what the worker sent: up to a 16 MiB frame's worth in one
    log line, at every restart of a worker that keeps sending it."""
    _, got = await _serve_against(wire.encode(doc))
    [line] = [r.getMessage() for r in caplog.records if "broke its socket pair" in r.getMessage()]
    assert len(line) < 1000, len(line)
    [outcome] = got
    assert outcome.failure_reason is FailureReason.WORKER_LOST


async def test_a_worker_that_lets_a_runs_deadline_pass_is_killed_then() -> None:
    """The stuck timer kills the worker once the earliest deadline of the runs
    it holds has passed, not some while later."""
    process = await trio.lowlevel.open_process(["sleep", "30"])
    ours, theirs = socket.socketpair()
    child = Child(0, process, trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
    child.expect(0, Waiter(HttpConfig(url="http://127.0.0.1/"), (), patience_s=0.2))
    start = trio.current_time()
    with trio.fail_after(3):
        await child._watch_stuck()
        assert await process.wait() == -signal.SIGKILL
    assert 0.2 <= trio.current_time() - start < 1.0
    await child.stream.aclose()
    theirs.close()
