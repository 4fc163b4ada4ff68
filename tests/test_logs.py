"""How lines look: text (with or without its own timestamp) and JSON, warnings included.

The JSON run and request lines of a real daemon, and that no secret
reaches them, are in tests/test_secrets_in_logs.py; here the formatters,
`configure`, and a child process under a pretend journal.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobsd import logs
from jobsd.config import LogConfig
from tests.conftest import config_text
from tests.daemon_process import DaemonProcess


def record(msg: str = "run finished", exc: bool = False, **values: object) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            info = sys.exc_info()
    made = logging.LogRecord("jobsd.runs", logging.WARNING, __file__, 1, msg, (), info)
    made.fields = values  # type: ignore[attr-defined]
    return made


def test_text_lines_carry_fields_and_a_timestamp_unless_under_the_journal() -> None:
    line = logs.TextFormatter(journal=False).format(record(job="nightly", error="a b", n=None))
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 WARNING jobsd\.runs: run finished "
        r'job=nightly error="a b" n=""',
        line,
    ), line
    journal = logs.TextFormatter(journal=True).format(record(job="nightly"))
    assert journal == "<4>WARNING jobsd.runs: run finished job=nightly"
    with_exc = logs.TextFormatter(journal=True).format(record(exc=True, job="x"))
    first, rest = with_exc.split("\n", 1)
    assert first == "<4>WARNING jobsd.runs: run finished job=x" and "ValueError" in rest


def test_a_message_cannot_forge_a_text_line() -> None:
    """A path or a remote's text may reach a message; a line break in it would
    start a line that looks like the daemon's. Escaped; a traceback still follows."""
    forged = "no route for /x\nINFO jobsd.runs: run finished status=SUCCEEDED\r\x1b[2K\x7f"
    for exc in (False, True):
        line = logs.TextFormatter(journal=True).format(record(forged, exc=exc))
        first, _, rest = line.partition("\n")
        assert first == (
            "<4>WARNING jobsd.runs: no route for /x\\x0aINFO jobsd.runs: run finished "
            "status=SUCCEEDED\\x0d\\x1b[2K\\x7f"
        ), first
        assert ("ValueError: boom" in rest) is exc


def test_json_lines_are_one_object_each_even_with_a_traceback() -> None:
    line = logs.JsonFormatter().format(record(exc=True, job="nightly", lateness_ms=None))
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["msg"] == "run finished" and doc["level"] == "warning"
    assert doc["logger"] == "jobsd.runs" and doc["ts"].endswith("Z")
    assert doc["job"] == "nightly" and doc["lateness_ms"] is None
    assert "ValueError: boom\nsecond line" in doc["exc"]
    # A field may not overwrite what every line carries.
    clash = json.loads(logs.JsonFormatter().format(record(msg="m", level="x", ts="y")))
    assert (clash["msg"], clash["level"]) == ("m", "warning") and clash["ts"] != "y"


def test_the_journal_is_recognised_by_its_device_and_inode(tmp_path: Path) -> None:
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        st = os.fstat(stream.fileno())
        assert logs.under_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not logs.under_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not logs.under_journal(stream, {"JOURNAL_STREAM": "garbage"})
        assert not logs.under_journal(stream, {})
    assert not logs.under_journal(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    thread_hook, unraisable_hook = threading.excepthook, sys.unraisablehook
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        sys.excepthook = hook
        threading.excepthook, sys.unraisablehook = thread_hook, unraisable_hook
        logging.captureWarnings(False)


def test_json_mode_turns_warnings_and_crashes_into_json_lines(restored_logging: None) -> None:
    out = io.StringIO()
    logs.configure(LogConfig(format="json", level="info"), stream=out, environ={})
    logging.getLogger("jobsd.x").debug("not at info")
    logging.getLogger("jobsd.x").info("hello %s", "world")
    logging.getLogger("httpx2").info("HTTP Request: GET https://x/?api_key=secret")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a library is unhappy", DeprecationWarning, stacklevel=1)
    try:
        raise RuntimeError("actor died")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())  # type: ignore[arg-type]
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert docs[0]["msg"] == "hello world"
    assert "secret" not in out.getvalue() and "not at info" not in out.getvalue()
    assert docs[1]["logger"] == "py.warnings" and "a library is unhappy" in docs[1]["msg"]
    assert docs[2]["msg"] == "jobsd crashed" and "RuntimeError: actor died" in docs[2]["exc"]
    assert len(docs) == 3


class _DiesInDel:
    def __del__(self) -> None:
        raise RuntimeError("ignored in __del__")


def test_json_mode_turns_a_thread_crash_and_an_unraisable_error_into_json_lines(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Python reports these past `sys.excepthook`, as plain multi-line tracebacks on
    stderr: the store's writer is a thread, and trio finalizes generators and
    sockets in `__del__`. In JSON mode each must still be one JSON line."""
    out = io.StringIO()
    logs.configure(LogConfig(format="json", level="info"), stream=out, environ={})

    def dies() -> None:
        raise RuntimeError("writer thread died")

    def exits() -> None:
        raise SystemExit(3)  # quiet, as the default hook keeps it

    for target, name in ((exits, "exits"), (dies, "jobsd-store-writer")):
        thread = threading.Thread(target=target, name=name)
        thread.start()
        thread.join(timeout=10)
    dying = _DiesInDel()
    del dying
    assert capsys.readouterr().err == ""
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(docs) == 2, out.getvalue()
    assert "RuntimeError: writer thread died" in docs[0]["exc"]
    assert "jobsd-store-writer" in docs[0]["msg"] and docs[0]["level"] == "critical"
    assert "RuntimeError: ignored in __del__" in docs[1]["exc"]
    # The object by name, never its repr (which may quote a URL).
    assert docs[1]["msg"].endswith(": _DiesInDel.__del__"), docs[1]["msg"]


def test_text_mode_levels(restored_logging: None) -> None:
    out = io.StringIO()
    logs.configure(LogConfig(format="text", level="warning"), stream=out, environ={})
    logging.getLogger("jobsd").info("quiet")
    logging.getLogger("jobsd").warning("loud")
    assert out.getvalue().count("\n") == 1 and "WARNING jobsd: loud" in out.getvalue()


def test_under_systemd_text_lines_carry_no_timestamp(tmp_path: Path) -> None:
    """A real child whose stderr the (pretend) journal owns: JOURNAL_STREAM names it."""
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(config_text(tmp_path))
    process = DaemonProcess(["serve", "--config", str(cfg)], tmp_path)
    process.stderr_path.touch()
    st = os.stat(process.stderr_path)
    process.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    process.start()
    code = process.stop()
    assert code == 0
    lines = [line for line in process.stderr().splitlines() if line]
    assert lines and any("jobsd: stopped" in line for line in lines)
    heads = [line for line in lines if not line.startswith((" ", "Traceback"))]
    assert all(re.match(r"<[2-7]>(DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: ", h) for h in heads), (
        heads
    )
    assert not any(re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", h) for h in heads)


@given(st.text() | st.integers() | st.none())
def test_a_text_value_is_quoted_exactly_when_it_holds_space_a_quote_or_an_equals_sign(
    value: object,
) -> None:
    """The rule as first written, one character at a time, against the fast search."""
    text = "" if value is None else str(value)
    plain = bool(text) and not any(c.isspace() or c in '"=' for c in text)
    assert logs._text_value(value) == (text if plain else json.dumps(text))


@given(
    st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR]),
    st.text(min_size=1, max_size=20),
    st.text(max_size=40),
    st.lists(st.text(max_size=10) | st.integers() | st.none(), max_size=3),
    st.booleans(),
)
def test_a_text_line_is_what_the_format_string_gives(
    level: int, name: str, text: str, args: list[object], journal: bool
) -> None:
    """The formatter skips `logging.Formatter.format`: the line must be what
    "%(levelname)s %(name)s: %(message)s" makes of a record, its message on one line."""
    msg = text.replace("%", "%%") + " %s" * len(args)
    record = logging.makeLogRecord(
        {
            "name": name,
            "levelno": level,
            "levelname": logging.getLevelName(level),
            "msg": msg,
            "args": tuple(args),
            **logs.fields(k="v w"),
        }
    )
    base = logging.Formatter("%(levelname)s %(name)s: %(message)s").format(record)
    line = logs.TextFormatter(journal=journal).format(record)
    assert line.endswith(f'{logs.one_line(base)} k="v w"')
    assert "\n" not in line


def test_a_worker_process_loads_no_pydantic(restored_logging: None) -> None:
    """A worker is told `[log]` as two strings (`logs.LogSettings`): the config's
    pydantic models would cost every worker process about 10 MiB of RSS."""
    code = (
        "import sys, jobsd.workers.child; print(sorted(m for m in sys.modules if 'pydantic' in m))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    handler = logs.configure(logs.LogSettings(format="json", level="warning"), io.StringIO(), {})
    assert isinstance(handler.formatter, logs.JsonFormatter)
    assert logging.getLogger().level == logging.WARNING
