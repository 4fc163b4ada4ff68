"""Idle HTTP/1.1 connections kept, briefly, for the next run of the same account and origin.

A burst to one origin spent a third of a worker's CPU dialling and closing
(py-spy: connect 25 %, close 9 %); reusing the connection a run just
finished with saves both (a worker's CPU per run fell by about a third,
tests/bench/README.md). `IdleConnections.exchange` carries one request on
a kept connection or a fresh one and decides what becomes of it; what the
response means stays in `jobsd.delivery`, the wire in `jobsd.http1`. The
rules (README, Decisions: "Keep-alive reuse"):

- A connection is keyed by (scope, scheme, host, port, ssl context). The
  scope is the account id (`HttpConfig.reuse_scope`): a connection never
  carries another account's request. The ssl context is the TLS settings'
  identity (`tls_verify`, `ca_cert`); the key holds the context itself, so
  its id cannot be reused by another context while a connection waits. A
  connection was dialled through the address policy (`jobsd.dialer`) to a
  checked IP; within the short expiry it is reused without a new lookup.
- It is kept only after its response was read to the end and h11 agreed to
  a next cycle (`start_next_cycle`: neither side said `Connection: close`,
  not HTTP/1.0, no close-delimited body), with nothing unread behind it.
  Anything else (a capped body, a timeout, a cancel, any error) closes it.
- Bounded: `idle_s` after its last response it is closed (the daemon's
  default 1 s, half of gunicorn's 2 s keep-alive, the shortest common
  default, so a server never closes for idleness one we still hold); at
  most `max_idle` idle connections in the process and `max_idle_per_key`
  per key (the oldest closed first); at most `max_requests` requests each.
  A key may fill the process's share: a burst to one origin has as many
  runs in flight as there are workers (64 by default), and a lower cap per
  key made one connection in four or five a fresh dial.
- Before reuse the socket is polled: a connection that is readable (the
  server closed it, reset it, or sent bytes nobody asked for) is closed and
  the next one, or a fresh dial, is used instead. Nothing was sent on it.
  The same holds when the socket refuses the request's first send. Any
  later failure is the run's: "retry the connect, not the request".

Idle connections are closed on expiry by `tidy` (one task; it sleeps while
none are idle, so an idle daemon wakes for nothing) and all at once by
`close_all` (a stop). Closing is the socket's own close, synchronous: no
TLS close_notify, as for every connection a run closes.
"""

from __future__ import annotations

import select
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h11
import trio

from jobsd.http1 import (
    ExchangeFailed,
    offer_request,
    raw_socket,
    read_response,
    reusable,
    send_request,
)
from jobsd.reading import Reading

MAX_IDLE = 64
MAX_IDLE_PER_KEY = 64
MAX_REQUESTS = 1000


@dataclass(frozen=True, slots=True)
class ReuseKey:
    scope: str
    tls: bool
    host: str
    port: int
    context: ssl.SSLContext


class Kept:
    """A connection between runs: its stream, its raw socket (polled and
    closed directly), how many requests it carried."""

    __slots__ = ("requests", "socket", "stream")

    def __init__(self, stream: trio.abc.Stream, requests: int) -> None:
        self.stream = stream
        sock = raw_socket(stream)
        assert sock is not None, "only TCP connections are kept"
        self.socket = sock
        self.requests = requests

    def quiet(self) -> bool:
        """Nothing arrived while idle: not on the socket, and over TLS nothing
        left over in the TLS layer either (`tls_quiet`)."""
        if isinstance(self.stream, trio.SSLStream) and not tls_quiet(self.stream):
            return False
        return is_quiet(self.socket)

    def close(self) -> None:
        self.socket.close()


def tls_quiet(stream: trio.SSLStream[trio.abc.Stream]) -> bool:
    """True if the TLS layer holds nothing unread: no decrypted bytes
    (`pending`), and no records read off the socket with the response but not
    yet decrypted. trio keeps those in its incoming BIO, where neither
    `pending` nor a poll of the socket sees them: a response the server sent
    unasked right behind the last one was read as the next run's. trio has no
    public view of that buffer; should it move, nothing is quiet (a fresh dial)."""
    incoming = getattr(stream, "_incoming", None)
    if not isinstance(incoming, ssl.MemoryBIO):
        return False
    return not stream.pending() and not incoming.pending


def is_quiet(sock: trio.socket.SocketType) -> bool:
    """True if nothing arrived while the connection was idle. A FIN, an RST
    or bytes the server sent unasked all make the socket readable."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
    return not poller.poll(0)


class IdleConnections:
    """One per `Delivery` (per process). Not shared across processes."""

    def __init__(
        self,
        idle_s: float,
        *,
        max_idle: int = MAX_IDLE,
        max_idle_per_key: int = MAX_IDLE_PER_KEY,
        max_requests: int = MAX_REQUESTS,
    ) -> None:
        self.idle_s = idle_s
        self.max_idle = max_idle
        self.max_idle_per_key = max_idle_per_key
        self.max_requests = max_requests
        # Every idle connection, oldest first: (key, kept, idle since).
        self._all: OrderedDict[int, tuple[ReuseKey, Kept, float]] = OrderedDict()
        self._by_key: dict[ReuseKey, list[Kept]] = {}
        self._some_idle = trio.Event()

    @property
    def enabled(self) -> bool:
        return self.idle_s > 0

    def __len__(self) -> int:
        return len(self._all)

    async def exchange(
        self,
        key: ReuseKey | None,
        dial: Callable[[], Awaitable[trio.abc.Stream]],
        conn: h11.Connection,
        data: bytes,
        reading: Reading,
    ) -> None:
        """Sends on a kept connection of `key` or a fresh one (`dial`), reads
        the response, then keeps the connection or closes it. A kept one is
        given up for a fresh one only while nothing of the request left this
        process (stale at the poll, or its first send refused); once any byte
        may have reached the server, a failure is the run's, as on a fresh
        connection: resending could deliver the request twice."""
        kept = None if key is None else self.take(key)
        stream = None if kept is None else kept.stream
        requests = 0 if kept is None else kept.requests
        try:
            whole = None if kept is None else await offer_request(kept.stream, data)
            if kept is not None and whole is None:
                kept.close()
                stream, requests = None, 0
            if stream is None:
                stream = await dial()
                whole = await send_request(stream, data)
            await read_response(stream, conn, reading)
        except BaseException as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            if requests and isinstance(exc, ExchangeFailed):
                note = "on a connection kept from an earlier run; not resent"
                raise ExchangeFailed(f"{exc} ({note})") from exc
            raise
        if (
            key is None
            or not whole
            or reading.framed_twice()
            or not reusable(conn)
            or not self.give(key, stream, requests)
        ):
            await trio.aclose_forcefully(stream)

    def take(self, key: ReuseKey) -> Kept | None:
        """The newest live idle connection of `key`, if any; stale and expired
        ones met on the way are closed."""
        self.expire(trio.current_time())
        kept = self._by_key.get(key)
        while kept:
            conn = kept.pop()
            del self._all[id(conn)]
            if not kept:
                del self._by_key[key]
            if conn.quiet():
                return conn
            conn.close()
        return None

    def give(self, key: ReuseKey, stream: trio.abc.Stream, before: int) -> bool:
        """Keeps a connection whose exchange ended cleanly (it carried
        `before` requests before this one); False (the caller closes it)
        when reuse is off or it has carried its share."""
        if not self.enabled or before + 1 >= self.max_requests:
            return False
        conn = Kept(stream, before + 1)
        kept = self._by_key.setdefault(key, [])
        if len(kept) >= self.max_idle_per_key:
            self._drop(kept[0])
        while len(self._all) >= self.max_idle:
            self._drop(next(iter(self._all.values()))[1])
        kept = self._by_key.setdefault(key, [])
        kept.append(conn)
        self._all[id(conn)] = (key, conn, trio.current_time())
        self._some_idle.set()
        return True

    def expire(self, now: float) -> float | None:
        """Closes what has been idle `idle_s`; returns when the next one expires."""
        while self._all:
            _, conn, since = next(iter(self._all.values()))
            if now - since < self.idle_s:
                return since + self.idle_s
            self._drop(conn)
        return None

    def close_all(self) -> None:
        while self._all:
            self._drop(next(iter(self._all.values()))[1])

    async def tidy(self) -> None:
        """Closes idle connections as they expire, and all of them when cancelled."""
        try:
            while True:
                await self._some_idle.wait()
                due = self.expire(trio.current_time())
                if due is None:
                    self._some_idle = trio.Event()
                else:
                    await trio.sleep_until(due)
        finally:
            self.close_all()

    def _drop(self, conn: Kept) -> None:
        key, _, _ = self._all.pop(id(conn))
        kept = self._by_key[key]
        kept.remove(conn)
        if not kept:
            del self._by_key[key]
        conn.close()
