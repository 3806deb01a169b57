"""The files of sandbox `name` on this machine, and how they are written.

environments/<name>.yaml (the ssh environment a deploy reads), .env.<name> (its secrets), and
under .slipway/sandbox-<name>/ (0700): the login key, known_hosts, and the certificate material
of the ACME server and the registry. `sandbox.down` deletes an environment file only when its
first line is MARKER.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ops import certs, config, paths
from ops.errors import OpsError
from ops.sandbox.names import (
    ACME_ROLE,
    HOST_PORTS,
    LOOPBACK,
    REMOTE_ROOT,
    REMOTE_USER,
    acme_domains,
    acme_email,
)
from ops.sandbox.plan import HostPorts

# The first line of every environment file sandbox.up writes; down deletes only such files.
MARKER = "# Written by `invoke sandbox.up"


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
    def deploy_state(self) -> Path:
        """What deploys to the sandbox keep here (paths.env_state_dir: the local CA of its
        certificates, known_hosts when not pinned elsewhere)."""
        return self.root / ".slipway" / self.name

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


def forget_servers(files: SandboxFiles, acme: bool, registry: bool) -> None:
    """Delete what this machine keeps of the ACME server (its CAs, pebble's root) and of the
    registry (its CA and certificate): a run without them removes the servers too."""
    if acme:
        for path in (files.acme_roots, files.acme_server_ca):
            path.unlink(missing_ok=True)
        shutil.rmtree(files.acme_server_dir, ignore_errors=True)
    if registry:
        shutil.rmtree(files.registry_dir, ignore_errors=True)


def written_by_sandbox(path: Path) -> bool:
    """True when `path` is an environment file sandbox.up wrote."""
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.readline().startswith(MARKER)
    except FileNotFoundError:
        return False
