"""Which request heads are refused before anything reads their body.

Pure functions over what h11 parsed (or, for folding, over the raw head):
`jobsd.api.connection` answers a refusal and closes the connection. Where
a message's length could be read two ways, the API behind a proxy is open
to request smuggling (the proxy and jobsd disagree on where the next
request starts), so every ambiguity h11 resolves silently is refused here,
as RFC 9112 allows:

- `Content-Length` with `Transfer-Encoding` (RFC 9112 §6.1: "MAY ... treat
  it as an error", then MUST close): h11 would let Transfer-Encoding win;
- `Transfer-Encoding` in an HTTP/1.0 request (§6.1: the framing is faulty);
- obsolete line folding (§5.2: reject with 400 or unfold): h11 unfolds, so
  `Transfer-Encoding:` folded onto a second line would frame the body for
  jobsd but not for a proxy that ignores the fold;
- HTTP versions other than 1.x: 505. The listener speaks HTTP/1.1 only;
  `PRI * HTTP/2.0` (HTTP/2 with prior knowledge) is one of these.

A method not written in capitals (`delete`, `Post`): methods are
case-sensitive (RFC 9110 §9.1), so `delete` is no DELETE, but hypercorn
upper-cases the method before the app sees it, and `delete /api/v1/jobs/x`
deleted the job. A proxy that allows or denies by method (HAProxy's
`method DELETE` is case-sensitive) would pass what jobsd then performed.
Answered 501, as §9.1 asks of a method the server does not recognise (a 405
must list the route's methods, which are not known down here).

A path with an encoded slash (`%2F`) in it: hypercorn decodes the path
before routing, so `POST /api/v1/jobs/x%2Factions%2Frun` ran job x and
`DELETE /api/v1/jobs/x%2F` deleted it, where RFC 3986 reads one segment
holding a slash, which no id of the API can (slugs, policy ids and run ids
never do): `404`. A proxy that routes or filters on the path as sent would
otherwise pass what jobsd acts on as another path.

And request lines h11 takes whose target is none of RFC 9112 §3.2's: a
query with no path (`GET ?a`), an absolute URL that cannot be read
(`http://[::1/`). Quart fails on them before any error handler of the app
(a 500 and a traceback): 400.

What h11 itself refuses (bad chunk sizes, differing Content-Length values,
a transfer coding other than `chunked`) is answered 400 by the connection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

_END_OF_HEAD = re.compile(rb"\n\r?\n")
_FOLD = re.compile(rb"\n[ \t]")


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    detail: str


def refuse_head(http_version: bytes, headers: Iterable[tuple[bytes, bytes]]) -> Refusal | None:
    """Why this request head may not be served, or None; names as h11 gives them."""
    if not http_version.startswith(b"1."):
        return Refusal(
            505,
            "http_version_not_supported",
            f"HTTP/{http_version.decode('ascii', 'replace')} is not served here; use HTTP/1.1",
        )
    names = {name.lower() for name, _ in headers}
    if b"transfer-encoding" in names and b"content-length" in names:
        return Refusal(
            400, "bad_framing", "Content-Length and Transfer-Encoding may not both be sent"
        )
    if b"transfer-encoding" in names and http_version == b"1.0":
        return Refusal(400, "bad_framing", "Transfer-Encoding is not allowed in HTTP/1.0")
    return None


def refuse_method(method: bytes) -> Refusal | None:
    """Why this request method is not served, or None: every method jobsd serves is capitals."""
    if method == method.upper():
        return None
    if len(method) > _METHOD_SHOWN:  # a method is a token of any length: not echoed whole
        return Refusal(501, "not_implemented", "not a method served here")
    shown = method.decode("ascii", "replace")
    return Refusal(
        501,
        "not_implemented",
        f"{shown} is not a method served here: methods are case-sensitive (RFC 9110);"
        f" {shown.upper()} is",
    )


_METHOD_SHOWN = 24  # the IANA registry's longest, UPDATEREDIRECTREF, is 17


def refuse_target(target: bytes) -> Refusal | None:
    """Why this request-target may not be served, or None.

    The app routes on the target's path as hypercorn decodes it (percent
    escapes undone) or, for an absolute-form target, on the path Quart has
    `urllib.parse` find in it; a target that gives neither fails in Quart.
    """
    raw = target.partition(b"?")[0]
    if b"%2f" in raw.lower():
        return Refusal(
            404,
            "not_found",
            "no such resource: a path segment holds an encoded slash (%2F), which no id has",
        )
    path = unquote(raw.decode("latin-1"))
    if path.startswith("/"):
        return None
    try:
        if path and urlparse(path) is not None:
            return None
    except ValueError:  # `http://[::1/`: an IPv6 literal left open
        pass
    return Refusal(400, "bad_request", "the request target is neither /path?query nor a URL")


def folded(buffered: bytes) -> bool:
    """Whether the request head at the start of `buffered` folds a header line.

    Only the head is looked at (up to the first empty line, or all of it
    while incomplete: a fold seen early is a fold); h11 ends lines at LF
    with or without CR, so the same is done here.
    """
    end = _END_OF_HEAD.search(buffered)
    head = buffered if end is None else buffered[: end.start() + 1]
    return _FOLD.search(head) is not None


def folding_refusal() -> Refusal:
    return Refusal(400, "bad_framing", "obsolete line folding is not accepted in a header")
