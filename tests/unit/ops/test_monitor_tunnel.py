"""`invoke monitor` on one host: refusals, local ports of the tunnel, the view through it.

No SSH: TunnelRemote (support.monitor_tunnel) is a real ops.remote.Remote whose SSH transport is
replaced by one that opens its "channels" as TCP connections to small HTTP servers on 127.0.0.1
standing for the host's Prometheus and Alertmanager (the `servers` fixture of conftest.py). So
Remote.forward's own listener and pumps carry every request.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from typing import Any

import pytest
from invoke.context import Context
from invoke.exceptions import Exit
from ops_testdata import LOCAL_YAML, WriteEnv
from support.monitor_tunnel import FakeHttp, TunnelRemote, port_of, prometheus_routes, refused

from ops import config
from ops.errors import OpsError
from ops.monitoring import monitor
from ops.tasks import monitor as monitor_tasks

pytestmark = pytest.mark.unit

HOST = "deploy@203.0.113.10:22"


def host_yaml(prometheus: int, alertmanager: int, extra: str = "") -> str:
    return (
        "name: staging\ntarget: ssh\nhosts:\n  - ssh: deploy@203.0.113.10\n"
        "domains: [staging.example.org]\nbind: 0.0.0.0\nports: {http: 80, https: 443}\n"
        f"monitoring: {{prometheus_port: {prometheus}, alertmanager_port: {alertmanager}"
        f"{extra}}}\n"
    )


@pytest.fixture
def staging(write_env: WriteEnv, ports: tuple[int, int]) -> config.Environment:
    write_env("staging", host_yaml(*ports))
    return config.load("staging")


def routed(servers: dict[str, FakeHttp], ports: tuple[int, int]) -> TunnelRemote:
    return TunnelRemote(
        {ports[0]: servers["prometheus"].port, ports[1]: servers["alertmanager"].port}
    )


# ---------------------------------------------------------------------------- refusals


def test_monitoring_off_on_a_host_says_to_deploy_and_on_a_local_stack_to_go_up(
    write_env: WriteEnv,
) -> None:
    write_env("staging", host_yaml(9090, 9093, ", enabled: false"))
    with pytest.raises(
        OpsError,
        match=r"monitoring is off in .*staging.yaml \(monitoring.enabled: false\)\. Fix: set it "
        r"to true and run `invoke deploy --env=staging`$",
    ):
        monitor.urls(config.load("staging"))
    write_env("e2e", "name: e2e\ntarget: local\nmonitoring: {enabled: false}\n")
    with pytest.raises(OpsError, match=r"Fix: set it to true and run `invoke up --env e2e`$"):
        monitor.urls(config.load("e2e"))


def test_a_hosts_urls_are_only_reachable_through_the_monitor_tunnel(
    staging: config.Environment,
) -> None:
    with pytest.raises(
        OpsError,
        match=r"runs on deploy@203\.0\.113\.10:22, whose Prometheus and Alertmanager answer on "
        r"that host's loopback only\. Fix: `invoke monitor --env=staging` opens an SSH tunnel",
    ):
        monitor.urls(staging)


# ---------------------------------------------------------------------------- local ports


def test_the_tunnel_uses_the_same_ports_here_when_they_are_free(
    staging: config.Environment, servers: dict[str, FakeHttp], ports: tuple[int, int]
) -> None:
    remote = routed(servers, ports)
    with monitor.reachable(staging, remote) as at:
        assert (at.prometheus, at.alertmanager) == (
            f"http://127.0.0.1:{ports[0]}",
            f"http://127.0.0.1:{ports[1]}",
        )
        assert at.remote is remote
        result = monitor.read(staging, at)
    # Both tunnels lead to the host's loopback, at the configured ports, over the one remote.
    assert set(remote.fake.opened) == {("127.0.0.1", ports[0]), ("127.0.0.1", ports[1])}
    assert servers["alertmanager"].requests == ["/-/ready"]
    assert result.prometheus == f"http://127.0.0.1:{ports[0]}"


def test_a_port_taken_here_gets_one_the_system_picks_and_the_other_keeps_its_number(
    staging: config.Environment,
    servers: dict[str, FakeHttp],
    ports: tuple[int, int],
    taken: Callable[[int], socket.socket],
) -> None:
    taken(ports[0])  # e.g. a local stack's Prometheus on 9090
    with monitor.reachable(staging, routed(servers, ports)) as at:
        local = port_of(at.prometheus)
        assert local != ports[0]
        assert port_of(at.alertmanager) == ports[1]
        result = monitor.read(staging, at)
    assert [a.name for a in result.firing] == ["APIDown", "DiskFilling"]
    assert servers["prometheus"].requests == ["/-/ready", "/api/v1/alerts", "/api/v1/targets"]


def test_both_ports_taken_here_still_give_a_working_tunnel(
    staging: config.Environment,
    servers: dict[str, FakeHttp],
    ports: tuple[int, int],
    taken: Callable[[int], socket.socket],
) -> None:
    taken(ports[0])
    taken(ports[1])
    with monitor.reachable(staging, routed(servers, ports)) as at:
        chosen = {port_of(at.prometheus), port_of(at.alertmanager)}
        assert len(chosen) == 2
        assert not chosen & set(ports)
        assert monitor.read(staging, at).down


def test_a_failed_connection_is_reported_as_is_not_retried_on_another_port(
    staging: config.Environment, ports: tuple[int, int]
) -> None:
    class Unreachable(TunnelRemote):
        attempts = 0

        def _transport(self) -> Any:
            Unreachable.attempts += 1
            raise OpsError("cannot reach deploy@203.0.113.10:22 over SSH: timed out. Fix: ...")

    with (
        pytest.raises(OpsError, match=r"cannot reach deploy@203\.0\.113\.10:22 over SSH"),
        monitor.reachable(staging, Unreachable({})),
    ):
        pass
    assert Unreachable.attempts == 1
    assert refused(ports[0])  # no listener left behind


def test_the_tunnel_and_the_connection_are_closed_after_the_block(
    staging: config.Environment, servers: dict[str, FakeHttp], ports: tuple[int, int]
) -> None:
    remote = routed(servers, ports)
    with monitor.reachable(staging, remote) as at:
        assert not refused(port_of(at.prometheus))
        assert not remote.closed
    assert refused(port_of(at.prometheus))
    assert refused(port_of(at.alertmanager))
    assert remote.closed


# ---------------------------------------------------------------------------- the view


def test_the_view_through_the_tunnel_lists_firing_alerts_and_targets_down(
    staging: config.Environment, servers: dict[str, FakeHttp], ports: tuple[int, int]
) -> None:
    with monitor.reachable(staging, routed(servers, ports)) as at:
        result = monitor.read(staging, at)
    base = f"http://127.0.0.1:{ports[0]}"
    assert result.lines() == [
        f"Prometheus    {base}/",
        f"Alertmanager  http://127.0.0.1:{ports[1]}/",
        f"tunnel        SSH to {HOST}, to its 127.0.0.1:{ports[0]} (Prometheus) and "
        f"127.0.0.1:{ports[1]} (Alertmanager)",
        f"consoles      {base}/consoles/index.html",
        "firing alerts: 2",
        f"  critical {'APIDown':<32} since 2026-12-01T10:00:00  no API replica answers",
        f"  warning  {'DiskFilling':<32} since 2026-12-01T09:00:00  disk fills",
        "targets not up: 1",
        "  postgres postgres-exporter:9187: connection refused",
    ]


@pytest.mark.parametrize("missing", ["Prometheus", "Alertmanager"])
def test_a_service_not_answering_on_the_host_names_it_the_host_and_the_fix(
    staging: config.Environment,
    servers: dict[str, FakeHttp],
    ports: tuple[int, int],
    missing: str,
) -> None:
    # The host refuses the tunnel's connection (nothing listens there): the local connection
    # is accepted, then closed without an answer.
    remote = routed(servers, ports)
    index = 0 if missing == "Prometheus" else 1
    del remote.fake.routes[ports[index]]
    with monitor.reachable(staging, remote) as at, pytest.raises(OpsError) as err:
        monitor.read(staging, at)
    message = str(err.value)
    assert message.startswith(
        f"{missing} does not answer on {HOST} at 127.0.0.1:{ports[index]} (through the SSH "
        f"tunnel at http://127.0.0.1:"
    )
    assert message.endswith(
        "Fix: deploy the environment with monitoring on, `invoke deploy --env=staging`, then "
        "see `invoke status --env=staging`"
    )


def test_something_else_than_prometheus_on_the_port_is_named(
    staging: config.Environment, ports: tuple[int, int]
) -> None:
    impostor = FakeHttp({**prometheus_routes(), "/api/v1/alerts": b"<html>hello</html>"})
    alertmanager = FakeHttp({"/-/ready": b"OK"})
    try:
        remote = TunnelRemote({ports[0]: impostor.port, ports[1]: alertmanager.port})
        with monitor.reachable(staging, remote) as at, pytest.raises(OpsError) as err:
            monitor.read(staging, at)
    finally:
        impostor.close()
        alertmanager.close()
    assert "/api/v1/alerts did not answer like Prometheus' API (JSONDecodeError" in str(err.value)
    assert "Fix: check that monitoring.prometheus_port is Prometheus' port" in str(err.value)


# ---------------------------------------------------------------------------- holding it open


class Signalling(monitor.Endpoints):
    """Endpoints whose connection check (run on every poll of hold_open) sends a signal to this
    process the first time: it arrives while hold_open waits, with its handlers installed."""

    def connected(self) -> bool:
        if not SENT:
            SENT.append(True)
            os.kill(os.getpid(), SIGNAL[0])
        return True


SENT: list[bool] = []
SIGNAL: list[int] = [signal.SIGTERM]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_hold_open_returns_on_sigterm_or_ctrl_c_and_restores_the_handlers(
    staging: config.Environment, sig: int
) -> None:
    SENT.clear()
    SIGNAL[0] = sig
    before = signal.getsignal(sig)
    monitor.hold_open(staging, Signalling("http://a", "http://b"), poll=0.01)
    assert SENT == [True]
    assert signal.getsignal(sig) is before


def test_hold_open_fails_when_the_ssh_connection_is_lost(
    staging: config.Environment, servers: dict[str, FakeHttp], ports: tuple[int, int]
) -> None:
    remote = routed(servers, ports)
    with monitor.reachable(staging, remote) as at:
        remote.fake.active = False
        with pytest.raises(
            OpsError,
            match=rf"SSH connection to {HOST} was lost: the tunnel is closed\. Fix: "
            r"`invoke monitor --env=staging` again",
        ):
            monitor.hold_open(staging, at, poll=0.01)


# ---------------------------------------------------------------------------- the task


def test_task_once_prints_the_view_and_closes_the_tunnel(
    staging: config.Environment,
    servers: dict[str, FakeHttp],
    ports: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    made: list[TunnelRemote] = []

    def remote_for(host: config.Host) -> TunnelRemote:
        assert host == staging.hosts[0]
        made.append(routed(servers, ports))
        return made[-1]

    monkeypatch.setattr(monitor, "Remote", remote_for)
    monkeypatch.setattr(monitor, "hold_open", lambda *a, **k: pytest.fail("held open"))
    monitor_tasks.show(Context(), env="staging", once=True)
    out = capsys.readouterr().out
    assert f"Prometheus    http://127.0.0.1:{ports[0]}/" in out
    assert "firing alerts: 2" in out
    assert "Ctrl-C" not in out
    assert made[0].closed
    assert refused(ports[0])


def test_task_keeps_the_tunnel_open_until_stopped_then_closes_it(
    staging: config.Environment,
    servers: dict[str, FakeHttp],
    ports: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[bytes] = []

    def stopped_at_once(env: config.Environment, at: monitor.Endpoints) -> None:
        # While held open: the URL printed answers through the tunnel.
        with socket.create_connection(("127.0.0.1", ports[0]), timeout=5) as conn:
            conn.sendall(b"GET /-/ready HTTP/1.0\r\n\r\n")
            seen.append(conn.makefile("rb").read())

    monkeypatch.setattr(monitor, "Remote", lambda host: routed(servers, ports))
    monkeypatch.setattr(monitor, "hold_open", stopped_at_once)
    monitor_tasks.show(Context(), env="staging")
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [
        "The SSH tunnel stays open for the URLs above. Close it with Ctrl-C (or SIGTERM).",
        "tunnel closed",
    ]
    assert seen and seen[0].startswith(b"HTTP/1.0 200") and b"Prometheus Server is Ready" in seen[0]
    assert refused(ports[0])


def test_task_fails_with_the_message_when_prometheus_does_not_answer_on_the_host(
    staging: config.Environment, ports: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(monitor, "Remote", lambda host: TunnelRemote({}))
    with pytest.raises(Exit) as err:
        monitor_tasks.show(Context(), env="staging", once=True)
    assert err.value.code == 1
    assert str(err.value.message).startswith(f"error: Prometheus does not answer on {HOST}")
    assert refused(ports[0])


def test_task_on_a_local_stack_is_unchanged_with_or_without_once(
    write_env: WriteEnv, servers: dict[str, FakeHttp], capsys: pytest.CaptureFixture[str]
) -> None:
    prometheus, alertmanager = servers["prometheus"].port, servers["alertmanager"].port
    write_env(
        "local",
        LOCAL_YAML
        + f"monitoring: {{prometheus_port: {prometheus}, alertmanager_port: {alertmanager}}}\n",
    )
    outputs = []
    for once in (False, True):
        monitor_tasks.show(Context(), env="local", once=once)
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert outputs[0].splitlines()[:3] == [
        f"Prometheus    http://127.0.0.1:{prometheus}/",
        f"Alertmanager  http://127.0.0.1:{alertmanager}/",
        f"consoles      http://127.0.0.1:{prometheus}/consoles/index.html",
    ]
    assert "tunnel" not in outputs[0]
