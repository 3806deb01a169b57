"""Readiness rules: healthy, running without a healthcheck, or a one-off that exited 0."""

from __future__ import annotations

import pytest

from ops.health import ContainerState, summarize

pytestmark = pytest.mark.unit


def _state(
    service: str, status: str, health: str = "none", code: int = 0, restart: str = ""
) -> ContainerState:
    return ContainerState(f"p-{service}-1", service, status, health, code, restart)


def test_healthy_and_completed_one_offs_are_ready() -> None:
    ok, line = summarize(
        [_state("api", "running", "healthy"), _state("migrate", "exited", restart="no")],
        ["api", "migrate"],
    )
    assert ok
    assert line == "api-1 healthy, migrate-1 exited(0)"


@pytest.mark.parametrize(
    ("state", "label"),
    [
        (_state("api", "running", "starting"), "starting"),
        (_state("api", "running", "unhealthy"), "unhealthy"),
        (_state("api", "restarting"), "restarting"),
        (_state("migrate", "exited", code=1, restart="no"), "exited(1)"),
        (_state("api", "exited", code=0, restart="unless-stopped"), "exited(0)"),
    ],
)
def test_anything_else_is_not_ready(state: ContainerState, label: str) -> None:
    ok, line = summarize([state], [state.service])
    assert not ok
    assert line.endswith(label)


def test_a_service_without_any_container_is_reported() -> None:
    ok, line = summarize([_state("api", "running", "healthy")], ["api", "worker"])
    assert not ok
    assert line == "api-1 healthy, worker: no container"


def test_nothing_running_is_not_ready() -> None:
    assert summarize([], []) == (False, "")
