"""`invoke monitor` on several hosts (Docker Swarm): the tasks' docker_gwbridge addresses found
on the manager, the tunnels to them, and what fails when a task is missing.

No SSH: SwarmRemote is support.monitor_tunnel's TunnelRemote (a real ops.remote.Remote, so
Remote.forward's own listener and pumps carry every request) that also answers the manager's
`docker ps` and `docker network inspect`, and whose "channels" go to the small HTTP servers
standing for the tasks at their gwbridge addresses.
"""

from __future__ import annotations

import json
import shlex
import socket
from collections.abc import Callable, Iterator
from typing import Any

import paramiko
import pytest
from invoke.context import Context
from invoke.exceptions import Exit
from ops_testdata import WriteEnv
from support.monitor_tunnel import FakeHttp, FakeTransport, TunnelRemote, port_of, refused

from ops import config
from ops.errors import OpsError
from ops.executor import Command, Result
from ops.monitoring import monitor
from ops.tasks import monitor as monitor_tasks

pytestmark = pytest.mark.unit

MANAGER = "deploy@203.0.113.10:22"
PROMETHEUS_ID = "a1" * 32
ALERTMANAGER_ID = "b2" * 32
PROMETHEUS_IP = "172.18.0.3"
ALERTMANAGER_IP = "172.18.0.4"
FIND_PROMETHEUS = (
    "docker ps -q --no-trunc "
    "--filter label=com.docker.swarm.service.name=slipway-staging_prometheus "
    "--filter status=running"
)
FIND_ALERTMANAGER = (
    "docker ps -q --no-trunc "
    "--filter label=com.docker.swarm.service.name=slipway-staging_alertmanager "
    "--filter status=running"
)
INSPECT = "docker network inspect docker_gwbridge -f '{{json .Containers}}'"


def gwbridge(*containers: tuple[str, str]) -> str:
    """`docker network inspect docker_gwbridge -f '{{json .Containers}}'` as Docker prints it:
    the ingress sandbox and a container without an address among the tasks."""
    found: dict[str, dict[str, str]] = {
        "ingress-sbox": {
            "Name": "gateway_ingress-sbox",
            "EndpointID": "e0",
            "MacAddress": "02:42:ac:12:00:02",
            "IPv4Address": "172.18.0.2/16",
            "IPv6Address": "",
        },
        "c3" * 32: {"Name": "gateway_c3", "EndpointID": "e9", "IPv4Address": "", "IPv6Address": ""},
    }
    for number, (container, address) in enumerate(containers):
        found[container] = {
            "Name": f"gateway_{container[:12]}",
            "EndpointID": f"e{number + 1}",
            "MacAddress": "02:42:ac:12:00:03",
            "IPv4Address": f"{address}/16",
            "IPv6Address": "",
        }
    return json.dumps(found) + "\n"


class GwbridgeTransport(FakeTransport):
    """Channels to (address, port) on the manager's docker_gwbridge go to the servers here."""

    def __init__(self, routes: dict[tuple[str, int], int]) -> None:
        super().__init__({})
        self.by_address = routes

    def open_channel(self, kind: str, dest: tuple[str, int], src: tuple[str, int]) -> socket.socket:
        assert kind == "direct-tcpip"
        self.opened.append(dest)
        if dest not in self.by_address:
            raise paramiko.ChannelException(2, "Connect failed")
        return socket.create_connection(("127.0.0.1", self.by_address[dest]))


class SwarmRemote(TunnelRemote):
    """The swarm manager: its running tasks, its docker_gwbridge, and the tasks' HTTP servers.
    Every command is recorded."""

    def __init__(
        self,
        routes: dict[tuple[str, int], int],
        tasks: dict[str, list[str]] | None = None,
        network: str | None = None,
        inspect_error: str = "",
    ) -> None:
        super().__init__({})
        self.fake = GwbridgeTransport(routes)
        self.tasks = (
            tasks
            if tasks is not None
            else {"prometheus": [PROMETHEUS_ID], "alertmanager": [ALERTMANAGER_ID]}
        )
        self.network = (
            network
            if network is not None
            else gwbridge((PROMETHEUS_ID, PROMETHEUS_IP), (ALERTMANAGER_ID, ALERTMANAGER_IP))
        )
        self.inspect_error = inspect_error
        self.commands: list[str] = []

    def _execute(self, cmd: Command, stdin: bytes | None) -> Result:
        command = cmd.line
        self.commands.append(command)
        words = shlex.split(command)
        if words[:4] == ["docker", "ps", "-q", "--no-trunc"]:
            service = words[5].removeprefix("label=com.docker.swarm.service.name=")
            name = service.removeprefix("slipway-staging_")
            return Result(command, 0, "".join(f"{i}\n" for i in self.tasks.get(name, [])), "")
        if words[:3] == ["docker", "network", "inspect"]:
            assert words[3:] == ["docker_gwbridge", "-f", "{{json .Containers}}"]
            if self.inspect_error:
                return Result(command, 1, "", self.inspect_error)
            return Result(command, 0, self.network, "")
        raise AssertionError(f"unexpected command {command!r}")


def swarm_yaml(prometheus: int, alertmanager: int) -> str:
    return (
        "name: staging\ntarget: ssh\nhosts:\n"
        "  - ssh: deploy@203.0.113.10\n  - ssh: deploy@203.0.113.11\n"
        "domains: [staging.example.org]\nbind: 0.0.0.0\nports: {http: 80, https: 443}\n"
        f"monitoring: {{prometheus_port: {prometheus}, alertmanager_port: {alertmanager}}}\n"
    )


@pytest.fixture
def staging(write_env: WriteEnv, ports: tuple[int, int]) -> config.Environment:
    write_env("staging", swarm_yaml(*ports))
    env = config.load("staging")
    assert len(env.hosts) == 2
    return env


def on_gwbridge(servers: dict[str, FakeHttp], **kwargs: Any) -> SwarmRemote:
    return SwarmRemote(
        {
            (PROMETHEUS_IP, 9090): servers["prometheus"].port,
            (ALERTMANAGER_IP, 9093): servers["alertmanager"].port,
        },
        **kwargs,
    )


# ---------------------------------------------------------------------------- gwbridge


def test_gwbridge_addresses_drop_the_prefix_length_and_containers_without_one() -> None:
    text = gwbridge((PROMETHEUS_ID, PROMETHEUS_IP), (ALERTMANAGER_ID, ALERTMANAGER_IP))
    assert monitor.gwbridge_addresses(text) == {
        "ingress-sbox": "172.18.0.2",
        PROMETHEUS_ID: PROMETHEUS_IP,
        ALERTMANAGER_ID: ALERTMANAGER_IP,
    }
    assert monitor.gwbridge_addresses("null\n") == {}
    assert monitor.gwbridge_addresses("{}") == {}


@pytest.mark.parametrize("text", ["not json", "[1, 2]"])
def test_gwbridge_output_that_is_not_containers_by_id_is_named(text: str) -> None:
    with pytest.raises(
        OpsError, match=r"`docker network inspect docker_gwbridge` (did not|printed)"
    ):
        monitor.gwbridge_addresses(text)


# ---------------------------------------------------------------------------- the tunnels


def test_the_tunnels_lead_to_the_tasks_gwbridge_addresses_over_one_connection_to_the_manager(
    staging: config.Environment,
    servers: dict[str, FakeHttp],
    ports: tuple[int, int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    remote = on_gwbridge(servers)
    with monitor.reachable(staging, remote) as at:
        # The configured ports, free here, are the local ones.
        assert (at.prometheus, at.alertmanager) == (
            f"http://127.0.0.1:{ports[0]}",
            f"http://127.0.0.1:{ports[1]}",
        )
        assert at.remote is remote
        result = monitor.read(staging, at)
    assert remote.commands == [FIND_PROMETHEUS, FIND_ALERTMANAGER, INSPECT]
    assert capsys.readouterr().err == "".join(
        f"{MANAGER} $ {command}\n" for command in remote.commands
    )
    # Prometheus and Alertmanager at their own ports in the containers, whatever is configured.
    assert set(remote.fake.opened) == {(PROMETHEUS_IP, 9090), (ALERTMANAGER_IP, 9093)}
    assert servers["prometheus"].requests == ["/-/ready", "/api/v1/alerts", "/api/v1/targets"]
    assert servers["alertmanager"].requests == ["/-/ready"]
    assert result.lines()[:4] == [
        f"Prometheus    http://127.0.0.1:{ports[0]}/",
        f"Alertmanager  http://127.0.0.1:{ports[1]}/",
        f"tunnel        SSH to {MANAGER} (swarm manager), to {PROMETHEUS_IP}:9090 (Prometheus) "
        f"and {ALERTMANAGER_IP}:9093 (Alertmanager) on its docker_gwbridge",
        f"consoles      http://127.0.0.1:{ports[0]}/consoles/index.html",
    ]
    assert [a.name for a in result.firing] == ["APIDown", "DiskFilling"]
    assert remote.closed
    assert refused(ports[0]) and refused(ports[1])


def test_a_port_taken_here_gets_one_the_system_picks_on_a_swarm_too(
    staging: config.Environment,
    servers: dict[str, FakeHttp],
    ports: tuple[int, int],
    taken: Callable[[int], socket.socket],
) -> None:
    taken(ports[0])
    with monitor.reachable(staging, on_gwbridge(servers)) as at:
        assert port_of(at.prometheus) != ports[0]
        assert port_of(at.alertmanager) == ports[1]
        assert monitor.read(staging, at).firing


def test_a_task_restarting_beside_the_running_one_uses_the_one_on_gwbridge(
    staging: config.Environment, servers: dict[str, FakeHttp]
) -> None:
    # During an update two containers of the service may run; the new one not yet attached.
    starting = "d4" * 32
    remote = on_gwbridge(
        servers, tasks={"prometheus": [starting, PROMETHEUS_ID], "alertmanager": [ALERTMANAGER_ID]}
    )
    with monitor.reachable(staging, remote) as at:
        assert at.prometheus_target == f"{PROMETHEUS_IP}:9090"
        monitor.read(staging, at)


@pytest.mark.parametrize("missing", ["prometheus", "alertmanager"])
def test_a_task_that_does_not_run_names_the_service_the_manager_and_the_fix(
    staging: config.Environment, servers: dict[str, FakeHttp], missing: str
) -> None:
    tasks = {"prometheus": [PROMETHEUS_ID], "alertmanager": [ALERTMANAGER_ID], missing: []}
    remote = on_gwbridge(servers, tasks=tasks)
    with pytest.raises(OpsError) as err, monitor.reachable(staging, remote):
        pass
    assert str(err.value) == (
        f"{missing.capitalize()} (service slipway-staging_{missing}) has no running task on the "
        f"swarm manager {MANAGER}. Fix: deploy the environment with monitoring on, "
        "`invoke deploy --env=staging`, then see `invoke status --env=staging`"
    )
    # Both looked up before failing; no gwbridge lookup, no tunnel.
    assert remote.commands == [FIND_PROMETHEUS, FIND_ALERTMANAGER]
    assert remote.fake.opened == []
    assert remote.closed


def test_a_task_missing_from_gwbridge_is_named_and_no_tunnel_is_opened(
    staging: config.Environment, servers: dict[str, FakeHttp], ports: tuple[int, int]
) -> None:
    # Alertmanager runs but is on no non-internal overlay network: not on the gwbridge.
    remote = on_gwbridge(servers, network=gwbridge((PROMETHEUS_ID, PROMETHEUS_IP)))
    with pytest.raises(OpsError) as err, monitor.reachable(staging, remote):
        pass
    message = str(err.value)
    assert message.startswith(
        f"Alertmanager's task ({ALERTMANAGER_ID[:12]}) on {MANAGER} has no address on "
        "docker_gwbridge, so the host cannot reach it"
    )
    assert message.endswith("`invoke deploy --env=staging`, then see `invoke status --env=staging`")
    assert remote.commands == [FIND_PROMETHEUS, FIND_ALERTMANAGER, INSPECT]
    assert remote.fake.opened == []
    assert refused(ports[0])


def test_a_manager_without_gwbridge_says_it_is_no_swarm_node(
    staging: config.Environment, servers: dict[str, FakeHttp]
) -> None:
    remote = on_gwbridge(servers, inspect_error="Error: No such network: docker_gwbridge\n")
    with pytest.raises(OpsError) as err, monitor.reachable(staging, remote):
        pass
    assert str(err.value).startswith(
        f"`{INSPECT}` failed on {MANAGER} (exit 1): Error: No such network: docker_gwbridge: the "
        "host is no swarm node. Fix: deploy"
    )


@pytest.mark.parametrize("missing", ["Prometheus", "Alertmanager"])
def test_a_task_not_answering_names_its_gwbridge_address(
    staging: config.Environment, servers: dict[str, FakeHttp], missing: str
) -> None:
    remote = on_gwbridge(servers)
    target = (PROMETHEUS_IP, 9090) if missing == "Prometheus" else (ALERTMANAGER_IP, 9093)
    del remote.fake.by_address[target]
    with monitor.reachable(staging, remote) as at, pytest.raises(OpsError) as err:
        monitor.read(staging, at)
    assert str(err.value).startswith(
        f"{missing} does not answer on {MANAGER} at {target[0]}:{target[1]} (through the SSH "
        "tunnel at http://127.0.0.1:"
    )


def test_a_swarms_urls_are_only_reachable_through_the_monitor_tunnel(
    staging: config.Environment,
) -> None:
    with pytest.raises(
        OpsError,
        match=r"answer on that host's docker_gwbridge only \(Docker Swarm\)\. Fix: "
        r"`invoke monitor --env=staging` opens an SSH tunnel",
    ):
        monitor.urls(staging)


# ---------------------------------------------------------------------------- the task


@pytest.fixture
def manager(
    staging: config.Environment, servers: dict[str, FakeHttp], monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[SwarmRemote]]:
    """monitor.Remote: a SwarmRemote for the first host (any other host fails the test)."""
    made: list[SwarmRemote] = []

    def remote_for(host: config.Host) -> SwarmRemote:
        assert host == staging.hosts[0]
        made.append(on_gwbridge(servers))
        return made[-1]

    monkeypatch.setattr(monitor, "Remote", remote_for)
    yield made


def test_task_once_on_a_swarm_prints_the_view_and_closes_the_tunnel(
    manager: list[SwarmRemote],
    ports: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(monitor, "hold_open", lambda *a, **k: pytest.fail("held open"))
    monitor_tasks.show(Context(), env="staging", once=True)
    out = capsys.readouterr().out
    assert f"Prometheus    http://127.0.0.1:{ports[0]}/" in out
    assert f"to {PROMETHEUS_IP}:9090 (Prometheus)" in out
    assert "firing alerts: 2" in out
    assert len(manager) == 1 and manager[0].closed
    assert refused(ports[0])


def test_task_on_a_swarm_without_prometheus_exits_1_with_the_fix(
    staging: config.Environment, servers: dict[str, FakeHttp], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(monitor, "Remote", lambda host: on_gwbridge(servers, tasks={}))
    with pytest.raises(Exit) as err:
        monitor_tasks.show(Context(), env="staging", once=True)
    assert err.value.code == 1
    assert str(err.value.message).startswith(
        "error: Prometheus (service slipway-staging_prometheus) has no running task"
    )
