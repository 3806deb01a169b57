"""`invoke monitor`: where an environment's Prometheus and Alertmanager answer, and what they see.

Local stacks publish both on 127.0.0.1 (monitoring.prometheus_port / alertmanager_port). One
host (`target: ssh`) publishes them on the host's loopback only, at the same ports: this machine
reaches them through an SSH tunnel (ops/remote.py `Remote.forward`, both over one connection),
at the same local ports when they are free here, else at ports the system picks. Several hosts
(Docker Swarm) run both as tasks on the first host (the manager), published on no port (Swarm
cannot publish on a loopback only): the tunnels lead, over one connection to that host, to their
containers' addresses on its `docker_gwbridge` bridge network, which the host itself reaches.
Either way this checks that they answer and prints the firing alerts and the targets that are
not up.
"""

from __future__ import annotations

import http.client
import json
import shlex
import signal
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from ops import compose
from ops.config import Environment
from ops.errors import OpsError
from ops.executor import query, quote
from ops.remote import Remote

LOOPBACK = "127.0.0.1"
# Swarm: the ports Prometheus and Alertmanager listen on in their containers, and the host's
# bridge network through which the host itself reaches a task attached to an overlay network.
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
GWBRIDGE = "docker_gwbridge"
TIMEOUT = 5.0
# How often a tunnel held open checks that its SSH connection is still there.
CONNECTION_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str
    since: str
    summary: str


@dataclass(frozen=True)
class View:
    prometheus: str
    alertmanager: str
    firing: list[Alert] = field(default_factory=list)
    down: list[str] = field(default_factory=list)  # "job instance: error"
    tunnel: str = ""  # hosts: what the local URLs lead to

    def lines(self) -> list[str]:
        out = [f"Prometheus    {self.prometheus}/", f"Alertmanager  {self.alertmanager}/"]
        if self.tunnel:
            out.append(f"tunnel        {self.tunnel}")
        out.append(f"consoles      {self.prometheus}/consoles/index.html")
        out.append(f"firing alerts: {len(self.firing)}")
        for alert in self.firing:
            out.append(
                f"  {alert.severity:<8} {alert.name:<32} since {alert.since}  {alert.summary}"
            )
        out.append(f"targets not up: {len(self.down)}")
        out.extend(f"  {line}" for line in self.down)
        return out


@dataclass(frozen=True)
class Endpoints:
    """Prometheus' and Alertmanager's base URLs on this machine; on a host, also the SSH
    connection carrying them and what they lead to."""

    prometheus: str
    alertmanager: str
    remote: Remote | None = None  # None: a local stack, no tunnel
    tunnel: str = ""
    # address:port each tunnel leads to, as the host sees it
    prometheus_target: str = ""
    alertmanager_target: str = ""

    def connected(self) -> bool:
        """False once the SSH connection under the tunnel is gone (always True locally)."""
        return self.remote is None or self.remote.connected()


def refuse_unless_monitored(env: Environment) -> None:
    """OpsError when the environment runs no Prometheus and Alertmanager, saying what to do."""
    if not compose.runs_monitoring(env):
        start = (
            f"`invoke up --env {env.name}`" if env.is_local else f"`invoke deploy --env={env.name}`"
        )
        raise OpsError(
            f"monitoring is off in {env.source} (monitoring.enabled: false). Fix: set it to "
            f"true and run {start}"
        )


def urls(env: Environment) -> tuple[str, str]:
    """Base URLs of a local stack's Prometheus and Alertmanager, or OpsError saying why not."""
    refuse_unless_monitored(env)
    if not env.is_local:
        where = (
            "on that host's docker_gwbridge only (Docker Swarm)"
            if env.is_swarm
            else "on that host's loopback only"
        )
        raise OpsError(
            f"environment {env.name!r} runs on {env.hosts[0].label}, whose Prometheus and "
            f"Alertmanager answer {where}. Fix: `invoke monitor --env={env.name}` opens an SSH "
            "tunnel to them"
        )
    mon = env.monitoring
    return f"http://{LOOPBACK}:{mon.prometheus_port}", f"http://{LOOPBACK}:{mon.alertmanager_port}"


def _free_here(port: int) -> bool:
    """Whether a listener could bind 127.0.0.1:<port> on this machine now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Remote.forward does
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _forward(
    tunnels: ExitStack, remote: Remote, port: int, target: str = LOOPBACK, target_port: int = 0
) -> int:
    """A tunnel to <target>:<target_port> as the host sees it (default: its 127.0.0.1:<port>),
    at <port> here when it is free (a local stack may hold it), else at one the system picks.
    Returns the local port."""
    remote_port = target_port or port
    try:
        return int(tunnels.enter_context(remote.forward(remote_port, target, local_port=port)))
    except OpsError:
        if _free_here(port):
            raise  # not the port: the connection itself failed
    return int(tunnels.enter_context(remote.forward(remote_port, target, local_port=0)))


def _running_task(remote: Remote, service: str) -> list[str]:
    """Full ids of the running containers of a swarm service on the host."""
    command = shlex.join(
        (
            "docker",
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            f"label=com.docker.swarm.service.name={service}",
            "--filter",
            "status=running",
        )
    )
    return remote.run(
        query(command, f"find the running task of {service}"), echo=True
    ).stdout.split()


def gwbridge_addresses(text: str) -> dict[str, str]:
    """Container id -> IPv4 address (no prefix length) from `docker network inspect
    docker_gwbridge -f '{{json .Containers}}'`; entries without an address are left out."""
    try:
        containers = json.loads(text)
    except ValueError as exc:
        raise OpsError(
            f"`docker network inspect {GWBRIDGE}` did not print its containers as JSON "
            f"({exc}): {text.strip()[:200]!r}"
        ) from exc
    if containers is None:  # a network without containers prints null
        return {}
    if not isinstance(containers, dict):
        raise OpsError(
            f"`docker network inspect {GWBRIDGE}` printed a {type(containers).__name__}, not "
            "its containers by id"
        )
    found = {}
    for container_id, details in containers.items():
        address = details.get("IPv4Address", "") if isinstance(details, dict) else ""
        if isinstance(address, str) and address:
            found[container_id] = address.split("/", 1)[0]
    return found


def swarm_targets(env: Environment, remote: Remote) -> tuple[str, str]:
    """The docker_gwbridge addresses of the running Prometheus and Alertmanager tasks on the
    swarm manager (`remote`), or OpsError naming the one missing and the fix."""
    services = {
        name: f"{env.project_name}_{name.lower()}" for name in ("Prometheus", "Alertmanager")
    }
    tasks = {name: _running_task(remote, service) for name, service in services.items()}
    fix = (
        f"Fix: deploy the environment with monitoring on, `invoke deploy --env={env.name}`, "
        f"then see `invoke status --env={env.name}`"
    )
    for name, found in tasks.items():
        if not found:
            raise OpsError(
                f"{name} (service {services[name]}) has no running task on the swarm manager "
                f"{remote.host.label}. {fix}"
            )
    inspect = f"docker network inspect {GWBRIDGE} -f {quote('{{json .Containers}}')}"
    result = remote.run(
        query(inspect, f"list the containers on {GWBRIDGE}"), check=False, echo=True
    )
    if not result.ok:
        raise OpsError(
            f"`{inspect}` failed on {remote.host.label} (exit {result.code}): "
            f"{result.stderr.strip()[-500:]}: the host is no swarm node. {fix}"
        )
    addresses = gwbridge_addresses(result.stdout)
    targets = []
    for name, found in tasks.items():
        address = next((addresses[i] for i in found if i in addresses), "")
        if not address:
            raise OpsError(
                f"{name}'s task ({found[0][:12]}) on {remote.host.label} has no address on "
                f"{GWBRIDGE}, so the host cannot reach it (it must be attached to a non-internal "
                f"overlay network). {fix}"
            )
        targets.append(address)
    return targets[0], targets[1]


@contextmanager
def reachable(env: Environment, remote: Remote | None = None) -> Iterator[Endpoints]:
    """Where Prometheus and Alertmanager answer from this machine during the block: a local
    stack's loopback URLs, or a host's through two tunnels over one SSH connection (`remote`,
    default a new one to the first host), closed with the connection after the block."""
    refuse_unless_monitored(env)
    if env.is_local:
        yield Endpoints(*urls(env))
        return
    mon = env.monitoring
    with remote or Remote(env.hosts[0]) as ssh, ExitStack() as tunnels:
        if env.is_swarm:
            yield _swarm_tunnels(env, ssh, tunnels)
            return
        prometheus = _forward(tunnels, ssh, mon.prometheus_port)
        alertmanager = _forward(tunnels, ssh, mon.alertmanager_port)
        yield Endpoints(
            f"http://{LOOPBACK}:{prometheus}",
            f"http://{LOOPBACK}:{alertmanager}",
            ssh,
            f"SSH to {ssh.host.label}, to its {LOOPBACK}:{mon.prometheus_port} (Prometheus) "
            f"and {LOOPBACK}:{mon.alertmanager_port} (Alertmanager)",
            f"{LOOPBACK}:{mon.prometheus_port}",
            f"{LOOPBACK}:{mon.alertmanager_port}",
        )


def _swarm_tunnels(env: Environment, ssh: Remote, tunnels: ExitStack) -> Endpoints:
    """The tunnels, over `ssh` to the swarm manager, to its Prometheus and Alertmanager tasks."""
    mon = env.monitoring
    prometheus_ip, alertmanager_ip = swarm_targets(env, ssh)
    prometheus = _forward(tunnels, ssh, mon.prometheus_port, prometheus_ip, PROMETHEUS_PORT)
    alertmanager = _forward(tunnels, ssh, mon.alertmanager_port, alertmanager_ip, ALERTMANAGER_PORT)
    prometheus_target = f"{prometheus_ip}:{PROMETHEUS_PORT}"
    alertmanager_target = f"{alertmanager_ip}:{ALERTMANAGER_PORT}"
    return Endpoints(
        f"http://{LOOPBACK}:{prometheus}",
        f"http://{LOOPBACK}:{alertmanager}",
        ssh,
        f"SSH to {ssh.host.label} (swarm manager), to {prometheus_target} (Prometheus) and "
        f"{alertmanager_target} (Alertmanager) on its {GWBRIDGE}",
        prometheus_target,
        alertmanager_target,
    )


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 (loopback)
        return json.load(response) if "/api/" in url else response.read()


def _check(name: str, base: str, target: str, env: Environment, at: Endpoints) -> None:
    try:
        _get(f"{base}/-/ready")
    except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        if at.remote is None:
            raise OpsError(
                f"{name} does not answer at {base} ({reason}). Fix: start the stack with "
                f"`invoke up --env {env.name}`, then see `invoke status --env {env.name}`"
            ) from exc
        raise OpsError(
            f"{name} does not answer on {at.remote.host.label} at {target} "
            f"(through the SSH tunnel at {base}: {reason}). Fix: deploy the environment with "
            f"monitoring on, `invoke deploy --env={env.name}`, then see "
            f"`invoke status --env={env.name}`"
        ) from exc


def _api(base: str, path: str, key: str) -> list[dict[str, Any]]:
    """data.<key> of a Prometheus API answer, or OpsError when something else answered."""
    url = f"{base}{path}"
    try:
        found = _get(url)["data"][key]
        if not isinstance(found, list):
            raise TypeError(f"data.{key} is a {type(found).__name__}")
    except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
        raise OpsError(f"{url}: {getattr(exc, 'reason', None) or exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise OpsError(
            f"{url} did not answer like Prometheus' API ({type(exc).__name__}: {exc}). Fix: check "
            "that monitoring.prometheus_port is Prometheus' port"
        ) from exc
    return found


def read(env: Environment, at: Endpoints) -> View:
    """Check that both answer at `at`, then what Prometheus sees: firing alerts, targets down."""
    _check("Prometheus", at.prometheus, at.prometheus_target, env, at)
    _check("Alertmanager", at.alertmanager, at.alertmanager_target, env, at)
    alerts = _api(at.prometheus, "/api/v1/alerts", "alerts")
    firing = [
        Alert(
            name=a["labels"].get("alertname", "?"),
            severity=a["labels"].get("severity", "?"),
            since=str(a.get("activeAt", ""))[:19],
            summary=a.get("annotations", {}).get("summary", ""),
        )
        for a in alerts
        if a.get("state") == "firing"
    ]
    firing.sort(key=lambda a: ({"critical": 0, "warning": 1}.get(a.severity, 2), a.name))
    targets = _api(at.prometheus, "/api/v1/targets", "activeTargets")
    down = [
        f"{t['labels'].get('job', '?')} {t['labels'].get('instance', '?')}: "
        f"{t.get('lastError', '')}"
        for t in targets
        if t.get("health") != "up"
    ]
    return View(at.prometheus, at.alertmanager, firing, sorted(down), at.tunnel)


def view(env: Environment) -> View:
    """read() at the environment's endpoints (a host's tunnel is closed again on return)."""
    with reachable(env) as at:
        return read(env, at)


def hold_open(env: Environment, at: Endpoints, poll: float = CONNECTION_CHECK_SECONDS) -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM, then return (the caller closes the tunnel).
    OpsError if the SSH connection under the tunnel goes away meanwhile. Main thread only."""
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopped.wait(poll):
            if not at.connected():
                raise OpsError(
                    f"the SSH connection to {env.hosts[0].label} was lost: the tunnel is closed. "
                    f"Fix: `invoke monitor --env={env.name}` again once the host answers over SSH"
                )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
