from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops import audit

pytestmark = pytest.mark.unit


def test_dependencies_skipped_for_lack_of_advisories_are_not_clean() -> None:
    report = {
        "dependencies": [
            {
                "name": "alembic",
                "skip_reason": "Dependency not found on PyPI and could not be audited",
            },
            {"name": "anyio", "version": "4.1", "vulns": []},
        ]
    }
    result = audit.classify(report)
    assert not result.ok
    assert list(result.unchecked) == ["alembic ?"]
    assert any(line.startswith("NOT CHECKED: 1 of 2") for line in result.lines())
    assert not any(line.startswith("clean") for line in result.lines())


def test_a_vulnerable_dependency_is_named_with_its_advisories() -> None:
    report = {"dependencies": [{"name": "jinja2", "version": "3.0", "vulns": [{"id": "GHSA-1"}]}]}
    result = audit.classify(report)
    assert not result.ok
    assert "jinja2 3.0: GHSA-1" in result.lines()


def test_all_checked_and_none_vulnerable_is_clean() -> None:
    report = {"dependencies": [{"name": "a", "version": "1", "vulns": []}]}
    result = audit.classify(report)
    assert result.ok
    assert result.lines() == ["clean: 1 locked dependencies checked, none vulnerable"]


def test_an_empty_report_is_not_clean() -> None:
    assert not audit.classify({"dependencies": []}).ok


def test_the_command_exits_non_zero_unless_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"dependencies": [{"name": "a", "skip_reason": "offline"}]}))
    assert audit.main([str(path)]) == 1
    assert "NOT CHECKED" in capsys.readouterr().out
    path.write_text(json.dumps({"dependencies": [{"name": "a", "version": "1", "vulns": []}]}))
    assert audit.main([str(path)]) == 0
    assert audit.main([str(tmp_path / "missing.json")]) == 1
