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
