"""One HTTP/1.1 exchange on h11 over a trio stream: a request out, a response in.

Delivery's wire code, without a client library's layers: h11 frames and
parses, trio carries the bytes, and nothing here arms a timer or opens a
cancel scope per read or write (the caller's one deadline covers the whole
exchange). The connection is dialled through the address policy
(`jobsd.dialer`) and wrapped in TLS when the URL says https. What happens
to it after the response is the caller's decision (`jobsd.delivery`):
`reusable` says whether HTTP/1.1 allows another request on it, and
`offer_request` sends on a kept one, telling the caller when nothing of the
request left (the one case a fresh connection may carry it instead). A
request on a connection that will not be kept says `Connection: close`,
which is what HTTP/1.1 asks of a client that will not reuse a connection,
lets the server release it at once, and leaves the wait after closing on
the server's side.

The server's side is bounded (`jobsd.reading` says how and why): the
status line and header block by `MAX_HEAD_BYTES` (h11's
`max_incomplete_event_size`), the informational (1xx) heads skipped before
the final one by `INFORMATIONAL_BYTES` together, each read by
`READ_BYTES`, the body by the caller's cap, and the bytes read for the
whole response by `wire_bound`. A response that breaks HTTP/1.1 ends the
exchange with h11's reason.

Every read first asks the kernel to acknowledge at once (`TCP_QUICKACK`,
Linux). A server that writes its head and its body separately (Python's
http.server, and many others, with Nagle on) holds the body until the head
is acknowledged; Linux delays that acknowledgement up to 40 ms once a
connection looks interactive, which a kept connection does from its second
request on. Measured against such a server on loopback: 44 ms per reused
request, 0.2 ms with it (tests/test_keepalive.py). The flag is not
sticky (the kernel leaves quick-ack mode by itself), so it is set per read.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from contextlib import suppress

import h11
import trio

from jobsd.dialer import PolicyDialer, root_cause
from jobsd.http_url import Target
from jobsd.reading import INFORMATIONAL_BYTES, Reading, wire_bound
from jobsd.request_head import BODY_EXPECTED, HeaderRefused, closes, head_and_body, tell

READ_BYTES = 64 * 1024


class ExchangeFailed(Exception):
    """The exchange broke (TLS, a read, a protocol error); the message says
    where and why, for the run's `error`."""


def request_bytes(
    conn: h11.Connection,
    method: str,
    target: Target,
    headers: Sequence[tuple[str, str]],
    body: bytes,
) -> bytes:
    """The whole request, framed by h11 (a header name or value HTTP/1.1 does
    not allow: ExchangeFailed). `headers` come in the
    order httpx sent them: the defaults a job's header does not replace, then
    the job's and jobsd's; Host and an empty POST's `Content-Length: 0` first,
    a body's length last. A plain request's bytes are written by
    `jobsd.request_head`, as h11 would write them, in a quarter of the time."""
    method = method.upper()
    close = closes(method, headers)
    if close is not None:
        try:
            data = head_and_body(method, target.target, target.authority, headers, body)
        except HeaderRefused as exc:
            raise ExchangeFailed(str(exc)) from None
        tell(conn, method, close=close)
        return data
    names = {name.lower() for name, _ in headers}
    lines = [(name.encode(), value.encode()) for name, value in headers]
    framed = "content-length" in names or "transfer-encoding" in names
    if body and not framed:
        lines.append((b"Content-Length", str(len(body)).encode()))
    first = [] if "host" in names else [(b"Host", target.authority.encode())]
    if not body and not framed and method in BODY_EXPECTED:
        first.append((b"Content-Length", b"0"))
    request = _request(method, target.target, first + lines)
    data = conn.send(request) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    return data + (conn.send(h11.EndOfMessage()) or b"")


def _request(method: str, target: str, headers: list[tuple[bytes, bytes]]) -> h11.Request:
    """h11's Request. h11's refusal of a header value quotes the value, which
    is a secret (it would become the run's `error`, and an alert's): the
    error names the header instead. The API refuses such values; this holds
    for any that reach a run anyway. Raised outside the `except`, so no
    context carries h11's message either (`describe` reads the context)."""
    try:
        return h11.Request(method=method, target=target, headers=headers)
    except h11.LocalProtocolError as exc:
        problem = str(exc)  # the method or the target: h11 quotes neither
    for name, value in headers:
        try:
            h11.Request(method="GET", target="/", headers=[(name, value)], http_version="1.0")
        except h11.LocalProtocolError:
            shown = name.decode("utf-8", "replace")
            problem = f"the value of header {shown} is not allowed in HTTP/1.1 (not shown)"
            break
    raise ExchangeFailed(problem)


class Connector:
    """Opens streams for one TLS setting (one `ssl.SSLContext`) through the
    address policy; shared by every run of the process using that setting."""

    def __init__(self, ssl_context: ssl.SSLContext, dialer: PolicyDialer) -> None:
        self._ssl_context = ssl_context
        self._dialer = dialer

    async def open(self, target: Target) -> trio.abc.Stream:
        """Raises the dialer's AddressRefused or ConnectFailed, or ExchangeFailed."""
        stream = await self._dialer.open_tcp(target.host, target.port)
        if not target.tls:
            return stream
        # An IP literal as server_hostname: no SNI, the certificate checked against the IP.
        tls = trio.SSLStream(
            stream, self._ssl_context, server_hostname=target.host, https_compatible=True
        )
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(stream)
            raise ExchangeFailed(f"TLS handshake with {target.host} failed: {_why(exc)}") from exc
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return tls


async def send_request(stream: trio.abc.Stream, data: bytes) -> bool:
    """Sends the request; False if the connection broke before all of it was
    handed over (the response is still read: a server may answer, 413 or
    400, and close before reading it all), and it must not be kept."""
    try:
        await stream.send_all(data)
    except trio.BrokenResourceError:
        return False
    return True


async def offer_request(stream: trio.abc.Stream, data: bytes) -> bool | None:
    """Sends the request on a kept connection, as `send_request`; None when
    the socket refused its first bytes (the server reset it while idle), so
    nothing of it left this process and a fresh connection may carry it.
    Over TLS that cannot be told apart from a failure after bytes left, so
    it is never None."""
    if isinstance(stream, trio.SocketStream):
        try:
            sent = await stream.socket.send(data)
        except OSError:
            return None
        if sent == len(data):
            return True
        data = data[sent:]
    return await send_request(stream, data)


async def read_response(stream: trio.abc.Stream, conn: h11.Connection, reading: Reading) -> None:
    """Reads the response into `reading`, skipping 1xx (but a 101 accepting the
    job's `Upgrade`, which is the answer), until the body ends or reaches the
    cap. Raises ExchangeFailed or h11.RemoteProtocolError. The caller closes
    the stream, or keeps it if `reusable`."""
    sock = raw_socket(stream)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            if reading.status is not None and reading.wire_bytes >= wire_bound(reading.cap_bytes):
                reading.capped = True
                return
            quick_ack(sock)
            try:
                received = await stream.receive_some(READ_BYTES)
            except trio.BrokenResourceError as exc:
                raise ExchangeFailed(f"reading the response failed: {_why(exc)}") from exc
            reading.wire_bytes += len(received)
            if not received and conn.their_state is h11.SEND_RESPONSE:
                raise ExchangeFailed("Server disconnected without sending a response.")
            conn.receive_data(bytes(received))
        elif type(event) is h11.Data:
            if not reading.take(event.data):
                return
        elif type(event) is h11.Response:
            reading.start(event)
        elif type(event) is h11.EndOfMessage:
            return
        elif type(event) is h11.ConnectionClosed:  # not reached: h11 raises first
            raise ExchangeFailed("Server disconnected without sending a response.")
        elif type(event) is h11.InformationalResponse:  # the final response follows
            if conn.their_state is h11.SWITCHED_PROTOCOL:
                # A 101 to the job's `Upgrade`: the server's answer, and the end of
                # HTTP on this connection (h11 would answer PAUSED from now on).
                reading.start(event)
                return
            # Counted as they came over the wire (what was read, less what h11
            # holds unparsed): h11 drops the whitespace around a header value,
            # so a parsed head's size says nothing of a padded one's. Until that
            # many bytes were read at all there is nothing to count (nor copy).
            if reading.wire_bytes <= INFORMATIONAL_BYTES:
                continue
            if reading.wire_bytes - len(conn.trailing_data[0]) > INFORMATIONAL_BYTES:
                raise ExchangeFailed(
                    f"more than {INFORMATIONAL_BYTES} bytes of informational (1xx) responses"
                )


QUICK_ACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def quick_ack(sock: trio.socket.SocketType | None) -> None:
    """Acknowledge what arrives next at once (see the module's docstring)."""
    if sock is not None and QUICK_ACK is not None:
        with suppress(OSError):  # closed under us: the read that follows says so
            sock.setsockopt(socket.IPPROTO_TCP, QUICK_ACK, 1)


def raw_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The TCP socket under a stream (and its TLS layers), if it is one."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream.socket if isinstance(stream, trio.SocketStream) else None


def reusable(conn: h11.Connection) -> bool:
    """Whether the connection may carry another request: both sides done and
    keeping it open (h11 agrees to a next cycle: no `Connection: close`, not
    HTTP/1.0, not a close-delimited or unread body) and nothing received
    past the response."""
    try:
        conn.start_next_cycle()
    except h11.LocalProtocolError:
        return False
    return conn.trailing_data == (b"", False)


def _why(exc: BaseException) -> str:
    """trio wraps the socket's or ssl's error; that inner one says what happened."""
    root = root_cause(exc)
    return str(root).strip() or type(root).__name__
