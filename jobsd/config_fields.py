"""The grammar of single config values: the types the config sections are built from.

Split from `config.py`, which says which sections and keys exist and how
they refer to each other; this module only answers "is this one value
acceptable, and if not, why", in words that end up after the key's name in
`jobsd: config error: <key>: <why>`. Values are strict (TOML `"64"` is not
an integer) and every string is checked here rather than by its users.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator

from jobsd.urls import url_problem

_NAME = re.compile(r"[a-z0-9_-]{1,64}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_LISTEN = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\[\]:]+)):(?P<port>[0-9]{1,5})")
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")
_URL_PATH = re.compile(r"/[A-Za-z0-9._~/-]{1,255}")
_RESERVED_PATHS = ("/api", "/healthz")
URL_MAX_CHARS = 2048
MAX_WORKER_PROCESSES = 64


def split_listen(listen: str) -> tuple[str, int]:
    match = _LISTEN.fullmatch(listen)
    if match is None:
        raise ValueError('expected "host:port", e.g. "127.0.0.1:8080" or "[::1]:8080"')
    port = int(match["port"])
    if port > 65535:
        raise ValueError(f"port {port} is above 65535")
    if match["v6"] is not None:
        try:
            return str(ipaddress.IPv6Address(match["v6"])), port
        except ValueError:
            raise ValueError(f"{match['v6']!r} is not an IPv6 address") from None
    host = match["host"]
    if host.replace(".", "").isdigit():
        try:
            return str(ipaddress.IPv4Address(host)), port
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv4 address") from None
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a valid host name")
    return host, port


def _check_listen(listen: str) -> str:
    split_listen(listen)
    return listen


def _check_absolute(path: Path) -> Path:
    if "\0" in str(path):
        raise ValueError("a path may not contain a NUL character")
    if not path.is_absolute():
        raise ValueError("must be an absolute path")
    return path


def _parse_cidr(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise ValueError("must be a string such as '127.0.0.0/8'")
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a network in CIDR form ({exc})") from None


def _matching(pattern: re.Pattern[str], message: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


def _worker_processes(value: object) -> int | Literal["auto"]:
    """One rule for a count or "auto". As a pydantic union of the two, a bad
    value was reported by the integer branch, keyed
    `scheduler.worker_processes.constrained-int` and worded as if "auto"
    were not allowed."""
    if value == "auto":
        return "auto"
    if type(value) is int and 0 <= value <= MAX_WORKER_PROCESSES:
        return value
    raise ValueError(f'must be "auto" or an integer 0-{MAX_WORKER_PROCESSES}')


def _at_least_one_or_unlimited(value: int) -> int:
    """A bound of 0 would be a plan that may hold nothing: a typo, not a plan."""
    if value == -1 or value >= 1:
        return value
    raise ValueError("must be >= 1, or -1 (unlimited)")


Limit = Annotated[int, Field(strict=True, ge=-1)]  # -1 = unlimited
Bound = Annotated[int, Field(strict=True), AfterValidator(_at_least_one_or_unlimited)]
WorkerProcesses = Annotated[int | Literal["auto"], PlainValidator(_worker_processes)]
Name = Annotated[
    str, Field(strict=True), _matching(_NAME, "must be 1-64 characters of a-z 0-9 - _")
]
Digest = Annotated[
    str,
    Field(strict=True),
    _matching(_DIGEST, "must be 64 lowercase hex characters: a SHA-256 (`jobsd token` prints one)"),
]
Listen = Annotated[str, Field(strict=True), AfterValidator(_check_listen)]
AbsolutePath = Annotated[Path, AfterValidator(_check_absolute)]
Cidr = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, PlainValidator(_parse_cidr)]


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_url_path(path: str) -> str:
    if not _URL_PATH.fullmatch(path):
        raise ValueError('must be a URL path such as "/metrics": "/" then a-z A-Z 0-9 . _ ~ / -')
    # Served as written, but a client or proxy that normalises the path would
    # ask for another one (`/x/../api/v1/jobs` is the API's jobs).
    if any(seg in ("", ".", "..") for seg in path.removesuffix("/").split("/")[1:]):
        raise ValueError("must not hold '.' or '..' segments or '//'")
    for reserved in _RESERVED_PATHS:
        if path.rstrip("/") == reserved or path.startswith(reserved + "/"):
            raise ValueError(f"{reserved} is the API's; choose another path")
    return path


def _check_optional_digest(value: str) -> str:
    if value and not _DIGEST.fullmatch(value):
        raise ValueError('must be "" (none) or 64 lowercase hex characters: a SHA-256')
    return value


def _check_optional_url(url: str) -> str:
    # The job URL rules, so an alert target is refused where a job's would be.
    if not url:
        return url
    if len(url) > URL_MAX_CHARS:
        raise ValueError(f"must be at most {URL_MAX_CHARS} characters")
    problem = url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    return url


Flag = Annotated[bool, Field(strict=True)]
UrlPath = Annotated[str, Field(strict=True), AfterValidator(_check_url_path)]
OptionalDigest = Annotated[str, Field(strict=True), AfterValidator(_check_optional_digest)]
OptionalUrl = Annotated[str, Field(strict=True), AfterValidator(_check_optional_url)]
