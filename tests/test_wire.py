"""The socket pair's framing (`jobsd.workers.wire`): round trips and every bound."""

from __future__ import annotations

import json
import socket
from typing import Any, cast

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from jobsd.job_model import Header, HttpConfig
from jobsd.messages import Outcome
from jobsd.runs import FailureReason, RunStatus
from jobsd.workers import wire
from jobsd.workers.sender import QUEUED, WITHDRAWN, WRITING, WRITTEN, FrameSender

text = st.text(max_size=40)


@given(
    url=text,
    headers=st.lists(st.tuples(text, text), max_size=4),
    body=st.none() | text,
    ca=st.none() | text,
    verify=st.booleans(),
    timeout=st.integers(1, 86400),
)
def test_a_request_crosses_unchanged(
    url: str,
    headers: list[tuple[str, str]],
    body: str | None,
    ca: str | None,
    verify: bool,
    timeout: int,
) -> None:
    config = HttpConfig(
        url=url,
        method="PUT",
        headers=tuple(Header(n, v) for n, v in headers),
        success_status="204",
        tls_verify=verify,
        ca_cert=ca,
        body=body,
        timeout_s=timeout,
    )
    stamp = [("X-Jobsd-Run-Id", url), ("webhook-id", body or "")]
    doc = json.loads(wire.encode(wire.perform_doc(7, config, stamp))[4:])
    assert wire.config_of(doc["config"]) == config
    assert wire.stamp_of(doc) == stamp and wire.seq_of(doc) == 7


def test_an_outcome_crosses_unchanged_and_a_bad_one_is_refused() -> None:
    outcome = Outcome(
        RunStatus.FAILED,
        FailureReason.NON_SUCCESS_STATUS,
        "status 500",
        {"method": "POST", "headers": []},
        {"status": 500, "body": "é\x00"},
    )
    doc = json.loads(wire.encode(wire.done_doc(3, outcome))[4:])
    assert "request" not in doc  # the daemon's own record is used (`outcome_of`)
    assert wire.outcome_of(doc, outcome.request) == outcome
    for key, bad in (
        ("status", "DONE"),
        ("failure_reason", "BORED"),
        ("error", 5),
        ("result", "x"),
    ):
        with pytest.raises(wire.FrameError, match="does not hold an outcome"):
            wire.outcome_of({**doc, key: bad}, {})
    with pytest.raises(wire.FrameError, match="does not hold an outcome"):
        wire.outcome_of({"kind": "done", "seq": 3}, {})
    with pytest.raises(wire.FrameError, match="sequence number"):
        wire.seq_of({"kind": "done", "seq": True})


@pytest.mark.parametrize("status", ["PENDING", "RUNNING", "CANCELED"])
def test_an_outcome_no_request_ends_with_is_refused(status: str) -> None:
    # A request ends SUCCEEDED or FAILED (a cancelled one sends no outcome at
    # all). A worker that sent PENDING or RUNNING would have its run finished
    # with a status no RUNNING run moves to: the record matches nothing and the
    # run stays RUNNING for good; CANCELED would say a user cancelled it.
    outcome = Outcome(RunStatus.SUCCEEDED, None, None, {"method": "POST"}, {"status": 200})
    doc = json.loads(wire.encode(wire.done_doc(3, outcome))[4:])
    with pytest.raises(wire.FrameError, match="does not hold an outcome"):
        wire.outcome_of({**doc, "status": status}, {})


async def _read(data: bytes, max_bytes: int = wire.MAX_FRAME_BYTES) -> list[wire.Doc | None]:
    send, receive = trio.testing.memory_stream_pair()
    await send.send_all(data)
    await send.aclose()
    reader = wire.FrameReader(receive, max_bytes)
    return [await reader.receive(), await reader.receive()]


async def test_frames_split_anywhere_are_read_whole() -> None:
    frames = wire.encode({"kind": "a", "n": 1}) + wire.encode({"kind": "b"})
    send, receive = trio.testing.memory_stream_pair()
    reader = wire.FrameReader(receive)
    got = []
    async with trio.open_nursery() as nursery:

        async def feed() -> None:
            for byte in frames:
                await send.send_all(bytes([byte]))
            await send.aclose()

        nursery.start_soon(feed)
        while (doc := await reader.receive()) is not None:
            got.append(doc)
    assert got == [{"kind": "a", "n": 1}, {"kind": "b"}]


async def test_a_read_of_many_frames_and_part_of_one_gives_each_once() -> None:
    """A burst's frames arrive many to a read, the last often cut: each is read
    once, in order, the cut one when its rest arrives."""
    frames = b"".join(wire.encode({"kind": "done", "seq": n}) for n in range(300))
    cut = len(frames) - 5
    send, receive = trio.testing.memory_stream_pair()
    reader = wire.FrameReader(receive)
    await send.send_all(frames[:cut])
    got = [await reader.receive() for _ in range(299)]
    await send.send_all(frames[cut:])
    await send.aclose()
    got += [await reader.receive(), await reader.receive()]
    assert got == [{"kind": "done", "seq": n} for n in range(300)] + [None]


async def test_a_frame_past_the_bound_ends_the_pair() -> None:
    with pytest.raises(wire.FrameError, match="past the bound"):
        await _read((101).to_bytes(4, "big") + b"x" * 101, max_bytes=100)
    assert await _read(wire.encode({"kind": "x", "pad": "y" * 70}), max_bytes=100) == [
        {"kind": "x", "pad": "y" * 70},
        None,
    ]
    with pytest.raises(wire.FrameError, match="past the bound"):
        wire.encode({"kind": "perform", "body": "x" * wire.MAX_FRAME_BYTES})


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (wire.encode({"kind": "a"})[:-1], "middle of a frame"),
        ((3).to_bytes(4, "big") + b"{x}", "not JSON"),
        ((2).to_bytes(4, "big") + b"\xff\xfe", "not JSON"),
        ((2).to_bytes(4, "big") + b"[]", "not an object with a kind"),
        ((12).to_bytes(4, "big") + b'{"kind": 12}', "not an object with a kind"),
    ],
)
async def test_broken_framing_is_an_error(data: bytes, complaint: str) -> None:
    with pytest.raises(wire.FrameError, match=complaint):
        await _read(data)


async def test_the_sender_queue_is_bounded() -> None:
    send, receive = trio.testing.memory_stream_pair()
    sender = FrameSender(send, capacity=3)
    for n in range(3):
        sender.send_nowait({"kind": "x", "n": n})
    with pytest.raises(trio.WouldBlock):
        sender.send_nowait({"kind": "x", "n": 3})
    reader = wire.FrameReader(receive)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run)
        got = [await reader.receive() for _ in range(3)]
        nursery.cancel_scope.cancel()
    assert [doc["n"] for doc in got if doc is not None] == [0, 1, 2]
    sender.close()  # its worker is gone: nothing queues for it any more
    with pytest.raises(trio.BrokenResourceError):
        await sender.send({"kind": "x"})


class _Steps(trio.abc.Instrument):
    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.count += task is self.task


async def test_a_frame_with_room_is_queued_without_a_checkpoint() -> None:
    """A run's perform frame costs its executor no trip through trio's scheduler;
    past the capacity, a send waits for room."""
    send, receive = trio.testing.memory_stream_pair()
    sender = FrameSender(send, capacity=2)
    steps = _Steps(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(steps)
    await sender.send({"kind": "x", "n": 0})
    await sender.send({"kind": "x", "n": 1})
    trio.lowlevel.remove_instrument(steps)
    assert steps.count == 0  # never rescheduled: it did not yield
    with trio.CancelScope() as cancelled:
        cancelled.cancel()
        await sender.send({"kind": "x", "n": "never"})  # a cancelled send queues nothing
    reader = wire.FrameReader(receive)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.send, {"kind": "x", "n": 2})
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(sender.run)
        got = [await reader.receive() for _ in range(3)]
        nursery.cancel_scope.cancel()
    assert [doc["n"] for doc in got if doc is not None] == [0, 1, 2]


@given(scope=st.none() | st.text(min_size=1, max_size=64))
def test_a_requests_reuse_scope_crosses_unchanged(scope: str | None) -> None:
    config = HttpConfig(url="http://127.0.0.1/", reuse_scope=scope)
    doc = json.loads(wire.encode(wire.perform_doc(1, config, []))[4:])
    assert wire.config_of(doc["config"]).reuse_scope == scope


class _Frame:
    def __init__(self) -> None:
        self.state = QUEUED


async def test_a_frame_is_written_only_once_its_last_byte_is_in_the_socket() -> None:
    """What a dead worker can have had: a frame cut short (or still queued) never
    reached it; one withdrawn while queued is never written at all."""
    ours, theirs = socket.socketpair()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    sender = FrameSender(stream, capacity=4)
    big, small, withdrawn = _Frame(), _Frame(), _Frame()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run)
        await sender.send({"kind": "x", "pad": "y" * 1024 * 1024}, big)
        await sender.send({"kind": "x", "n": 1}, small)
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # nobody reads: stuck
        assert (big.state, small.state) == (WRITING, WRITING)
        await sender.send({"kind": "x", "n": 2}, withdrawn)
        assert withdrawn.state == QUEUED
        withdrawn.state = WITHDRAWN
        await sender.send({"kind": "x", "n": 3})
        reader = wire.FrameReader(trio.SocketStream(trio.socket.from_stdlib_socket(theirs)))
        got = [await reader.receive() for _ in range(3)]
        nursery.cancel_scope.cancel()
    assert [doc.get("n") for doc in got if doc is not None] == [None, 1, 3]
    assert (big.state, small.state, withdrawn.state) == (WRITTEN, WRITTEN, WITHDRAWN)
    await stream.aclose()


def _deepest(value: object, depth: int = 0) -> int:
    """How deep the deepest value of a record lies, plainly (the record itself: 0)."""
    if isinstance(value, dict):
        return max((_deepest(v, depth + 1) for v in value.values()), default=depth)
    if isinstance(value, list):
        return max((_deepest(v, depth + 1) for v in value), default=depth)
    return depth


_records = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner, max_size=2)
    ),
    max_leaves=60,
)


@given(_records)
def test_a_record_is_too_deep_exactly_when_nested_past_the_bound(record: object) -> None:
    assert wire._too_deep(record) == (_deepest(record) > wire.MAX_RECORD_DEPTH)


def _chain(levels: int, leaf: object) -> object:
    """`leaf` inside `levels` containers, lists and objects in turn."""
    value = leaf
    for n in range(levels):
        value = [value] if n % 2 else {"k": value}
    return value


def test_the_depth_bound_falls_between_its_two_sides() -> None:
    bound = wire.MAX_RECORD_DEPTH
    for leaf in ("v", None, [], {}):
        assert not wire._too_deep(_chain(bound, "v"))
        assert wire._too_deep(_chain(bound + 1, "v"))
        assert wire._too_deep(_chain(bound, [leaf])) == (_deepest(_chain(bound, [leaf])) > bound)


def test_a_frame_of_exactly_the_bound_is_encoded_and_one_byte_more_is_not() -> None:
    """The sender's bound is the reader's: a frame one byte past it would be
    written whole and then end the pair at the other end."""
    empty = len(wire._ENCODER.encode({"kind": "p", "pad": ""}))
    at_bound = wire.encode({"kind": "p", "pad": "x" * (wire.MAX_FRAME_BYTES - empty)})
    assert int.from_bytes(at_bound[:4], "big") == wire.MAX_FRAME_BYTES
    with pytest.raises(wire.FrameError, match="past the bound"):
        wire.encode({"kind": "p", "pad": "x" * (wire.MAX_FRAME_BYTES - empty + 1)})


async def test_a_length_past_the_bound_is_refused_before_its_body_arrives() -> None:
    """A hostile length alone ends the pair: nothing waits for 4 GiB to arrive."""
    send, receive = trio.testing.memory_stream_pair()
    reader = wire.FrameReader(receive, max_bytes=100)
    await send.send_all((101).to_bytes(4, "big"))  # and nothing more; the stream stays open
    with trio.fail_after(2), pytest.raises(wire.FrameError, match="past the bound"):
        await reader.receive()


async def test_a_reset_pair_reads_as_gone_not_as_a_broken_frame() -> None:
    """A process killed with unread data resets its end: that is the other end
    gone (None), like a close between frames, not a FrameError."""
    ours, theirs = socket.socketpair()
    ours.send(wire.encode({"kind": "perform", "seq": 1}))
    theirs.close()  # with that frame unread: our end is reset
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    with trio.fail_after(2):
        assert await wire.FrameReader(stream).receive() is None
    await stream.aclose()


@pytest.mark.parametrize(
    "field", ["url", "method", "success_status", "ca_cert", "body", "reuse_scope"]
)
def test_a_request_field_of_the_wrong_kind_is_refused(field: str) -> None:
    doc = wire.config_doc(HttpConfig(url="http://127.0.0.1/", ca_cert="pem", body="b"))
    with pytest.raises(TypeError, match="expected a string"):
        wire.config_of({**doc, field: 12})


def test_an_outcome_whose_result_is_a_list_is_refused() -> None:
    outcome = Outcome(RunStatus.SUCCEEDED, None, None, {}, {"status": 200})
    doc = json.loads(wire.encode(wire.done_doc(3, outcome))[4:])
    with pytest.raises(wire.FrameError, match="does not hold an outcome"):
        wire.outcome_of({**doc, "result": [{"status": 200}]}, {})


async def test_a_send_cancelled_already_queues_nothing_even_with_room() -> None:
    """A run cancelled before its request went out sends no perform frame, room in
    the queue or not."""
    send, receive = trio.testing.memory_stream_pair()
    sender = FrameSender(send, capacity=4)
    with trio.CancelScope() as cancelled:
        cancelled.cancel()
        await sender.send({"kind": "x", "n": "never"})
    await sender.send({"kind": "x", "n": 1})
    reader = wire.FrameReader(receive)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run)
        got = await reader.receive()
        nursery.cancel_scope.cancel()
    assert got == {"kind": "x", "n": 1}


async def test_a_frame_written_whole_is_written_though_a_later_one_in_its_write_is_stuck() -> None:
    """Frames queued together go out in one write; one whose last byte is in the
    socket is WRITTEN at once, though the rest of that write is stuck: were its
    worker to die now, that run may have reached the target and is never sent again."""
    ours, theirs = socket.socketpair()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    sender = FrameSender(stream, capacity=4)
    small, big = _Frame(), _Frame()
    await sender.send({"kind": "x", "n": 1}, small)
    await sender.send({"kind": "x", "pad": "y" * 1024 * 1024}, big)  # nobody reads: stuck
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run)
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert (small.state, big.state) == (WRITTEN, WRITING)
        nursery.cancel_scope.cancel()
    await stream.aclose()
    theirs.close()


class _Room:
    """A socket that takes `room` bytes, then no more (its reader stopped)."""

    def __init__(self, room: int) -> None:
        self.room = room

    async def send(self, data: memoryview) -> int:
        if not self.room:
            await trio.sleep_forever()
        taken = min(len(data), self.room)
        self.room -= taken
        await trio.lowlevel.checkpoint()
        return taken


async def test_a_frame_short_of_its_last_byte_is_not_written() -> None:
    first, second = wire.encode({"kind": "x", "n": 1}), wire.encode({"kind": "x", "n": 2})
    ours, theirs = socket.socketpair()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    sender = FrameSender(stream, capacity=4)
    sender._socket = cast(Any, _Room(len(first) + len(second) - 1))
    one, two = _Frame(), _Frame()
    await sender.send({"kind": "x", "n": 1}, one)
    await sender.send({"kind": "x", "n": 2}, two)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run)
        await trio.testing.wait_all_tasks_blocked()
        assert (one.state, two.state) == (WRITTEN, WRITING)
        nursery.cancel_scope.cancel()
    await stream.aclose()
    theirs.close()
