"""The house's layering, checked from the source so it cannot drift.

- Only the wiring (`jobsd.daemon`) reaches into the API package; the core,
  the store and the other actors never import it.
- The store imports no actor (API, scheduler, executors, dispatcher).
- The pure logic (schedule parsing, the timer wheel, address policy,
  cursors, retry rules, time zones...) imports nothing that does I/O, so it
  is trivially testable.
- No import cycles among the modules imported at run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "jobsd"

PURE = (
    "jobsd.address_policy",
    "jobsd.alert_body",
    "jobsd.alert_rules",
    "jobsd.buckets",
    "jobsd.cron",
    "jobsd.cursors",
    "jobsd.fairqueue",
    "jobsd.http_url",
    "jobsd.intervals",
    "jobsd.job_model",
    "jobsd.messages",
    "jobsd.reading",
    "jobsd.retry",
    "jobsd.run_filters",
    "jobsd.run_attributes",
    "jobsd.run_order",
    "jobsd.schedule",
    "jobsd.timerwheel",
    "jobsd.urls",
    "jobsd.zones",
)
IO = (
    "trio",
    "httpx2",
    "httpx",
    "httpcore",
    "sqlite3",
    "socket",
    "quart",
    "quart_trio",
    "hypercorn",
)
ACTORS = ("jobsd.api", "jobsd.scheduler", "jobsd.executor", "jobsd.dispatch", "jobsd.daemon")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(name: str, *, runtime_top_level: bool = False) -> Iterator[str]:
    """Every module `name` imports; `runtime_top_level`: only those executed at
    import time (not inside functions or `if TYPE_CHECKING`)."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]

    def walk(nodes: list[ast.stmt]) -> Iterator[ast.stmt]:
        for node in nodes:
            yield node
            if runtime_top_level:
                if isinstance(node, ast.If) and not _type_checking(node):
                    yield from walk(node.body + node.orelse)
                elif isinstance(node, ast.Try):
                    yield from walk(node.body + node.orelse + node.finalbody)
            else:
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        yield from walk([child])

    for node in walk(tree.body):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if full in MODULES else base


def within(imported: str, prefixes: tuple[str, ...]) -> bool:
    return any(imported == p or imported.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not within(n, ("jobsd.api",))))
def test_only_the_wiring_imports_the_api(name: str) -> None:
    if name == "jobsd.daemon":
        return
    assert [i for i in imports(name) if within(i, ("jobsd.api",))] == []


@pytest.mark.parametrize("name", sorted(n for n in MODULES if within(n, ("jobsd.store",))))
def test_the_store_imports_no_actor(name: str) -> None:
    assert [i for i in imports(name) if within(i, ACTORS)] == []


@pytest.mark.parametrize("name", PURE)
def test_pure_logic_does_no_io(name: str) -> None:
    assert [i for i in imports(name) if within(i, IO)] == []


def test_no_import_cycles() -> None:
    graph = {
        name: {i for i in imports(name, runtime_top_level=True) if i in MODULES and i != name}
        for name in MODULES
    }
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
                raise AssertionError(" -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("entry", ["jobsd.cli", "jobsd.daemon", "jobsd.workers.child"])
def test_the_running_daemon_loads_no_test_tooling(entry: str) -> None:
    """trio.testing imports pytest when it is installed: 6.6 MiB of the
    daemon's RSS (issue 11's million-cron budget is 100 MiB for the tree)."""
    probe = (
        f"import sys, {entry}; "
        "print(sorted(m for m in ('pytest', 'trio.testing', 'hypothesis') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
