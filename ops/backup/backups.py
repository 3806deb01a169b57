"""`invoke backup`, `backup.list` and `backup.drill`, and the reads of a stack's repository the
restores start from (read_repository, archive_now).
"""

from __future__ import annotations

from datetime import datetime

from ops import config
from ops.backup import commands, targets
from ops.backup.repository import (
    Repository,
    advice,
    format_listing,
    parse_info,
    parse_last_archived,
    require_ok,
)
from ops.backup.targets import Target
from ops.errors import OpsError
from ops.steps import Operation, Report, Runner, Step, impacting


def read_repository(target: Target) -> Repository:
    """The repository's backups and restorable window, read with the environment's current
    secrets in a one-off container that needs neither the backup service nor PostgreSQL (a
    lost volume, a passphrase changed since the stack started)."""
    status, backups = parse_info(target.oneoff(commands.repository_info()))
    if status != "ok":
        hint = advice(status)
        raise OpsError(
            f"the backup repository of {target.label} cannot be read: {status.strip()[:400]}"
            + (f". {hint}" if hint else ". Nothing was changed")
        )
    return Repository(status, backups, last_archived(target))


def last_archived(target: Target) -> datetime | None:
    """When PostgreSQL last archived a WAL segment (None when it is down or archived none)."""
    try:
        return parse_last_archived(target.exec(commands.last_archived()))
    except OpsError:
        return None


def archive_now(target: Target) -> bool:
    """Every committed change into the repository now (backup-archive-now in the postgres
    container: a commit record, a WAL switch, waited for until archived). False when
    PostgreSQL is not running or archiving does not work."""
    try:
        out = target.exec(commands.archive_now("archive the current WAL"))
        require_ok(out, "archiving the current WAL")
    except OpsError:
        return False
    return True


def _not_running_hint(message: str, target: Target) -> str:
    if "not running" in message or "no container" in message.lower():
        return (
            f"the backup service of {target.label} is not running. Fix: `invoke up` (local) or "
            f"`invoke deploy` starts it; `invoke status` shows what runs. ({message})"
        )
    hint = advice(message)
    return f"{message}. {hint}" if hint else message


class Backup(Operation):
    """`invoke backup`: one backup now, in the stack's backup container."""

    def __init__(self, target: Target, kind: str) -> None:
        self.target = target
        self.kind = kind
        self.title = f"backup ({kind}) of {target.label}"

    def take_backup(self) -> None:
        try:
            out = self.target.exec(commands.backup_run(self.kind), stream=True)
        except OpsError as exc:
            raise OpsError(_not_running_hint(str(exc), self.target)) from exc
        require_ok(
            out,
            f"the {self.kind} backup of {self.target.label}",
            "`invoke backup.list` shows what the repository has; docs/runbook.md#backupfailed",
        )

    def steps(self) -> list[Step]:
        return [impacting(f"{self.kind} backup into the repository (backup-run)", self.take_backup)]


def backup(env_name: str, kind: str = "diff", runner: Runner | None = None) -> Report:
    """`invoke backup`: one backup now, in the stack's backup container."""
    if kind not in commands.BACKUP_TYPES:
        raise OpsError(f"--type={kind} is not a backup type: use full, diff or incr")
    env = config.load(env_name)
    with targets.open_target(env) as target:
        return Backup(target, kind).run(runner=runner)


def list_backups(env_name: str) -> list[str]:
    """`invoke backup.list`: the repository's backups and its recovery window."""
    env = config.load(env_name)
    with targets.open_target(env) as target:
        return format_listing(read_repository(target), target.label)


def drill(env_name: str, at: str = "", repo: int = 0) -> None:
    """`invoke backup.drill`: restore into a scratch container and verify against live data."""
    env = config.load(env_name)
    args = [f"--at={commands.normalize_time(at)}"] if at else []
    args += commands.repo_args(env, repo)
    with targets.open_target(env) as target:
        print(f"==> restore drill of {target.label}", flush=True)
        failed = (
            f"the restore drill of {target.label} FAILED (its lines above say where). "
            "Runbook: docs/runbook.md#backupdrillfailing"
        )
        try:
            out = target.oneoff(commands.drill(args), stream=True)
        except OpsError as exc:
            raise OpsError(failed) from exc
        try:
            require_ok(out, "the restore drill")
        except OpsError as exc:
            raise OpsError(failed) from exc
