"""Deploys to hosts over SSH: deploy, rollback, releases."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from ops import compose, config
from ops.deploy import run as deploys
from ops.errors import OpsError
from ops.stack import host as hostops
from ops.tasks._common import exits

ENV_HELP = "environment name: environments/<env>.yaml with target: ssh"


@task(
    help={
        "env": ENV_HELP,
        "version": "image version to deploy (default: this checkout's, built if missing)",
        "dry-run": "run the pre-flight checks and print the plan, change nothing",
        "skip-backup": "no backup before the migrations (default: one is taken)",
        "restore": "a host without its database (new, rebuilt, volume lost): restore it from "
        "the backups before PostgreSQL starts",
    }
)
def deploy(
    c: Context,
    env: str,
    version: str = "",
    dry_run: bool = False,
    skip_backup: bool = False,
    restore: bool = False,
) -> None:
    """Deploy to the environment's host: zero downtime, automatic rollback on failure."""
    with exits():
        deploys.deploy(
            env, version=version or None, dry_run=dry_run, skip_backup=skip_backup, restore=restore
        )


@task(
    help={
        "env": ENV_HELP,
        "to": "release id to put back (default: the newest earlier release that succeeded with "
        "another version; `invoke releases` marks it with <)",
        "dry-run": "check and print the plan, change nothing",
    }
)
def rollback(c: Context, env: str, to: str = "", dry_run: bool = False) -> None:
    """Put a recorded release back, without building or pulling anything."""
    with exits():
        deploys.rollback(env, to=to or None, dry_run=dry_run)


@task(help={"env": ENV_HELP})
def releases(c: Context, env: str) -> None:
    """List the releases recorded on the host, the current one marked with *."""
    with exits():
        for line in hostops.list_releases(config.load(env)):
            print(line)


@task(help={"output": "append version=<v> and git_sha=<sha> to this file (e.g. $GITHUB_OUTPUT)"})
def version(c: Context, output: str = "") -> None:
    """Print the version this checkout builds and deploys (git describe, -dirty when edited)."""
    with exits():
        build = compose.detect_build()
        print(build.version)
        if output:
            with open(output, "a", encoding="utf-8") as handle:
                handle.write(f"version={build.version}\ngit_sha={build.git_sha}\n")


@task(
    positional=["state"],
    help={"env": ENV_HELP, "state": "on (nginx answers 503 with Retry-After) or off"},
)
def maintenance(c: Context, state: str, env: str) -> None:
    """Turn maintenance mode on or off: nginx answers 503 with Retry-After to every request."""
    with exits():
        if state not in ("on", "off"):
            raise OpsError(f"maintenance state must be `on` or `off`, not {state!r}")
        print(hostops.maintenance(config.load(env), state == "on"))
