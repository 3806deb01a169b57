"""The shape of ops/ stays what docs/architecture.md says: no import cycle, every package
described there and nothing described that does not exist, a docstring on every module, and
modules and functions of a size a newcomer can read (the exceptions are listed with why)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
OPS = ROOT / "ops"
MAX_MODULE_LINES = 610
MAX_FUNCTION_LINES = 80
# Longer on purpose, and why.
LONGER_MODULES: dict[str, str] = {}
LONGER_FUNCTIONS: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(OPS.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The ops modules a module imports, at any depth of its code (a function's import too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ops"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ops"))
    return found & known


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_ops_imports_itself_back_through_others() -> None:
    known = set(modules())
    graph = {name: imports_of(path, known) - {name} for name, path in modules().items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_nothing_but_the_tasks_knows_invoke_tasks() -> None:
    # fabric (SSH) is built on invoke: its exceptions are fine; tasks and contexts are not.
    task_api = re.compile(
        r"^\s*(from|import) invoke(\.(tasks|context|collection|program))?\s", re.M
    )
    for name, path in modules().items():
        if not name.startswith("ops.tasks"):
            assert not task_api.search(path.read_text()), name


def test_every_module_says_what_it_owns() -> None:
    missing = [
        name
        for name, path in modules().items()
        if not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert missing == []


def test_modules_and_functions_stay_readable() -> None:
    long_modules = {
        name: lines
        for name, path in modules().items()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
        and name not in LONGER_MODULES
    }
    long_functions = {}
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                where = f"{name}.{node.name}"
                if length > MAX_FUNCTION_LINES and where not in LONGER_FUNCTIONS:
                    long_functions[where] = length
    assert long_modules == {}
    assert long_functions == {}


def documented_packages() -> set[str]:
    """The ops packages named in the layout of docs/architecture.md (`ops/<path>/`)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    layout = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return {match.rstrip("/") for match in re.findall(r"\bops/[a-z_]+(?:/[a-z_]+)*/", layout)}


def test_every_package_of_ops_is_described_in_the_architecture_and_nothing_else() -> None:
    packages = {str(init.parent.relative_to(ROOT)) for init in OPS.rglob("__init__.py")} - {"ops"}
    assert documented_packages() == packages
