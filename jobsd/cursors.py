"""Page arithmetic: opaque keyset cursors for `GET /runs`, offsets for `GET /jobs`.

Runs are listed newest first by `seq`, their insert order, and a page ends
with a cursor naming the last `seq` it showed; the next page is the runs with
a smaller `seq`. Runs added meanwhile get larger seqs, so walking the pages
never repeats or skips a run, which an offset could not promise.

The cursor is a version byte and the seq as 8 big-endian bytes, base64url
without padding: always 12 URL-safe characters, so any other text is refused
before decoding, and a future format bumps the version. It is opaque to
clients but not secret: a forged cursor only moves a window over the
caller's own runs, which the query scopes by account anyway.

`paginate_keyset` is the same walk over a list, the oracle the tests (and
anyone checking the SQL) hold the store to. Jobs stay offset-paged: the spec
asks for page numbers and totals there.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Sequence

CURSOR_VERSION = 1
MAX_SEQ = 2**63 - 1  # SQLite's largest integer
_LAYOUT = struct.Struct(">BQ")
_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]{12}", re.ASCII)


def encode_after(seq: int) -> str:
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"seq out of range: {seq}")
    return base64.urlsafe_b64encode(_LAYOUT.pack(CURSOR_VERSION, seq)).decode("ascii").rstrip("=")


def decode_after(text: str) -> int:
    """The seq a cursor names; ValueError for anything that is not one of ours."""
    if not _CURSOR_TEXT.fullmatch(text):
        raise ValueError("not a page cursor")
    try:
        raw = base64.urlsafe_b64decode(text)
    except binascii.Error:
        raise ValueError("not a page cursor") from None
    version, seq = _LAYOUT.unpack(raw)
    if version != CURSOR_VERSION:
        raise ValueError(f"unknown page cursor version {version}")
    if seq > MAX_SEQ:
        raise ValueError("page cursor out of range")
    return int(seq)


def page_offset(number: int, size: int) -> int:
    """Rows to skip for 1-based page `number`."""
    if number < 1 or size < 1:
        raise ValueError("page number and size must be >= 1")
    return (number - 1) * size


def total_pages(total: int, size: int) -> int:
    """0 when there is nothing: no page holds data (page 1 still answers, empty)."""
    if total < 0 or size < 1:
        raise ValueError("total must be >= 0 and size >= 1")
    return -(-total // size)


def paginate_keyset(
    items_desc: Sequence[int], after: int | None, size: int
) -> tuple[list[int], int | None]:
    """One page of seqs (given newest first) below `after`, and the next cursor's seq.

    The next seq is None on the last page: the walk looks one item ahead
    rather than handing out a cursor that leads to an empty page.
    """
    if size < 1:
        raise ValueError("size must be >= 1")
    below = [seq for seq in items_desc if after is None or seq < after]
    page = below[:size]
    return page, (page[-1] if len(below) > size else None)
