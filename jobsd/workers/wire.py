"""The socket pair between the daemon and a worker process: frames and what they carry.

A frame is a 4-byte big-endian length, then that many bytes of one JSON
object whose "kind" says what it is:

    daemon -> worker   hello    the delivery's settings (address policy, caps, log format)
                       perform  seq, the run's request (`HttpConfig`) and jobsd's own headers
                       cancel   seq: abandon that request now
    worker -> daemon   ready    after hello
                       done     seq, the `Outcome` but its request's record

JSON, never pickle: a worker parses what remote servers send, so nothing it
writes back may be able to run code in the daemon, which holds the keys and
the database. Every value is checked on the way in (`outcome_of`), and a
frame longer than `MAX_FRAME_BYTES` ends the pair (`FrameError`). Header
values cross here and nowhere else: never in a worker's argv or environment.
The record of the request a run sent is the daemon's own, made from what it
asked the worker to send (`jobsd.delivery.request_record`), not read back:
a job's body would cross twice, and a worker could not write what a run
says it sent.

Frames are written by one sender task per end (`jobsd.workers.sender`),
which joins whatever is queued into one write: a burst of runs costs a
few system calls, not one per run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import trio

from jobsd.job_model import Header, HttpConfig
from jobsd.messages import Outcome
from jobsd.runs import FailureReason, RunStatus

# A job's request (its body is bounded by the API) or an outcome (a kept body
# of 64 KiB, escaped) fits many times over.
MAX_FRAME_BYTES = 16 * 1024 * 1024
_LENGTH = 4
Doc = dict[str, Any]
# Built once: `json.dumps` with arguments builds an encoder at every call
# (about a third of a frame's encoding).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class FrameError(Exception):
    """The other end broke the framing: the pair is unusable."""


def encode(doc: Doc) -> bytes:
    body = _ENCODER.encode(doc).encode("utf-8")
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"a {doc.get('kind')} frame of {len(body)} bytes is past the bound")
    return len(body).to_bytes(_LENGTH, "big") + body


class FrameReader:
    def __init__(self, stream: trio.abc.ReceiveStream, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self._stream = stream
        self._max = max_bytes
        self._buffer = bytearray()
        self._start = 0  # where the next frame begins in `_buffer`

    async def receive(self) -> Doc | None:
        """The next frame's object; None when the other end is gone (closed between
        frames, or reset: a process killed with unread data resets its end)."""
        while True:
            doc = self._next()
            if doc is not None:
                return doc
            try:
                data = await self._stream.receive_some(65536)
            except trio.BrokenResourceError:
                return None
            if not data:
                if len(self._buffer) > self._start:
                    raise FrameError("the other end closed in the middle of a frame")
                return None
            if self._start:
                # What was read is dropped once per read, not once per frame:
                # a read holds a burst's frames, and each drop moves the rest.
                del self._buffer[: self._start]
                self._start = 0
            self._buffer += data

    def _next(self) -> Doc | None:
        """The next whole frame in the buffer, or None."""
        start, buffer = self._start, self._buffer
        if len(buffer) - start < _LENGTH:
            return None
        size = int.from_bytes(buffer[start : start + _LENGTH], "big")
        if size > self._max:
            raise FrameError(f"a frame of {size} bytes is past the bound")
        end = start + _LENGTH + size
        if len(buffer) < end:
            return None
        self._start = end
        return _parsed(buffer[start + _LENGTH : end])


def _parsed(body: bytearray) -> Doc:
    try:
        doc = json.loads(body.decode())  # from a str: json's own sniffing of bytes skipped
    except ValueError as exc:
        raise FrameError(f"a frame is not JSON: {exc}") from None
    except RecursionError:  # a RuntimeError, not a ValueError: deep nesting
        raise FrameError("a frame is nested past the parser's depth") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        raise FrameError("a frame is not an object with a kind")
    return doc


# -- what the frames carry --------------------------------------------------------


def config_doc(config: HttpConfig) -> Doc:
    return {
        "url": config.url,
        "method": config.method,
        "headers": [[h.name, h.value] for h in config.headers],
        "success_status": config.success_status,
        "tls_verify": config.tls_verify,
        "ca_cert": config.ca_cert,
        "body": config.body,
        "timeout_s": config.timeout_s,
        "reuse_scope": config.reuse_scope,
    }


def config_of(doc: Doc) -> HttpConfig:
    return HttpConfig(
        url=_str(doc["url"]),
        method=_str(doc["method"]),
        headers=tuple(Header(_str(n), _str(v)) for n, v in doc["headers"]),
        success_status=_str(doc["success_status"]),
        tls_verify=bool(doc["tls_verify"]),
        ca_cert=_optional_str(doc["ca_cert"]),
        body=_optional_str(doc["body"]),
        timeout_s=int(doc["timeout_s"]),
        reuse_scope=_optional_str(doc["reuse_scope"]),
    )


def perform_doc(seq: int, config: HttpConfig, stamp: Sequence[tuple[str, str]]) -> Doc:
    return {
        "kind": "perform",
        "seq": seq,
        "config": config_doc(config),
        "stamp": [[name, value] for name, value in stamp],
    }


def stamp_of(doc: Doc) -> list[tuple[str, str]]:
    return [(_str(name), _str(value)) for name, value in doc["stamp"]]


def done_doc(seq: int, outcome: Outcome) -> Doc:
    return {
        "kind": "done",
        "seq": seq,
        "status": outcome.status.value,
        "failure_reason": None if outcome.failure_reason is None else outcome.failure_reason.value,
        "error": outcome.error,
        "result": outcome.result,
    }


# What a request ends with. A cancelled one sends no outcome; any other status
# would finish a RUNNING run into nothing it may move to (the record matches no
# row, and the run stays RUNNING for good) or claim a user's cancel.
_ENDS = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED})


def outcome_of(doc: Doc, request: dict[str, object]) -> Outcome:
    """The outcome a worker sent, every field checked, with the daemon's record of
    the `request` it asked for; FrameError if a field is not of its kind."""
    try:
        reason = doc["failure_reason"]
        result = doc["result"]
        if not (result is None or isinstance(result, dict)):
            raise TypeError("the result is an object")
        if _too_deep(result):
            # Stored as is, and read back deeper in the API's stack, where
            # json.loads would raise RecursionError on every read of the run.
            raise ValueError(f"a record nested past {MAX_RECORD_DEPTH} levels")
        status = RunStatus(doc["status"])
        if status not in _ENDS:
            raise ValueError(f"a request does not end {status.value}")
        return Outcome(
            status,
            None if reason is None else FailureReason(reason),
            _optional_str(doc["error"]),
            request,
            result,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise FrameError(f"a done frame does not hold an outcome: {exc}") from None


# A record is an object of lists of objects (headers): a few levels deep.
MAX_RECORD_DEPTH = 16


def _too_deep(value: object, depth: int = 0) -> bool:
    """Nested past `MAX_RECORD_DEPTH`; stops there, so its own recursion is bounded.
    Plain loops, and no call for a leaf: a run's record is mostly leaves, and
    this is read for every run (half the cost of generators and a call each)."""
    if depth > MAX_RECORD_DEPTH:
        return True
    if isinstance(value, dict):
        values: Iterable[object] = value.values()
    elif isinstance(value, list):
        values = value
    else:
        return False
    for item in values:
        if depth >= MAX_RECORD_DEPTH:  # an item one level down is past the bound
            return True
        if isinstance(item, (dict, list)) and _too_deep(item, depth + 1):
            return True
    return False


def seq_of(doc: Doc) -> int:
    seq = doc.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise FrameError(f"a {doc['kind']} frame without a sequence number")
    return seq


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _optional_str(value: object) -> str | None:
    return None if value is None else _str(value)
