"""The deploy lock on an environment's host."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from ops import config
from ops.stack import host as hostops
from ops.stack.local import confirm_destroy
from ops.tasks._common import exits

ENV_HELP = "environment name: environments/<env>.yaml with target: ssh"


@task(help={"env": ENV_HELP})
def status(c: Context, env: str) -> None:
    """Show who holds the deploy lock, since when, and when it expires."""
    with exits():
        print(hostops.lock_status(config.load(env)))


@task(help={"env": ENV_HELP, "yes": "do not ask for confirmation"})
def release(c: Context, env: str, yes: bool = False) -> None:
    """Remove the deploy lock by hand (only when its deploy is dead): asks first."""
    with exits():
        print(hostops.lock_status(config.load(env)))
        confirm_destroy(f"the deploy lock of {env} (a deploy still running would lose it)", yes)
        print(hostops.lock_release(config.load(env)))
