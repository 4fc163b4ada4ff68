"""Page arithmetic: opaque keyset cursors for `GET /runs`, offsets for `GET /jobs`.

A runs page ends with a cursor naming the position (`jobsd.run_order`) of
the last run it showed, in the order it was listed in; the next page is the
runs after that position. A position is a key, not an offset, so runs added
or pruned meanwhile never make a walk repeat a run or skip one that is
still there.

Version 2 (this one) is bound to its sort: the sort's code travels in the
cursor, and a cursor offered with another sort is refused
(`CursorSortError`), since its position means nothing in another order.
Layout, base64url without padding: version, sort code, segment, a value tag
(none, int64, or text of at most 255 UTF-8 bytes), the value, created_at
(int64 microseconds) and seq (int64). Only the canonical spelling decodes.
Version 1 (a bare seq, newest-first by insertion) was issued before sorts
existed; it is refused with a message saying to list again from the first
page, rather than guessed at: its order was insertion, this one is
`created_at`, and the two may differ by a clock step.

Cursors are opaque to clients but not secret: a forged cursor only moves a
window over the caller's own runs, which the query scopes by account anyway.

`paginate_keyset` is the seq-only walk over a list, kept as the simplest
statement of the promise. Jobs stay offset-paged: the spec asks for page
numbers and totals there.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Sequence

from jobsd.run_order import Position, RunSort, SortField, sort_of_code

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


KEYSET_VERSION = 2
MIN_US = -(2**63)
_HEAD = struct.Struct(">BBBB")  # version, sort code, segment, value tag
_INT = struct.Struct(">q")
_TAIL = struct.Struct(">qq")  # created_at_us, seq
_NONE, _INT_TAG, _TEXT_TAG = 0, 1, 2
_MAX_CURSOR_TEXT = 400
_KEYSET_TEXT = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


class CursorError(ValueError):
    """Not a cursor this server issued (or one from an earlier version)."""


class CursorSortError(CursorError):
    """A cursor issued for another sort."""

    def __init__(self, issued_for: RunSort, used_with: RunSort) -> None:
        super().__init__(
            f"page[after] was issued for sort={issued_for.text}; keep that sort while "
            f"following it, or start again without page[after] to list by {used_with.text}"
        )


def encode_cursor(sort: RunSort, pos: Position) -> str:
    _check_shape(sort, pos)
    if isinstance(pos.value, str):
        text = pos.value.encode("utf-8")
        value = struct.pack(">B", len(text)) + text
        tag = _TEXT_TAG
    elif isinstance(pos.value, int):
        value, tag = _INT.pack(pos.value), _INT_TAG
    else:
        value, tag = b"", _NONE
    raw = (
        _HEAD.pack(KEYSET_VERSION, sort.code, pos.segment, tag)
        + value
        + _TAIL.pack(pos.created_at_us, pos.seq)
    )
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(text: str, sort: RunSort) -> Position:
    """The position a cursor names, in `sort`; CursorError for anything else."""
    if len(text) > _MAX_CURSOR_TEXT or not _KEYSET_TEXT.fullmatch(text):
        raise CursorError("page[after] is not a cursor this server issued")
    if len(text) == 12:
        try:
            decode_after(text)
        except ValueError:
            pass
        else:
            raise CursorError(
                "page[after] is a cursor from an earlier jobsd; list again from the first page"
            )
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        version, code, segment, tag = _HEAD.unpack_from(raw)
        offset = _HEAD.size
        value: int | str | None = None
        if tag == _INT_TAG:
            (value,) = _INT.unpack_from(raw, offset)
            offset += _INT.size
        elif tag == _TEXT_TAG:
            length = raw[offset]
            value = raw[offset + 1 : offset + 1 + length].decode("utf-8")
            offset += 1 + length
        elif tag != _NONE:
            raise ValueError("unknown value tag")
        created, seq = _TAIL.unpack_from(raw, offset)
        if offset + _TAIL.size != len(raw) or version != KEYSET_VERSION:
            raise ValueError("not ours")
    except (ValueError, IndexError, struct.error, binascii.Error, UnicodeDecodeError):
        raise CursorError("page[after] is not a cursor this server issued") from None
    issued_for = sort_of_code(code)
    if issued_for is None:
        raise CursorError("page[after] is not a cursor this server issued")
    if issued_for != sort:
        raise CursorSortError(issued_for, sort)
    pos = Position(segment, value, created, seq)
    try:
        _check_shape(sort, pos)
    except ValueError:
        raise CursorError("page[after] is not a cursor this server issued") from None
    if encode_cursor(sort, pos) != text:
        raise CursorError("page[after] is not a cursor this server issued")
    return pos


def _check_shape(sort: RunSort, pos: Position) -> None:
    """A position that can exist in `sort`: its segment, and a value exactly where one belongs."""
    if not 0 <= pos.segment < sort.segment_count:
        raise ValueError(f"segment {pos.segment} is not one of sort {sort.text}")
    if not (MIN_US <= pos.created_at_us <= MAX_SEQ and 0 <= pos.seq <= MAX_SEQ):
        raise ValueError("created_at or seq out of range")
    field = sort.field
    if field is SortField.JOB:
        ok = isinstance(pos.value, str) and len(pos.value.encode("utf-8")) <= 255
    elif field.nullable and pos.segment == 0:
        ok = isinstance(pos.value, int) and MIN_US <= pos.value <= MAX_SEQ
    else:
        ok = pos.value is None
    if not ok:
        raise ValueError(f"value {pos.value!r} does not belong in segment {pos.segment}")


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
