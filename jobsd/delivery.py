"""One HTTP exchange, made safely; see spec/OUTBOUND.md for the reasons.

`Delivery` is built once and shared by every executor actor. It owns what is
costly or must be bounded process-wide: the address policy, the TLS contexts
(building one costs tens of milliseconds) and the DNS thread limiter (a
cancelled lookup keeps its thread, so DNS gets its own limiter and cannot
starve trio's default one).

The address policy is enforced where the socket is opened: `jobsd.dialer.PolicyBackend`
is the httpcore network backend, so every connection httpx makes resolves
once, has every answer checked, and dials only a checked IP literal. httpcore
still sends the URL's host as SNI and checks the certificate against it, and
httpx builds `Host` from the URL.

One transport per TLS setting serves every run of the process: building an
httpx client per run cost more CPU than the exchange around it
(tests/bench/bench_clients.py; the README's Decisions give the figures).
Requests go to the transport directly, below httpx's client (no cookie jar,
no auth flow, no redirects: none of them may carry anything from one run to
the next). Its pool keeps no idle connection (`max_keepalive_connections=0`):
every run dials its own connection and closes it when its response ends, so
no run reuses what another run (of any account) set up, a connection the
server closed while idle can never fail a run, and cancelling a run closes
everything it opened.

Outcomes: a response whose status matches `success_status` is SUCCEEDED,
any other is NON_SUCCESS_STATUS with the response recorded. A body read to
the cap is judged on its status; `error` then notes the cap. A deadline or a
network failure after the headers arrived still records the partial result.
"""

from __future__ import annotations

import ssl
from collections import OrderedDict
from collections.abc import (
    Sequence,
)
from contextlib import aclosing

import httpx2
import trio

from jobsd.address_policy import AddressPolicy
from jobsd.dialer import (
    AddressRefused,
    PolicyBackend,
    PolicyTransport,
    Resolver,
    default_resolver,
    describe,
    root_cause,
)
from jobsd.messages import Header, HttpConfig, Outcome
from jobsd.runs import FailureReason, RunStatus

USER_AGENT = "jobsd/0.1"
CA_CONTEXTS_KEPT = 64
BODY_KEEP_BYTES = 65536
BODY_CAP_BYTES = 8 * 1024 * 1024


# What httpx's client put first on every request; a job's header of the same
# name replaces one of these.
_DEFAULT_HEADERS = (
    ("Accept", "*/*"),
    # Raw bytes are what we count and cap: no decompression bomb can expand
    # past the cap inside one chunk. A job that asks for gzip gets it raw.
    ("Accept-Encoding", "identity"),
    ("Connection", "keep-alive"),
    ("User-Agent", USER_AGENT),
)


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


def _job_headers(config: HttpConfig, stamp: Sequence[tuple[str, str]]) -> tuple[Header, ...]:
    stamped = {name.lower() for name, _ in stamp}
    return tuple(h for h in config.job_headers() if h.name.lower() not in stamped)


def request_record(config: HttpConfig, stamp: Sequence[tuple[str, str]]) -> dict[str, object]:
    """The request as a run records it: the job's header names, never their values."""
    return {
        "method": config.method,
        "url": config.url,
        "headers": [{"name": h.name, "value": "<redacted>"} for h in _job_headers(config, stamp)],
        "body": config.body,
    }


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
        body_keep_bytes: int = BODY_KEEP_BYTES,
        body_cap_bytes: int = BODY_CAP_BYTES,
        dns_threads: int = 8,
    ) -> None:
        if resolver is None:
            resolver = default_resolver(trio.CapacityLimiter(dns_threads))
        self._backend = PolicyBackend(policy, resolver)
        self._keep_bytes = body_keep_bytes
        self._cap_bytes = body_cap_bytes
        self._verifying: ssl.SSLContext | None = None
        self._insecure: ssl.SSLContext | None = None
        self._with_ca: OrderedDict[str, ssl.SSLContext] = OrderedDict()
        # One transport per context; holding the context keeps its id unique.
        self._transports: OrderedDict[int, tuple[ssl.SSLContext, PolicyTransport]] = OrderedDict()

    async def perform(
        self, config: HttpConfig, *, stamp: Sequence[tuple[str, str]] = ()
    ) -> Outcome:
        """Never raises for what the remote side or the network does; only
        trio.Cancelled (the run was cancelled) propagates.

        `stamp` is jobsd's own headers (run id, scheduled instant, signatures)
        that let a target deduplicate, correlate and verify; they are not the
        job's secrets and are not part of the recorded snapshot of the job's
        request. Where a job sets a header of the same name, jobsd's wins."""
        headers = _job_headers(config, stamp)
        request = request_record(config, stamp)
        reading = _Reading()
        try:
            ssl_context = self.ssl_context_for(config)
        except (ssl.SSLError, ValueError) as exc:
            error = f"ca_cert cannot be loaded: {describe(exc)}"
            return self._failed(request, FailureReason.CONNECTION_ERROR, error, reading)
        with trio.move_on_after(config.timeout_s):
            try:
                sent = [(h.name, h.value) for h in headers] + list(stamp)
                await self._exchange(config, ssl_context, reading, sent)
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
        headers: Sequence[tuple[str, str]],
    ) -> None:
        sent = httpx2.Headers(_DEFAULT_HEADERS)
        sent.update(httpx2.Headers([(name.encode(), value.encode()) for name, value in headers]))
        request = httpx2.Request(config.method, config.url, headers=sent, content=config.payload())
        response = await self._transport_for(ssl_context).handle_async_request(request)
        try:
            await self._read(response, reading)
        finally:
            await response.aclose()  # releases (closes) the connection, shielded

    async def _read(self, response: httpx2.Response, reading: _Reading) -> None:
        async with aclosing(response.aiter_raw()) as chunks:
            reading.status = response.status_code
            for name, value in response.headers.multi_items():
                key = name.lower()
                reading.headers[key] = (
                    f"{reading.headers[key]}, {value}" if key in reading.headers else value
                )
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

    def _transport_for(self, context: ssl.SSLContext) -> PolicyTransport:
        """The process's transport for these TLS settings. Dropping one (past the
        bound) closes nothing: it keeps no idle connection, and a run still
        using it holds it."""
        key = id(context)
        entry = self._transports.get(key)
        if entry is None:
            entry = self._transports[key] = (context, PolicyTransport(context, self._backend))
            while len(self._transports) > CA_CONTEXTS_KEPT + 2:
                self._transports.popitem(last=False)
        self._transports.move_to_end(key)
        return entry[1]

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


__all__ = [
    "AddressRefused",
    "Delivery",
    "Resolver",
    "default_resolver",
    "describe",
    "request_record",
    "root_cause",
    "status_matches",
]
