"""Where the address policy is enforced: the dialler under httpx.

`PolicyBackend` is the httpcore network backend, so every connection httpx
makes resolves once (through an injectable resolver with its own thread
limiter), has every answer checked against `AddressPolicy`, and dials only a
checked IP literal; httpcore still sends the URL's host as SNI and checks
the certificate against it. `PolicyTransport` is httpx's transport over that
backend. Split from `delivery.py`, which decides what an exchange means;
this module only decides where a socket may go.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from typing import Protocol, runtime_checkable

import httpcore2
import httpx2
import trio

from jobsd.address_policy import AddressPolicy, IPAddress

Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]


class AddressRefused(Exception):
    """Every address of a host is refused by the policy; nothing was dialled.

    Not an httpcore error, so httpx passes it through unmapped and `perform`
    can tell SSRF from a failed connection.
    """

    def __init__(self, host: str, reasons: Sequence[str]) -> None:
        self.host = host
        self.reasons = tuple(reasons)
        literal = len(reasons) == 1 and reasons[0].startswith(f"{host} ")
        detail = "; ".join(reasons)
        super().__init__(
            detail if literal else f"{host} resolves only to refused addresses: {detail}"
        )


def default_resolver(limiter: trio.CapacityLimiter) -> Resolver:
    """getaddrinfo in a thread counted by `limiter`, not trio's default limiter."""

    async def resolve(host: str, port: int) -> Sequence[IPAddress]:
        infos = await trio.to_thread.run_sync(
            socket.getaddrinfo,
            host,
            port,
            0,
            socket.SOCK_STREAM,
            limiter=limiter,
            abandon_on_cancel=True,
        )
        return [ipaddress.ip_address(info[4][0]) for info in infos]

    return resolve


class PolicyBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self, policy: AddressPolicy, resolver: Resolver) -> None:
        self._policy = policy
        self._resolver = resolver
        self._dial = httpcore2.TrioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
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
        failures: list[str] = []
        for ip in allowed:
            try:
                return await self._dial.connect_tcp(
                    str(ip), port, timeout, local_address, socket_options
                )
            except httpcore2.ConnectError as exc:
                failures.append(f"{ip}: {root_cause(exc)}")
        raise httpcore2.ConnectError(f"cannot connect to {host} port {port}: {'; '.join(failures)}")

    async def _answers(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            answers = await self._resolver(host, port)
        except (OSError, UnicodeError) as exc:  # UnicodeError: a label IDNA refuses
            raise httpcore2.ConnectError(f"DNS lookup of {host} failed: {describe(exc)}") from exc
        if not answers:
            raise httpcore2.ConnectError(f"DNS lookup of {host} returned no address")
        return list(dict.fromkeys(answers))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("unix sockets are never dialled")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


class _Body:
    """The pool's body stream behind a plain iterator. httpx2 stops iterating
    (at our cap) without closing the pool's async generator, leaving it to
    the garbage collector; here closing the response closes it."""

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream
        self._chunks: AsyncIterator[bytes] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._chunks = aiter(self._stream)
        return self

    async def __anext__(self) -> bytes:
        assert self._chunks is not None
        return await anext(self._chunks)

    async def aclose(self) -> None:
        try:
            if isinstance(self._chunks, AsyncGenerator):
                await self._chunks.aclose()
        finally:
            if isinstance(self._stream, _Closable):
                await self._stream.aclose()  # shields itself; releases the connection


@runtime_checkable
class _Closable(Protocol):
    async def aclose(self) -> None: ...


class PolicyPool(httpcore2.AsyncConnectionPool):
    async def handle_async_request(self, request: httpcore2.Request) -> httpcore2.Response:
        response = await super().handle_async_request(request)
        assert isinstance(response.stream, AsyncIterable)
        return httpcore2.Response(
            status=response.status,
            headers=response.headers,
            content=_Body(response.stream),
            extensions=response.extensions,
        )


class PolicyTransport(httpx2.AsyncHTTPTransport):
    """httpx's transport over our backend: HTTP/1.1, no proxy, no environment,
    and no idle connection kept: each connection closes when its response ends."""

    def __init__(self, ssl_context: ssl.SSLContext, backend: PolicyBackend) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx2 cannot take a network backend, so its pool is replaced by one
        # built the same way over ours.
        self._pool = PolicyPool(
            ssl_context=ssl_context,
            max_connections=None,
            max_keepalive_connections=0,
            network_backend=backend,
        )


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception, where trio and httpx keep the specific error."""
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
