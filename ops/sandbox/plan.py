"""Which hosts `sandbox.up` keeps, starts and removes, and what `docker inspect` says of them.

Pure: it reads the engine's answers (labels, status, port bindings, network addresses) handed
to it, and decides; ops/sandbox/engine.py and ops/sandbox/hosts.py do the asking and starting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ops.errors import OpsError
from ops.sandbox.names import HOST_PORTS, INDEX_LABEL, KEY_LABEL, LOOPBACK, NETWORK


@dataclass(frozen=True)
class HostPorts:
    """Loopback ports of one host: its sshd, and the 80/443 the deployed nginx will listen on."""

    ssh: int
    http: int
    https: int


@dataclass(frozen=True)
class Existing:
    """A container of the sandbox as found on the engine."""

    container: str
    index: int  # 0 when the label is missing or not a number
    running: bool
    key_matches: bool


@dataclass(frozen=True)
class HostPlan:
    """What `up` does to reach the wanted host count."""

    keep: tuple[int, ...]
    create: tuple[int, ...]
    # (container, reason)
    remove: tuple[tuple[str, str], ...] = ()


def key_fingerprint(public_key: str) -> str:
    """Short digest of the login key, stored as a container label to spot a replaced key."""
    return hashlib.sha256(public_key.strip().encode()).hexdigest()[:16]


def existing_hosts(containers: Sequence[Any], fingerprint: str) -> list[Existing]:
    """The containers as plan_hosts sees them."""
    result = []
    for container in containers:
        labels = container.labels or {}
        index = str(labels.get(INDEX_LABEL, ""))
        result.append(
            Existing(
                container=container.name,
                index=int(index) if index.isdigit() else 0,
                running=container.status == "running",
                key_matches=labels.get(KEY_LABEL) == fingerprint,
            )
        )
    return result


def plan_hosts(count: int, existing: Sequence[Existing]) -> HostPlan:
    """Keep running hosts 1..count that accept the current key; replace or remove the rest."""
    keep: list[int] = []
    remove: list[tuple[str, str]] = []
    for host in sorted(existing, key=lambda h: (h.index, h.container)):
        if not 1 <= host.index <= count:
            remove.append((host.container, "not wanted"))
        elif host.index in keep:
            remove.append((host.container, "duplicate"))
        elif not host.running:
            remove.append((host.container, "not running: replaced"))
        elif not host.key_matches:
            remove.append((host.container, "login key changed: replaced"))
        else:
            keep.append(host.index)
    create = tuple(i for i in range(1, count + 1) if i not in keep)
    return HostPlan(tuple(keep), create, tuple(remove))


def loopback_ports(
    container: str, attrs: Mapping[str, Any], wanted: Mapping[str, int]
) -> dict[str, int]:
    """The loopback port published for each of `wanted` (role -> container port)."""
    bindings = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    found: dict[str, int] = {}
    for role, port in wanted.items():
        for entry in bindings.get(f"{port}/tcp") or []:
            if entry.get("HostIp") == LOOPBACK and str(entry.get("HostPort", "")).isdigit():
                found[role] = int(entry["HostPort"])
                break
        else:
            raise OpsError(
                f"{container} does not publish port {port} on {LOOPBACK}. "
                f"Fix: `invoke sandbox.down` and `invoke sandbox.up` again"
            )
    return found


def published_ports(container: str, attrs: Mapping[str, Any]) -> HostPorts:
    """The loopback ports the engine published for 22, 80 and 443 (from `docker inspect`)."""
    return HostPorts(**loopback_ports(container, attrs, HOST_PORTS))


def network_address(container: str, attrs: Mapping[str, Any]) -> str:
    """The container's IP address on the network slipway-sandbox (from `docker inspect`)."""
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    address = str((networks.get(NETWORK) or {}).get("IPAddress") or "")
    if not address:
        raise OpsError(
            f"{container} has no address on the network {NETWORK}. "
            f"Fix: `invoke sandbox.down` and `invoke sandbox.up` again"
        )
    return address
