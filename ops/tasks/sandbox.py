"""Sandbox tasks: disposable deploy hosts on this machine (containers with dockerd and sshd)."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from ops.sandbox.down import down as remove_sandbox
from ops.sandbox.names import DEFAULT_NAME, DEFAULT_TLS, MAX_HOSTS
from ops.sandbox.up import up as start_sandbox
from ops.tasks._common import exits

NAME_HELP = (
    "sandbox name, also the environment it writes: environments/<name>.yaml "
    f"(default: {DEFAULT_NAME})"
)


# No short flags: -h would be --hosts, not --help.
@task(
    auto_shortflags=False,
    help={
        "name": NAME_HELP,
        "hosts": f"number of hosts, 1 to {MAX_HOSTS} (default 1)",
        "listings-env": "the service's mode in the environment file "
        "(default: staging, or the name when it is staging or production)",
        "tls": "local-ca (default: certificates from the environment's own CA, for localhost) "
        "or acme (also run the sandbox's ACME test server, pebble, and write a tls: acme "
        "environment for app.<name>.test and www.<name>.test)",
        "registry": "also run the sandbox's image registry (TLS, htpasswd), make every host "
        "trust it and write `registry:` into the environment (credentials into .env.<name>)",
        "timeout": "seconds to wait for the hosts' dockerd and sshd, and for the ACME server "
        "and the registry (default 120)",
        "dry-run": "run the pre-flight checks and print the plan, change nothing",
    },
)
def up(
    c: Context,
    name: str = DEFAULT_NAME,
    hosts: int = 1,
    listings_env: str = "",
    tls: str = DEFAULT_TLS,
    registry: bool = False,
    timeout: int = 120,
    dry_run: bool = False,
) -> None:
    """Start (or reuse) sandbox hosts and write the environment that deploys to them."""
    with exits():
        start_sandbox(
            name,
            hosts=hosts,
            listings_env=listings_env,
            timeout=float(timeout),
            dry_run=dry_run,
            tls=tls,
            registry=registry,
        )


@task(
    help={
        "name": NAME_HELP,
        "yes": "do not ask for confirmation (needed when not interactive)",
    }
)
def down(c: Context, name: str = DEFAULT_NAME, yes: bool = False) -> None:
    """Remove a sandbox: hosts, engines, ACME server, registry, environment, secrets, keys."""
    with exits():
        remove_sandbox(name, yes=yes)
