"""The data a deploy protects: the backup repository opened with the release's passphrase
before PostgreSQL is recreated with it, a host without its database (rebuilt from the backups
with --restore, refused without), and the backup before the migrations.

Each function takes the compose of the release (one-off containers of the backup tools) and
returns what the step prints; the decisions are pure functions of what the commands printed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ops import config
from ops.backup import repository
from ops.deploy.hostcompose import RemoteCompose
from ops.errors import OpsError

BACKUP_SERVICE = "backup"
# How long the pre-migration backup waits for a running one (the scheduler's) to end; after
# that the deploy goes on without it (the running backup and the archived WAL cover it).
BACKUP_LOCK_WAIT = 600
# A database restored by `deploy --restore` replays every archived WAL before it is healthy.
RESTORE_WAIT = 3600.0
# In a one-off container on the data volume: is there a PostgreSQL cluster?
DATABASE_PROBE = (
    'if [ -s "$PGDATA/PG_VERSION" ]; then echo "[slipway-cluster]"; else echo "[slipway-empty]"; fi'
)


@dataclass(frozen=True)
class Repository:
    """What the release's passphrase found in the backup repositories."""

    backups: int
    offsite_problem: str = ""  # why the off-site repository could not be read, if not


def open_repository(rc: RemoteCompose, label: str) -> Repository:
    """The release's BACKUP_PASSPHRASE opens the host's backup repository (or there is none
    yet), checked before PostgreSQL is recreated with it: its entrypoint refuses to start with
    a passphrase that does not, which would take the database down."""
    out = rc.oneoff(
        repository.RESTORE_SERVICE, "pgbackrest", "info", "--output=json",
        what="open the backup repository with the release's passphrase",
    )  # fmt: skip
    status, stored = repository.parse_info(out)
    if status.startswith("repo2:"):
        # The off-site store not answering must not stop deploys (nor a running PostgreSQL:
        # its entrypoint asks only before creating a cluster); the alerts tell. A host
        # without its database is another matter: rebuild_database.
        print(f"    warning: the off-site repository cannot be read: {status[:300]}")
        return Repository(len(stored), status.strip()[:300])
    if status != "ok":
        hint = repository.advice(status) or (
            "Fix: check the repository with `invoke backup.list`; docs/disaster-recovery.md"
        )
        raise OpsError(
            f"the backup repository on {label} cannot be read with this release's "
            f"secrets: {status.strip()[:300]}. {hint}. PostgreSQL was not touched"
        )
    return Repository(len(stored))


def has_database(rc: RemoteCompose, label: str) -> bool:
    """Whether the data volume holds a PostgreSQL cluster (a one-off container looks)."""
    probe = rc.oneoff(
        repository.RESTORE_SERVICE, "sh", "-c", DATABASE_PROBE,
        what="look for the database on the data volume",
    )  # fmt: skip
    if "[slipway-cluster]" in probe:
        return True
    if "[slipway-empty]" in probe:
        return False
    raise OpsError(f"could not tell whether {label} has a database: {probe.strip()[-300:]}")


def must_restore(
    env: config.Environment, label: str, found: bool, repository: Repository, restore: bool
) -> bool:
    """Whether the database is rebuilt from the backups before PostgreSQL starts; OpsError
    when it neither can be nor may be created empty. A host without its database (a new host
    in place of a lost one, a lost volume) next to backups of it: with --restore it is rebuilt;
    without, the deploy stops here, as PostgreSQL would refuse to start."""
    if found:
        if restore:
            raise OpsError(
                f"--restore rebuilds a host that lost its database, and {label} has "
                f"one. Nothing was changed. To take it back in time: `invoke restore "
                f"--env={env.name} --at=<time>` (docs/disaster-recovery.md)"
            )
        return False
    if not repository.backups and repository.offsite_problem:
        raise OpsError(
            f"{label} has no database of {env.name} and its off-site backup "
            f"repository cannot be read ({repository.offsite_problem}): it may hold this "
            "database's backups, so neither a new database is created nor a restore "
            "started. Fix: make the object store answer (backup.s3, BACKUP_S3_KEY and "
            "BACKUP_S3_KEY_SECRET), then deploy again (with --restore to rebuild from its "
            "backups). PostgreSQL was not started"
        )
    if not repository.backups:
        if restore:
            raise OpsError(
                f"--restore: the backup repositories of {env.name} hold no backup to "
                "rebuild the database from (`invoke backup.list` shows them; an off-site "
                "repository needs backup.s3 and its keys). Nothing was changed"
            )
        return False  # a new environment: PostgreSQL creates its database
    if not restore:
        raise OpsError(
            f"{label} has no database of {env.name}, but its backup "
            f"repositories hold {repository.backups} backup(s) of it: PostgreSQL would refuse "
            "to start empty next to them. Fix: if this is a new host in place of a lost one "
            f"(or its data volume was lost), `invoke deploy --env={env.name} --restore` "
            "rebuilds the database from the newest backup and every archived WAL "
            '(docs/disaster-recovery.md, "Rebuilding a lost host"). PostgreSQL was not started'
        )
    return True


def restore_database(rc: RemoteCompose) -> str:
    """The newest backup and every archived WAL into the data volume (PostgreSQL replays
    them at its next start)."""
    out = rc.oneoff(
        repository.RESTORE_SERVICE, "backup-restore",
        what="restore the newest backup and the archived WAL into the data volume",
        timeout=RESTORE_WAIT,
    )  # fmt: skip
    for line in out.splitlines():
        if line.strip():
            print(f"    {line}", flush=True)
    repository.require_ok(out, "the restore", "PostgreSQL was not started")
    return "database restored (the newest backup, then the archived WAL); "


def backup_run_args() -> tuple[str, ...]:
    """backup-run of an incremental backup into the local repository: the off-site one is the
    scheduler's business, and must not block a deploy."""
    return ("backup-run", "--type=incr", "--repo=1", f"--wait={BACKUP_LOCK_WAIT}")


def backup_outcome(output: str, env_name: str) -> str:
    """The step's note from backup-run's output; OpsError when the backup failed."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if lines and lines[-1] == "[slipway-ok]":
        return backup_label(output)
    if "another backup is running" in output:
        return (
            f"skipped: a backup was still running after {BACKUP_LOCK_WAIT}s (it and the "
            "archived WAL cover the migration)"
        )
    raise OpsError(
        "the backup before the migrations failed (the running release is untouched): "
        f"{output.strip()[-600:]}. Fix the cause (`invoke backup --env={env_name}` "
        "retries it), or deploy with --skip-backup to go on without it"
    )


def backup_label(output: str) -> str:
    """The summary note of a backup: its label as backup-run logged it."""
    for line in reversed(output.splitlines()):
        if "backup (" in line and " done in " in line:
            try:
                return str(json.loads(line)["message"])
            except (ValueError, KeyError, TypeError):
                return line.strip()[-120:]
    return "backup taken"
