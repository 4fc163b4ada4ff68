"""Each client's share of the connection slots: one client may not hold them all.

`max_connections` caps the open connections, and every way of holding a slot
is bounded in time (`jobsd.api.limits`), but each bound is long enough to be
legal: a request body may take `body_timeout_s` (30 s) to arrive. One client
that opened `max_connections` connections and trickled a body on each, and
opened another whenever one ended, kept every other client in the listen
backlog: measured (`tests/bench/bench_shares.py conns`, 64 slots), another
client's `/healthz` waited 22-29.5 s. `Connection: close` while crowded does
not help: such a client is never answered before its slot ends anyway.

So one client (a peer address; an IPv6 peer by its /64, which one host
usually holds whole) may hold at most `share` of the slots, by default all
but an eighth (224 of 256; 2 of 3), as the dispatcher leaves an eighth of
the workers to other accounts. A connection past its client's share is
answered at once, before anything of it is read: `503` `too_many_connections`
with `Retry-After: 1` and `Connection: close`, and its slot is free again
before that answer is written. Refusals being written are bounded (32 at
once, each within a second); past that a refused connection is closed
without a word, so a client cannot hold slots by being refused.

A trusted proxy (`server.trusted_proxies`) is exempt: every client behind it
shares its address, and it is the proxy's to share its connections out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import trio

from jobsd.api import jsonapi
from jobsd.config import ServerConfig

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

REFUSING_AT_ONCE = 32
REFUSAL_S = 1.0
CODE = "too_many_connections"


def _refusal() -> bytes:
    """The 503, head and body, as every error answered below the app is made
    (`jsonapi.closing_error`: its media type, the default `Jobsd-Version`)."""
    detail = (
        "this client holds its share of the server's connections;"
        " reuse them, or retry once one has closed"
    )
    headers, body = jsonapi.closing_error(503, CODE, detail)
    head = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n"
    return head + b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n" + body


REFUSAL = _refusal()


def default_share(max_connections: int) -> int:
    """All but an eighth of the slots (at least one left to others when there are two)."""
    return ServerConfig(max_connections=max_connections).client_share


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def holds(net: Network, ip: Address) -> bool:
    """Whether `net` holds `ip`, an IPv4 address and its IPv4-mapped form
    (`::ffff:a.b.c.d`, how an IPv4 peer reads on a dual-stack socket, and the
    logs show it) being one address, whichever form each is written in. An
    IPv6 network beyond the mapped range (`::/0`) holds no IPv4 peer."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_MAPPED):
        net = ipaddress.IPv4Network((int(net.network_address) & 0xFFFF_FFFF, net.prefixlen - 96))
    return ip in net


def client_key(address: str, exempt: Sequence[Network] = ()) -> str | None:
    """The client a peer address counts as: itself, or its /64 for IPv6 (an
    IPv4 peer on a dual-stack socket as its IPv4 address); None if exempt."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%")[0])
    except ValueError:
        return address
    # A trusted proxy may be named as its IPv4 address or as the logs show it (mapped).
    if any(holds(net, ip) for net in exempt):
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class ClientShares:
    """How many slots each client holds, and the refusal of one past its share."""

    def __init__(self, share: int, exempt: Sequence[Network] = ()) -> None:
        self.share = share
        self._exempt = tuple(exempt)
        self._held: dict[str, int] = {}
        self._refusing = trio.CapacityLimiter(REFUSING_AT_ONCE)

    def take(self, stream: trio.SocketStream) -> tuple[bool, str | None]:
        """Count `stream` against its client: (admitted, the key to hand to
        `give_back` once it closes; None when it counts against no one)."""
        try:
            address = stream.socket.getpeername()[0]
        except OSError:
            return True, None  # gone already; the connection notices at once
        key = client_key(address, self._exempt) if isinstance(address, str) else None
        if key is None:
            return True, None
        held = self._held.get(key, 0)
        if held >= self.share:
            return False, None
        self._held[key] = held + 1
        return True, key

    def give_back(self, key: str | None) -> None:
        if key is None:
            return
        held = self._held[key] - 1
        if held:
            self._held[key] = held
        else:
            del self._held[key]

    def holding(self, key: str) -> int:
        return self._held.get(key, 0)

    async def refuse(self, stream: trio.SocketStream) -> None:
        """Answer 503 and close; read what the client sent meanwhile, so the
        answer is not lost to a reset (bounded: see the module note)."""
        try:
            self._refusing.acquire_nowait()
        except trio.WouldBlock:
            await stream.aclose()
            return
        try:
            with trio.move_on_after(REFUSAL_S):
                await stream.send_all(REFUSAL)
                await stream.send_eof()
                while await stream.receive_some(65536):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._refusing.release()
            await stream.aclose()
