"""API key tasks (run `listings apikey` in a one-off container on the stack's network)."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from ops.stack import local as stack
from ops.tasks._common import DEFAULT_ENV, ENV_HELP, exits


@task(help={"env": ENV_HELP, "name": "who or what the key is for (unique)"})
def create(c: Context, name: str, env: str = DEFAULT_ENV) -> None:
    """Create an API key and print it once."""
    with exits():
        stack.apikey(env, "create", name)


@task(help={"env": ENV_HELP, "name": "name of the key to revoke"})
def revoke(c: Context, name: str, env: str = DEFAULT_ENV) -> None:
    """Revoke an API key by name."""
    with exits():
        stack.apikey(env, "revoke", name)
