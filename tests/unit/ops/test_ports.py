"""Pre-flight port check: a port in use by someone else stops `up` and names the user."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from ops import ports
from ops.errors import OpsError

pytestmark = pytest.mark.unit


class _Container:
    def __init__(self, name: str, project: str, port: int) -> None:
        self.name = name
        self.labels = {"com.docker.compose.project": project}
        self.attrs = {"NetworkSettings": {"Ports": {"8443/tcp": [{"HostPort": str(port)}]}}}


class _Engine:
    def __init__(self, containers: list[_Container]) -> None:
        self.containers = self
        self._containers = containers

    def list(self) -> list[Any]:
        return list(self._containers)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_free_ports_pass() -> None:
    assert ports.check_free(_Engine([]), "127.0.0.1", [_free_port()], "p", "e.yaml") == "free"


def test_a_port_held_by_another_process_is_named_with_the_fix(busy_port: int) -> None:
    with pytest.raises(OpsError) as err:
        ports.check_free(_Engine([]), "127.0.0.1", [busy_port], "slipway-e2e", "e2e.yaml")
    message = str(err.value)
    assert f"127.0.0.1:{busy_port} is used by another process" in message
    assert "choose other `ports:` in e2e.yaml" in message


def test_a_port_held_by_another_stack_names_its_container(busy_port: int) -> None:
    engine = _Engine([_Container("slipway-other-nginx-1", "slipway-other", busy_port)])
    with pytest.raises(OpsError, match="is used by slipway-other-nginx-1"):
        ports.check_free(engine, "127.0.0.1", [busy_port], "slipway-e2e", "e2e.yaml")


def test_a_port_held_by_this_stack_is_fine(busy_port: int) -> None:
    engine = _Engine([_Container("slipway-e2e-nginx-1", "slipway-e2e", busy_port)])
    result = ports.check_free(engine, "127.0.0.1", [busy_port], "slipway-e2e", "e2e.yaml")
    assert result == "1 already published by slipway-e2e"


class _Collectors:
    """An engine whose containers.list(filters=...) answers with the given names."""

    def __init__(self, names: list[str]) -> None:
        self.containers = self
        self.names = names
        self.asked: list[Any] = []

    def list(self, filters: Any = None) -> list[Any]:
        self.asked.append(filters)
        return [type("C", (), {"name": n})() for n in self.names]


@pytest.fixture
def busy_udp_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def test_a_free_log_port_passes() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    assert ports.check_log_port(_Collectors([]), "127.0.0.1", port, "p", "e.yaml") == (
        f"udp {port} free"
    )


def test_a_log_port_taken_by_another_process_names_the_field(busy_udp_port: int) -> None:
    engine = _Collectors([])
    with pytest.raises(OpsError, match=r"/udp .* another process.*`monitoring.log_port` in e.yaml"):
        ports.check_log_port(engine, "127.0.0.1", busy_udp_port, "slipway-e2e", "e.yaml")
    labels = engine.asked[0]["label"]
    assert "com.docker.compose.project=slipway-e2e" in labels
    assert "com.docker.compose.service=logs" in labels


def test_a_log_port_held_by_our_own_collector_passes(busy_udp_port: int) -> None:
    engine = _Collectors(["slipway-e2e-logs-1"])
    result = ports.check_log_port(engine, "127.0.0.1", busy_udp_port, "slipway-e2e", "e.yaml")
    assert result == f"udp {busy_udp_port} held by slipway-e2e-logs-1"
