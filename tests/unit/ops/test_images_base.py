"""The base image: present → kept, pullable → pulled, else debootstrap, with clear refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from docker.errors import APIError, ImageNotFound

from ops import images, proc
from ops.errors import OpsError

pytestmark = pytest.mark.unit


class FakeImages:
    def __init__(self, present: bool, pull_ok: bool) -> None:
        self.present = present
        self.pull_ok = pull_ok
        self.pulled: list[str] = []

    def get(self, name: str) -> object:
        if not self.present:
            raise ImageNotFound(name)
        return object()

    def pull(self, name: str) -> object:
        self.pulled.append(name)
        if not self.pull_ok:
            raise APIError("Get https://registry-1.docker.io/v2/: no such host")
        self.present = True
        return object()


class FakeEngine:
    def __init__(self, present: bool, pull_ok: bool) -> None:
        self.images = FakeImages(present, pull_ok)


def _engine(present: bool, pull_ok: bool) -> Any:
    return FakeEngine(present, pull_ok)


def test_a_present_base_is_kept_without_pulling() -> None:
    engine = _engine(present=True, pull_ok=True)
    assert images.ensure_base(engine) == "debian:bookworm-slim present"
    assert engine.images.pulled == []


def test_a_missing_base_is_pulled_when_a_registry_answers() -> None:
    engine = _engine(present=False, pull_ok=True)
    assert images.ensure_base(engine) == "debian:bookworm-slim pulled"
    assert engine.images.pulled == ["debian:bookworm-slim"]


def test_without_a_registry_the_base_is_debootstrapped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(images.os, "geteuid", lambda: 0)
    monkeypatch.setattr(proc, "run", lambda argv, **_: ran.append(list(argv)))
    result = images.ensure_base(_engine(present=False, pull_ok=False), root=tmp_path)
    assert result == "debian:bookworm-slim built"
    assert ran == [[str(tmp_path / "scripts" / "build-base-image"), "debian:bookworm-slim"]]


def test_without_a_registry_and_without_root_the_error_names_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(images.os, "geteuid", lambda: 1000)
    with pytest.raises(OpsError, match=r"sudo invoke images.base.*docker save"):
        images.ensure_base(_engine(present=False, pull_ok=False))
