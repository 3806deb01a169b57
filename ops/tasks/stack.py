"""Whole-stack tasks: up, down, status, logs, build."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ops.stack import local as stack
from ops.stack.logs import logs as search_logs
from ops.stack.up import up as bring_up
from ops.tasks._common import DEFAULT_ENV, ENV_HELP, exits


@task(
    help={
        "env": ENV_HELP,
        "timeout": "seconds to wait for health and /ready (default 240)",
        "dry-run": "run the pre-flight checks and print the plan, change nothing",
    }
)
def up(c: Context, env: str = DEFAULT_ENV, timeout: int = 240, dry_run: bool = False) -> None:
    """Build what is missing, start the stack, wait until healthy and ready over HTTPS."""
    with exits():
        bring_up(env, timeout=float(timeout), dry_run=dry_run)


@task(
    help={
        "env": ENV_HELP,
        "volumes": "also delete the volumes (PostgreSQL and Redis data): asks first",
        "yes": "do not ask for confirmation (needed with --volumes when not interactive)",
    }
)
def down(c: Context, env: str = DEFAULT_ENV, volumes: bool = False, yes: bool = False) -> None:
    """Stop and remove the stack's containers; --volumes also deletes its data."""
    with exits():
        stack.down(env, volumes=volumes, yes=yes)


@task(help={"env": ENV_HELP})
def status(c: Context, env: str = DEFAULT_ENV) -> None:
    """Show services, their health, image versions and the URL (exit 1 when not ready)."""
    with exits():
        ready = stack.status(env)
    if not ready:
        raise Exit(code=1)


@task(
    help={
        "env": ENV_HELP,
        "service": "only this compose service (api, worker, nginx, postgres, redis, migrate, ...)",
        "follow": "keep streaming new lines (docker compose logs --follow; no search)",
        "since": "only lines newer than this: 30s, 10m, 2h, 1d, 1w or a time with its offset "
        "(2026-11-25T12:00:00Z)",
        "tail": "at most this many lines, the newest (default 200, or every match with --since, "
        "--grep or --request-id; 0: no limit)",
        "grep": "only lines matching this regular expression (Python syntax; central logs)",
        "request-id": "only the lines of this request: nginx, API and worker (central logs)",
    }
)
def logs(
    c: Context,
    env: str = DEFAULT_ENV,
    service: str = "",
    follow: bool = False,
    since: str = "",
    tail: int = -1,
    grep: str = "",
    request_id: str = "",
) -> None:
    """Search the central logs of the stack in time order; --follow streams new lines."""
    with exits():
        search_logs(
            env,
            service=service,
            follow=follow,
            since=since,
            tail=tail,
            grep=grep,
            request_id=request_id,
        )


@task(
    iterable=["service"],
    help={
        "env": ENV_HELP,
        "service": "build only this compose service's image (repeatable)",
        "force": "rebuild even when the image for this version exists (no cache)",
    },
)
def build(
    c: Context, env: str = DEFAULT_ENV, service: list[str] | None = None, force: bool = False
) -> None:
    """Build the images missing for this version through docker compose (BuildKit)."""
    with exits():
        stack.build(env, services=service or [], force=force)
