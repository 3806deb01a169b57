"""What `sandbox.up` prints at the end: how to reach each host and server, and what next."""

from __future__ import annotations

from collections.abc import Mapping

from ops import secrets
from ops.sandbox.acme_server import AcmeServer
from ops.sandbox.files import SandboxFiles
from ops.sandbox.names import LOOPBACK, NETWORK, REMOTE_USER, acme_domains, hostname
from ops.sandbox.plan import HostPorts
from ops.sandbox.registry_server import RegistryServer


def print_access(
    files: SandboxFiles,
    ports: Mapping[int, HostPorts],
    tls: str,
    listings_env: str,
    acme: AcmeServer | None = None,
    registry: RegistryServer | None = None,
) -> None:
    """How to reach the hosts (`ports` by index) and the servers, and what to do next."""
    name = files.name
    key = files.relative(files.private_key)
    known = files.relative(files.known_hosts)
    print()
    print(f"Sandbox {name} is up: {len(ports)} host(s) on the Docker network {NETWORK}")
    for index in sorted(ports):
        host = ports[index]
        print(
            f"  {hostname(name, index):<{len(name) + 3}} "
            f"ssh -i {key} -o UserKnownHostsFile={known} -p {host.ssh} {REMOTE_USER}@{LOOPBACK}"
            f"    (http :{host.http}, https :{host.https})"
        )
    print(
        f"  environment  {files.environment} (target: ssh, tls: {tls}, listings_env {listings_env})"
    )
    print(f"  secrets      {files.relative(files.secrets)}")
    first = ports[min(ports)]
    if acme is None:
        print(f"  public URL   https://localhost:{first.https} (once a deploy runs there)")
    else:
        _print_acme(files, acme, first)
    if registry is not None:
        print(
            f"  registry     {registry.container}: push {registry.push} (from here), pull "
            f"{registry.pull} (from the hosts, CA {files.relative(files.registry_ca)} in their "
            f"certs.d); {secrets.REGISTRY_USER}/{secrets.REGISTRY_PASSWORD} in "
            f"{files.relative(files.secrets)}"
        )
    print(f"  remove       invoke sandbox.down --name {name}")


def _print_acme(files: SandboxFiles, acme: AcmeServer, first: HostPorts) -> None:
    domain = acme_domains(files.name)[0]
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
