"""Database tasks."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from ops.stack import local as stack
from ops.tasks._common import DEFAULT_ENV, ENV_HELP, exits


@task(help={"env": ENV_HELP})
def migrate(c: Context, env: str = DEFAULT_ENV) -> None:
    """Upgrade the schema to head in a one-off migrate container."""
    with exits():
        stack.migrate(env)
