"""The sandbox's image registry (`sandbox.up --registry`), its htpasswd and its certificates.

A container <name>-registry of slipway/sandbox-registry (Debian's docker-registry) on the
sandbox network, with TLS (a certificate for its address from the sandbox's registry CA, put
into the waiting container) and htpasswd authentication (a user and password generated once
into .env.<name>). Every host's dockerd trusts that CA through
/etc/docker/certs.d/<address>:5000/ca.crt; this machine pushes through the loopback port the
engine published (loopback registries need no certs.d).
"""

from __future__ import annotations

import io
import secrets as token
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import docker
from docker.errors import DockerException

from ops import certs, config, secrets
from ops.errors import OpsError
from ops.sandbox.engine import create_started, read_container_file
from ops.sandbox.files import SandboxFiles
from ops.sandbox.names import LOOPBACK, REGISTRY_ROLE, registry_container_name, url_host
from ops.sandbox.plan import loopback_ports, network_address
from ops.sandbox.servers import (
    certificate_archive,
    ensure_server_certificate,
    https_status,
    install_files,
    reuse_problem,
    server_failed,
    server_options,
    wait_answer,
)

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
        return f"{url_host(self.address)}:{REGISTRY_PORT}/{REGISTRY_NAMESPACE}"

    @property
    def host_port(self) -> str:
        """<address>:5000: the registry as the hosts' engines name it (certs.d directory)."""
        return f"{url_host(self.address)}:{REGISTRY_PORT}"

    @property
    def local_url(self) -> str:
        """The registry API's base through the loopback port published on this machine."""
        return f"https://{LOOPBACK}:{self.port}/v2/"

    @property
    def addresses(self) -> config.Registry:
        """The environment file's `registry:`."""
        return config.Registry(push=self.push, pull=self.pull)


def registry_server(container: str, attrs: Mapping[str, Any]) -> RegistryServer:
    """The registry as `docker inspect` describes it."""
    ports = loopback_ports(container, attrs, REGISTRY_PORTS)
    return RegistryServer(container, network_address(container, attrs), ports["registry"])


def registry_options(name: str, image: str) -> dict[str, Any]:
    """Arguments of `containers.create` for the registry of sandbox `name`."""
    return server_options(name, REGISTRY_ROLE, image, REGISTRY_PORTS)


def start_registry(engine: docker.DockerClient, name: str, image: str) -> Any:
    """Create and start the registry of sandbox `name` (it then waits for its files)."""
    options = registry_options(name, image)
    return create_started(engine, options.pop("image"), **options)


# ------------------------------------------------------------------------------ credentials


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


# ------------------------------------------------------------------------------ its files


def ensure_registry_certificate(files: SandboxFiles, address: str) -> certs.Result:
    """The registry's HTTPS certificate for its network address and container name, from the
    sandbox's registry CA (files.registry_ca, which the hosts' engines trust)."""
    name = files.name
    return ensure_server_certificate(
        files.registry_dir, f"sandbox-{name} registry", [address, registry_container_name(name)]
    )


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


def running_registry_problem(
    found: Any, files: SandboxFiles, image: str, credentials: secrets.RegistryCredentials
) -> str:
    """Why the running registry `found` is not the one wanted now ("" when it is): stopped,
    another image, or files inside that are not the ones made for it now."""
    problem = reuse_problem(found.attrs, image)
    if problem:
        return problem
    server = registry_server(registry_container_name(files.name), found.attrs)
    result = ensure_registry_certificate(files, server.address)
    return registry_files_problem(found, result.paths, credentials)


def start_registry_with_files(
    engine: docker.DockerClient,
    files: SandboxFiles,
    image: str,
    credentials: secrets.RegistryCredentials,
) -> tuple[Any, certs.Result]:
    """Start a new registry, make the certificate for the address it got, put its files in."""
    container = start_registry(engine, files.name, image)
    container.reload()
    server = registry_server(registry_container_name(files.name), container.attrs)
    made = ensure_registry_certificate(files, server.address)
    install_registry_files(container, made.paths, credentials)
    return container, made


# ------------------------------------------------------------------------------ the hosts


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


def check_hosts_reach(hosts: Sequence[Any], server: RegistryServer, name: str) -> None:
    """Each host's own dockerd proves it trusts the registry: an anonymous pull gets past TLS
    to the registry's "authentication required" (an untrusted certificate fails before,
    naming x509)."""
    probe = f"{server.pull}/sandbox-probe:none"
    for container in hosts:
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


# ------------------------------------------------------------------------------ waiting


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
            raise server_failed(container, f"{url} answers without credentials: auth is off")
        if anonymous != 401:
            raise _NotYet(f"HTTP {anonymous} without credentials")
        with_login = https_status(url, ca_file, credentials)
        if with_login != 200:
            raise server_failed(
                container,
                f"{url} answers HTTP {with_login} with {secrets.REGISTRY_USER} and "
                f"{secrets.REGISTRY_PASSWORD}: its htpasswd does not accept them",
            )
        return "TLS verified, 401 without credentials, 200 with them"

    return wait_answer(container, url, ca_file, timeout, probe)
