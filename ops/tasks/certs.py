"""Certificate tasks."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from ops import config
from ops.stack import host as hostops
from ops.stack import local as stack
from ops.tasks._common import DEFAULT_ENV, ENV_HELP, exits


@task(name="local", help={"env": ENV_HELP})
def local_ca(c: Context, env: str = DEFAULT_ENV) -> None:
    """Create (or reuse) the environment's local CA and server certificate."""
    with exits():
        result = stack.local_certs(env)
    print(f"{result.reason}: {result.paths.tls_crt}")
    print(f"CA for clients: {result.paths.ca_crt}  (curl --cacert {result.paths.ca_crt} ...)")


ACME_ENV_HELP = "environment name: environments/<env>.yaml with tls: acme"


@task(help={"env": ACME_ENV_HELP, "force": "renew every certificate now, however long it has"})
def renew(c: Context, env: str, force: bool = False) -> None:
    """Obtain or renew the environment's ACME certificates now (nginx reloads gracefully)."""
    with exits():
        print(hostops.certs_renew(config.load(env), force=force))


@task(help={"env": ACME_ENV_HELP})
def status(c: Context, env: str) -> None:
    """Each domain's certificate: from the CA or a placeholder, expiry, days left."""
    with exits():
        print(hostops.certs_status(config.load(env)).rstrip())
