"""Certificate tasks."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from ops import stack
from ops.tasks._common import DEFAULT_ENV, ENV_HELP, exits


@task(name="local", help={"env": ENV_HELP})
def local_ca(c: Context, env: str = DEFAULT_ENV) -> None:
    """Create (or reuse) the environment's local CA and server certificate."""
    with exits():
        result = stack.local_certs(env)
    print(f"{result.reason}: {result.paths.tls_crt}")
    print(f"CA for clients: {result.paths.ca_crt}  (curl --cacert {result.paths.ca_crt} ...)")
