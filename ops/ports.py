"""Pre-flight check of the host ports an environment publishes."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

import docker

from ops.errors import OpsError


def _publishers(engine: docker.DockerClient) -> dict[int, tuple[str, str]]:
    """Host port → (container name, compose project) for every running container."""
    found: dict[int, tuple[str, str]] = {}
    containers: list[Any] = engine.containers.list()
    for container in containers:
        project = (container.labels or {}).get("com.docker.compose.project", "")
        bindings = container.attrs.get("NetworkSettings", {}).get("Ports") or {}
        for entries in bindings.values():
            for entry in entries or []:
                if str(entry.get("HostPort", "")).isdigit():
                    found[int(entry["HostPort"])] = (container.name, project)
    return found


def _free(address: str, port: int, kind: int = socket.SOCK_STREAM) -> bool:
    """Whether a socket of `kind` (TCP by default, or UDP) can bind address:port now."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def check_free(
    engine: docker.DockerClient,
    address: str,
    ports: Iterable[int],
    project: str,
    source: str,
    fields: str = "`ports:`",
) -> str:
    """Each port is free, or already published by this project; else OpsError naming the user."""
    publishers: dict[int, tuple[str, str]] | None = None
    conflicts: list[str] = []
    mine = 0
    for port in ports:
        if _free(address, port):
            continue
        publishers = publishers if publishers is not None else _publishers(engine)
        name, owner = publishers.get(port, ("another process", ""))
        if owner == project:
            mine += 1
            continue
        conflicts.append(f"{address}:{port} is used by {name}")
    if conflicts:
        raise OpsError(
            f"{'; '.join(conflicts)}. Fix: stop it, or choose other {fields} in {source}"
        )
    return "free" if not mine else f"{mine} already published by {project}"


def check_log_port(
    engine: docker.DockerClient, address: str, port: int, project: str, source: str
) -> str:
    """The central log collector's UDP port: free, or held by this project's own collector
    (it runs on the host network, so Docker lists no published port for it)."""
    if _free(address, port, socket.SOCK_DGRAM):
        return f"udp {port} free"
    ours: list[Any] = engine.containers.list(
        filters={
            "label": [f"com.docker.compose.project={project}", "com.docker.compose.service=logs"]
        }
    )
    if ours:
        return f"udp {port} held by {ours[0].name}"
    raise OpsError(
        f"{address}:{port}/udp (the central log collector's port) is used by another process, "
        f"often another environment's collector. Fix: stop it, or choose another "
        f"`monitoring.log_port` in {source}"
    )


# ------------------------------------------------------------------------------ on a host

# Prints the kernel's socket tables of the host (its own network namespace), each headed by
# `== <table>`: no tool beyond a shell needed there.
SOCKET_TABLES = (
    'for t in tcp tcp6 udp udp6; do echo "== $t"; cat /proc/net/$t 2>/dev/null; done; true'
)
_TCP_LISTEN = "0A"


def listening(tables: str) -> set[tuple[str, int]]:
    """("tcp", port) of every listening TCP socket and ("udp", port) of every bound UDP socket
    in the output of SOCKET_TABLES (/proc/net/{tcp,tcp6,udp,udp6})."""
    found: set[tuple[str, int]] = set()
    proto = ""
    for line in tables.splitlines():
        if line.startswith("== "):
            proto = "udp" if line[3:].startswith("udp") else "tcp"
            continue
        fields = line.split()
        if len(fields) < 4 or ":" not in fields[1] or not proto:
            continue  # the header line, or garbage
        try:
            port = int(fields[1].rsplit(":", 1)[1], 16)
        except ValueError:
            continue
        if proto == "udp" or fields[3] == _TCP_LISTEN:
            found.add((proto, port))
    return found


def host_conflicts(
    held: set[tuple[str, int]], wanted: Iterable[tuple[str, int, str, str]], ours: Iterable[str]
) -> list[str]:
    """For each (proto, port, service, field) wanted: a line when the port is held on the host
    and the environment's own `service` does not run there (it would be the holder)."""
    running = set(ours)
    return [
        f"{port}/{proto} ({field}) is in use on the host by something other than this "
        f"environment's {service}"
        for proto, port, service, field in wanted
        if (proto, port) in held and service not in running
    ]
