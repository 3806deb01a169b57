"""Sandbox hosts: disposable deploy targets on this machine (`invoke sandbox.up`, `sandbox.down`).

A host is a container of slipway/sandbox-host running its own dockerd and sshd (Docker in Docker
with the flags of docs/architecture.md, never --privileged), on the network slipway-sandbox. Its
ports 22, 80 and 443 are published on 127.0.0.1 at ports the engine picks: asking the engine
leaves no gap between "found free" and "bound" for concurrent test stacks to fall into.
`up` writes what a deploy to the hosts needs: environments/<name>.yaml (target: ssh), .env.<name>
with generated secrets, and under .slipway/sandbox-<name>/ the login key and known_hosts.

With `--tls=acme` it also runs the sandbox's ACME test server: a container <name>-acme of
slipway/sandbox-acme (Debian's pebble) on the same network, validating HTTP-01 for real against
host 1 (the sandbox's domains resolve to host 1 inside it). Its HTTPS certificate names its
address on the network, known only once it runs: `up` makes it with ops.certs (CA
acme-server-ca.pem, kept) and puts it into the waiting container, then fetches pebble's issuing
root (new at every pebble start) into acme-roots.pem, the environment's ca_file.

With `--registry` it also runs the sandbox's image registry: a container <name>-registry of
slipway/sandbox-registry (Debian's docker-registry) on the same network, with TLS (a certificate
for its address from the sandbox's registry CA, put in the same way) and htpasswd
authentication (a user and password generated once into .env.<name>). Every host's dockerd
trusts that CA through /etc/docker/certs.d/<address>:5000/ca.crt; this machine pushes through
the loopback port the engine published (loopback registries need no certs.d).
"""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import json
import os
import re
import secrets as token
import shutil
import ssl
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import docker
import paramiko
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from docker.errors import APIError, DockerException, NotFound

from ops import certs, compose, config, docker_engine, images, paths, proc, secrets
from ops.errors import OpsError
from ops.stack.local import confirm_destroy
from ops.steps import Report, Runner, Step

IMAGE = "slipway/sandbox-host"
NETWORK = "slipway-sandbox"
# Every sandbox container carries LABEL=<sandbox name>; only those are ever removed.
LABEL = "org.slipway.sandbox"
INDEX_LABEL = "org.slipway.sandbox.index"
KEY_LABEL = "org.slipway.sandbox.key"
NETWORK_LABEL = "org.slipway.sandbox.network"
BUILD_FILE = "compose/sandbox.yaml"
BUILD_PROJECT = "slipway-sandbox"
BUILD_SERVICE = "sandbox-host"
# What the image is built from: its tag is a digest of these, so an edit means a new image.
BUILD_INPUTS = ("services/sandbox-host", BUILD_FILE)
# The ACME test server of `--tls=acme` (services/sandbox-acme): an image with a tag of its own,
# so editing it never changes the hosts' tag (and the reverse).
ACME_IMAGE = "slipway/sandbox-acme"
ACME_SERVICE = "sandbox-acme"
ACME_BUILD_INPUTS = ("services/sandbox-acme", BUILD_FILE)
# The registry of `--registry` (services/sandbox-registry), also with a tag of its own.
REGISTRY_IMAGE = "slipway/sandbox-registry"
REGISTRY_SERVICE = "sandbox-registry"
REGISTRY_BUILD_INPUTS = ("services/sandbox-registry", BUILD_FILE)
# compose/sandbox.yaml's variable holding each service's tag.
TAG_VARIABLES = {
    BUILD_SERVICE: "SLIPWAY_SANDBOX_TAG",
    ACME_SERVICE: "SLIPWAY_SANDBOX_ACME_TAG",
    REGISTRY_SERVICE: "SLIPWAY_SANDBOX_REGISTRY_TAG",
}
# Role of a sandbox container that is not a host; hosts have none.
ROLE_LABEL = "org.slipway.sandbox.role"
ACME_ROLE = "acme"
REGISTRY_ROLE = "registry"
# What each role is called in messages, and the sandbox.up flag that asks for it.
ROLE_NAMES = {ACME_ROLE: "ACME server", REGISTRY_ROLE: "registry"}
ROLE_FLAGS = {ACME_ROLE: "--tls=acme", REGISTRY_ROLE: "--registry"}
_UNWANTED = {
    ACME_ROLE: "ACME server: not used with --tls local-ca",
    REGISTRY_ROLE: "registry: not used without --registry",
}
ACME_PORTS = {"directory": 14000, "management": 15000}
# Where the image's entrypoint waits for cert.pem and key.pem (then `ready`), and the uid of its
# user `pebble` (services/sandbox-acme/Dockerfile), which must be able to read them.
ACME_TLS_DIR = "/etc/pebble/tls"
ACME_UID = 10014
# Deterministic pebble: no random validation delay, no rejected nonces, no authorization reused
# at random (every order validates); validation stays real (never PEBBLE_VA_ALWAYS_VALID).
ACME_ENVIRONMENT = {
    "PEBBLE_VA_NOSLEEP": "1",
    "PEBBLE_WFE_NONCEREJECT": "0",
    "PEBBLE_AUTHZREUSE": "0",
}
REGISTRY_PORT = 5000
REGISTRY_PORTS = {"registry": REGISTRY_PORT}
# Where the registry image's entrypoint waits for cert.pem, key.pem and htpasswd (then `ready`),
# and the uid of its user docker-registry (services/sandbox-registry/Dockerfile).
REGISTRY_TLS_DIR = "/etc/docker/registry/tls"
REGISTRY_UID = 10015
# The namespace the sandbox's images go to: <address>/slipway/<name>:<tag>.
REGISTRY_NAMESPACE = "slipway"
# bcrypt cost of the htpasswd entry. The password is 256 random bits, so the cost protects
# nothing, and the registry pays it on every request of a push or pull.
REGISTRY_BCRYPT_ROUNDS = 8
# Where a Docker engine looks for the CA of a registry: <CERTS_D>/<host:port>/ca.crt, read at
# every connection (no restart).
CERTS_D = "etc/docker/certs.d"
TLS_MODES = ("local-ca", "acme")
DEFAULT_TLS = "local-ca"
DEFAULT_NAME = "sandbox"
MAX_HOSTS = 8
LOOPBACK = "127.0.0.1"
REMOTE_USER = "deploy"
REMOTE_ROOT = "/srv/slipway"
HOST_PORTS = {"ssh": 22, "http": 80, "https": 443}
# The first line of every environment file sandbox.up writes; down deletes only such files.
MARKER = "# Written by `invoke sandbox.up"
DEFAULT_LISTINGS_ENV = "staging"
CGROUP_ROOT = Path("/sys/fs/cgroup")
HEALTH_COMMAND = ["/usr/local/bin/sandbox-host", "healthcheck"]
# Same rule as environment names (ops/config.py): the sandbox is an environment of that name.
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_PORT_TAKEN = ("port is already allocated", "address already in use")
_START_ATTEMPTS = 3


# ------------------------------------------------------------------------------ pure parts


@dataclass(frozen=True)
class HostPorts:
    """Loopback ports of one host: its sshd, and the 80/443 the deployed nginx will listen on."""

    ssh: int
    http: int
    https: int


@dataclass(frozen=True)
class AcmeServer:
    """The running ACME test server: its address on the network and its loopback ports."""

    container: str
    address: str  # on the network slipway-sandbox, where the hosts reach it
    directory_port: int  # 127.0.0.1:<this> -> its 14000
    management_port: int  # 127.0.0.1:<this> -> its 15000

    @property
    def directory(self) -> str:
        """The directory URL as the hosts (certbot) use it: pebble's address on the network."""
        return f"https://{_url_host(self.address)}:{ACME_PORTS['directory']}/dir"

    @property
    def local_directory(self) -> str:
        """The same directory through the loopback port published on this machine."""
        return f"https://{LOOPBACK}:{self.directory_port}/dir"

    @property
    def local_roots(self) -> str:
        """pebble's issuing root, from the management port published on this machine."""
        return f"https://{LOOPBACK}:{self.management_port}/roots/0"


@dataclass(frozen=True)
class RegistryServer:
    """The running registry: its address on the network and its loopback port."""

    container: str
    address: str  # on the network slipway-sandbox, where the hosts reach it
    port: int  # 127.0.0.1:<this> -> its 5000

    @property
    def push(self) -> str:
        """Where this machine pushes: the loopback port (Docker trusts loopback registries)."""
        return f"{LOOPBACK}:{self.port}/{REGISTRY_NAMESPACE}"

    @property
    def pull(self) -> str:
        """Where the hosts pull: the address on the network (certs.d holds its CA there)."""
        return f"{_url_host(self.address)}:{REGISTRY_PORT}/{REGISTRY_NAMESPACE}"

    @property
    def host_port(self) -> str:
        """<address>:5000: the registry as the hosts' engines name it (certs.d directory)."""
        return f"{_url_host(self.address)}:{REGISTRY_PORT}"

    @property
    def local_url(self) -> str:
        """The registry API's base through the loopback port published on this machine."""
        return f"https://{LOOPBACK}:{self.port}/v2/"

    @property
    def addresses(self) -> config.Registry:
        """The environment file's `registry:`."""
        return config.Registry(push=self.push, pull=self.pull)


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


@dataclass(frozen=True)
class SandboxFiles:
    """Every file of sandbox `name` on this machine."""

    name: str
    root: Path
    environment: Path

    @classmethod
    def of(cls, name: str) -> SandboxFiles:
        return cls(name, paths.repo_root(), paths.environments_dir() / f"{name}.yaml")

    @property
    def key_dir(self) -> Path:
        return self.root / ".slipway" / f"sandbox-{self.name}"

    @property
    def private_key(self) -> Path:
        return self.key_dir / "id_ed25519"

    @property
    def public_key(self) -> Path:
        return self.key_dir / "id_ed25519.pub"

    @property
    def known_hosts(self) -> Path:
        return self.key_dir / "known_hosts"

    @property
    def secrets(self) -> Path:
        # The rule of secrets.env_file: .env.<name> at the repository root.
        return self.root / f".env.{self.name}"

    @property
    def acme_server_dir(self) -> Path:
        """ops.certs material of pebble's HTTPS: ca.crt, ca.key (0600), tls.crt, tls.key."""
        return self.key_dir / "acme-server"

    @property
    def acme_server_ca(self) -> Path:
        """The CA that verifies pebble's own HTTPS (the environment's acme.server_ca)."""
        return self.key_dir / "acme-server-ca.pem"

    @property
    def acme_roots(self) -> Path:
        """pebble's issuing root: verifies the certificates it issues (the env's ca_file)."""
        return self.key_dir / "acme-roots.pem"

    @property
    def registry_dir(self) -> Path:
        """ops.certs material of the registry's HTTPS: ca.crt, ca.key (0600), tls.crt, tls.key."""
        return self.key_dir / "registry"

    @property
    def registry_ca(self) -> Path:
        """The CA that verifies the registry (copied into every host's certs.d)."""
        return certs.CertPaths(self.registry_dir).ca_crt

    def relative(self, path: Path) -> str:
        """`path` as the environment file writes it: relative to the repository root."""
        return str(path.relative_to(self.root))


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


def container_name(name: str, index: int) -> str:
    """slipway-sandbox-<name>-<n>; also the cgroup parent of that host's nested containers."""
    return f"slipway-sandbox-{name}-{index}"


def hostname(name: str, index: int) -> str:
    """<name>-<n>."""
    return f"{name}-{index}"


def check_tls(tls: str) -> None:
    """local-ca (certificates from the environment's own CA) or acme (from the sandbox's pebble)."""
    if tls not in TLS_MODES:
        raise OpsError(
            f"--tls {tls!r} is not a sandbox TLS mode. Fix: use one of {', '.join(TLS_MODES)}"
        )


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


def _url_host(address: str) -> str:
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


def key_fingerprint(public_key: str) -> str:
    """Short digest of the login key, stored as a container label to spot a replaced key."""
    return hashlib.sha256(public_key.strip().encode()).hexdigest()[:16]


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


def _loopback_ports(
    container: str, attrs: Mapping[str, Any], wanted: Mapping[str, int]
) -> dict[str, int]:
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
    return HostPorts(**_loopback_ports(container, attrs, HOST_PORTS))


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


def acme_server(container: str, attrs: Mapping[str, Any]) -> AcmeServer:
    """The ACME server as `docker inspect` describes it."""
    ports = _loopback_ports(container, attrs, ACME_PORTS)
    return AcmeServer(
        container, network_address(container, attrs), ports["directory"], ports["management"]
    )


def registry_server(container: str, attrs: Mapping[str, Any]) -> RegistryServer:
    """The registry as `docker inspect` describes it."""
    ports = _loopback_ports(container, attrs, REGISTRY_PORTS)
    return RegistryServer(container, network_address(container, attrs), ports["registry"])


def acme_spare_domain(name: str) -> str:
    """A name pebble also resolves to host 1 but the environment does not list: add it to
    `domains` to rehearse a new domain (its certificate comes with the next deploy)."""
    return f"new.{name}.test"


def acme_extra_hosts(name: str, host_address: str) -> dict[str, str]:
    """The sandbox's domains (and the spare one) -> host 1's address: where pebble validates
    HTTP-01 (port 80)."""
    names = (*acme_domains(name), acme_spare_domain(name))
    return {domain: host_address for domain in names}


def server_options(
    name: str, role: str, image: str, ports: Mapping[str, int], **extra: Any
) -> dict[str, Any]:
    """Arguments of `containers.create` for a server of sandbox `name` that is not a host:
    labelled with the sandbox and its role, on the network, its ports on loopback."""
    cname = role_container_name(name, role)
    return {
        "image": image,
        "name": cname,
        "hostname": cname,
        "detach": True,
        "labels": {LABEL: name, ROLE_LABEL: role},
        "network": NETWORK,
        "ports": {f"{port}/tcp": (LOOPBACK, None) for port in ports.values()},
        "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
        **extra,
    }


def acme_options(name: str, image: str, host_address: str) -> dict[str, Any]:
    """Arguments of `containers.create` for the ACME server of sandbox `name`."""
    return server_options(
        name,
        ACME_ROLE,
        image,
        ACME_PORTS,
        environment=dict(ACME_ENVIRONMENT),
        extra_hosts=acme_extra_hosts(name, host_address),
    )


def registry_options(name: str, image: str) -> dict[str, Any]:
    """Arguments of `containers.create` for the registry of sandbox `name`."""
    return server_options(name, REGISTRY_ROLE, image, REGISTRY_PORTS)


def reuse_problem(attrs: Mapping[str, Any], image: str) -> str:
    """Why a found server container cannot be reused ("" when it can): stopped, other image."""
    state = attrs.get("State") or {}
    if state.get("Status") != "running":
        return f"not running ({state.get('Status') or 'unknown'})"
    if (attrs.get("Config") or {}).get("Image") != image:
        return "runs another image"
    return ""


def acme_reuse_problem(attrs: Mapping[str, Any], image: str, extra_hosts: Mapping[str, str]) -> str:
    """Why a found ACME server cannot be reused ("" when it can): stopped, other image, or
    its names lead to another host 1 (replaced hosts get new addresses)."""
    problem = reuse_problem(attrs, image)
    if problem:
        return problem
    found = sorted((attrs.get("HostConfig") or {}).get("ExtraHosts") or [])
    if found != sorted(f"{domain}:{ip}" for domain, ip in extra_hosts.items()):
        return "its domains point to another host 1"
    return ""


def check_directory(data: object) -> str:
    """An ACME directory (RFC 8555 7.1.1): its newOrder URL; an error naming what is missing."""
    wanted = ("newNonce", "newAccount", "newOrder")
    missing = [key for key in wanted if not isinstance(data, dict) or key not in data]
    if missing:
        raise OpsError(f"the answer is not an ACME directory: no {', '.join(missing)}")
    assert isinstance(data, dict)  # for mypy: checked above
    return str(data["newOrder"])


def check_root(pem: bytes) -> x509.Certificate:
    """pebble's issuing root: a PEM CA certificate (basic constraints CA true)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise OpsError(f"pebble's root is not a CA certificate ({exc})") from exc
    if not constraints.ca:
        raise OpsError("pebble's root is not a CA certificate (basic constraints: CA false)")
    return cert


def certificate_archive(
    cert: bytes, key: bytes, uid: int = ACME_UID, extra: Mapping[str, bytes] | None = None
) -> bytes:
    """A tar of cert.pem (0644), key.pem (0600), the `extra` files (0600), then `ready`, owned
    by `uid`: what the ACME and registry images' entrypoints wait for (`ready` last, so every
    file is whole when it appears)."""
    buffer = io.BytesIO()
    now = time.time()
    entries = [
        ("cert.pem", cert, 0o644),
        ("key.pem", key, 0o600),
        *((name, data, 0o600) for name, data in (extra or {}).items()),
        ("ready", b"", 0o644),
    ]
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.uid = info.gid = uid
            info.mtime = int(now)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def certs_d_archive(host_port: str, ca_pem: bytes) -> bytes:
    """A tar to extract at / on a host: etc/docker/certs.d/<host:port>/ca.crt (0644, root),
    with its directories (0755): how that host's dockerd trusts the registry at host:port."""
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        parts = [*CERTS_D.split("/"), host_port]
        for depth in range(1, len(parts) + 1):
            info = tarfile.TarInfo("/".join(parts[:depth]))
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = now
            archive.addfile(info)
        info = tarfile.TarInfo("/".join([*parts, "ca.crt"]))
        info.size = len(ca_pem)
        info.mode = 0o644
        info.mtime = now
        archive.addfile(info, io.BytesIO(ca_pem))
    return buffer.getvalue()


def htpasswd_line(user: str, password: str, rounds: int = REGISTRY_BCRYPT_ROUNDS) -> str:
    """`user:<bcrypt hash>` (the only hash docker-registry's htpasswd accepts)."""
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode("ascii")
    return f"{user}:{digest}\n"


def htpasswd_accepts(text: str, user: str, password: str) -> bool:
    """True when the htpasswd `text` has an entry for `user` that `password` matches."""
    for line in text.splitlines():
        name, sep, digest = line.strip().partition(":")
        if sep and name == user:
            try:
                return bool(bcrypt.checkpw(password.encode(), digest.encode()))
            except ValueError:
                return False
    return False


def generated_credentials(name: str) -> secrets.RegistryCredentials:
    """A new user (<name>-<random>) and password for the sandbox's registry."""
    return secrets.RegistryCredentials(f"{name}-{token.token_hex(4)}", token.token_urlsafe(32))


def known_hosts_lines(port: int, host_keys: str) -> list[str]:
    """known_hosts lines for a host reached at 127.0.0.1:<port>, from its ssh_host_*.pub."""
    lines = []
    for raw in host_keys.splitlines():
        fields = raw.split()
        if len(fields) >= 2 and fields[0].startswith(("ssh-", "ecdsa-")):
            lines.append(f"[{LOOPBACK}]:{port} {fields[0]} {fields[1]}")
    if not lines:
        raise OpsError(f"no SSH host key found on the host at {LOOPBACK}:{port}")
    return lines


def environment_yaml(
    files: SandboxFiles,
    hosts: Sequence[HostPorts],
    listings_env: str,
    count: int,
    acme_directory: str = "",
    registry: config.Registry | None = None,
    swarm_addresses: Sequence[str] = (),
) -> str:
    """environments/<name>.yaml for the hosts (format: docs/architecture.md, target: ssh).

    With `acme_directory` (pebble's, on the sandbox network) the environment is tls: acme for
    app.<name>.test and www.<name>.test, reached from this machine through host 1's https port.
    With `registry` (the sandbox's registry) images ship through it: pushed to its loopback
    port here, pulled from its address on the network there. With several hosts, each one's
    `swarm_address` (from `swarm_addresses`, their addresses on the sandbox network): the
    environment deploys with Docker Swarm.
    """
    name = files.name
    flags = f" --tls {ACME_ROLE}" if acme_directory else ""
    flags += " --registry" if registry is not None else ""
    lines = [
        f"{MARKER} --name {name} --hosts {count}{flags}`.",
        f"# Disposable hosts on this machine; `invoke sandbox.down --name {name}` deletes them",
        "# and this file. Edits are lost: every sandbox.up writes it again.",
        f"name: {name}",
        "target: ssh",
        "hosts:",
    ]
    for index, ports in enumerate(hosts):
        lines += [
            f"  - ssh: {REMOTE_USER}@{LOOPBACK}:{ports.ssh}",
            f"    identity: {files.relative(files.private_key)}",
            f"    known_hosts: {files.relative(files.known_hosts)}",
        ]
        if len(hosts) > 1 and index < len(swarm_addresses):
            lines.append(f"    swarm_address: {swarm_addresses[index]}")
    if acme_directory:
        domains = acme_domains(name)
        lines += [
            f"domains: [{', '.join(domains)}]",
            "tls: acme",
            "acme:",
            f"  email: {acme_email(name)}",
            f"  directory: {acme_directory}",
            f"  server_ca: {files.relative(files.acme_server_ca)}",
            f"ca_file: {files.relative(files.acme_roots)}",
        ]
    else:
        lines += ["domains: [localhost]", "tls: local-ca"]
    lines += [
        "bind: 0.0.0.0",
        f"ports: {{http: {HOST_PORTS['http']}, https: {HOST_PORTS['https']}}}",
    ]
    if acme_directory:
        lines += [
            f"public_url: https://{acme_domains(name)[0]}",
            f"connect_to: {LOOPBACK}:{hosts[0].https}",
        ]
    else:
        lines += [f"public_url: https://localhost:{hosts[0].https}"]
    if registry is not None:
        lines += [f"registry: {{push: {registry.push}, pull: {registry.pull}}}"]
    lines += [
        f"listings_env: {listings_env}",
        "replicas: {api: 2, worker: 1}",
        "deploy:",
        f"  remote_dir: {REMOTE_ROOT}/{name}",
    ]
    return "\n".join(lines) + "\n"


def written_by_sandbox(path: Path) -> bool:
    """True when `path` is an environment file sandbox.up wrote."""
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.readline().startswith(MARKER)
    except FileNotFoundError:
        return False


def image_tag(root: Path, inputs: Sequence[str] = BUILD_INPUTS) -> str:
    """`c.<12 hex>`: digest of the image's build inputs (names, exec bits, contents; not docs).

    BUILD_INPUTS for the hosts' image, ACME_BUILD_INPUTS for the ACME server's."""
    digest = hashlib.sha256()
    for top in inputs:
        base = root / top
        if not base.exists():
            raise OpsError(f"{base} is missing: the sandbox image is built from it")
        found = sorted(base.rglob("*")) if base.is_dir() else [base]
        # Documentation is not copied into the image: editing it must not force a rebuild.
        files = [p for p in found if p.is_file() and p.suffix != ".md"]
        for path in files:
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(oct(path.stat().st_mode & 0o111).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return f"c.{digest.hexdigest()[:12]}"


def build_invocation(
    root: Path, tag: str, build: compose.Build, service: str = BUILD_SERVICE
) -> compose.Invocation:
    """`docker compose -p slipway-sandbox -f compose/sandbox.yaml build <service>` and its
    environment (sandbox-host, or sandbox-acme for the ACME server)."""
    env = dict(os.environ)
    env.pop("COMPOSE_FILE", None)
    env.update(
        {TAG_VARIABLES[service]: tag},
        SLIPWAY_GIT_SHA=build.git_sha,
        SLIPWAY_BUILD_CA=str(build.ca_bundle),
    )
    argv = ["docker", "compose", "-p", BUILD_PROJECT, "-f", str(root / BUILD_FILE)]
    return compose.Invocation([*argv, "build", service], env)


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


# ------------------------------------------------------------------------- engine and files


def write_file(path: Path, text: str, mode: int) -> None:
    """Write `text` to `path` atomically (temporary file, then rename) with `mode`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    tmp.chmod(mode)
    tmp.replace(path)


def ensure_key(files: SandboxFiles) -> bool:
    """The login key pair (ed25519, private 0600 in a 0700 directory); True when created."""
    paths.ensure_state_dir()
    files.key_dir.mkdir(parents=True, exist_ok=True)
    files.key_dir.chmod(0o700)
    if files.private_key.is_file() and files.public_key.is_file():
        files.private_key.chmod(0o600)
        return False
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    write_file(files.private_key, private, 0o600)
    write_file(files.public_key, f"{public.decode()} slipway-sandbox-{files.name}\n", 0o644)
    return True


def sandbox_containers(engine: docker.DockerClient, name: str) -> list[Any]:
    """Every container (running or not) labelled as a host of sandbox `name`."""
    found: list[Any] = engine.containers.list(all=True, filters={"label": f"{LABEL}={name}"})
    return found


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


def _check_role_name(engine: docker.DockerClient, name: str, role: str) -> None:
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


def start_host(
    engine: docker.DockerClient, name: str, index: int, image: str, public_key: str
) -> Any:
    """Create and start host <index>; ports the engine picks on 127.0.0.1, retried if taken."""
    cname = container_name(name, index)
    return _create_started(
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


def _create_started(engine: docker.DockerClient, image: str, **options: Any) -> Any:
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


def start_acme(engine: docker.DockerClient, name: str, image: str, host_address: str) -> Any:
    """Create and start the ACME server of sandbox `name` (it then waits for its certificate)."""
    options = acme_options(name, image, host_address)
    return _create_started(engine, options.pop("image"), **options)


def start_registry(engine: docker.DockerClient, name: str, image: str) -> Any:
    """Create and start the registry of sandbox `name` (it then waits for its files)."""
    options = registry_options(name, image)
    return _create_started(engine, options.pop("image"), **options)


def start_or_reuse(
    engine: docker.DockerClient,
    cname: str,
    problem_of: Callable[[Any], str],
    start: Callable[[], Any],
) -> tuple[Any, bool]:
    """(container, reused): the container `cname` when `problem_of` finds nothing against it,
    else a new one from `start` (the old one removed first, saying why)."""
    try:
        found = engine.containers.get(cname)
    except NotFound:
        found = None
    if found is not None:
        problem = problem_of(found)
        if not problem:
            return found, True
        print(f"    replacing {cname}: {problem}", flush=True)
        _remove_container(engine, cname)
    return start(), False


def ensure_server_certificate(directory: Path, label: str, names: Sequence[str]) -> certs.Result:
    """A server's HTTPS certificate for `names` (and 127.0.0.1, where this machine reaches it)
    from the CA kept in `directory`. Keys stay 0600 in the 0700 key directory: only the leaf
    key goes into the container."""
    result = certs.ensure(directory, label, names)
    result.paths.tls_key.chmod(0o600)
    return result


def ensure_acme_certificate(files: SandboxFiles, address: str) -> certs.Result:
    """pebble's HTTPS certificate for its network address, from the sandbox's ACME server CA;
    the CA also as acme-server-ca.pem (the environment's acme.server_ca)."""
    name = files.name
    result = ensure_server_certificate(
        files.acme_server_dir, f"sandbox-{name} ACME server", [address, acme_container_name(name)]
    )
    ca_pem = result.paths.ca_crt.read_text(encoding="ascii")
    if not files.acme_server_ca.is_file() or files.acme_server_ca.read_text("ascii") != ca_pem:
        write_file(files.acme_server_ca, ca_pem, 0o644)
    return result


def ensure_registry_certificate(files: SandboxFiles, address: str) -> certs.Result:
    """The registry's HTTPS certificate for its network address and container name, from the
    sandbox's registry CA (files.registry_ca, which the hosts' engines trust)."""
    name = files.name
    return ensure_server_certificate(
        files.registry_dir, f"sandbox-{name} registry", [address, registry_container_name(name)]
    )


def install_files(container: Any, directory: str, archive: bytes) -> None:
    """Extract `archive` into `directory` of a container (the certificate of a waiting server)."""
    try:
        done = container.put_archive(directory, archive)
    except DockerException as exc:
        raise OpsError(f"cannot put the certificate into {container.name}: {exc}") from exc
    if not done:
        raise OpsError(f"cannot put the certificate into {container.name}:{directory}")


def install_acme_certificate(container: Any, paths: certs.CertPaths) -> None:
    """Put cert.pem and key.pem (owned by pebble's uid) into the waiting ACME server."""
    archive = certificate_archive(paths.tls_crt.read_bytes(), paths.tls_key.read_bytes())
    install_files(container, ACME_TLS_DIR, archive)


def install_registry_files(
    container: Any, paths: certs.CertPaths, credentials: secrets.RegistryCredentials
) -> None:
    """Put cert.pem, key.pem and htpasswd (owned by the registry's uid) into the waiting
    registry."""
    htpasswd = htpasswd_line(credentials.user, credentials.password).encode()
    archive = certificate_archive(
        paths.tls_crt.read_bytes(),
        paths.tls_key.read_bytes(),
        REGISTRY_UID,
        {"htpasswd": htpasswd},
    )
    install_files(container, REGISTRY_TLS_DIR, archive)


def registry_files_problem(
    container: Any, paths: certs.CertPaths, credentials: secrets.RegistryCredentials
) -> str:
    """Why the files inside a running registry are not the ones wanted now ("" when they are):
    another certificate, or an htpasswd that does not accept the credentials."""
    inside = read_container_file(container, f"{REGISTRY_TLS_DIR}/cert.pem")
    if inside != paths.tls_crt.read_text(encoding="ascii"):
        return "its certificate is not the one made for it now"
    htpasswd = read_container_file(container, f"{REGISTRY_TLS_DIR}/htpasswd")
    if not htpasswd_accepts(htpasswd, credentials.user, credentials.password):
        return f"its htpasswd does not accept the credentials in {secrets.REGISTRY_USER}"
    return ""


def ensure_registry_credentials(files: SandboxFiles) -> tuple[secrets.RegistryCredentials, str]:
    """The registry's user and password from .env.<name> (the file only: the registry is the
    sandbox's), generated once and written there when missing; (credentials, what happened)."""
    values = secrets.read_file(files.secrets)
    user = values.get(secrets.REGISTRY_USER, "")
    password = values.get(secrets.REGISTRY_PASSWORD, "")
    if user and password:
        return secrets.RegistryCredentials(user, password, str(files.secrets)), "present"
    made = generated_credentials(files.name)
    secrets.set_values(
        files.secrets,
        {secrets.REGISTRY_USER: made.user, secrets.REGISTRY_PASSWORD: made.password},
    )
    return secrets.RegistryCredentials(made.user, made.password, str(files.secrets)), "generated"


def trust_registry(hosts: Sequence[Any], server: RegistryServer, ca_pem: bytes) -> None:
    """Put the registry's CA into every host's /etc/docker/certs.d/<address>:5000/ca.crt."""
    archive = certs_d_archive(server.host_port, ca_pem)
    for container in hosts:
        try:
            done = container.put_archive("/", archive)
        except DockerException as exc:
            raise OpsError(f"cannot put the registry's CA into {container.name}: {exc}") from exc
        if not done:
            raise OpsError(f"cannot put the registry's CA into {container.name}:/{CERTS_D}")


def https_get(url: str, ca_file: Path, timeout: float = 5.0) -> bytes:
    """GET an https URL on this machine, verified with `ca_file` only."""
    context = ssl.create_default_context(cafile=str(ca_file))
    if not url.startswith("https://"):
        raise OpsError(f"internal: {url} is not an https URL")
    # https only (checked above), verified with ca_file.
    with urllib.request.urlopen(url, context=context, timeout=timeout) as answer:  # noqa: S310  # nosec B310
        body: bytes = answer.read()
    return body


def https_status(
    url: str, ca_file: Path, auth: secrets.RegistryCredentials | None = None, timeout: float = 5.0
) -> int:
    """The HTTP status of a GET of an https URL on this machine, verified with `ca_file` only,
    with HTTP basic auth when `auth` is given."""
    if not url.startswith("https://"):
        raise OpsError(f"internal: {url} is not an https URL")
    context = ssl.create_default_context(cafile=str(ca_file))
    request = urllib.request.Request(url)  # noqa: S310  # nosec B310 - https only (above)
    if auth is not None:
        basic = base64.b64encode(f"{auth.user}:{auth.password}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {basic}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as answer:  # noqa: S310  # nosec B310
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def wait_answer(
    container: Any, url: str, ca_file: Path, timeout: float, probe: Callable[[], str]
) -> str:
    """Wait until `probe` (a request to `url`, verified with `ca_file`) stops failing with
    OSError/ValueError; its note and the seconds it took. A certificate that does not verify,
    a stopped container or the timeout fail with the container's log printed."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    last = "no answer yet"
    while True:
        try:
            note = probe()
        except (OSError, ValueError) as exc:  # refused, reset, not JSON yet: try again
            # urllib wraps TLS errors; a certificate that does not verify will not get better.
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise _server_failed(
                    container,
                    f"{url} presents a certificate {ca_file.name} does not verify "
                    f"({reason.verify_message})",
                ) from exc
            last = f"{type(exc).__name__}: {exc}"
        else:
            return f"{note} after {time.monotonic() - started:.1f}s"
        container.reload()
        if container.status != "running":
            raise _server_failed(container, f"{container.name} stopped ({container.status})")
        if time.monotonic() > deadline:
            raise _server_failed(container, f"{url} did not answer within {timeout:.0f}s ({last})")
        time.sleep(0.5)


def wait_acme_directory(container: Any, server: AcmeServer, ca_file: Path, timeout: float) -> str:
    """Wait until pebble's directory answers through 127.0.0.1, verified with `ca_file`."""

    def probe() -> str:
        check_directory(json.loads(https_get(server.local_directory, ca_file)))
        return "directory answers"

    return wait_answer(container, server.local_directory, ca_file, timeout, probe)


class _NotYet(OSError):
    """The registry answered, but not yet as a registry (try again)."""


def wait_registry(
    container: Any,
    server: RegistryServer,
    ca_file: Path,
    credentials: secrets.RegistryCredentials,
    timeout: float,
) -> str:
    """Wait until the registry answers through 127.0.0.1 over TLS verified with `ca_file`:
    401 without credentials (authentication is on), 200 with them."""
    url = server.local_url

    def probe() -> str:
        anonymous = https_status(url, ca_file)
        if anonymous == 200:
            raise _server_failed(container, f"{url} answers without credentials: auth is off")
        if anonymous != 401:
            raise _NotYet(f"HTTP {anonymous} without credentials")
        with_login = https_status(url, ca_file, credentials)
        if with_login != 200:
            raise _server_failed(
                container,
                f"{url} answers HTTP {with_login} with {secrets.REGISTRY_USER} and "
                f"{secrets.REGISTRY_PASSWORD}: its htpasswd does not accept them",
            )
        return "TLS verified, 401 without credentials, 200 with them"

    return wait_answer(container, url, ca_file, timeout, probe)


def _server_failed(container: Any, problem: str, lines: int = 30) -> OpsError:
    try:
        logs = container.logs(tail=lines).decode(errors="replace").rstrip()
    except DockerException as exc:
        logs = f"(cannot read it: {exc})"
    print(f"--- {container.name}: container log (last {lines} lines)\n{logs or '(empty)'}")
    labels = container.labels or {}
    up_command = " ".join(["invoke sandbox.up", ROLE_FLAGS.get(role_of(container), "")]).strip()
    return OpsError(
        f"{problem}; its log is above. Fix: `invoke sandbox.down --name "
        f"{labels.get(LABEL, DEFAULT_NAME)} --yes`, then `{up_command}` "
        "again (a new server and certificate)"
    )


def fetch_acme_roots(server: AcmeServer, files: SandboxFiles) -> x509.Certificate:
    """pebble's issuing root (a new one at every pebble start) into acme-roots.pem."""
    try:
        pem = https_get(server.local_roots, files.acme_server_ca, timeout=10.0)
    except (OSError, ValueError) as exc:
        raise OpsError(
            f"cannot fetch pebble's root from {server.local_roots} ({exc}). Fix: "
            f"`docker logs {server.container}`, then `invoke sandbox.up --tls=acme` again"
        ) from exc
    root = check_root(pem)
    write_file(files.acme_roots, pem.decode("ascii"), 0o644)
    return root


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


def ssh_run(files: SandboxFiles, port: int, command: str, timeout: float = 30.0) -> str:
    """Run `command` as deploy on the host at 127.0.0.1:<port>, host key checked; its stdout."""
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
        # The commands are this module's own constants, not input.
        _, stdout, stderr = client.exec_command(command, timeout=timeout)  # nosec B601
        out = str(stdout.read().decode(errors="replace"))
        code = stdout.channel.recv_exit_status()
        if code != 0:
            err = stderr.read().decode(errors="replace").strip()
            raise OpsError(f"`{command}` on {LOOPBACK}:{port} exited {code}: {err[-500:]}")
        return out.strip()
    except (paramiko.SSHException, OSError) as exc:
        raise OpsError(
            f"cannot log in as {REMOTE_USER}@{LOOPBACK}:{port} with {files.private_key} "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        client.close()


# ---------------------------------------------------------------------------------------- up


@dataclass
class _Sandbox:
    """State of one `up` run, filled in as the steps progress."""

    files: SandboxFiles
    count: int
    listings_env: str
    tls: str = DEFAULT_TLS
    with_registry: bool = False
    engine: docker.DockerClient | None = None
    tag: str = ""
    plan: HostPlan = field(default_factory=lambda: HostPlan((), ()))
    build_needed: bool = False
    public_key: str = ""
    hosts: dict[int, Any] = field(default_factory=dict)
    ports: dict[int, HostPorts] = field(default_factory=dict)
    acme_tag: str = ""
    acme_build_needed: bool = False
    acme_container: Any = None
    acme: AcmeServer | None = None
    host_address: str = ""  # host 1's address on the network (where the domains resolve)
    registry_tag: str = ""
    registry_build_needed: bool = False
    registry_container: Any = None
    registry: RegistryServer | None = None
    registry_credentials: secrets.RegistryCredentials | None = None

    @property
    def image(self) -> str:
        return f"{IMAGE}:{self.tag}"

    @property
    def acme_image(self) -> str:
        return f"{ACME_IMAGE}:{self.acme_tag}"

    @property
    def registry_image(self) -> str:
        return f"{REGISTRY_IMAGE}:{self.registry_tag}"

    @property
    def with_acme(self) -> bool:
        return self.tls == ACME_ROLE

    @property
    def roles(self) -> tuple[str, ...]:
        """The servers besides the hosts this run wants."""
        return tuple(
            role
            for role, wanted in ((ACME_ROLE, self.with_acme), (REGISTRY_ROLE, self.with_registry))
            if wanted
        )

    def docker(self) -> docker.DockerClient:
        if self.engine is None:
            self.engine = docker_engine.client()
        return self.engine

    def current(self) -> list[Any]:
        return [self.hosts[i] for i in sorted(self.hosts)]


def _build_server_image(box: _Sandbox, service: str, image: str, flag: str) -> str:
    """Build the image of a server (ACME, registry) through compose/sandbox.yaml."""
    files = box.files
    tag = image.rsplit(":", 1)[1]
    inv = build_invocation(files.root, tag, compose.detect_build(), service)
    proc.run(inv.argv, env=inv.env, cwd=files.root, what="docker compose build")
    # compose 2.40 with engine 20.10 may exit 0 after a failed build: trust the image only.
    if not images.has_image(box.docker(), image):
        raise OpsError(
            f"the build did not produce {image}: see the BuildKit output above. "
            f"Fix services/{service}/Dockerfile, then `invoke sandbox.up {flag}` again"
        )
    return f"built {image}"


def up(
    name: str = DEFAULT_NAME,
    hosts: int = 1,
    listings_env: str = "",
    timeout: float = 120.0,
    dry_run: bool = False,
    runner: Runner | None = None,
    tls: str = DEFAULT_TLS,
    registry: bool = False,
) -> Report:
    """Start (or reuse) `hosts` sandbox hosts and write the environment `name` that targets them.

    tls `acme` also starts (or reuses) the sandbox's ACME server and writes a tls: acme
    environment for app.<name>.test and www.<name>.test. `registry` also starts (or reuses) the
    sandbox's registry, makes every host trust it and writes its `registry:` addresses."""
    check_name(name)
    check_count(hosts)
    check_tls(tls)
    box = _Sandbox(
        SandboxFiles.of(name), hosts, listings_env_for(name, listings_env), tls, registry
    )
    files = box.files
    acme_name = acme_container_name(name)
    registry_name = registry_container_name(name)

    def check_docker() -> str:
        check_local_engine(os.environ)
        return docker_engine.check()

    def check_files() -> str:
        env_file = files.environment
        if env_file.exists() and not written_by_sandbox(env_file):
            raise OpsError(
                f"{env_file} exists and was not written by `invoke sandbox.up`, which would "
                f"replace it. Fix: choose another --name, or move that file away"
            )
        return f"{env_file} " + ("(a sandbox's: rewritten)" if env_file.exists() else "(new)")

    def plan() -> str:
        engine = box.docker()
        box.tag = image_tag(files.root)
        public = files.public_key.read_text(encoding="utf-8") if files.public_key.is_file() else ""
        containers = sandbox_containers(engine, name)
        found = existing_hosts([c for c in containers if not role_of(c)], key_fingerprint(public))
        box.plan = plan_hosts(hosts, found)
        unwanted = [
            (c.name, _UNWANTED.get(role_of(c), f"{role_of(c)}: not asked for"))
            for c in containers
            if role_of(c) and role_of(c) not in box.roles
        ]
        if unwanted:
            box.plan = HostPlan(box.plan.keep, box.plan.create, (*box.plan.remove, *unwanted))
        box.build_needed = bool(box.plan.create) and not images.has_image(engine, box.image)
        for role in box.roles:
            _check_role_name(engine, name, role)
        server_lines = []
        if box.with_acme:
            box.acme_tag = image_tag(files.root, ACME_BUILD_INPUTS)
            box.acme_build_needed = not images.has_image(engine, box.acme_image)
            running = any(is_acme(c) for c in containers)
            server_lines.append(
                f"ACME server {acme_name} (image {box.acme_image}: "
                + ("will be built" if box.acme_build_needed else "present")
                + "): "
                + ("reused when it runs that image for host 1" if running else "will be started")
            )
        if box.with_registry:
            box.registry_tag = image_tag(files.root, REGISTRY_BUILD_INPUTS)
            box.registry_build_needed = not images.has_image(engine, box.registry_image)
            running = any(is_registry(c) for c in containers)
            server_lines.append(
                f"registry {registry_name} (image {box.registry_image}: "
                + ("will be built" if box.registry_build_needed else "present")
                + "): "
                + (
                    "reused when it runs that image with its certificate and credentials"
                    if running
                    else "will be started"
                )
                + f"; its CA into every host's /{CERTS_D}/<address>:{REGISTRY_PORT}/ca.crt"
            )
        for image, needed in (
            (box.image, box.build_needed),
            (box.acme_image, box.acme_build_needed),
            (box.registry_image, box.registry_build_needed),
        ):
            if needed and not images.has_image(engine, images.BASE_IMAGE):
                raise OpsError(
                    f"{image} must be built and its base {images.BASE_IMAGE} is missing. "
                    "Fix: run `invoke images.base`, then `invoke sandbox.up` again"
                )
        if box.build_needed:
            image = "will be built"
        elif box.plan.create:
            image = "present"
        else:
            image = "not needed (every host is kept)"
        removals = [f"{c} ({why})" for c, why in box.plan.remove]
        lines = [
            f"image {box.image}: {image}",
            "keep: " + (", ".join(hostname(name, i) for i in box.plan.keep) or "none"),
            "start: " + (", ".join(hostname(name, i) for i in box.plan.create) or "none"),
            "remove: " + (", ".join(removals) or "none"),
            *server_lines,
            f"login key {files.relative(files.private_key)}: "
            + ("present" if public else "will be generated"),
            f"write {files.environment} (tls {box.tls}, listings_env {box.listings_env}"
            + (", registry" if box.with_registry else "")
            + f") and {files.relative(files.secrets)}",
        ]
        for line in lines:
            print(f"    plan: {line}", flush=True)
        return f"keep {len(box.plan.keep)}, start {len(box.plan.create)}"

    def build_image() -> str:
        if not box.build_needed:
            return "skipped: not needed"
        inv = build_invocation(files.root, box.tag, compose.detect_build())
        proc.run(inv.argv, env=inv.env, cwd=files.root, what="docker compose build")
        # compose 2.40 with engine 20.10 may exit 0 after a failed build: trust the image only.
        if not images.has_image(box.docker(), box.image):
            raise OpsError(
                f"the build did not produce {box.image}: see the BuildKit output above. "
                f"Fix services/sandbox-host/Dockerfile, then `invoke sandbox.up` again"
            )
        return f"built {box.image}"

    def build_acme_image() -> str:
        if not box.acme_build_needed:
            return "skipped: present"
        return _build_server_image(box, ACME_SERVICE, box.acme_image, ROLE_FLAGS[ACME_ROLE])

    def build_registry_image() -> str:
        if not box.registry_build_needed:
            return "skipped: present"
        return _build_server_image(
            box, REGISTRY_SERVICE, box.registry_image, ROLE_FLAGS[REGISTRY_ROLE]
        )

    def make_key() -> str:
        created = ensure_key(files)
        box.public_key = files.public_key.read_text(encoding="utf-8")
        return "generated" if created else "present"

    def make_network() -> str:
        engine = box.docker()
        if _networks(engine):
            return "present"
        try:
            # check_duplicate: a sandbox.up running at the same moment may create it too, and
            # two networks of one name make every later `--network` ambiguous.
            engine.networks.create(
                NETWORK, driver="bridge", labels={NETWORK_LABEL: "true"}, check_duplicate=True
            )
        except APIError as exc:
            if exc.status_code != 409 or not _networks(engine):
                raise
            return "present (created at the same moment by another sandbox.up)"
        return "created"

    def remove_hosts() -> str:
        engine = box.docker()
        for cname, _ in box.plan.remove:
            _remove_container(engine, cname)
        if not box.with_acme:
            for path in (files.acme_roots, files.acme_server_ca):
                path.unlink(missing_ok=True)
            shutil.rmtree(files.acme_server_dir, ignore_errors=True)
        if not box.with_registry:
            shutil.rmtree(files.registry_dir, ignore_errors=True)
        return f"removed {len(box.plan.remove)}" if box.plan.remove else "nothing to remove"

    def start_hosts() -> str:
        engine = box.docker()
        for index in box.plan.keep:
            box.hosts[index] = engine.containers.get(container_name(name, index))
        for index in box.plan.create:
            box.hosts[index] = start_host(engine, name, index, box.image, box.public_key)
        reused = [c for i, c in box.hosts.items() if i in box.plan.keep]
        stale = [c.name for c in reused if c.attrs.get("Config", {}).get("Image") != box.image]
        if stale:
            print(
                f"    note: {', '.join(stale)} run(s) an older {IMAGE} and keep(s) it; "
                f"`invoke sandbox.down --name {name}` then `sandbox.up` for the new one",
                flush=True,
            )
        return f"started {len(box.plan.create)}, kept {len(box.plan.keep)}"

    def wait() -> str:
        return wait_healthy(box.current(), timeout)

    def record_host_keys() -> str:
        lines: list[str] = []
        for index, container in sorted(box.hosts.items()):
            container.reload()
            box.ports[index] = published_ports(container.name, container.attrs)
            code, output = container.exec_run(["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"])
            if code != 0:
                raise OpsError(f"cannot read the SSH host keys of {container.name}")
            lines += known_hosts_lines(box.ports[index].ssh, output.decode())
        write_file(files.known_hosts, "\n".join(lines) + "\n", 0o644)
        return f"{len(lines)} key(s) in {files.relative(files.known_hosts)}"

    def start_acme_server() -> str:
        engine = box.docker()
        first = box.hosts[min(box.hosts)]
        first.reload()
        box.host_address = network_address(first.name, first.attrs)
        wanted = acme_extra_hosts(name, box.host_address)
        made: list[certs.Result] = []

        def problem_of(found: Any) -> str:
            problem = acme_reuse_problem(found.attrs, box.acme_image, wanted)
            if problem:
                return problem
            server = acme_server(acme_name, found.attrs)
            result = ensure_acme_certificate(files, server.address)
            inside = read_container_file(found, f"{ACME_TLS_DIR}/cert.pem")
            if inside != result.paths.tls_crt.read_text(encoding="ascii"):
                return "its certificate is not the one made for it now"
            return ""

        def start() -> Any:
            container = start_acme(engine, name, box.acme_image, box.host_address)
            container.reload()
            server = acme_server(acme_name, container.attrs)
            made.append(ensure_acme_certificate(files, server.address))
            install_acme_certificate(container, made[0].paths)
            return container

        container, reused = start_or_reuse(engine, acme_name, problem_of, start)
        box.acme_container, box.acme = container, acme_server(acme_name, container.attrs)
        if reused:
            return f"reused {acme_name} at {box.acme.address}"
        return f"started {acme_name} at {box.acme.address}, certificate: {made[0].reason}"

    def wait_acme() -> str:
        assert box.acme is not None  # set by start_acme_server
        note = wait_acme_directory(box.acme_container, box.acme, files.acme_server_ca, timeout)
        domain = acme_domains(name)[0]
        code, output = box.acme_container.exec_run(["getent", "hosts", domain])
        resolved = output.decode(errors="replace").split()[:1] if code == 0 else []
        if resolved != [box.host_address]:
            raise _server_failed(
                box.acme_container,
                f"{domain} resolves to {resolved[0] if resolved else 'nothing'} inside "
                f"{acme_name}, not to host 1 ({box.host_address})",
            )
        return f"{note}; {domain} -> host 1 ({box.host_address})"

    def fetch_roots() -> str:
        assert box.acme is not None  # set by start_acme_server
        root = fetch_acme_roots(box.acme, files)
        subject = root.subject.rfc4514_string()
        return f"{files.relative(files.acme_roots)}: {subject}"

    def start_registry_server() -> str:
        engine = box.docker()
        credentials, how = ensure_registry_credentials(files)
        box.registry_credentials = credentials
        made: list[certs.Result] = []

        def problem_of(found: Any) -> str:
            problem = reuse_problem(found.attrs, box.registry_image)
            if problem:
                return problem
            server = registry_server(registry_name, found.attrs)
            result = ensure_registry_certificate(files, server.address)
            return registry_files_problem(found, result.paths, credentials)

        def start() -> Any:
            container = start_registry(engine, name, box.registry_image)
            container.reload()
            server = registry_server(registry_name, container.attrs)
            made.append(ensure_registry_certificate(files, server.address))
            install_registry_files(container, made[0].paths, credentials)
            return container

        container, reused = start_or_reuse(engine, registry_name, problem_of, start)
        box.registry_container = container
        box.registry = registry_server(registry_name, container.attrs)
        note = f"credentials {how} in {files.relative(files.secrets)}"
        if reused:
            return f"reused {registry_name} at {box.registry.address}; {note}"
        return (
            f"started {registry_name} at {box.registry.address}, certificate: "
            f"{made[0].reason}; {note}"
        )

    def wait_registry_answers() -> str:
        assert box.registry is not None and box.registry_credentials is not None
        return wait_registry(
            box.registry_container,
            box.registry,
            files.registry_ca,
            box.registry_credentials,
            timeout,
        )

    def trust_registry_on_hosts() -> str:
        assert box.registry is not None  # set by start_registry_server
        trust_registry(box.current(), box.registry, files.registry_ca.read_bytes())
        # Each host's own dockerd proves it: an anonymous pull gets past TLS to the registry's
        # "authentication required" (an untrusted certificate fails before, naming x509).
        probe = f"{box.registry.pull}/sandbox-probe:none"
        for container in box.current():
            code, output = container.exec_run(
                ["docker", "pull", probe], environment={"DOCKER_CONFIG": "/nonexistent"}
            )
            text = output.decode(errors="replace").strip()
            if code == 0 or not any(w in text.lower() for w in ("unauthorized", "no basic auth")):
                raise OpsError(
                    f"{container.name}'s dockerd cannot reach the registry as expected: "
                    f"`docker pull {probe}` said: {text[-400:] or f'exit {code}'}. Fix: "
                    f"`invoke sandbox.down --name {name} --yes`, then `invoke sandbox.up "
                    "--registry` again"
                )
        return (
            f"{len(box.current())} host(s) trust {box.registry.host_port} "
            f"(/{CERTS_D}/{box.registry.host_port}/ca.crt)"
        )

    def write_environment() -> str:
        ports = [box.ports[i] for i in sorted(box.ports)]
        directory = box.acme.directory if box.acme is not None else ""
        addresses = box.registry.addresses if box.registry is not None else None
        swarm = [network_address(box.hosts[i].name, box.hosts[i].attrs) for i in sorted(box.ports)]
        text = environment_yaml(files, ports, box.listings_env, hosts, directory, addresses, swarm)
        write_file(files.environment, text, 0o644)
        generated = secrets.generate_missing(files.secrets)
        note = f"generated {', '.join(generated)}" if generated else "secrets present"
        return f"{files.environment.name} written, {note}"

    def verify() -> str:
        ids: dict[str, int] = {}
        for index in sorted(box.ports):
            port = box.ports[index].ssh
            engine_id = ssh_run(files, port, "docker info --format '{{.ID}}'")
            compose_version = ssh_run(files, port, "docker compose version --short")
            print(
                f"    {hostname(name, index)}: {REMOTE_USER}@{LOOPBACK}:{port} engine "
                f"{engine_id[:14]}, compose {compose_version}",
                flush=True,
            )
            ids[engine_id] = index
        if len(ids) != len(box.ports):
            raise OpsError("two hosts answered with the same engine: the ports are crossed")
        return f"{len(ids)} host(s): SSH, docker and compose work"

    state_hint = (
        f"inspect with `docker ps -a --filter label={LABEL}={name}`, "
        f"remove with `invoke sandbox.down --name {name} --yes`"
    )
    server_builds: list[Step] = []
    server_steps: list[Step] = []
    if box.with_acme:
        server_builds.append(
            Step(
                f"build the {ACME_IMAGE} image",
                build_acme_image,
                impacting=True,
                on_failure="no host was touched; fix the build and run `invoke sandbox.up "
                "--tls=acme` again",
            )
        )
        server_steps += [
            Step(
                f"start (or reuse) the ACME server {acme_name} with its HTTPS certificate",
                start_acme_server,
                impacting=True,
                on_failure=state_hint,
            ),
            Step(
                "wait until the ACME directory answers and the domains lead to host 1",
                wait_acme,
                impacting=True,
                on_failure=state_hint,
            ),
            Step(
                f"fetch pebble's issuing root into {files.relative(files.acme_roots)}",
                fetch_roots,
                impacting=True,
                on_failure=state_hint,
            ),
        ]
    if box.with_registry:
        server_builds.append(
            Step(
                f"build the {REGISTRY_IMAGE} image",
                build_registry_image,
                impacting=True,
                on_failure="no host was touched; fix the build and run `invoke sandbox.up "
                "--registry` again",
            )
        )
        server_steps += [
            Step(
                f"start (or reuse) the registry {registry_name} with its certificate and "
                f"htpasswd (credentials in {files.relative(files.secrets)})",
                start_registry_server,
                impacting=True,
                on_failure=state_hint,
            ),
            Step(
                "wait until the registry answers over TLS and refuses anonymous requests",
                wait_registry_answers,
                impacting=True,
                on_failure=state_hint,
            ),
            Step(
                f"trust the registry's CA on every host (/{CERTS_D}/<address>:"
                f"{REGISTRY_PORT}/ca.crt)",
                trust_registry_on_hosts,
                impacting=True,
                on_failure=state_hint,
            ),
        ]
    steps = [
        Step("check the Docker engine and compose plugin", check_docker),
        Step(f"check the files of sandbox {name}", check_files),
        Step("plan: image, hosts, login key, files", plan),
        Step(
            f"build the {IMAGE} image",
            build_image,
            impacting=True,
            on_failure="no host was touched; fix the build and run `invoke sandbox.up` again",
        ),
        *server_builds,
        Step(f"ensure the login key {files.relative(files.private_key)}", make_key, impacting=True),
        Step(f"ensure the network {NETWORK}", make_network, impacting=True),
        Step("remove unwanted hosts", remove_hosts, impacting=True, on_failure=state_hint),
        Step("start the missing hosts", start_hosts, impacting=True, on_failure=state_hint),
        Step(
            "wait until every host's dockerd and sshd answer",
            wait,
            impacting=True,
            on_failure=state_hint,
        ),
        Step(
            "record the hosts' SSH host keys",
            record_host_keys,
            impacting=True,
            on_failure=state_hint,
        ),
        *server_steps,
        Step(
            f"write {files.environment.name} and {files.secrets.name}",
            write_environment,
            impacting=True,
            on_failure=state_hint,
        ),
        Step(
            "log in over SSH as deploy: docker and compose on every host",
            verify,
            impacting=True,
            on_failure=state_hint,
        ),
    ]
    title = f"invoke sandbox.up --name {name} --hosts {hosts}"
    title += f" --tls {tls}" if box.with_acme else ""
    title += " --registry" if box.with_registry else ""
    runner = runner or Runner(title)
    report = runner.run(steps, dry_run=dry_run)
    if dry_run:
        print("dry run: stopped before the impacting steps, nothing was changed")
    else:
        print_access(box)
    return report


def print_access(box: _Sandbox) -> None:
    """How to reach the hosts and what to do next."""
    files = box.files
    name = files.name
    key = files.relative(files.private_key)
    known = files.relative(files.known_hosts)
    print()
    print(f"Sandbox {name} is up: {len(box.ports)} host(s) on the Docker network {NETWORK}")
    for index in sorted(box.ports):
        ports = box.ports[index]
        print(
            f"  {hostname(name, index):<{len(name) + 3}} "
            f"ssh -i {key} -o UserKnownHostsFile={known} -p {ports.ssh} {REMOTE_USER}@{LOOPBACK}"
            f"    (http :{ports.http}, https :{ports.https})"
        )
    print(
        f"  environment  {files.environment} (target: ssh, tls: {box.tls}, "
        f"listings_env {box.listings_env})"
    )
    print(f"  secrets      {files.relative(files.secrets)}")
    first = box.ports[min(box.ports)]
    if box.acme is None:
        print(f"  public URL   https://localhost:{first.https} (once a deploy runs there)")
    else:
        acme = box.acme
        domain = acme_domains(name)[0]
        roots = files.relative(files.acme_roots)
        print(
            f"  ACME server  {acme.container}: directory {acme.directory} (from the hosts), "
            f"{acme.local_directory} (from here; verify with "
            f"{files.relative(files.acme_server_ca)})"
        )
        print(f"  ACME roots   {roots} (pebble's issuing root, new at every start: ca_file)")
        print(
            f"  public URL   https://{domain} through {LOOPBACK}:{first.https} (once a deploy runs "
            f"there): curl --cacert {roots} --connect-to {domain}:443:{LOOPBACK}:{first.https} "
            f"https://{domain}/"
        )
    if box.registry is not None:
        reg = box.registry
        print(
            f"  registry     {reg.container}: push {reg.push} (from here), pull {reg.pull} "
            f"(from the hosts, CA {files.relative(files.registry_ca)} in their certs.d); "
            f"{secrets.REGISTRY_USER}/{secrets.REGISTRY_PASSWORD} in "
            f"{files.relative(files.secrets)}"
        )
    print(f"  remove       invoke sandbox.down --name {name}")


# -------------------------------------------------------------------------------------- down


def _remove_container(engine: docker.DockerClient, cname: str) -> None:
    try:
        engine.containers.get(cname).remove(force=True, v=True)
    except NotFound:
        return
    if os.environ.get("DOCKER_HOST", "unix://").startswith("unix://"):
        remove_cgroups(CGROUP_ROOT, cname)


def _networks(engine: docker.DockerClient) -> list[Any]:
    # The engine's name filter also matches longer names (slipway-sandbox-old): compare exactly.
    return [n for n in engine.networks.list(names=[NETWORK]) if n.name == NETWORK]


def _remove_network_if_unused(engine: docker.DockerClient) -> bool:
    if engine.containers.list(all=True, filters={"label": LABEL}):
        return False
    removed = False
    for network in _networks(engine):
        network.reload()
        if not network.attrs.get("Containers"):
            network.remove()
            removed = True
    return removed


def down(name: str = DEFAULT_NAME, yes: bool = False) -> None:
    """Remove sandbox `name`: its hosts (engines and images with them), its ACME server and
    registry (the images pushed there with it), files, and the network when no sandbox uses it
    any more. A sandbox that does not exist is reported, not an error."""
    check_name(name)
    files = SandboxFiles.of(name)
    engine = docker_engine.client()
    containers = sandbox_containers(engine, name)
    ours = written_by_sandbox(files.environment)
    exists = bool(containers) or ours or files.key_dir.exists()
    doomed = [files.environment] if ours else []
    # .env.<name> is the sandbox's unless environments/<name>.yaml is someone else's file.
    if exists and files.secrets.exists() and (ours or not files.environment.exists()):
        doomed.append(files.secrets)
    if files.key_dir.exists():
        doomed.append(files.key_dir)
    if not containers and not doomed:
        print(f"sandbox {name} does not exist: no host labelled {LABEL}={name}, no files")
        return
    if files.environment.exists() and not ours:
        print(f"note: {files.environment} was not written by sandbox.up: it is kept")
    servers = [c for c in containers if role_of(c)]
    what = (
        f"sandbox {name}: {len(containers) - len(servers)} host(s) with everything deployed on them"
    )
    for server in servers:
        what += f", its {ROLE_NAMES.get(role_of(server), role_of(server))} {server.name}"
    if doomed:
        what += f", and {', '.join(_shown(files, p) for p in doomed)}"
    confirm_destroy(what, yes)
    for container in containers:
        print(f"removing {container.name}", flush=True)
        _remove_container(engine, container.name)
    left = sandbox_containers(engine, name)
    if left:
        raise OpsError(
            f"{', '.join(c.name for c in left)} still exist(s). Fix: `docker rm -f` them, "
            f"then `invoke sandbox.down --name {name}` again"
        )
    if _remove_network_if_unused(engine):
        print(f"removed the network {NETWORK} (no sandbox uses it)")
    for path in doomed:
        print(f"deleting {_shown(files, path)}", flush=True)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    print(f"sandbox {name} is gone")


def _shown(files: SandboxFiles, path: Path) -> str:
    try:
        return files.relative(path)
    except ValueError:
        return str(path)
