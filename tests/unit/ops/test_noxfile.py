"""noxfile.py's split of the tests into two pytest processes: every test on sandbox hosts in the
second one (they share the sandbox network, which `sandbox.down` removes when unused), nothing
of the local e2e stack there (its session fixture is per process)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
HOST_TESTS: list[str] = runpy.run_path(str(ROOT / "noxfile.py"))["HOST_TESTS"]
TEST_MODULES = sorted(ROOT.glob("tests/*/test_*.py")) + sorted(ROOT.glob("tests/*/*/test_*.py"))


def _uses_sandboxes(path: Path) -> bool:
    text = path.read_text()
    return bool(re.search(r"^from (sandboxes|sandbox_harness) import", text, re.MULTILINE))


def test_every_host_test_module_exists() -> None:
    assert HOST_TESTS
    for name in HOST_TESTS:
        assert (ROOT / name).is_file(), name


def test_every_module_on_sandbox_hosts_runs_in_the_host_process() -> None:
    users = {str(p.relative_to(ROOT)) for p in TEST_MODULES if _uses_sandboxes(p)}
    assert users, "no test module imports the sandbox helpers: the check is blind"
    assert users <= set(HOST_TESTS), sorted(users - set(HOST_TESTS))


def test_no_host_test_module_starts_the_local_stack() -> None:
    for name in HOST_TESTS:
        text = (ROOT / name).read_text()
        assert not re.search(r"def test_\w+\([^)]*\bstack: Stack", text), name
