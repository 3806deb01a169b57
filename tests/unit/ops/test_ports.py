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


# ------------------------------------------------------------------------------ on a host

# /proc/net tables as a host prints them (SOCKET_TABLES): sshd on 22 and docker-proxy on
# 127.0.0.1:9090 listening, a TCP connection from port 5514 (not listening), rsyslogd's UDP
# socket on 127.0.0.1:5514, and an IPv6 listener on 443.
TABLES = """\
== tcp
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:2382 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:158A 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 3 1
== tcp6
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 0 0 0
== udp
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
 100: 0100007F:158A 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 4 2
== udp6
"""


def test_the_host_socket_tables_give_listening_tcp_and_bound_udp_ports() -> None:
    assert ports.listening(TABLES) == {("tcp", 22), ("tcp", 9090), ("tcp", 443), ("udp", 5514)}
    assert ports.listening("") == set()
    assert ports.listening("== tcp\nnot a table\n") == set()


def test_a_held_port_clashes_unless_the_stacks_own_service_runs() -> None:
    held = ports.listening(TABLES)
    wanted = [
        ("tcp", 443, "nginx", "ports.https"),
        ("tcp", 9090, "prometheus", "monitoring.prometheus_port"),
        ("udp", 5514, "logs", "monitoring.log_port"),
        ("tcp", 9093, "alertmanager", "monitoring.alertmanager_port"),
    ]
    # A fresh host where something else holds them: every held one is named with its field.
    clashes = ports.host_conflicts(held, wanted, ours=[])
    assert clashes == [
        "443/tcp (ports.https) is in use on the host by something other than this "
        "environment's nginx",
        "9090/tcp (monitoring.prometheus_port) is in use on the host by something other than "
        "this environment's prometheus",
        "5514/udp (monitoring.log_port) is in use on the host by something other than this "
        "environment's logs",
    ]
    # A redeploy: the stack's own services hold them.
    assert ports.host_conflicts(held, wanted, ours=["nginx", "prometheus", "logs", "api"]) == []
    # The same port number over the other protocol is no clash.
    assert ports.host_conflicts(held, [("udp", 9090, "prometheus", "f")], ours=[]) == []
