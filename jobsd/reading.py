"""What a response has delivered so far, and the bounds on what it may deliver.

Split from `jobsd.http1`, which reads a response into a `Reading`; pure (no
I/O), so the bounds can be tested alone. A run records its `Reading` even
when the exchange ends early.

The bounds, so that whatever a target sends, a worker reads a bounded
number of bytes for it before the run's one deadline:
- the status line and header block: `MAX_HEAD_BYTES`, as h11's
  `max_incomplete_event_size` (httpcore's value);
- the informational (1xx) heads skipped before the final one: together
  `INFORMATIONAL_BYTES`, as read off the wire (h11 drops a value's
  surrounding whitespace, so a parsed head's size let padded heads of
  100 KiB count as a few bytes each). Each is bounded alone by h11;
  without a bound on all of them an endless stream of them kept a worker
  parsing at full CPU until the deadline. A server reporting progress
  (`102 Processing`) every second for five minutes sends 8 KB of it;
- the body: counted, the first `keep_bytes` kept, cut at `cap_bytes`;
- every byte read for the response: `wire_bound`. The cap counts body
  bytes, and a chunked body of mostly framing (1-byte chunks, long chunk
  extensions) would otherwise be read at full speed for little body. The
  bound leaves an eighth of the cap for ordinary chunking, so only such a
  body meets it;
- the pieces of body h11 hands over (a chunk, or what one read holds of
  one): `cap_bytes // PIECE_BYTES`. Bytes alone do not bound the work:
  h11 spends ~10 us on each chunk, so a body of 1-byte chunks kept a
  worker's CPU busy for 16 s within the wire bound. Pieces of 64 bytes on
  average reach the byte cap first.
A body stopped at either of the last two ends as at the cap: judged on its
status, `error` says why (`cap_note`).
"""

from __future__ import annotations

from collections.abc import Sequence

import h11

MAX_HEAD_BYTES = 100 * 1024
INFORMATIONAL_BYTES = MAX_HEAD_BYTES
PIECE_BYTES = 64


def wire_bound(cap_bytes: int) -> int:
    """The bytes read for one response at most: its heads, its body to the cap
    and an eighth of the cap for the body's framing."""
    return MAX_HEAD_BYTES + INFORMATIONAL_BYTES + cap_bytes + cap_bytes // 8


class Reading:
    """What has arrived so far; recorded even when the exchange ends early."""

    def __init__(self, keep_bytes: int, cap_bytes: int) -> None:
        self.keep_bytes = keep_bytes
        self.cap_bytes = cap_bytes
        self.wire_bytes = 0
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.kept = bytearray()
        self.body_bytes = 0
        self.pieces = 0
        self.capped = False

    def start(self, response: h11.Response | h11.InformationalResponse) -> None:
        raw = [(name, value) for name, value in response.headers]
        encoding = _encoding([value for _, value in raw])
        for name, value in raw:
            key, text = name.decode("latin-1"), value.decode(encoding)
            self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text
        self.status = response.status_code

    def framed_twice(self) -> bool:
        """Both `Content-Length` and `Transfer-Encoding`: read as chunked, as
        RFC 9112 6.3 says, but a sign of response splitting (the two may
        disagree on where the response ends), so such a connection is never
        kept for another run."""
        return "content-length" in self.headers and "transfer-encoding" in self.headers

    def take(self, chunk: bytes) -> bool:
        """Counts and keeps a chunk of body; False once the cap is reached."""
        room = self.keep_bytes - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]
        self.body_bytes += len(chunk)
        self.pieces += 1
        if self.body_bytes > self.cap_bytes:
            self.body_bytes = self.cap_bytes
            self.capped = True
        elif self.pieces > self.cap_bytes // PIECE_BYTES:
            self.capped = True
        return not self.capped

    def cap_note(self) -> str:
        """What `error` says of a body read to a bound."""
        if self.body_bytes >= self.cap_bytes:
            return f"stopped reading the body at the {self.cap_bytes}-byte cap"
        return (
            f"stopped reading the body after {self.wire_bytes} bytes on the wire in"
            f" {self.pieces} pieces had carried only {self.body_bytes} bytes of it (chunk framing)"
        )

    def result(self) -> dict[str, object] | None:
        if self.status is None:
            return None
        return {
            "status": self.status,
            "headers": self.headers,
            "body": self.kept.decode("utf-8", errors="replace"),
            "body_truncated": self.body_bytes > self.keep_bytes,
            "body_bytes": self.body_bytes,
        }

    def where(self) -> str:
        if self.status is None:
            return "before the response headers arrived"
        return f"after status {self.status} and {self.body_bytes} body bytes"


def _encoding(values: Sequence[bytes]) -> str:
    """httpx's choice for a header block: ASCII, else UTF-8, else Latin-1."""
    for encoding in ("ascii", "utf-8"):
        try:
            for value in values:
                value.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    return "latin-1"
