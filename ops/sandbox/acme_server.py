"""The sandbox's ACME test server (`sandbox.up --tls=acme`): pebble, validating for real.

A container <name>-acme of slipway/sandbox-acme (Debian's pebble) on the sandbox network,
validating HTTP-01 against host 1 (the sandbox's domains resolve to host 1 inside it). Its
HTTPS certificate names its address on the network, known only once it runs: it is made with
ops.certs (CA acme-server-ca.pem, kept) and put into the waiting container; then pebble's
issuing root (new at every pebble start) is fetched into acme-roots.pem, the environment's
ca_file. Not the deploy's ACME client (certbot, ops/deploy): this is the CA it talks to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from cryptography import x509

from ops import certs
from ops.errors import OpsError
from ops.sandbox.engine import create_started, read_container_file
from ops.sandbox.files import SandboxFiles, write_file
from ops.sandbox.names import (
    ACME_ROLE,
    LOOPBACK,
    acme_container_name,
    acme_domains,
    acme_spare_domain,
    url_host,
)
from ops.sandbox.plan import loopback_ports, network_address
from ops.sandbox.servers import (
    certificate_archive,
    ensure_server_certificate,
    https_get,
    install_files,
    reuse_problem,
    server_failed,
    server_options,
    wait_answer,
)

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
        return f"https://{url_host(self.address)}:{ACME_PORTS['directory']}/dir"

    @property
    def local_directory(self) -> str:
        """The same directory through the loopback port published on this machine."""
        return f"https://{LOOPBACK}:{self.directory_port}/dir"

    @property
    def local_roots(self) -> str:
        """pebble's issuing root, from the management port published on this machine."""
        return f"https://{LOOPBACK}:{self.management_port}/roots/0"


def acme_server(container: str, attrs: Mapping[str, Any]) -> AcmeServer:
    """The ACME server as `docker inspect` describes it."""
    ports = loopback_ports(container, attrs, ACME_PORTS)
    return AcmeServer(
        container, network_address(container, attrs), ports["directory"], ports["management"]
    )


def acme_extra_hosts(name: str, host_address: str) -> dict[str, str]:
    """The sandbox's domains (and the spare one) -> host 1's address: where pebble validates
    HTTP-01 (port 80)."""
    names = (*acme_domains(name), acme_spare_domain(name))
    return {domain: host_address for domain in names}


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


def start_acme(engine: docker.DockerClient, name: str, image: str, host_address: str) -> Any:
    """Create and start the ACME server of sandbox `name` (it then waits for its certificate)."""
    options = acme_options(name, image, host_address)
    return create_started(engine, options.pop("image"), **options)


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


def install_acme_certificate(container: Any, paths: certs.CertPaths) -> None:
    """Put cert.pem and key.pem (owned by pebble's uid) into the waiting ACME server."""
    archive = certificate_archive(paths.tls_crt.read_bytes(), paths.tls_key.read_bytes(), ACME_UID)
    install_files(container, ACME_TLS_DIR, archive)


def running_acme_problem(
    found: Any, files: SandboxFiles, image: str, extra_hosts: Mapping[str, str]
) -> str:
    """Why the running ACME server `found` is not the one wanted now ("" when it is): see
    acme_reuse_problem, or a certificate inside that is not the one made for its address."""
    problem = acme_reuse_problem(found.attrs, image, extra_hosts)
    if problem:
        return problem
    server = acme_server(acme_container_name(files.name), found.attrs)
    result = ensure_acme_certificate(files, server.address)
    inside = read_container_file(found, f"{ACME_TLS_DIR}/cert.pem")
    if inside != result.paths.tls_crt.read_text(encoding="ascii"):
        return "its certificate is not the one made for it now"
    return ""


def start_acme_with_certificate(
    engine: docker.DockerClient, files: SandboxFiles, image: str, host_address: str
) -> tuple[Any, certs.Result]:
    """Start a new ACME server, make the certificate for the address it got, put it in."""
    container = start_acme(engine, files.name, image, host_address)
    container.reload()
    server = acme_server(acme_container_name(files.name), container.attrs)
    made = ensure_acme_certificate(files, server.address)
    install_acme_certificate(container, made.paths)
    return container, made


def wait_acme_directory(container: Any, server: AcmeServer, ca_file: Path, timeout: float) -> str:
    """Wait until pebble's directory answers through 127.0.0.1, verified with `ca_file`."""

    def probe() -> str:
        check_directory(json.loads(https_get(server.local_directory, ca_file)))
        return "directory answers"

    return wait_answer(container, server.local_directory, ca_file, timeout, probe)


def check_domain_leads_to(container: Any, name: str, host_address: str) -> str:
    """The sandbox's first domain, checked to resolve to host 1 inside the ACME server."""
    domain = acme_domains(name)[0]
    code, output = container.exec_run(["getent", "hosts", domain])
    resolved = output.decode(errors="replace").split()[:1] if code == 0 else []
    if resolved != [host_address]:
        raise server_failed(
            container,
            f"{domain} resolves to {resolved[0] if resolved else 'nothing'} inside "
            f"{acme_container_name(name)}, not to host 1 ({host_address})",
        )
    return domain


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
