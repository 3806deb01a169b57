"""Backup tasks: `invoke backup`, `backup.list`, `backup.drill`, `restore` (ops/backup/)."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from ops.backup import backups
from ops.backup import restore as restores
from ops.tasks._common import DEFAULT_ENV, ENV_HELP, exits


@task(
    default=True,
    help={"env": ENV_HELP, "type": "full, diff (default) or incr"},
)
def run(c: Context, env: str = DEFAULT_ENV, type: str = "diff") -> None:
    """Take a backup now (encrypted, into the environment's repository)."""
    with exits():
        backups.backup(env, type)


@task(name="list", help={"env": ENV_HELP})
def list_(c: Context, env: str = DEFAULT_ENV) -> None:
    """List the backups and the recovery window (earliest and latest restorable time)."""
    with exits():
        for line in backups.list_backups(env):
            print(line)


REPO_HELP = "1: the local repository, 2: the off-site one (backup.s3); default: pgBackRest picks"


@task(
    help={
        "env": ENV_HELP,
        "at": "restore to this time instead of a fresh marker (ISO 8601 with offset)",
        "repo": REPO_HELP,
    }
)
def drill(c: Context, env: str = DEFAULT_ENV, at: str = "", repo: int = 0) -> None:
    """Restore into a scratch container and verify it against the live data."""
    with exits():
        backups.drill(env, at, repo)


@task(
    help={
        "env": ENV_HELP,
        "at": "restore to this time (ISO 8601 with offset, e.g. 2026-11-30T12:00:00+00:00)",
        "backup": "restore to the end of this backup (a label from `invoke backup.list`)",
        "from": "the environment whose backups to restore (default: --env itself)",
        "yes": "do not ask: the live database is replaced",
        "repo": REPO_HELP,
        "sanitize": "with --from: replace personal data (contacts, API keys) in the copy",
    },
)
def restore(
    c: Context,
    env: str = DEFAULT_ENV,
    at: str = "",
    backup: str = "",
    from_: str = "",
    yes: bool = False,
    repo: int = 0,
    sanitize: bool = False,
) -> None:
    """Restore the database in place (maintenance mode, writers stopped, schema checked)."""
    with exits():
        restores.restore(
            env, at=at, label=backup, source=from_, yes=yes, repo=repo, sanitize=sanitize
        )
