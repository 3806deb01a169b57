"""The backup repository as the postgres image's tools report it (pure: no command runs here).

The tools (services/postgres: backup-run, backup-drill, backup-restore, backup-export, ...) run
in the stack's containers, in the services named here. This module reads what they print: the
line every script ends with when it succeeded (require_ok), `pgbackrest info --output=json`
(parse_info, BackupSet, Repository), PostgreSQL's archiver, the scripts' JSON log lines; it
advises on their failures and formats `invoke backup.list`.

The deploy code (the backup before migrations, a lost host rebuilt) imports parse_info, advice,
require_ok and RESTORE_SERVICE from here: this is their stable place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ops.errors import OpsError

# The services of the tools (compose/compose.yaml): the scheduler's container, and the one-off
# services of the `tools` profile, which need neither the scheduler nor PostgreSQL running.
BACKUP_SERVICE = "backup"
DRILL_SERVICE = "backup-drill"
RESTORE_SERVICE = "backup-restore"
EXPORT_SERVICE = "backup-export"

# The last line of every image script ops drives through compose when it succeeded
# (services/postgres/backup-lib): compose does not pass a container's exit code through on
# every engine.
OK_LINE = "[slipway-ok]"


def require_ok(output: str, what: str, hint: str = "") -> str:
    """`output` when it ends with OK_LINE; else OpsError saying `what` failed, with the output's
    last lines in it (a command run as a query printed nothing meanwhile)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if lines and lines[-1] == OK_LINE:
        return output
    message = f"{what} failed" + (f". {hint}" if hint else "")
    tail = last_lines(output)
    if not tail:
        raise OpsError(message + " (it printed nothing)")
    raise OpsError(message + "; its last lines:\n" + "\n".join(f"  {line}" for line in tail))


def last_lines(output: str, count: int = 12) -> list[str]:
    """The last `count` non-empty lines of a script's output, without a dump it printed
    (between BEGIN and END marker lines) and each cut to 300 characters."""
    kept: list[str] = []
    inside = False
    for line in output.splitlines():
        line = line.rstrip()
        if line.startswith("-----BEGIN "):
            inside = True
        elif line.startswith("-----END "):
            inside = False
        elif line and not inside:
            kept.append(line[:300])
    return kept[-count:]


def last_message(output: str, word: str) -> str:
    """The message of the last JSON log line of the image's scripts containing `word`."""
    for line in reversed(output.splitlines()):
        start = line.find("{")
        if start < 0 or word not in line:
            continue
        try:
            return str(json.loads(line[start:])["message"])
        except (ValueError, KeyError, TypeError):
            continue
    return ""


# ------------------------------------------------------------------------------ repository info


@dataclass(frozen=True)
class BackupSet:
    """One backup in the repository (a row of `pgbackrest info`)."""

    label: str
    type: str
    start: datetime
    stop: datetime
    size: int  # database size
    repo_size: int  # what this backup added to the repository (compressed, encrypted)
    repo: int

    @property
    def seconds(self) -> float:
        return (self.stop - self.start).total_seconds()


@dataclass(frozen=True)
class Repository:
    """What the repository holds and the window it can restore."""

    status: str  # "ok" or pgBackRest's message
    backups: tuple[BackupSet, ...]
    latest_archived: datetime | None  # the newest WAL PostgreSQL archived (None: none yet)

    @property
    def earliest(self) -> datetime | None:
        """The earliest restorable time: the end of the oldest backup."""
        return min((b.stop for b in self.backups), default=None)

    @property
    def latest(self) -> datetime | None:
        """The latest restorable time: the newest archived WAL, or the newest backup's end."""
        newest = max((b.stop for b in self.backups), default=None)
        if newest is None:
            return None
        return max(newest, self.latest_archived) if self.latest_archived else newest


def _when(epoch: Any) -> datetime:
    return datetime.fromtimestamp(int(epoch), tz=UTC)


def info_json(output: str) -> Any:
    """The document of `pgbackrest info --output=json` in output that may carry compose's own
    lines around it (a host merges stderr: pull notes, "Found orphan containers ([...])"). Raw
    control characters in its strings are accepted: pgBackRest quotes the first bytes of a file
    it cannot decrypt, line breaks included."""
    decoder = json.JSONDecoder(strict=False)
    starts = [0] + [i + 1 for i, c in enumerate(output) if c == "\n"]
    for start in reversed(starts):
        if output.startswith("[{", start):
            try:
                return decoder.raw_decode(output, start)[0]
            except ValueError:
                continue
    raise ValueError("no JSON document")


def parse_info(text: str) -> tuple[str, tuple[BackupSet, ...]]:
    """Status and backups from `pgbackrest info --output=json` (one stanza)."""
    try:
        stanza = info_json(text)[0]
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise OpsError(f"`pgbackrest info` did not answer JSON: {text.strip()[-500:]}") from exc
    status = stanza.get("status", {})
    code = int(status.get("code", 0))
    # 0 ok; 1 no stanza yet; 2 stanza without backups: all readable, just empty. With several
    # repositories the stanza's own status says only "different across repos" (4) when they
    # differ (one empty, one not): each repository's status decides then.
    repos = stanza.get("repo", [])
    readable = (0, 1, 2)
    message = "ok"
    if repos:
        for repo in repos:
            repo_code = int(repo.get("status", {}).get("code", 0))
            if repo_code not in readable:
                text = repo.get("status", {}).get("message", f"status {repo_code}")
                message = f"repo{repo.get('key')}: {text}"
                break
    elif code not in readable:
        message = str(status.get("message", f"status {code}"))
    backups = tuple(
        BackupSet(
            label=b["label"],
            type=b["type"],
            start=_when(b["timestamp"]["start"]),
            stop=_when(b["timestamp"]["stop"]),
            size=int(b.get("info", {}).get("size", 0)),
            repo_size=int(b.get("info", {}).get("repository", {}).get("delta", 0)),
            repo=int(b.get("database", {}).get("repo-key", 1)),
        )
        for b in stanza.get("backup", [])
    )
    return message, backups


def parse_last_archived(output: str) -> datetime | None:
    """The archiver's last time from the psql query of commands.last_archived (None: nothing
    archived yet). The last line: a host merges compose's own lines (warnings) into the output."""
    lines = output.strip().splitlines()
    return _when(lines[-1]) if lines and lines[-1].strip().isdigit() else None


def advice(output: str) -> str:
    """What to do about a pgBackRest failure (empty when nothing specific applies)."""
    if any(
        mark in output
        for mark in (
            "CryptoError",
            "key/value found outside of section",
            "is or was the repo encrypted",
        )
    ):
        return (
            "the repository cannot be decrypted with this BACKUP_PASSPHRASE. Fix: set the "
            "passphrase the repository was created with (docs/disaster-recovery.md, "
            '"Rotating the passphrase"); nothing was changed'
        )
    return ""


# ------------------------------------------------------------------------------ the listing


def iso(moment: datetime | None) -> str:
    """A time as the listing and the restore's messages show it (UTC, seconds); "-" for none."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GB"


def format_listing(repo: Repository, label: str) -> list[str]:
    """The `invoke backup.list` table: one line per backup, then the restorable window."""
    lines = [
        f"{'label':<34} {'type':<5} {'start':<20} {'stop':<20} {'secs':>6} "
        f"{'db size':>9} {'stored':>9} repo"
    ]
    for b in repo.backups:
        lines.append(
            f"{b.label:<34} {b.type:<5} {iso(b.start):<20} {iso(b.stop):<20} "
            f"{b.seconds:>6.0f} {_size(b.size):>9} {_size(b.repo_size):>9} repo{b.repo}"
        )
    if not repo.backups:
        lines.append(f"no backups in the repository of {label} yet")
        return lines
    lines.append(
        f"recovery window: {iso(repo.earliest)} .. {iso(repo.latest)} "
        "(earliest: end of the oldest backup; latest: the newest archived WAL)"
    )
    return lines
