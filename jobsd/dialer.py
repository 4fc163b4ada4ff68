"""Where the address policy is enforced: the one place a delivery socket is opened.

`PolicyDialer.open_tcp` resolves a host once (through an injectable resolver
with its own thread limiter), checks every answer against `AddressPolicy`,
and connects only to a checked IP literal, racing the allowed answers a
quarter second apart (RFC 8305). Nothing else in jobsd opens an outbound
socket for a run or an alert: the HTTP/1.1 exchange (`jobsd.http1`) asks
this module for its stream, and TLS is layered over what it returns, so the
certificate and SNI follow the URL's host while the socket goes only where
the policy allows. Split from `delivery.py`, which decides what an exchange
means; this module only decides where a socket may go.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from jobsd.address_policy import AddressPolicy, IPAddress
from jobsd.lookup_threads import LookupThreads

Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]


class AddressRefused(Exception):
    """Every address of a host is refused by the policy; nothing was dialled.

    Its own type, so `perform` can tell SSRF from a failed connection.
    """

    def __init__(self, host: str, reasons: Sequence[str]) -> None:
        self.host = host
        self.reasons = tuple(reasons)
        literal = len(reasons) == 1 and reasons[0].startswith(f"{host} ")
        detail = "; ".join(reasons)
        super().__init__(
            detail if literal else f"{host} resolves only to refused addresses: {detail}"
        )


class ConnectFailed(Exception):
    """No connection: the lookup failed, or every allowed address refused or
    timed out. The message names the host and each address tried."""


def default_resolver(
    threads: LookupThreads, lookup: Callable[..., Sequence[Any]] = socket.getaddrinfo
) -> Resolver:
    """getaddrinfo in a thread counted by `threads` (each account's share of
    them: `jobsd.lookup_threads`), not trio's default limiter. `lookup` is
    getaddrinfo but in tests."""

    async def resolve(host: str, port: int) -> Sequence[IPAddress]:
        infos = await trio.to_thread.run_sync(
            lookup,
            host,
            port,
            0,
            socket.SOCK_STREAM,
            limiter=threads,  # type: ignore[arg-type]  # the duck type trio documents
            abandon_on_cancel=True,
        )
        return [ipaddress.ip_address(info[4][0]) for info in infos]

    return resolve


# RFC 8305's recommended Connection Attempt Delay, trio's and anyio's default.
ATTEMPT_DELAY_S = 0.25
# Answers tried per family, in the resolver's order: a run's connect holds at most
# twice this many sockets. A job's owner controls its DNS, and racing every answer
# of a name with a thousand that drop SYNs held a socket per 250 ms for the run's
# whole timeout (1,200 in 5 minutes; 56 such runs pass systemd's 8,192). Eight
# covers DNS round-robin as served (Route 53 answers at most 8 per query).
MAX_PER_FAMILY = 8


class PolicyDialer:
    """Shared by every run of a process; holds nothing per connection."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver) -> None:
        self._policy = policy
        self._resolver = resolver

    async def open_tcp(self, host: str, port: int) -> trio.SocketStream:
        """A connected stream to an allowed address of `host`; raises
        AddressRefused (nothing dialled) or ConnectFailed."""
        allowed: list[IPAddress] = []
        refused: list[str] = []
        for ip in await self._answers(host, port):
            reason = self._policy.refusal(ip)
            if reason is None:
                allowed.append(ip)
            else:
                refused.append(reason)
        if not allowed:
            raise AddressRefused(host, refused)
        allowed, left_out = _bounded(allowed)
        failures: list[str] = []
        if len(allowed) == 1:  # an IP literal, or one answer: no race to run
            try:
                return await _connect(allowed[0], port)
            except OSError as exc:
                failures.append(f"{allowed[0]}: {exc}")
        else:
            stream = await _first_connected(allowed, port, failures)
            if stream is not None:
                return stream
        if left_out:
            failures.append(f"{left_out} more addresses not tried")
        raise ConnectFailed(f"cannot connect to {host} port {port}: {'; '.join(failures)}")

    async def _answers(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            answers = await self._resolver(host, port)
        except (OSError, UnicodeError) as exc:  # UnicodeError: a label IDNA refuses
            raise ConnectFailed(f"DNS lookup of {host} failed: {describe(exc)}") from exc
        if not answers:
            raise ConnectFailed(f"DNS lookup of {host} returned no address")
        return list(dict.fromkeys(answers))


def _bounded(allowed: Sequence[IPAddress]) -> tuple[list[IPAddress], int]:
    """The first `MAX_PER_FAMILY` answers of each family, in order, and how many
    were left out: bounded per family so that a long list of one cannot keep
    the other from being tried (IPv6 answers first on a host without IPv6)."""
    kept: list[IPAddress] = []
    per_family = {4: 0, 6: 0}
    for ip in allowed:
        if per_family[ip.version] < MAX_PER_FAMILY:
            per_family[ip.version] += 1
            kept.append(ip)
    return kept, len(allowed) - len(kept)


async def _first_connected(
    allowed: Sequence[IPAddress], port: int, failures: list[str]
) -> trio.SocketStream | None:
    """The answers raced as RFC 8305 has it (and trio's and anyio's own connects):
    each attempt starts `ATTEMPT_DELAY_S` after the one before, or at once when
    that one failed; the first to connect wins and the others are cancelled (a
    socket that connected anyway is closed). An address that drops every SYN (a
    dead host behind its record) then costs 250 ms, not the run's timeout.
    None, with every failure in `failures`, when none connected."""
    won: list[trio.SocketStream] = []
    async with trio.open_nursery() as nursery:
        for ip in allowed:
            failed = trio.Event()
            nursery.start_soon(_attempt, ip, port, failed, won, failures, nursery.cancel_scope)
            with trio.move_on_after(ATTEMPT_DELAY_S):
                await failed.wait()
    return won[0] if won else None


async def _attempt(
    ip: IPAddress,
    port: int,
    failed: trio.Event,
    won: list[trio.SocketStream],
    failures: list[str],
    race: trio.CancelScope,
) -> None:
    try:
        stream = await _connect(ip, port)
    except OSError as exc:
        failures.append(f"{ip}: {exc}")
        failed.set()
        return
    if won:  # another connected in the same step
        await trio.aclose_forcefully(stream)
        return
    won.append(stream)
    race.cancel()


async def _connect(ip: IPAddress, port: int) -> trio.SocketStream:
    """One socket to one checked literal: no lookup, no happy-eyeballs nursery
    (the answers are already ordered and checked)."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        await sock.connect((str(ip), port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception, where trio and ssl keep the specific error."""
    root = exc
    for _ in range(8):
        if isinstance(root, BaseExceptionGroup) and root.exceptions:
            root = root.exceptions[0]
        elif root.__cause__ is not None:
            root = root.__cause__
        elif root.__context__ is not None:
            root = root.__context__
        else:
            break
    return root


def describe(exc: BaseException) -> str:
    """An exception's message plus its root cause's, when that adds something."""
    top = str(exc).strip() or type(exc).__name__
    deep = str(root_cause(exc)).strip()
    return f"{top}: {deep}" if deep and deep not in top else top
