"""A plain request's bytes, written here instead of by h11's events.

h11 turns a request into bytes through events that copy, lower-case and
check every header, then a state machine and a writer: ~28 us for a run's
usual request (ten headers and a small body), a sixth of what a worker
process spends per run (`tests/bench/bench_e2e.py burst --profile`). This
writes the same bytes, with the same checks h11 makes (its grammar, from
RFC 9110, below: a name is a token, a value has no control character and
no white space at either end, the method a token, the target visible
characters), in ~7 us.

h11 still reads the response, and what it reads depends on only three
facts of the request: its method (a response to HEAD has no body), whether
it proposed an upgrade, and whether it asked to close the connection. So
the connection is told of a `stand_in` request with the same method and the
same `Connection: close` (or none), which fixes h11's state exactly as the
real one would, and costs ~4 us (kept per method and persistence, a handful).

Only a plain request takes this path (`closes`): one with a header h11
handles specially (Host, Content-Length, Transfer-Encoding, Connection but
jobsd's own `Connection: close`, Upgrade, Expect), or the CONNECT method,
goes through h11 as before; the API refuses a job's first four, so that is
an upgrade, an expectation, or a configuration older than that refusal.
A name or value the grammar refuses is refused here too, as h11 would
(`HeaderRefused`, naming the header, never showing its value: a secret).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import h11

# h11's grammar (h11/_abnf.py), which is RFC 9110's.
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_FIELD_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")
_TARGET = re.compile(rb"[\x21-\x7e]+")

# Headers whose meaning h11 acts on when it sends a request; a request that
# carries one (but the `Connection: close` jobsd itself adds) takes h11's path.
_SPECIAL = frozenset({"host", "content-length", "transfer-encoding", "upgrade", "expect"})
BODY_EXPECTED = ("POST", "PUT", "PATCH", "QUERY")


class HeaderRefused(ValueError):
    """What HTTP/1.1 does not allow; the message names the part, never a value."""


def closes(method: str, headers: Sequence[tuple[str, str]]) -> bool | None:
    """None when the request is not plain (h11 writes it); else whether it asks
    to close the connection (jobsd's own `Connection: close`)."""
    if method == "CONNECT":
        return None
    close = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == "connection":
            if value != "close":
                return None
            close = True
        elif lowered in _SPECIAL:
            return None
    return close


def head_and_body(
    method: str, target: str, host: str, headers: Sequence[tuple[str, str]], body: bytes
) -> bytes:
    """The bytes h11 writes for a plain request: the request line, Host, an empty
    body's `Content-Length: 0` where the method expects a body, `headers` in
    order, the body's Content-Length; then the body."""
    line = method.encode("utf-8")
    path = target.encode("utf-8")
    if _TOKEN.fullmatch(line) is None:
        raise HeaderRefused("the method is not allowed in HTTP/1.1")
    if _TARGET.fullmatch(path) is None:
        raise HeaderRefused("the request target is not allowed in HTTP/1.1")
    parts = [line, b" ", path, b" HTTP/1.1\r\nHost: ", _value("Host", host), b"\r\n"]
    if not body and method in BODY_EXPECTED:
        parts.append(b"Content-Length: 0\r\n")
    for name, value in headers:
        raw_name = name.encode("utf-8")
        if _TOKEN.fullmatch(raw_name) is None:
            raise HeaderRefused("a header name is not allowed in HTTP/1.1 (not shown)")
        parts += (raw_name, b": ", _value(name, value), b"\r\n")
    if body:
        parts.append(b"Content-Length: %d\r\n" % len(body))
    parts += (b"\r\n", body)
    return b"".join(parts)


def _value(name: str, value: str) -> bytes:
    raw = value.encode("utf-8")
    if _FIELD_VALUE.fullmatch(raw) is None:
        raise HeaderRefused(f"the value of header {name} is not allowed in HTTP/1.1 (not shown)")
    return raw


def tell(conn: h11.Connection, method: str, *, close: bool) -> None:
    """Puts `conn` where sending the real request would have: the request sent whole."""
    conn.send(_stand_in(method, close))
    conn.send(h11.EndOfMessage())


@lru_cache(maxsize=64)
def _stand_in(method: str, close: bool) -> h11.Request:
    headers = [("Host", "x")] + ([("Connection", "close")] if close else [])
    return h11.Request(method=method, target="/", headers=headers)
