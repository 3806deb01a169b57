"""Fixtures for the ops unit tests: a scratch environments directory and repository root; the
stand-ins for a monitored host's servers and ports (`invoke monitor` on one host and on a swarm)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from free_port import free_port
from support.monitor_tunnel import FakeHttp, prometheus_routes


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


# ---------------------------------------------------------------------------- `invoke monitor`


@pytest.fixture
def servers() -> Iterator[dict[str, FakeHttp]]:
    """The stand-ins for a host's Prometheus and Alertmanager (support.monitor_tunnel)."""
    made = {
        "prometheus": FakeHttp(prometheus_routes()),
        "alertmanager": FakeHttp({"/-/ready": b"OK"}),
    }
    yield made
    for server in made.values():
        server.close()


@pytest.fixture
def ports() -> tuple[int, int]:
    """The host's Prometheus and Alertmanager ports, chosen free here (as a host's 9090 and
    9093 would be on a machine running no local stack)."""
    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


@pytest.fixture
def taken() -> Iterator[Callable[[int], socket.socket]]:
    """Listen on 127.0.0.1:<port> here, like a local stack's Prometheus would."""
    held: list[socket.socket] = []

    def take(port: int) -> socket.socket:
        sock = socket.socket()
        sock.bind(("127.0.0.1", port))
        sock.listen(1)
        held.append(sock)
        return sock

    yield take
    for sock in held:
        sock.close()
