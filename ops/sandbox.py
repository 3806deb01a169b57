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
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import os
import re
import shutil
import ssl
import tarfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import paramiko
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from docker.errors import APIError, DockerException, NotFound

from ops import certs, compose, config, docker_engine, images, paths, proc, secrets
from ops.errors import OpsError
from ops.stack import confirm_destroy
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
# compose/sandbox.yaml's variable holding each service's tag.
TAG_VARIABLES = {BUILD_SERVICE: "SLIPWAY_SANDBOX_TAG", ACME_SERVICE: "SLIPWAY_SANDBOX_ACME_TAG"}
# Role of a sandbox container that is not a host; hosts have none.
ROLE_LABEL = "org.slipway.sandbox.role"
ACME_ROLE = "acme"
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


def acme_container_name(name: str) -> str:
    """<name>-acme: the sandbox's ACME test server."""
    return f"{name}-acme"


def acme_domains(name: str) -> tuple[str, str]:
    """The domains of a --tls=acme sandbox: app.<name>.test and www.<name>.test (RFC 2606)."""
    return (f"app.{name}.test", f"www.{name}.test")


def acme_email(name: str) -> str:
    """The ACME account's contact."""
    return f"ops@{name}.test"


def is_acme(container: Any) -> bool:
    """True for the sandbox's ACME server container (not a host)."""
    return (container.labels or {}).get(ROLE_LABEL) == ACME_ROLE


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


def acme_extra_hosts(name: str, host_address: str) -> dict[str, str]:
    """The sandbox's domains -> host 1's address: where pebble validates HTTP-01 (port 80)."""
    return {domain: host_address for domain in acme_domains(name)}


def acme_options(name: str, image: str, host_address: str) -> dict[str, Any]:
    """Arguments of `containers.create` for the ACME server of sandbox `name`."""
    cname = acme_container_name(name)
    return {
        "image": image,
        "name": cname,
        "hostname": cname,
        "detach": True,
        "labels": {LABEL: name, ROLE_LABEL: ACME_ROLE},
        "environment": dict(ACME_ENVIRONMENT),
        "network": NETWORK,
        "ports": {f"{port}/tcp": (LOOPBACK, None) for port in ACME_PORTS.values()},
        "extra_hosts": acme_extra_hosts(name, host_address),
        "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
    }


def acme_reuse_problem(attrs: Mapping[str, Any], image: str, extra_hosts: Mapping[str, str]) -> str:
    """Why a found ACME server cannot be reused ("" when it can): stopped, other image, or
    its names lead to another host 1 (replaced hosts get new addresses)."""
    state = attrs.get("State") or {}
    if state.get("Status") != "running":
        return f"not running ({state.get('Status') or 'unknown'})"
    if (attrs.get("Config") or {}).get("Image") != image:
        return "runs another image"
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


def certificate_archive(cert: bytes, key: bytes, uid: int = ACME_UID) -> bytes:
    """A tar of cert.pem (0644), key.pem (0600), then `ready`, owned by `uid`: what the ACME
    image's entrypoint waits for (`ready` last, so both files are whole when it appears)."""
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data, mode in (
            ("cert.pem", cert, 0o644),
            ("key.pem", key, 0o600),
            ("ready", b"", 0o644),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.uid = info.gid = uid
            info.mtime = int(now)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


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
) -> str:
    """environments/<name>.yaml for the hosts (format: docs/architecture.md, target: ssh).

    With `acme_directory` (pebble's, on the sandbox network) the environment is tls: acme for
    app.<name>.test and www.<name>.test, reached from this machine through host 1's https port.
    """
    name = files.name
    tls = f" --tls {ACME_ROLE}" if acme_directory else ""
    lines = [
        f"{MARKER} --name {name} --hosts {count}{tls}`.",
        f"# Disposable hosts on this machine; `invoke sandbox.down --name {name}` deletes them",
        "# and this file. Edits are lost: every sandbox.up writes it again.",
        f"name: {name}",
        "target: ssh",
        "hosts:",
    ]
    for ports in hosts:
        lines += [
            f"  - ssh: {REMOTE_USER}@{LOOPBACK}:{ports.ssh}",
            f"    identity: {files.relative(files.private_key)}",
            f"    known_hosts: {files.relative(files.known_hosts)}",
        ]
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


def _check_acme_name(engine: docker.DockerClient, name: str) -> None:
    """<name>-acme, when it exists, must be this sandbox's ACME server: never replace another."""
    cname = acme_container_name(name)
    try:
        found = engine.containers.get(cname)
    except NotFound:
        return
    labels = found.labels or {}
    if labels.get(LABEL) != name or labels.get(ROLE_LABEL) != ACME_ROLE:
        raise OpsError(
            f"a container named {cname} exists and is not the ACME server of sandbox {name} "
            f"(no label {LABEL}={name}, {ROLE_LABEL}={ACME_ROLE}), and sandbox.up would replace "
            f"it. Fix: choose another --name, or remove that container (`docker rm -f {cname}`)"
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


def ensure_acme_certificate(files: SandboxFiles, address: str) -> certs.Result:
    """pebble's HTTPS certificate for its network address (and 127.0.0.1, where this machine
    reaches it), from the sandbox's own CA; the CA also as acme-server-ca.pem. Keys stay 0600
    in the 0700 key directory: only the leaf key goes into the container."""
    name = files.name
    result = certs.ensure(
        files.acme_server_dir, f"sandbox-{name} ACME server", [address, acme_container_name(name)]
    )
    result.paths.tls_key.chmod(0o600)
    ca_pem = result.paths.ca_crt.read_text(encoding="ascii")
    if not files.acme_server_ca.is_file() or files.acme_server_ca.read_text("ascii") != ca_pem:
        write_file(files.acme_server_ca, ca_pem, 0o644)
    return result


def install_acme_certificate(container: Any, paths: certs.CertPaths) -> None:
    """Put cert.pem and key.pem (owned by pebble's uid) into the waiting ACME server."""
    archive = certificate_archive(paths.tls_crt.read_bytes(), paths.tls_key.read_bytes())
    try:
        done = container.put_archive(ACME_TLS_DIR, archive)
    except DockerException as exc:
        raise OpsError(f"cannot put the certificate into {container.name}: {exc}") from exc
    if not done:
        raise OpsError(f"cannot put the certificate into {container.name}:{ACME_TLS_DIR}")


def https_get(url: str, ca_file: Path, timeout: float = 5.0) -> bytes:
    """GET an https URL on this machine, verified with `ca_file` only."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(url, context=context, timeout=timeout) as answer:  # noqa: S310
        body: bytes = answer.read()
    return body


def wait_acme_directory(container: Any, server: AcmeServer, ca_file: Path, timeout: float) -> str:
    """Wait until pebble's directory answers through 127.0.0.1, verified with `ca_file`."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    last = "no answer yet"
    while True:
        try:
            data = json.loads(https_get(server.local_directory, ca_file))
        except (OSError, ValueError) as exc:  # refused, reset, not JSON yet: try again
            # urllib wraps TLS errors; a certificate that does not verify will not get better.
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise _acme_failed(
                    container,
                    f"{server.local_directory} presents a certificate {ca_file.name} does not "
                    f"verify ({reason.verify_message})",
                ) from exc
            last = f"{type(exc).__name__}: {exc}"
        else:
            check_directory(data)
            return f"directory answers after {time.monotonic() - started:.1f}s"
        container.reload()
        if container.status != "running":
            raise _acme_failed(container, f"{container.name} stopped ({container.status})")
        if time.monotonic() > deadline:
            raise _acme_failed(
                container, f"{server.local_directory} did not answer within {timeout:.0f}s ({last})"
            )
        time.sleep(0.5)


def _acme_failed(container: Any, problem: str, lines: int = 30) -> OpsError:
    try:
        logs = container.logs(tail=lines).decode(errors="replace").rstrip()
    except DockerException as exc:
        logs = f"(cannot read it: {exc})"
    print(f"--- {container.name}: container log (last {lines} lines)\n{logs or '(empty)'}")
    return OpsError(
        f"{problem}; its log is above. Fix: `invoke sandbox.down --name "
        f"{container.labels.get(LABEL, DEFAULT_NAME)} --yes`, then `invoke sandbox.up --tls=acme` "
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
        _, stdout, stderr = client.exec_command(command, timeout=timeout)
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

    @property
    def image(self) -> str:
        return f"{IMAGE}:{self.tag}"

    @property
    def acme_image(self) -> str:
        return f"{ACME_IMAGE}:{self.acme_tag}"

    @property
    def with_acme(self) -> bool:
        return self.tls == ACME_ROLE

    def docker(self) -> docker.DockerClient:
        if self.engine is None:
            self.engine = docker_engine.client()
        return self.engine

    def current(self) -> list[Any]:
        return [self.hosts[i] for i in sorted(self.hosts)]


def up(
    name: str = DEFAULT_NAME,
    hosts: int = 1,
    listings_env: str = "",
    timeout: float = 120.0,
    dry_run: bool = False,
    runner: Runner | None = None,
    tls: str = DEFAULT_TLS,
) -> Report:
    """Start (or reuse) `hosts` sandbox hosts and write the environment `name` that targets them.

    tls `acme` also starts (or reuses) the sandbox's ACME server and writes a tls: acme
    environment for app.<name>.test and www.<name>.test."""
    check_name(name)
    check_count(hosts)
    check_tls(tls)
    box = _Sandbox(SandboxFiles.of(name), hosts, listings_env_for(name, listings_env), tls)
    files = box.files
    acme_name = acme_container_name(name)

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
        found = existing_hosts([c for c in containers if not is_acme(c)], key_fingerprint(public))
        box.plan = plan_hosts(hosts, found)
        servers = [c.name for c in containers if is_acme(c)]
        if not box.with_acme and servers:
            why = "ACME server: not used with --tls local-ca"
            box.plan = HostPlan(
                box.plan.keep, box.plan.create, (*box.plan.remove, *((c, why) for c in servers))
            )
        box.build_needed = bool(box.plan.create) and not images.has_image(engine, box.image)
        acme_line = ""
        if box.with_acme:
            _check_acme_name(engine, name)
            box.acme_tag = image_tag(files.root, ACME_BUILD_INPUTS)
            box.acme_build_needed = not images.has_image(engine, box.acme_image)
            acme_line = (
                f"ACME server {acme_name} (image {box.acme_image}: "
                + ("will be built" if box.acme_build_needed else "present")
                + "): "
                + ("reused when it runs that image for host 1" if servers else "will be started")
            )
        for image, needed in (
            (box.image, box.build_needed),
            (box.acme_image, box.acme_build_needed),
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
            f"login key {files.relative(files.private_key)}: "
            + ("present" if public else "will be generated"),
            f"write {files.environment} (tls {box.tls}, listings_env {box.listings_env}) and "
            f"{files.relative(files.secrets)}",
        ]
        if acme_line:
            lines.insert(4, acme_line)
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
        inv = build_invocation(files.root, box.acme_tag, compose.detect_build(), ACME_SERVICE)
        proc.run(inv.argv, env=inv.env, cwd=files.root, what="docker compose build")
        if not images.has_image(box.docker(), box.acme_image):
            raise OpsError(
                f"the build did not produce {box.acme_image}: see the BuildKit output above. "
                "Fix services/sandbox-acme/Dockerfile, then `invoke sandbox.up --tls=acme` again"
            )
        return f"built {box.acme_image}"

    def make_key() -> str:
        created = ensure_key(files)
        box.public_key = files.public_key.read_text(encoding="utf-8")
        return "generated" if created else "present"

    def make_network() -> str:
        engine = box.docker()
        if _networks(engine):
            return "present"
        engine.networks.create(NETWORK, driver="bridge", labels={NETWORK_LABEL: "true"})
        return "created"

    def remove_hosts() -> str:
        engine = box.docker()
        for cname, _ in box.plan.remove:
            _remove_container(engine, cname)
        if not box.with_acme:
            for path in (files.acme_roots, files.acme_server_ca):
                path.unlink(missing_ok=True)
            shutil.rmtree(files.acme_server_dir, ignore_errors=True)
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
        try:
            found = engine.containers.get(acme_name)
        except NotFound:
            found = None
        if found is not None:
            problem = acme_reuse_problem(found.attrs, box.acme_image, wanted)
            if not problem:
                server = acme_server(acme_name, found.attrs)
                result = ensure_acme_certificate(files, server.address)
                inside = read_container_file(found, f"{ACME_TLS_DIR}/cert.pem")
                if inside == result.paths.tls_crt.read_text(encoding="ascii"):
                    box.acme_container, box.acme = found, server
                    return f"reused {acme_name} at {server.address}"
                problem = "its certificate is not the one made for it now"
            print(f"    replacing {acme_name}: {problem}", flush=True)
            _remove_container(engine, acme_name)
        container = start_acme(engine, name, box.acme_image, box.host_address)
        container.reload()
        server = acme_server(acme_name, container.attrs)
        result = ensure_acme_certificate(files, server.address)
        install_acme_certificate(container, result.paths)
        box.acme_container, box.acme = container, server
        return f"started {acme_name} at {server.address}, certificate: {result.reason}"

    def wait_acme() -> str:
        assert box.acme is not None  # set by start_acme_server
        note = wait_acme_directory(box.acme_container, box.acme, files.acme_server_ca, timeout)
        domain = acme_domains(name)[0]
        code, output = box.acme_container.exec_run(["getent", "hosts", domain])
        resolved = output.decode(errors="replace").split()[:1] if code == 0 else []
        if resolved != [box.host_address]:
            raise _acme_failed(
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

    def write_environment() -> str:
        ports = [box.ports[i] for i in sorted(box.ports)]
        directory = box.acme.directory if box.acme is not None else ""
        text = environment_yaml(files, ports, box.listings_env, hosts, directory)
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
    acme_build: list[Step] = []
    acme_steps: list[Step] = []
    if box.with_acme:
        acme_build = [
            Step(
                f"build the {ACME_IMAGE} image",
                build_acme_image,
                impacting=True,
                on_failure="no host was touched; fix the build and run `invoke sandbox.up "
                "--tls=acme` again",
            )
        ]
        acme_steps = [
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
        *acme_build,
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
        *acme_steps,
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
    runner = runner or Runner(title + (f" --tls {tls}" if box.with_acme else ""))
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
    """Remove sandbox `name`: its hosts (engines and images with them), files, and the network
    when no sandbox uses it any more. A sandbox that does not exist is reported, not an error."""
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
    servers = [c.name for c in containers if is_acme(c)]
    what = (
        f"sandbox {name}: {len(containers) - len(servers)} host(s) with everything deployed on them"
    )
    if servers:
        what += f", its ACME server {', '.join(servers)}"
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
