"""One HTTP exchange, made safely; see spec/OUTBOUND.md for the reasons.

`Delivery` is built once per process and shared by every executor actor (in
the daemon for alerts, in each worker process for runs). It owns what is
costly or must be bounded process-wide: the address policy, the TLS contexts
(building one costs tens of milliseconds) and the DNS threads (a
cancelled lookup keeps its thread, so DNS gets its own limiter and cannot
starve trio's default one, and each account at most half of it, so one
account's names that never resolve cannot starve the others:
`jobsd.lookup_threads`).

The exchange is HTTP/1.1 on h11 over trio streams (`jobsd.http1`), not an
HTTP client library: httpx2 over httpcore cost a worker ~1.15 ms of CPU per
run, more than half of it in layers a one-request connection never needs
(the README's Decisions give the figures). The address policy is enforced
where the socket is opened (`jobsd.dialer.PolicyDialer`): resolve once,
check every answer, dial only a checked IP literal; TLS then runs over that
socket with the URL's host as SNI and as the name the certificate must
match, and `Host` comes from the URL (`jobsd.http_url`, httpx's rules).

A run's connection is kept for the next run only under `jobsd.keepalive`'s
rules: of the same account (`HttpConfig.reuse_scope`; alerts have none and
always dial afresh with `Connection: close`), origin and TLS settings, for
`[outbound] keepalive_s`, and only after a response read to its clean end.
A kept connection found closed before anything was sent on it is replaced
by a fresh dial; once any byte of the request may have reached the server,
a failure is the run's outcome and the request is never sent again.
Cancelling a run closes the connection it was using. No redirect is
followed, no cookie kept.

Outcomes: a response whose status matches `success_status` is SUCCEEDED,
any other is NON_SUCCESS_STATUS with the response recorded. A body read to
the cap is judged on its status; `error` then notes the cap. One deadline
(`timeout_s`) covers the whole exchange, lookup to last byte. A deadline, a
network failure or a response that breaks HTTP/1.1 after the headers
arrived still records the partial result.
"""

from __future__ import annotations

import hashlib
import ssl
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

import h11
import trio

from jobsd.address_policy import AddressPolicy
from jobsd.dialer import (
    AddressRefused,
    ConnectFailed,
    PolicyDialer,
    Resolver,
    default_resolver,
    describe,
    root_cause,
)
from jobsd.http1 import Connector, ExchangeFailed, request_bytes
from jobsd.http_url import InvalidURL, Target, parse
from jobsd.job_model import Header, HttpConfig
from jobsd.keepalive import IdleConnections, ReuseKey
from jobsd.lookup_threads import LOOKUP_SCOPE, TOTAL, LookupThreads
from jobsd.messages import Outcome
from jobsd.reading import MAX_HEAD_BYTES, Reading
from jobsd.runs import FailureReason, RunStatus

USER_AGENT = "jobsd/0.1"
CA_CONTEXTS_KEPT = 64
# The `ca_cert` text the kept contexts were built from, at most (the newest is kept
# whatever its size): a `ca_cert` may be 1.25 MiB, and 64 such contexts would hold
# ~80 MiB of one account's certificates in every process.
CA_BYTES_KEPT = 8 * 1024 * 1024
BODY_KEEP_BYTES = 65536
BODY_CAP_BYTES = 8 * 1024 * 1024


# What every request carries first; a job's header of the same name replaces one.
_DEFAULT_HEADERS = (
    ("Accept", "*/*"),
    # Raw bytes are what we count and cap: no decompression bomb can expand
    # past the cap inside one chunk. A job that asks for gzip gets it raw.
    ("Accept-Encoding", "identity"),
    # Left out when the connection may be kept (HTTP/1.1's default is to keep it).
    ("Connection", "close"),
    ("User-Agent", USER_AGENT),
)


def _job_headers(config: HttpConfig, stamp: Sequence[tuple[str, str]]) -> tuple[Header, ...]:
    stamped = {name.lower() for name, _ in stamp}
    return tuple(h for h in config.job_headers() if h.name.lower() not in stamped)


def _sent_headers(
    headers: Sequence[Header], stamp: Sequence[tuple[str, str]], *, keep: bool
) -> list[tuple[str, str]]:
    own = [(h.name, h.value) for h in headers] + list(stamp)
    names = {name.lower() for name, _ in own}
    if keep:
        names.add("connection")
    return [d for d in _DEFAULT_HEADERS if d[0].lower() not in names] + own


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
        dns_threads: int = TOTAL,
        keepalive_s: float = 0.0,
    ) -> None:
        if resolver is None:
            resolver = default_resolver(LookupThreads(dns_threads))
        self._dialer = PolicyDialer(policy, resolver)
        self._keep_bytes = body_keep_bytes
        self._cap_bytes = body_cap_bytes
        self._verifying: ssl.SSLContext | None = None
        self._insecure: ssl.SSLContext | None = None
        # By the digest of the `ca_cert` (the text is not held once its runs are done):
        # the context and the size of the text it was built from.
        self._with_ca: OrderedDict[bytes, tuple[ssl.SSLContext, int]] = OrderedDict()
        self._ca_bytes = 0
        # One connector per context; holding the context keeps its id unique.
        self._transports: OrderedDict[int, tuple[ssl.SSLContext, Connector]] = OrderedDict()
        self.idle = IdleConnections(keepalive_s)

    async def perform(
        self, config: HttpConfig, *, stamp: Sequence[tuple[str, str]] = ()
    ) -> Outcome:
        """Never raises for what the remote side or the network does; only
        trio.Cancelled (the run was cancelled) propagates.

        `stamp` is jobsd's own headers (run id, scheduled instant, signatures)
        that let a target deduplicate, correlate and verify; they are not the
        job's secrets and are not part of the recorded snapshot of the job's
        request. Where a job sets a header of the same name, jobsd's wins."""
        # Name lookups count against the account's share of the threads: a run's
        # account is its reuse scope; a caller with none (the alert actor) sets
        # LOOKUP_SCOPE itself, which is then kept.
        if config.reuse_scope is None:
            return await self._perform(config, stamp)
        scope = LOOKUP_SCOPE.set(config.reuse_scope)
        try:
            return await self._perform(config, stamp)
        finally:
            LOOKUP_SCOPE.reset(scope)

    async def _perform(self, config: HttpConfig, stamp: Sequence[tuple[str, str]]) -> Outcome:
        headers = _job_headers(config, stamp)
        request = request_record(config, stamp)
        reading = Reading(self._keep_bytes, self._cap_bytes)
        try:
            ssl_context = self.ssl_context_for(config)
        except (ssl.SSLError, ValueError) as exc:
            error = f"ca_cert cannot be loaded: {describe(exc)}"
            return self._failed(request, FailureReason.CONNECTION_ERROR, error, reading)
        with trio.move_on_after(config.timeout_s):
            try:
                target = parse(config.url)
                key = self._reuse_key(config, target, ssl_context)
                conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
                sent = _sent_headers(headers, stamp, keep=key is not None)
                data = request_bytes(conn, config.method, target, sent, config.payload())
                connector = self._connector_for(ssl_context)
                await self.idle.exchange(key, partial(connector.open, target), conn, data, reading)
            except AddressRefused as exc:
                return self._failed(request, FailureReason.SSRF_BLOCKED, str(exc), reading)
            except (InvalidURL, ConnectFailed, ExchangeFailed, h11.ProtocolError) as exc:
                error = describe(exc)
                if reading.status is not None:
                    error = f"{error} ({reading.where()})"
                return self._failed(request, FailureReason.CONNECTION_ERROR, error, reading)
            return self._judge(config, request, reading)
        error = f"no complete response within the {config.timeout_s} s timeout ({reading.where()})"
        return self._failed(request, FailureReason.TIMEOUT, error, reading)

    def _reuse_key(
        self, config: HttpConfig, target: Target, context: ssl.SSLContext
    ) -> ReuseKey | None:
        if config.reuse_scope is None or not self.idle.enabled:
            return None
        return ReuseKey(config.reuse_scope, target.tls, target.host, target.port, context)

    def _judge(self, config: HttpConfig, request: dict[str, object], reading: Reading) -> Outcome:
        assert reading.status is not None
        matched = status_matches(reading.status, config.success_status)
        notes = []
        if not matched:
            notes.append(
                f"status {reading.status} does not match success_status {config.success_status}"
            )
        if reading.capped:
            notes.append(reading.cap_note())
        error = "; ".join(notes)
        if not matched:
            return self._failed(request, FailureReason.NON_SUCCESS_STATUS, error, reading)
        return Outcome(RunStatus.SUCCEEDED, None, error or None, request, reading.result())

    def _failed(
        self, request: dict[str, object], reason: FailureReason, error: str, reading: Reading
    ) -> Outcome:
        return Outcome(RunStatus.FAILED, reason, error, request, reading.result())

    def _connector_for(self, context: ssl.SSLContext) -> Connector:
        """The process's connector for these TLS settings. Dropping one (past
        the bound) closes nothing: it holds no connection."""
        key = id(context)
        entry = self._transports.get(key)
        if entry is None:
            entry = self._transports[key] = (context, Connector(context, self._dialer))
            while len(self._transports) > CA_CONTEXTS_KEPT + 2:
                self._transports.popitem(last=False)
        self._transports.move_to_end(key)
        return entry[1]

    def ssl_context_for(self, config: HttpConfig) -> ssl.SSLContext:
        """The shared context for the job's TLS settings, built on first use."""
        if not config.tls_verify:
            if self._insecure is None:
                self._insecure = _no_renegotiation(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
                self._insecure.check_hostname = False
                self._insecure.verify_mode = ssl.CERT_NONE
            return self._insecure
        if config.ca_cert is None or not config.url.lower().startswith("https:"):
            if self._verifying is None:
                self._verifying = _no_renegotiation(ssl.create_default_context())
            return self._verifying
        text = config.ca_cert.encode("utf-8", "surrogatepass")
        key = hashlib.sha256(text).digest()
        kept = self._with_ca.get(key)
        if kept is not None:
            self._with_ca.move_to_end(key)
            return kept[0]
        context = _no_renegotiation(ssl.create_default_context())
        context.load_verify_locations(cadata=config.ca_cert)
        self._with_ca[key] = (context, len(text))
        self._ca_bytes += len(text)
        while len(self._with_ca) > 1 and (
            len(self._with_ca) > CA_CONTEXTS_KEPT or self._ca_bytes > CA_BYTES_KEPT
        ):
            _, (dropped, size) = self._with_ca.popitem(last=False)
            self._ca_bytes -= size
            # Its connector holds it too: dropped with it, or the bound in bytes
            # bounds nothing (`_transports` keeps 66 by count, whatever their size).
            self._transports.pop(id(dropped), None)
        return context

    def ca_bytes_kept(self) -> int:
        """The size of the `ca_cert` texts whose contexts are kept."""
        return self._ca_bytes


def _no_renegotiation(context: ssl.SSLContext) -> ssl.SSLContext:
    """A target may not renegotiate TLS 1.2 mid-exchange: a hostile one could make a
    worker repeat handshakes (public-key work each) until the run's deadline."""
    context.options |= ssl.OP_NO_RENEGOTIATION
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
