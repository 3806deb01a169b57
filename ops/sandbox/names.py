"""What sandbox `name` calls its things: containers, hostnames, labels, roles, domains, modes.

Pure: no engine, no files. Every other module of ops/sandbox names things through here, so a
label or a container name is spelled once.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ops import config
from ops.errors import OpsError

NETWORK = "slipway-sandbox"
# Every sandbox container carries LABEL=<sandbox name>; only those are ever removed.
LABEL = "org.slipway.sandbox"
INDEX_LABEL = "org.slipway.sandbox.index"
KEY_LABEL = "org.slipway.sandbox.key"
NETWORK_LABEL = "org.slipway.sandbox.network"
# Role of a sandbox container that is not a host; hosts have none.
ROLE_LABEL = "org.slipway.sandbox.role"
ACME_ROLE = "acme"
REGISTRY_ROLE = "registry"
# What each role is called in messages, and the sandbox.up flag that asks for it.
ROLE_NAMES = {ACME_ROLE: "ACME server", REGISTRY_ROLE: "registry"}
ROLE_FLAGS = {ACME_ROLE: "--tls=acme", REGISTRY_ROLE: "--registry"}
UNWANTED = {
    ACME_ROLE: "ACME server: not used with --tls local-ca",
    REGISTRY_ROLE: "registry: not used without --registry",
}
TLS_MODES = ("local-ca", "acme")
DEFAULT_TLS = "local-ca"
DEFAULT_NAME = "sandbox"
MAX_HOSTS = 8
LOOPBACK = "127.0.0.1"
REMOTE_USER = "deploy"
REMOTE_ROOT = "/srv/slipway"
HOST_PORTS = {"ssh": 22, "http": 80, "https": 443}
DEFAULT_LISTINGS_ENV = "staging"
# Same rule as environment names (ops/config/): the sandbox is an environment of that name.
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


def check_name(name: str) -> None:
    """A sandbox name is an environment name: lowercase letters, digits, '-', from a letter."""
    if not _NAME_RE.match(name):
        raise OpsError(
            f"invalid sandbox name {name!r}: it names an environment, so use lowercase letters, "
            "digits and '-', starting with a letter, at most 31 characters"
        )


def check_count(hosts: int) -> None:
    """1 to MAX_HOSTS hosts: each runs a whole Docker engine on this machine."""
    if not 1 <= hosts <= MAX_HOSTS:
        raise OpsError(f"--hosts must be between 1 and {MAX_HOSTS}, got {hosts}")


def check_tls(tls: str) -> None:
    """local-ca (certificates from the environment's own CA) or acme (from the sandbox's pebble)."""
    if tls not in TLS_MODES:
        raise OpsError(
            f"--tls {tls!r} is not a sandbox TLS mode. Fix: use one of {', '.join(TLS_MODES)}"
        )


def up_command(flag: str = "") -> str:
    """`invoke sandbox.up` with the flag that asks for a server (as a fix names it)."""
    return " ".join(["invoke sandbox.up", flag]).strip()


def container_name(name: str, index: int) -> str:
    """slipway-sandbox-<name>-<n>; also the cgroup parent of that host's nested containers."""
    return f"slipway-sandbox-{name}-{index}"


def hostname(name: str, index: int) -> str:
    """<name>-<n>."""
    return f"{name}-{index}"


def role_container_name(name: str, role: str) -> str:
    """<name>-<role>: a server of the sandbox that is not a host (acme, registry)."""
    return f"{name}-{role}"


def acme_container_name(name: str) -> str:
    """<name>-acme: the sandbox's ACME test server."""
    return role_container_name(name, ACME_ROLE)


def registry_container_name(name: str) -> str:
    """<name>-registry: the sandbox's image registry."""
    return role_container_name(name, REGISTRY_ROLE)


def acme_domains(name: str) -> tuple[str, str]:
    """The domains of a --tls=acme sandbox: app.<name>.test and www.<name>.test (RFC 2606)."""
    return (f"app.{name}.test", f"www.{name}.test")


def acme_spare_domain(name: str) -> str:
    """A name pebble also resolves to host 1 but the environment does not list: add it to
    `domains` to rehearse a new domain (its certificate comes with the next deploy)."""
    return f"new.{name}.test"


def acme_email(name: str) -> str:
    """The ACME account's contact."""
    return f"ops@{name}.test"


def role_of(container: Any) -> str:
    """The role label of a sandbox container: "" for a host."""
    return str((container.labels or {}).get(ROLE_LABEL, ""))


def is_acme(container: Any) -> bool:
    """True for the sandbox's ACME server container (not a host)."""
    return role_of(container) == ACME_ROLE


def is_registry(container: Any) -> bool:
    """True for the sandbox's registry container (not a host)."""
    return role_of(container) == REGISTRY_ROLE


def url_host(address: str) -> str:
    """An address as the host part of a URL: an IPv6 address in brackets."""
    try:
        return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:
        return address


def listings_env_for(name: str, requested: str = "") -> str:
    """The service mode: as requested, else the sandbox's name for staging/production, else
    staging (a sandbox rehearses a deploy to a server, so it runs with the server's rules)."""
    if requested:
        if requested not in config.LISTINGS_ENVS:
            raise OpsError(
                f"--listings-env {requested!r} is not a mode of the service. "
                f"Fix: use one of {', '.join(config.LISTINGS_ENVS)}"
            )
        return requested
    return name if name in ("staging", "production") else DEFAULT_LISTINGS_ENV
