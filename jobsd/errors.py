"""The exception tree.

    JobsdError
    ├── ConfigError            bad config file; names the key (exit 2 at start)
    ├── StorageError           the database cannot be used as it is
    │   └── SchemaTooNewError  written by a newer jobsd
    ├── ScheduleError          a schedule string that cannot fire
    │   └── TimezoneError      an unknown zone, or a zone on a schedule that is not cron
    ├── RetryPolicyError       a retry policy that breaks its rules; one entry per problem
    ├── SealError              a header value that cannot be opened
    ├── SigningError           a request to be signed has no secret to sign with
    └── ApiError               becomes one JSON:API error document
        ├── ValidationFailed   422, one entry per bad field
        ├── NotFound           404
        ├── Conflict           409
        ├── Forbidden          403
        ├── BadRequest         400 (bad query parameter or malformed JSON)
        ├── Unauthorized       401
        ├── PayloadTooLarge    413
        ├── TooManyRequests    429 (an account's backlog of PENDING runs is full)
        └── UnsupportedMedia   415

Exceptions propagate. They are caught in two places only: the per-run
boundary in the executor (a recorded FAILED run) and the per-request boundary
in the API (a JSON:API error).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field


class JobsdError(Exception):
    pass


class ConfigError(JobsdError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class StorageError(JobsdError):
    pass


class SchemaTooNewError(StorageError):
    pass


class ScheduleError(JobsdError):
    """`detail` says, for a person, what is wrong with the schedule."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TimezoneError(ScheduleError):
    """The `timezone` attribute is at fault, not the schedule: its own pointer."""


class RetryPolicyError(JobsdError):
    """`problems`: (JSON pointer below the attributes, detail), one per fault,
    e.g. ("retry_statuses/2", "'6xx' is not a status pattern: ...")."""

    def __init__(self, problems: tuple[tuple[str, str], ...]) -> None:
        super().__init__("; ".join(f"{where}: {detail}" for where, detail in problems))
        self.problems = problems


class SealError(JobsdError):
    pass


class SigningError(JobsdError):
    """Recorded on the run as its error: the message says what to do."""


@dataclass(frozen=True)
class ErrorItem:
    """One member of a JSON:API `errors` array."""

    status: int
    code: str
    title: str
    detail: str
    pointer: str | None = None
    parameter: str | None = None
    header: str | None = None
    meta: Mapping[str, object] | None = None  # the error object's `meta`, when it has one

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "status": str(self.status),
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
        }
        if self.pointer is not None:
            doc["source"] = {"pointer": self.pointer}
        elif self.parameter is not None:
            doc["source"] = {"parameter": self.parameter}
        elif self.header is not None:
            doc["source"] = {"header": self.header}
        if self.meta is not None:
            doc["meta"] = dict(self.meta)
        return doc


@dataclass
class ApiError(JobsdError):
    status: int = 500
    items: list[ErrorItem] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return "; ".join(f"{i.code}: {i.detail}" for i in self.items)


def _single(status: int, code: str, title: str, detail: str, **source: str) -> ApiError:
    item = ErrorItem(
        status,
        code,
        title,
        detail,
        pointer=source.get("pointer"),
        parameter=source.get("parameter"),
        header=source.get("header"),
    )
    return ApiError(status, [item])


class ValidationFailed(ApiError):
    def __init__(self, items: list[ErrorItem]) -> None:
        super().__init__(422, items)


def not_found(detail: str) -> ApiError:
    return _single(404, "not_found", "Not Found", detail)


def conflict(code: str, detail: str, pointer: str | None = None) -> ApiError:
    if pointer is None:
        return _single(409, code, "Conflict", detail)
    return _single(409, code, "Conflict", detail, pointer=pointer)


def forbidden(code: str, detail: str) -> ApiError:
    return _single(403, code, "Forbidden", detail)


def bad_parameter(parameter: str, detail: str) -> ApiError:
    return _single(400, "invalid_parameter", "Bad Request", detail, parameter=parameter)


def bad_header(header: str, detail: str) -> ApiError:
    return _single(400, "invalid_header", "Bad Request", detail, header=header)


def bad_request(code: str, detail: str) -> ApiError:
    return _single(400, code, "Bad Request", detail)


def unauthorized(detail: str) -> ApiError:
    err = _single(401, "unauthorized", "Unauthorized", detail)
    err.headers["WWW-Authenticate"] = 'Bearer realm="jobsd"'
    return err


def payload_too_large(detail: str) -> ApiError:
    return _single(413, "payload_too_large", "Payload Too Large", detail)


# What a refused run-now or rerun is told to wait: long enough for a backlog
# at its bound to move, short enough that a client does not sit idle once it has.
RETRY_AFTER_S = 5


def too_many_pending(max_pending: int) -> ApiError:
    err = _single(
        429,
        "too_many_pending_runs",
        "Too Many Requests",
        f"this account already has {max_pending} runs waiting to start (scheduler."
        "max_pending_runs); no run was created. Retry once some have started, or cancel some",
    )
    err.headers["Retry-After"] = str(RETRY_AFTER_S)
    return err


# What a write refused because the database stayed locked is told to wait:
# another process (a backup, `rotate-key`, an operator's sqlite3 shell) held
# the write lock past the store's busy timeout; a second is enough to try again.
STORE_BUSY_RETRY_AFTER_S = 1
STORE_UNAVAILABLE_RETRY_AFTER_S = 5  # a restart: systemd's RestartSec (2 s) and a start


def internal() -> ApiError:
    """What an unexpected failure says on the wire: no more (the log has it)."""
    return _single(500, "internal_error", "Internal Server Error", "the server failed; see its log")


def store_busy() -> ApiError:
    err = _single(
        503,
        "store_busy",
        "Service Unavailable",
        "the database stayed locked by another process past the store's busy timeout;"
        " nothing was changed. Retry shortly",
    )
    err.headers["Retry-After"] = str(STORE_BUSY_RETRY_AFTER_S)
    return err


def store_unavailable(exc: BaseException) -> tuple[ApiError, str] | None:
    """The 503 for a request the database could not take, and what the log says:
    locked by another process (try again at once), or a write connection gone
    bad (`jobsd.store.engine`: the daemon is stopping to reopen the file). In
    both, the request's transaction did not commit. None for anything else."""
    if is_store_busy(exc):
        return store_busy(), "the database stayed locked"
    if not isinstance(exc, StorageError):
        return None
    err = _single(
        503,
        "store_unavailable",
        "Service Unavailable",
        "the database could not be written and jobsd is restarting to reopen it;"
        " nothing was changed. Retry shortly",
    )
    err.headers["Retry-After"] = str(STORE_UNAVAILABLE_RETRY_AFTER_S)
    return err, "the database cannot be written"


def is_store_busy(exc: BaseException) -> bool:
    """SQLite's BUSY or LOCKED (any extended code): the database is in use by
    someone else, not broken; the operation can simply be tried again."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (
        isinstance(exc, sqlite3.OperationalError)
        and code is not None
        and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    )


def database_locked(exc: BaseException, path: object = None) -> StorageError:
    """A start that met the database locked past the busy timeout: in use, not damaged,
    so the operator is told to wait for the other process, not to restore a backup."""
    where = "the database" if path is None else f"the database {path}"
    return StorageError(
        f"{where} stayed locked by another process past the 5 s busy timeout ({exc}):"
        " let it finish (jobsd backup, rotate-key, a sqlite3 shell) and start jobsd again"
    )


def unsupported_media(detail: str) -> ApiError:
    return _single(415, "unsupported_media_type", "Unsupported Media Type", detail)


def not_acceptable(detail: str) -> ApiError:
    return _single(406, "not_acceptable", "Not Acceptable", detail, header="Accept")


def pointer_part(key: str) -> str:
    """An object key as one JSON Pointer reference token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def invalid(code: str, pointer: str, detail: str, title: str = "Invalid field") -> ErrorItem:
    return ErrorItem(422, code, title, detail, pointer=pointer)
