"""The README starts with the two commands, and CI runs exactly its test command."""

from __future__ import annotations

from pathlib import Path

import pytest
from readme import readme_commands

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_has_the_two_commands_first() -> None:
    first, second = readme_commands()[:2]
    assert first == "python3 -m pip install -e '.[dev]' && invoke up"
    assert second == "python3 -m pip install -e '.[dev]' && nox"
    ci = (ROOT / ".ci" / "run").read_text()
    assert second in ci, ".ci/run must run exactly the README's test command"
