"""One HTTP exchange, made safely; see spec/OUTBOUND.md for the reasons.

`Delivery` is built once and shared by every executor actor. It owns what is
costly or must be bounded process-wide: the address policy, the TLS contexts
(building one costs tens of milliseconds) and the DNS thread limiter (a
cancelled lookup keeps its thread, so DNS gets its own limiter and cannot
starve trio's default one).

The address policy is enforced where the socket is opened: `_PolicyBackend`
is the httpcore network backend, so every connection httpx makes resolves
once, has every answer checked, and dials only a checked IP literal. httpcore
still sends the URL's host as SNI and checks the certificate against it, and
httpx builds `Host` from the URL.

Each `perform` uses its own client and connection pool. Measured
(tests/bench/bench_clients.py), one shared pool is faster only when it reuses
a kept-alive connection to the same origin, which cron traffic (a job fires
at most once a minute) rarely does; without reuse both cost the same. A
fresh pool per run means a run's connection, cookies and keep-alive state
never outlive it: no run reuses what another account's run set up, a
connection the server closed while idle cannot fail a run, the TLS settings
need no pool per context, and cancelling a run closes everything it opened.

Outcomes: a response whose status matches `success_status` is SUCCEEDED,
any other is NON_SUCCESS_STATUS with the response recorded. A body read to
the cap is judged on its status; `error` then notes the cap. A deadline or a
network failure after the headers arrived still records the partial result.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections import OrderedDict
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from contextlib import aclosing
from typing import Protocol, runtime_checkable

import httpcore2
import httpx2
import trio

from jobsd.address_policy import AddressPolicy, IPAddress
from jobsd.messages import HttpConfig, Outcome
from jobsd.runs import FailureReason, RunStatus

Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]

USER_AGENT = "jobsd/0.1"
CA_CONTEXTS_KEPT = 64


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


class _PolicyBackend(httpcore2.AsyncNetworkBackend):
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


class _PolicyPool(httpcore2.AsyncConnectionPool):
    async def handle_async_request(self, request: httpcore2.Request) -> httpcore2.Response:
        response = await super().handle_async_request(request)
        assert isinstance(response.stream, AsyncIterable)
        return httpcore2.Response(
            status=response.status,
            headers=response.headers,
            content=_Body(response.stream),
            extensions=response.extensions,
        )


class _PolicyTransport(httpx2.AsyncHTTPTransport):
    """httpx's transport over our backend: HTTP/1.1, no proxy, no environment."""

    def __init__(self, ssl_context: ssl.SSLContext, backend: _PolicyBackend) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx2 cannot take a network backend, so its pool is replaced by one
        # built the same way over ours.
        self._pool = _PolicyPool(
            ssl_context=ssl_context, max_connections=None, network_backend=backend
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


_DEFAULT_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "*/*",
    # Raw bytes are what we count and cap: no decompression bomb can expand
    # past the cap inside one chunk. A job that asks for gzip gets it raw.
    "Accept-Encoding": "identity",
}


class _Reading:
    """What has arrived so far; recorded even when the exchange ends early."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.kept = bytearray()
        self.body_bytes = 0
        self.capped = False

    def result(self, keep_bytes: int) -> dict[str, object] | None:
        if self.status is None:
            return None
        return {
            "status": self.status,
            "headers": self.headers,
            "body": self.kept.decode("utf-8", errors="replace"),
            "body_truncated": self.body_bytes > keep_bytes,
            "body_bytes": self.body_bytes,
        }

    def where(self) -> str:
        if self.status is None:
            return "before the response headers arrived"
        return f"after status {self.status} and {self.body_bytes} body bytes"


def status_matches(status: int, success_status: str) -> bool:
    """`success_status` is a code ("204") or a class ("2xx")."""
    pattern = success_status.strip().lower()
    if len(pattern) == 3 and pattern.endswith("xx") and pattern[0].isdigit():
        return status // 100 == int(pattern[0])
    return pattern.isdigit() and status == int(pattern)


class Delivery:
    """Long-lived, shared by all executor actors: holds the address policy,
    the cached ssl contexts, the DNS limiter."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver | None = None,
        body_keep_bytes: int = 65536,
        body_cap_bytes: int = 8 * 1024 * 1024,
        dns_threads: int = 8,
    ) -> None:
        if resolver is None:
            resolver = default_resolver(trio.CapacityLimiter(dns_threads))
        self._backend = _PolicyBackend(policy, resolver)
        self._keep_bytes = body_keep_bytes
        self._cap_bytes = body_cap_bytes
        self._verifying: ssl.SSLContext | None = None
        self._insecure: ssl.SSLContext | None = None
        self._with_ca: OrderedDict[str, ssl.SSLContext] = OrderedDict()

    async def perform(
        self, config: HttpConfig, *, stamp: Sequence[tuple[str, str]] = ()
    ) -> Outcome:
        """Never raises for what the remote side or the network does; only
        trio.Cancelled (the run was cancelled) propagates.

        `stamp` is jobsd's own headers (run id, scheduled instant) that let a
        target deduplicate and correlate; they are not the job's secrets and
        are not part of the recorded snapshot of the job's request."""
        request: dict[str, object] = {
            "method": config.method,
            "url": config.url,
            "headers": [{"name": h.name, "value": "<redacted>"} for h in config.headers],
            "body": config.body,
        }
        reading = _Reading()
        try:
            ssl_context = self.ssl_context_for(config)
        except (ssl.SSLError, ValueError) as exc:
            error = f"ca_cert cannot be loaded: {describe(exc)}"
            return self._failed(request, FailureReason.CONNECTION_ERROR, error, reading)
        with trio.move_on_after(config.timeout_s):
            try:
                await self._exchange(config, ssl_context, reading, stamp)
            except AddressRefused as exc:
                return self._failed(request, FailureReason.SSRF_BLOCKED, str(exc), reading)
            except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
                error = describe(exc)
                if reading.status is not None:
                    error = f"{error} ({reading.where()})"
                return self._failed(request, FailureReason.CONNECTION_ERROR, error, reading)
            return self._judge(config, request, reading)
        error = f"no complete response within the {config.timeout_s} s timeout ({reading.where()})"
        return self._failed(request, FailureReason.TIMEOUT, error, reading)

    async def _exchange(
        self,
        config: HttpConfig,
        ssl_context: ssl.SSLContext,
        reading: _Reading,
        stamp: Sequence[tuple[str, str]],
    ) -> None:
        client = httpx2.AsyncClient(
            transport=_PolicyTransport(ssl_context, self._backend),
            trust_env=False,
            follow_redirects=False,
            timeout=None,
            headers=_DEFAULT_HEADERS,
        )
        async with (
            client,
            client.stream(
                config.method,
                config.url,
                headers=[(h.name.encode(), h.value.encode()) for h in config.headers]
                + [(name.encode(), value.encode()) for name, value in stamp],
                content=(config.body or "").encode("utf-8"),
            ) as response,
        ):
            reading.status = response.status_code
            for name, value in response.headers.multi_items():
                key = name.lower()
                reading.headers[key] = (
                    f"{reading.headers[key]}, {value}" if key in reading.headers else value
                )
            async with aclosing(response.aiter_raw()) as chunks:
                async for chunk in chunks:
                    room = self._keep_bytes - len(reading.kept)
                    if room > 0:
                        reading.kept += chunk[:room]
                    reading.body_bytes += len(chunk)
                    if reading.body_bytes > self._cap_bytes:
                        reading.body_bytes = self._cap_bytes
                        reading.capped = True
                        break

    def _judge(self, config: HttpConfig, request: dict[str, object], reading: _Reading) -> Outcome:
        assert reading.status is not None
        matched = status_matches(reading.status, config.success_status)
        notes = []
        if not matched:
            notes.append(
                f"status {reading.status} does not match success_status {config.success_status}"
            )
        if reading.capped:
            notes.append(f"stopped reading the body at the {self._cap_bytes}-byte cap")
        error = "; ".join(notes)
        if not matched:
            return self._failed(request, FailureReason.NON_SUCCESS_STATUS, error, reading)
        result = reading.result(self._keep_bytes)
        return Outcome(RunStatus.SUCCEEDED, None, error or None, request, result)

    def _failed(
        self, request: dict[str, object], reason: FailureReason, error: str, reading: _Reading
    ) -> Outcome:
        return Outcome(RunStatus.FAILED, reason, error, request, reading.result(self._keep_bytes))

    def ssl_context_for(self, config: HttpConfig) -> ssl.SSLContext:
        """The shared context for the job's TLS settings, built on first use."""
        if not config.tls_verify:
            if self._insecure is None:
                self._insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                self._insecure.check_hostname = False
                self._insecure.verify_mode = ssl.CERT_NONE
            return self._insecure
        if config.ca_cert is None or not config.url.lower().startswith("https:"):
            if self._verifying is None:
                self._verifying = ssl.create_default_context()
            return self._verifying
        context = self._with_ca.get(config.ca_cert)
        if context is None:
            context = ssl.create_default_context()
            context.load_verify_locations(cadata=config.ca_cert)
            self._with_ca[config.ca_cert] = context
            while len(self._with_ca) > CA_CONTEXTS_KEPT:
                self._with_ca.popitem(last=False)
        self._with_ca.move_to_end(config.ca_cert)
        return context
