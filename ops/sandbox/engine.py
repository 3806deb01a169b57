"""The sandbox on this machine's Docker engine: its containers, its network, their removal.

Everything here talks to the local engine (docker SDK); the hosts, the ACME server and the
registry are created through create_started and removed through remove_container, which also
clears the cgroups a host's nested engine leaves behind.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, NotFound

from ops.errors import OpsError
from ops.sandbox.names import (
    LABEL,
    NETWORK,
    NETWORK_LABEL,
    ROLE_LABEL,
    ROLE_NAMES,
    role_container_name,
)

CGROUP_ROOT = Path("/sys/fs/cgroup")
_PORT_TAKEN = ("port is already allocated", "address already in use")
_START_ATTEMPTS = 3


def check_local_engine(environ: Mapping[str, str]) -> None:
    """Hosts publish on the engine's loopback: that must be this machine's loopback."""
    host = environ.get("DOCKER_HOST", "")
    local = ("unix://", "tcp://127.0.0.1", "tcp://localhost", "npipe://")
    if host and not host.startswith(local):
        raise OpsError(
            f"DOCKER_HOST is {host}: sandbox hosts publish their ports on the engine's "
            "127.0.0.1, which would not be this machine's. Fix: unset DOCKER_HOST and use "
            "the local engine"
        )


def sandbox_containers(engine: docker.DockerClient, name: str) -> list[Any]:
    """Every container (running or not) labelled as a host of sandbox `name`."""
    found: list[Any] = engine.containers.list(all=True, filters={"label": f"{LABEL}={name}"})
    return found


def check_role_name(engine: docker.DockerClient, name: str, role: str) -> None:
    """<name>-<role>, when it exists, must be this sandbox's server of that role: sandbox.up
    never replaces another container."""
    cname = role_container_name(name, role)
    try:
        found = engine.containers.get(cname)
    except NotFound:
        return
    labels = found.labels or {}
    if labels.get(LABEL) != name or labels.get(ROLE_LABEL) != role:
        raise OpsError(
            f"a container named {cname} exists and is not the {ROLE_NAMES[role]} of sandbox "
            f"{name} (no label {LABEL}={name}, {ROLE_LABEL}={role}), and sandbox.up would "
            f"replace it. Fix: choose another --name, or remove that container "
            f"(`docker rm -f {cname}`)"
        )


def _port_taken(exc: APIError) -> bool:
    return any(text in str(exc).lower() for text in _PORT_TAKEN)


def create_started(engine: docker.DockerClient, image: str, **options: Any) -> Any:
    """Create and start a container; a loopback port taken between the engine's pick and the
    bind is retried with a new container, any other failure removes it and stops."""
    cname = options["name"]
    for attempt in range(1, _START_ATTEMPTS + 1):
        container = engine.containers.create(image, **options)
        try:
            container.start()
        except APIError as exc:
            container.remove(force=True)
            if _port_taken(exc) and attempt < _START_ATTEMPTS:
                continue
            raise OpsError(f"cannot start {cname}: {exc.explanation or exc}") from exc
        return container
    raise AssertionError("unreachable: the last attempt returns or raises")


def read_container_file(container: Any, path: str) -> str:
    """A file's text from a container, running or not ('' when it cannot be read)."""
    try:
        stream, _ = container.get_archive(path)
        data = b"".join(stream)
    except DockerException:
        return ""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.next()
        handle = archive.extractfile(member) if member else None
        return handle.read().decode(errors="replace") if handle else ""


def remove_cgroups(root: Path, container: str) -> int:
    """Remove the empty cgroups a host's engine left under <hierarchy>/<container>; a count.

    The nested dockerd puts its containers under the cgroup parent /<container>; when the host is
    removed with containers still running, their (now empty) cgroups stay behind.
    """
    removed = 0
    tops = [root / container]
    if root.is_dir():
        tops += [h / container for h in sorted(root.iterdir()) if h.is_dir() and not h.is_symlink()]
    for top in tops:
        if not top.is_dir() or top.is_symlink():
            continue
        for directory, _, _ in os.walk(top, topdown=False):
            try:
                Path(directory).rmdir()
                removed += 1
            except OSError:
                continue
    return removed


def remove_container(engine: docker.DockerClient, cname: str) -> None:
    """Remove a container with its volumes (nothing when it does not exist), and the cgroups
    its nested engine left when the engine is this machine's."""
    try:
        engine.containers.get(cname).remove(force=True, v=True)
    except NotFound:
        return
    if os.environ.get("DOCKER_HOST", "unix://").startswith("unix://"):
        remove_cgroups(CGROUP_ROOT, cname)


def networks(engine: docker.DockerClient) -> list[Any]:
    """The network slipway-sandbox (none or one, unless created twice by a race)."""
    # The engine's name filter also matches longer names (slipway-sandbox-old): compare exactly.
    return [n for n in engine.networks.list(names=[NETWORK]) if n.name == NETWORK]


def ensure_network(engine: docker.DockerClient) -> str:
    """Create the network slipway-sandbox unless it exists; what happened."""
    if networks(engine):
        return "present"
    try:
        # check_duplicate: a sandbox.up running at the same moment may create it too, and
        # two networks of one name make every later `--network` ambiguous.
        engine.networks.create(
            NETWORK, driver="bridge", labels={NETWORK_LABEL: "true"}, check_duplicate=True
        )
    except APIError as exc:
        if exc.status_code != 409 or not networks(engine):
            raise
        return "present (created at the same moment by another sandbox.up)"
    return "created"


def remove_network_if_unused(engine: docker.DockerClient) -> bool:
    """Remove the network when no sandbox container exists and nothing is attached to it."""
    if engine.containers.list(all=True, filters={"label": LABEL}):
        return False
    removed = False
    for network in networks(engine):
        network.reload()
        if not network.attrs.get("Containers"):
            network.remove()
            removed = True
    return removed
