"""Fixtures for the ops unit tests: a scratch environments directory and repository root."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def envdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SLIPWAY_ENVIRONMENTS_DIR and SLIPWAY_ROOT pointed at a temporary tree."""
    directory = tmp_path / "environments"
    directory.mkdir()
    monkeypatch.setenv("SLIPWAY_ENVIRONMENTS_DIR", str(directory))
    monkeypatch.setenv("SLIPWAY_ROOT", str(tmp_path))
    return directory


@pytest.fixture
def write_env(envdir: Path) -> Callable[[str, str], Path]:
    """Write environments/<name>.yaml with the given text."""

    def write(name: str, text: str) -> Path:
        path = envdir / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write
