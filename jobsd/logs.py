"""How log lines look: `[log] format = "text" | "json"` and `level`.

Every line goes through the `logging` root: jobsd's own, hypercorn's error
log, Python warnings (`captureWarnings`) and, in JSON mode, an uncaught
exception (`sys.excepthook`), one that ends a thread (`threading.excepthook`:
the store's writer is one) and one Python can only report as ignored
(`sys.unraisablehook`: raised in a `__del__` or a finalizer, which trio's
sockets and generators have), so with `format = "json"` each line the
daemon writes is one JSON object: `ts` (RFC 3339 UTC), `level`, `logger`,
`msg`, the record's structured fields, and `exc` (the traceback, as one
string) when there is one.

Structured fields travel as `extra={"fields": {...}}` (see `fields`): JSON
puts them at the top level, text appends them as `key=value`. Under
systemd (`JOURNAL_STREAM` names our stderr) text lines carry no timestamp,
since the journal stamps each line itself, and start with the `<N>` syslog
priority prefix the journal reads as the line's level.

What a line may hold is decided where it is written, not here: no token,
header value, body, query string or job URL ever reaches a logger (tests
grep every line). httpx logs each request's URL at INFO, so its loggers
stay at WARNING whatever the level: delivery no longer uses it, but a
library that does must not bring those lines back.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from jobsd.log_batching import BatchingHandler

if TYPE_CHECKING:
    from jobsd.config import LogConfig


@dataclass(frozen=True)
class LogSettings:
    """`[log]` as a worker process is told it: importing `jobsd.config` (pydantic)
    would cost each worker about 10 MiB of RSS for two strings."""

    format: str
    level: str


QUIET = ("httpx2", "httpcore2", "httpx", "httpcore")
_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def fields(**values: object) -> dict[str, Any]:
    """`extra=` for a structured line: `log.info("run finished", extra=fields(run=...))`."""
    return {"fields": values}


def _fields_of(record: logging.LogRecord) -> Mapping[str, object]:
    found = getattr(record, "fields", None)
    return found if isinstance(found, Mapping) else {}


def failure(exc: BaseException) -> dict[str, str]:
    """The fields of an error line at a boundary that catches what it did not expect
    (a bug): the exception's type and the line that raised, by file and function.
    Never its message or a traceback (which ends with the message): a message
    may quote what a line must not hold (a job's URL, a header value, a body)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = "" if not frames else f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}"
    if frames:
        where += f" in {frames[-1].name}"
    return {"error": type(exc).__name__, "where": where}


_QUOTE_WORTHY = re.compile(r'[\s"=]')  # \s: str.isspace()'s characters


def _text_value(value: object) -> str:
    text = "" if value is None else str(value)
    if text and not _QUOTE_WORTHY.search(text):
        return text
    return json.dumps(text)


_LINE_BREAKING = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters but tab


def one_line(message: str) -> str:
    """A message as one line: a request's path or a remote's text can reach a
    message (an error's), and a line break in it would forge a line of its own."""
    if _LINE_BREAKING.search(message) is None:
        return message
    return _LINE_BREAKING.sub(lambda m: f"\\x{ord(m[0]):02x}", message)


class TextFormatter(logging.Formatter):
    def __init__(self, *, journal: bool) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self._journal = journal

    def format(self, record: logging.LogRecord) -> str:
        # What the format string gives, without the generic machinery (a line per
        # request), the message on one line; a traceback below it, as logging puts it.
        record.message = one_line(record.getMessage())
        line = f"{record.levelname} {one_line(record.name)}: {record.message}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        extra = " ".join(f"{k}={_text_value(v)}" for k, v in _fields_of(record).items())
        head, sep, tail = line.partition("\n")  # a traceback stays below the line it explains
        line = f"{head} {extra}{sep}{tail}" if extra else line
        if self._journal:
            return f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>{line}"
        return f"{self.formatTime(record)} {line}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        instant = datetime.fromtimestamp(record.created, UTC)
        doc: dict[str, object] = {
            "ts": instant.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields_of(record).items():
            doc.setdefault(key, value)
        if record.exc_info:
            doc["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.stack_info:
            doc["exc"] = record.stack_info
        return json.dumps(doc, ensure_ascii=False, default=str)


def json_line(logger: str, msg: str, **values: object) -> str:
    """One INFO line as `JsonFormatter` writes it, for what is printed rather than logged."""
    record = logging.makeLogRecord(
        {
            "name": logger,
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": msg,
            **fields(**values),
        }
    )
    return JsonFormatter().format(record)


def under_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when `stream` is the journal's: systemd sets JOURNAL_STREAM to its dev:inode."""
    dev, _, ino = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def formatter_for(
    config: LogConfig | LogSettings, stream: TextIO, environ: Mapping[str, str]
) -> logging.Formatter:
    if config.format == "json":
        return JsonFormatter()
    return TextFormatter(journal=under_journal(stream, environ))


def configure(
    config: LogConfig | LogSettings,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Make the root logger write `config`'s lines to `stream` (stderr); returns the handler."""
    stream = sys.stderr if stream is None else stream
    handler = BatchingHandler(stream)
    handler.setFormatter(formatter_for(config, stream, os.environ if environ is None else environ))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.level.upper())
    # What no formatter here prints is not gathered for every line (the logging
    # HOWTO's "Optimization"): the calling frame, thread and process. An access
    # line per request made these a tenth of the API's own cost per read.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    if config.format == "json":
        # Each of these would otherwise print a plain multi-line traceback to stderr.
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_thread_uncaught
        sys.unraisablehook = _log_unraisable
    return handler


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("jobsd").critical("jobsd crashed", exc_info=(kind, exc, tb))


def _log_thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # what the default hook keeps quiet too
        return
    name = "?" if args.thread is None else args.thread.name
    exc_info = None
    if args.exc_value is not None:
        exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
    logging.getLogger("jobsd").critical("thread %s crashed", name, exc_info=exc_info)


def _log_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    if unraisable.exc_value is None:
        exc_info = None
    else:
        exc_info = (unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
    what = unraisable.err_msg or "Exception ignored in"
    # The object's name, not its repr, which may quote what a log must not hold (a URL).
    found = unraisable.object
    name = getattr(found, "__qualname__", None) or type(found).__qualname__
    logging.getLogger("jobsd").error("%s: %s", what, name, exc_info=exc_info)
