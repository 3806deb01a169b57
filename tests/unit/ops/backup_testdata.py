"""Shared data and fakes of the ops/backup unit tests (test_backup_*.py; importable: pytest puts
this directory on sys.path): pgBackRest's answers, the compose argv the operations run, and a
fake Target that records every one of them. Compose's exit code is not trusted: every image
script succeeds only when its last line is repository.OK_LINE.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from ops import config, secrets
from ops.backup import targets
from ops.backup.repository import OK_LINE, Repository, parse_info, parse_last_archived
from ops.backup.targets import ComposeTarget
from ops.errors import OpsError
from ops.steps import Runner

Argv = tuple[str, ...]

LABEL = "slipway-local (this machine)"
FULL = "20261129-020001F"
DIFF = "20261129-020001F_20261130-020002D"
INCR = "20261129-020001F_20261130-120003I"  # 33 characters, the longest label kind

# The compose argv the operations run (prefixes: the psql query follows its -c).
INFO: Argv = (
    "run", "--rm", "--no-deps", "-T", "backup-restore", "pgbackrest", "info", "--output=json",
)  # fmt: skip
PSQL: Argv = ("exec", "-T", "postgres", "psql")
PROMOTED: Argv = (*PSQL, "-X", "-At", "-d", "postgres", "-c", "SELECT pg_is_in_recovery()")
ARCHIVE_NOW: Argv = ("exec", "-T", "postgres", "backup-archive-now")
RESTORE_RUN: Argv = ("run", "--rm", "--no-deps", "-T", "backup-restore", "backup-restore")
MIGRATE: Argv = ("run", "--rm", "--no-deps", "-T", "migrate")
BACKUP_RUN: Argv = ("exec", "-T", "backup", "backup-run")
DRILL_RUN: Argv = ("run", "--rm", "--no-deps", "-T", "backup-drill", "backup-drill")
LOCK_RESTORE: Argv = ("lock", "restore")
UNLOCK_RESTORE: Argv = ("unlock", "restore")

OK = f"{OK_LINE}\n"


def log(message: str, service: str = "backup") -> str:
    """One JSON log line as the image's scripts print it (backup-lib's blog)."""
    line = {"time": "2026-11-30T04:00:00.000Z", "service": service, "level": "info"}
    return json.dumps({**line, "message": message}) + "\n"


ARCHIVED = "WAL archived up to 00000001000000000000000A"
SCHEMA = "database schema at 0007_listings_geo"
# What a working stack answers (a FakeTarget starts from these): every image script ends with
# the OK line, the migration names the schema, PostgreSQL is out of recovery.
WORKING: dict[Argv, str] = {
    BACKUP_RUN: log("diff backup done") + OK,
    DRILL_RUN: log("restore drill passed", "backup-drill") + OK,
    ARCHIVE_NOW: log(ARCHIVED, "backup-archive-now") + OK,
    RESTORE_RUN: log("restore done", "backup-restore") + OK,
    PROMOTED: "f\n",
    MIGRATE: f"{SCHEMA}\n",
}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# ------------------------------------------------------------------ pgbackrest info --output=json

_LOCK = {"backup": {"held": False}, "restore": {"held": False}}


def stanza(code: int, message: str, repo_code: int, repo_message: str, **rest: Any) -> str:
    """One stanza as pgBackRest 2.4x prints it for `info --output=json --stanza=listings`: the
    whole document on one line."""
    document = {
        "archive": rest.get("archive", []),
        "backup": rest.get("backup", []),
        "cipher": "aes-256-cbc",
        "db": rest.get("db", []),
        "name": "listings",
        "repo": [
            {
                "cipher": "aes-256-cbc",
                "key": 1,
                "status": {"code": repo_code, "message": repo_message},
            }
        ],
        "status": {"code": code, "lock": _LOCK, "message": message},
    }
    return json.dumps([document])


def _backup_row(
    label: str,
    kind: str,
    start: int,
    stop: int,
    size: int,
    delta: int,
    prior: str | None = None,
) -> dict[str, Any]:
    return {
        "archive": {"start": "000000010000000000000003", "stop": "000000010000000000000003"},
        "backrest": {"format": 5, "version": "2.48"},
        "database": {"id": 1, "repo-key": 1},
        "error": False,
        "info": {
            "delta": size if kind == "full" else delta,
            "repository": {"delta": delta, "size": delta},
            "size": size,
        },
        "label": label,
        "link": None,
        "lsn": {"start": "0/3000028", "stop": "0/3000100"},
        "prior": prior,
        "reference": [prior] if prior else None,
        "tablespace": None,
        "timestamp": {"start": start, "stop": stop},
        "type": kind,
    }


NO_STANZA = stanza(1, "missing stanza path", 1, "missing stanza path")
NO_BACKUPS = stanza(
    2,
    "no valid backups",
    0,
    "ok",
    db=[{"id": 1, "repo-key": 1, "system-id": 7311522712391234567, "version": "15"}],
)
TWO_BACKUPS = stanza(
    0,
    "ok",
    0,
    "ok",
    archive=[
        {
            "database": {"id": 1, "repo-key": 1},
            "id": "15-1",
            "max": "000000010000000000000009",
            "min": "000000010000000000000001",
        }
    ],
    backup=[
        # 2026-11-29T02:00:01Z .. 02:00:09Z, then 2026-11-30T02:00:02Z .. 02:00:05Z
        _backup_row(FULL, "full", 1795917601, 1795917609, 31876983, 4072346),
        _backup_row(DIFF, "diff", 1796004002, 1796004005, 31876983, 212345, prior=FULL),
    ],
    db=[{"id": 1, "repo-key": 1, "system-id": 7311522712391234567, "version": "15"}],
)
WRONG_PASSPHRASE_MESSAGE = (
    "[095]: unable to load info file '/var/lib/pgbackrest/backup/listings/backup.info' or "
    "'/var/lib/pgbackrest/backup/listings/backup.info.copy':\n"
    "FormatError: key/value found outside of section at line 1: \x0f\x9d\xb2-\n"
    "FormatError: key/value found outside of section at line 1: \x0f\x9d\xb2-\n"
    "HINT: is or was the repo encrypted?\n"
    "HINT: use option --stanza if encryption settings are different for the stanza than the "
    "global settings."
)
WRONG_PASSPHRASE = stanza(99, "other", 99, WRONG_PASSPHRASE_MESSAGE)
# pg_stat_archiver's last_archived_time as the psql query prints it: 2026-11-30T03:40:00Z.
LAST_ARCHIVED = "1796010000\n"
NOW = utc("2026-11-30T04:00:00")
PASSPHRASE_ADVICE = "the repository cannot be decrypted with this BACKUP_PASSPHRASE"


def repository() -> Repository:
    """What a healthy stack's repository holds: TWO_BACKUPS, archived up to LAST_ARCHIVED."""
    return Repository("ok", parse_info(TWO_BACKUPS)[1], parse_last_archived(LAST_ARCHIVED))


# ------------------------------------------------------------------------------ a fake Target


class FakeTarget(ComposeTarget):
    """Records every compose argv (and maintenance switch, and the deploy lock taken and given
    back) in order, in `calls` and in `journal` (which two targets may share); answers from
    WORKING updated with `answers`, keyed by an argv prefix, the longest matching prefix
    winning, streamed or not. An OpsError answer is raised. Anything unanswered succeeds with
    no output. `reads`: the argv of the compose calls that said they change nothing."""

    label = LABEL

    def __init__(
        self,
        answers: dict[Argv, str | OpsError] | None = None,
        journal: list[Argv] | None = None,
    ) -> None:
        self.answers: dict[Argv, str | OpsError] = {**WORKING, **(answers or {})}
        self.calls: list[Argv] = []
        self.journal = journal if journal is not None else []
        self.streamed: list[Argv] = []
        self.reads: list[Argv] = []
        self.fed: list[tuple[Argv, str]] = []  # (argv, stdin) of the calls given input

    def record(self, argv: Argv) -> None:
        self.calls.append(argv)
        self.journal.append(argv)

    def compose(
        self,
        *args: str,
        what: str,
        changes: bool = True,
        stream: bool = False,
        stdin: str | None = None,
    ) -> str:
        assert what, "every compose call says what it does"
        self.record(args)
        if not changes:
            self.reads.append(args)
        if stdin is not None:
            self.fed.append((args, stdin))
        if stream:
            self.streamed.append(args)
        matches = [key for key in self.answers if args[: len(key)] == key]
        if not matches:
            return ""
        answer = self.answers[max(matches, key=len)]
        if isinstance(answer, OpsError):
            raise answer
        return answer

    def maintenance(self, on: bool) -> str:
        self.record(("maintenance", "on" if on else "off"))
        return f"maintenance {'on' if on else 'off'}"

    @contextmanager
    def locked(self, operation: str) -> Iterator[None]:
        self.record(("lock", operation))
        try:
            yield
        finally:
            self.record(("unlock", operation))


def healthy_target() -> FakeTarget:
    answers: dict[Argv, str | OpsError] = {INFO: TWO_BACKUPS, PSQL: LAST_ARCHIVED}
    return FakeTarget(answers)


def serve(monkeypatch: pytest.MonkeyPatch, made: list[FakeTarget]) -> None:
    """targets.open_target yields the first FakeTarget of `made` (the test appends it)."""

    @contextmanager
    def fake_open(env: config.Environment) -> Iterator[FakeTarget]:
        assert made, "the test did not provide a target"
        yield made[0]

    monkeypatch.setattr(targets, "open_target", fake_open)


def no_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything reaches a stack or loads secrets."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("reached a stack: the refusal came too late")

    monkeypatch.setattr(targets, "open_target", refuse)
    monkeypatch.setattr(secrets, "require", refuse)


def quiet(out: io.StringIO | None = None) -> Runner:
    """A runner that prints into `out` (or nowhere), with a clock that stands still."""
    return Runner(
        "invoke restore --env local",
        out=out if out is not None else io.StringIO(),
        clock=lambda: 0.0,
        groups=False,
    )
