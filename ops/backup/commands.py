"""The commands the backup operations run, built by pure functions (their text is unit-tested).

- In a service's container (`InContainer`): the image's tools and psql, each with what it does
  and whether it changes anything. A target (targets.py) runs it with `docker compose exec` or
  `run` (a local stack, one host) or `docker exec` in the service's task container (a swarm).
- The targets' own command lines: compose's argv, compose on a host, and Docker Swarm's
  `docker exec`, `docker service scale` and `docker service ps` on its first host.
- The tools' arguments from the operator's options (--type, --at, --repo).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ops import config
from ops.backup.repository import BACKUP_SERVICE, DRILL_SERVICE, EXPORT_SERVICE, RESTORE_SERVICE
from ops.errors import OpsError
from ops.executor import Command, change, join, query, quote
from ops.stack.local import MIGRATE_SERVICE

BACKUP_TYPES = ("full", "diff", "incr")
POSTGRES_SERVICE = "postgres"


@dataclass(frozen=True)
class InContainer:
    """A command for the container of one service."""

    service: str
    argv: tuple[str, ...]
    what: str
    # Queries only read (the repository, PostgreSQL's state); changes are echoed on a host.
    changes: bool = True


def _psql(sql: str, what: str) -> InContainer:
    return InContainer(
        POSTGRES_SERVICE, ("psql", "-X", "-At", "-d", "postgres", "-c", sql), what, changes=False
    )


# ------------------------------------------------------------------------------ the tools


def backup_run(kind: str) -> InContainer:
    """A backup now, in the scheduler's container (backup-run)."""
    return InContainer(BACKUP_SERVICE, ("backup-run", f"--type={kind}"), f"{kind} backup")


def drill(args: list[str]) -> InContainer:
    """A restore drill in a scratch container; it leaves a marker in the live database."""
    return InContainer(DRILL_SERVICE, ("backup-drill", *args), "restore drill")


def repository_info() -> InContainer:
    """`pgbackrest info` in a one-off container: needs neither the scheduler nor PostgreSQL."""
    return InContainer(
        RESTORE_SERVICE,
        ("pgbackrest", "info", "--output=json"),
        "read the backup repository (pgbackrest info)",
        changes=False,
    )


def last_archived() -> InContainer:
    """When PostgreSQL last archived a WAL segment (seconds since the epoch, or empty)."""
    return _psql(
        "SELECT coalesce(extract(epoch FROM last_archived_time)::bigint::text, '') "
        "FROM pg_stat_archiver",
        "ask PostgreSQL for the last archived WAL",
    )


ALIVE = "slipway-postgres-answers"


def alive() -> InContainer:
    """PostgreSQL answers a query (its output holds ALIVE only then)."""
    return _psql(f"SELECT '{ALIVE}'", "ask whether PostgreSQL answers")


def archive_now(what: str) -> InContainer:
    """Every committed change into the repository now: a commit record and a WAL switch."""
    return InContainer(POSTGRES_SERVICE, ("backup-archive-now",), what)


def restore(args: tuple[str, ...]) -> InContainer:
    """pgbackrest restore into the data volume (PostgreSQL stopped)."""
    return InContainer(RESTORE_SERVICE, ("backup-restore", *args), "pgbackrest restore")


def in_recovery() -> InContainer:
    """Whether PostgreSQL still replays WAL ("t") or is promoted ("f")."""
    return _psql("SELECT pg_is_in_recovery()", "check PostgreSQL is promoted")


def migrate() -> InContainer:
    """The release's migration one-off: the schema to its head."""
    return InContainer(MIGRATE_SERVICE, (), "bring the schema to the release's head")


def export(source: str, args: list[str]) -> InContainer:
    """The source's newest backup restored in a scratch container, personal data replaced, a
    dump between marker lines on stdout (the live database is not touched)."""
    return InContainer(
        EXPORT_SERVICE,
        ("backup-export", "--sanitize", *args),
        f"export {source}'s newest backup, sanitized",
        changes=False,
    )


def import_dump(env_name: str) -> InContainer:
    """Load the dump given on stdin in place of the database (backup-import)."""
    return InContainer(POSTGRES_SERVICE, ("backup-import",), f"load the dump into {env_name}")


# ------------------------------------------------------------------------------ compose


def compose_exec(command: InContainer) -> tuple[str, ...]:
    return ("exec", "-T", command.service, *command.argv)


def compose_oneoff(command: InContainer) -> tuple[str, ...]:
    return ("run", "--rm", "--no-deps", "-T", command.service, *command.argv)


def compose_stop(services: tuple[str, ...]) -> tuple[str, ...]:
    return ("stop", *services)


def compose_start(services: tuple[str, ...], timeout: int) -> tuple[str, ...]:
    """Started as the release runs them, returning once healthy."""
    return ("up", "-d", "--no-deps", "--wait", "--wait-timeout", str(timeout), *services)


def on_host(compose_line: str, what: str, changes: bool) -> Command:
    """A compose line of the host's current release (its stderr merged into the output)."""
    line = f"{compose_line} 2>&1"
    return change(line, what) if changes else query(line, what)


# ------------------------------------------------------------------------------ Docker Swarm


def swarm_exec(container: str, command: InContainer, stdin: bool) -> Command:
    """The command in a task container on this host (stdin: input is fed to it)."""
    line = f"docker exec {'-i ' if stdin else ''}{join([container, *command.argv])} 2>&1"
    return change(line, command.what) if command.changes else query(line, command.what)


def service_scale(stack: str, counts: dict[str, int], what: str, timeout: int) -> Command:
    """The services' replica counts set; returns once new tasks run (not once old ones ended)."""
    pairs = " ".join(quote(f"{stack}_{name}={n}") for name, n in counts.items())
    return change(f"docker service scale {pairs} 2>&1", what, timeout=float(timeout))


def service_states(stack: str, services: tuple[str, ...]) -> Command:
    """The current state of every task of the services, one a line ("Running 2 minutes ago")."""
    names = " ".join(quote(f"{stack}_{name}") for name in services)
    return query(
        f"docker service ps {names} --format '{{{{.CurrentState}}}}'",
        "list the services' tasks",
    )


# ------------------------------------------------------------------------------ options


def repo_args(env: config.Environment, repo: int) -> list[str]:
    """--repo for the scripts (0: pgBackRest picks: the local repository first)."""
    if repo == 0:
        return []
    if repo == 1 or (repo == 2 and env.backup.s3 is not None):
        return [f"--repo={repo}"]
    if repo == 2:
        raise OpsError(
            f"--repo=2 is the off-site repository, but {env.name} has none. Fix: set backup.s3 "
            f"in {env.source.name} (docs/disaster-recovery.md), or use --repo=1"
        )
    raise OpsError(f"--repo={repo}: use 1 (the local repository) or 2 (the off-site one)")


def normalize_time(text: str) -> str:
    """An ISO 8601 time with an offset, as pgBackRest and `date -d` read it (UTC, seconds)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise OpsError(
            f"--at={text} is not an ISO 8601 time. Fix: write e.g. 2026-11-30T12:00:00+00:00"
        ) from exc
    if moment.tzinfo is None:
        raise OpsError(
            f"--at={text} has no UTC offset, so it is ambiguous. Fix: add one, e.g. "
            f"{text}+00:00 or {text}Z"
        )
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")
