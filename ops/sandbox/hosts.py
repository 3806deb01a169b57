"""The sandbox's hosts: containers of slipway/sandbox-host with their own dockerd and sshd.

Docker in Docker with the flags of docs/architecture.md (never --privileged), on the network
slipway-sandbox. Ports 22, 80 and 443 are published on 127.0.0.1 at ports the engine picks:
asking the engine leaves no gap between "found free" and "bound" for concurrent test stacks to
fall into. Here: starting a host, waiting until its dockerd and sshd answer (its log when they
do not), reading its SSH host keys, and logging in as deploy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import docker
import paramiko
from docker.errors import APIError, DockerException

from ops.errors import OpsError
from ops.executor import Command, query
from ops.sandbox.engine import create_started, read_container_file
from ops.sandbox.files import SandboxFiles
from ops.sandbox.names import (
    HOST_PORTS,
    INDEX_LABEL,
    KEY_LABEL,
    LABEL,
    LOOPBACK,
    NETWORK,
    REMOTE_USER,
    container_name,
    hostname,
)
from ops.sandbox.plan import key_fingerprint

HEALTH_COMMAND = ["/usr/local/bin/sandbox-host", "healthcheck"]
HOST_KEYS_COMMAND = ["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"]


def start_host(
    engine: docker.DockerClient, name: str, index: int, image: str, public_key: str
) -> Any:
    """Create and start host <index>; ports the engine picks on 127.0.0.1, retried if taken."""
    cname = container_name(name, index)
    return create_started(
        engine,
        image,
        name=cname,
        hostname=hostname(name, index),
        detach=True,
        labels={LABEL: name, INDEX_LABEL: str(index), KEY_LABEL: key_fingerprint(public_key)},
        environment={
            "SANDBOX_AUTHORIZED_KEY": public_key.strip(),
            "SANDBOX_CGROUP_PARENT": f"/{cname}",
        },
        # The Docker-in-Docker flags that work on these machines (--privileged does not).
        cap_add=["ALL"],
        cap_drop=["SYS_RESOURCE"],
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        cgroupns="host",
        volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
        tmpfs={"/var/lib/docker": "exec"},
        network=NETWORK,
        ports={f"{port}/tcp": (LOOPBACK, None) for port in HOST_PORTS.values()},
        log_config={"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
    )


def failure_details(container: Any, lines: int = 40) -> str:
    """Its dockerd log tail, its own log tail and its last health output: what explains it."""
    try:
        container.reload()
        logs = container.logs(tail=lines).decode(errors="replace")
    except DockerException as exc:
        return f"--- {container.name}: cannot read its state ({exc})"
    dockerd_log = read_container_file(container, "/var/log/dockerd.log").splitlines()[-lines:]
    health = (container.attrs.get("State") or {}).get("Health") or {}
    probes = health.get("Log") or []
    last = str(probes[-1].get("Output", "")).strip() if probes else "none yet"
    return "\n".join(
        [
            f"--- {container.name}: status {container.status}, last health check: {last}",
            f"--- {container.name}: /var/log/dockerd.log (last {lines} lines)",
            *(dockerd_log or ["(empty or missing)"]),
            f"--- {container.name}: container log (last {lines} lines)",
            logs.rstrip() or "(empty)",
        ]
    )


def wait_healthy(containers: Sequence[Any], timeout: float) -> str:
    """Wait until every host's dockerd and sshd answer (the image's healthcheck, run now)."""
    pending = {c.name: c for c in containers}
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while pending:
        for cname, container in list(pending.items()):
            container.reload()
            if container.status != "running":
                raise _unhealthy(container, f"{cname} stopped ({container.status})")
            try:
                code, _ = container.exec_run(HEALTH_COMMAND)
            except APIError:
                continue  # it stopped between reload and exec: the next round reports it
            if code == 0:
                del pending[cname]
        if pending and time.monotonic() > deadline:
            first = next(iter(pending.values()))
            raise _unhealthy(first, f"{first.name} not healthy after {timeout:.0f}s")
        if pending:
            time.sleep(0.5)
    return f"{len(containers)} host(s) answer after {time.monotonic() - started:.1f}s"


def _unhealthy(container: Any, problem: str) -> OpsError:
    print(failure_details(container), flush=True)
    return OpsError(
        f"{problem}; its dockerd log and container log are above. Fix: the last lines of the "
        "dockerd log name the cause (a dockerd that cannot start usually lacks a capability or "
        "a kernel feature: compare with the machine's Docker-in-Docker flags); a slow machine "
        "needs a larger --timeout. Then run `invoke sandbox.up` again"
    )


def host_keys(container: Any) -> str:
    """The host's public SSH host keys (its ssh_host_*_key.pub files)."""
    code, output = container.exec_run(HOST_KEYS_COMMAND)
    if code != 0:
        raise OpsError(f"cannot read the SSH host keys of {container.name}")
    return str(output.decode())


def engine_id() -> Command:
    """The ID of the host's Docker engine (tells two hosts' engines apart)."""
    return query("docker info --format '{{.ID}}'", "the engine's ID")


def compose_version() -> Command:
    """The version of the host's compose plugin."""
    return query("docker compose version --short", "the compose plugin's version")


def ssh_run(files: SandboxFiles, port: int, command: Command, timeout: float = 30.0) -> str:
    """Run a query as deploy on the host at 127.0.0.1:<port>, host key checked; its stdout.

    Straight over paramiko, not ops.remote.Remote: the sandbox's own key and known_hosts must
    be used, never the SLIPWAY_SSH_KEY of CI, and an unknown host key is refused."""
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(str(files.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            LOOPBACK,
            port=port,
            username=REMOTE_USER,
            key_filename=str(files.private_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
        # The commands are this module's own builders, not input.
        _, stdout, stderr = client.exec_command(command.line, timeout=timeout)  # nosec B601
        out = str(stdout.read().decode(errors="replace"))
        code = stdout.channel.recv_exit_status()
        if code != 0:
            err = stderr.read().decode(errors="replace").strip()
            raise OpsError(f"`{command.line}` on {LOOPBACK}:{port} exited {code}: {err[-500:]}")
        return out.strip()
    except (paramiko.SSHException, OSError) as exc:
        raise OpsError(
            f"cannot log in as {REMOTE_USER}@{LOOPBACK}:{port} with {files.private_key} "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        client.close()
