"""ops/backup.py without Docker: pgBackRest's answers read, the restore target checked against
the recovery window, the confirmation, and the order an in-place restore runs its commands in
(a fake Target records every compose argv). Compose's exit code is not trusted: every image
script succeeds only when its last line is backup.OK_LINE."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ops_testdata import LOCAL_YAML

from ops import config, remote, secrets
from ops.backup import operations as backup
from ops.errors import OpsError
from ops.stack import host as hostops
from ops.steps import Runner

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]
Argv = tuple[str, ...]

LABEL = "slipway-local (this machine)"
FULL = "20261129-020001F"
DIFF = "20261129-020001F_20261130-020002D"
INCR = "20261129-020001F_20261130-120003I"  # 33 characters, the longest label kind

# The compose argv ops/backup.py runs (prefixes: the psql query follows its -c).
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

OK = f"{backup.OK_LINE}\n"


def _log(message: str, service: str = "backup") -> str:
    """One JSON log line as the image's scripts print it (backup-lib's blog)."""
    line = {"time": "2026-11-30T04:00:00.000Z", "service": service, "level": "info"}
    return json.dumps({**line, "message": message}) + "\n"


ARCHIVED = "WAL archived up to 00000001000000000000000A"
SCHEMA = "database schema at 0007_listings_geo"
# What a working stack answers (a FakeTarget starts from these): every image script ends with
# the OK line, the migration names the schema, PostgreSQL is out of recovery.
WORKING: dict[Argv, str] = {
    BACKUP_RUN: _log("diff backup done") + OK,
    DRILL_RUN: _log("restore drill passed", "backup-drill") + OK,
    ARCHIVE_NOW: _log(ARCHIVED, "backup-archive-now") + OK,
    RESTORE_RUN: _log("restore done", "backup-restore") + OK,
    PROMOTED: "f\n",
    MIGRATE: f"{SCHEMA}\n",
}


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# ------------------------------------------------------------------ pgbackrest info --output=json

_LOCK = {"backup": {"held": False}, "restore": {"held": False}}


def _stanza(code: int, message: str, repo_code: int, repo_message: str, **rest: Any) -> str:
    """One stanza as pgBackRest 2.4x prints it for `info --output=json --stanza=listings`: the
    whole document on one line."""
    stanza = {
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
    return json.dumps([stanza])


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


NO_STANZA = _stanza(1, "missing stanza path", 1, "missing stanza path")
NO_BACKUPS = _stanza(
    2,
    "no valid backups",
    0,
    "ok",
    db=[{"id": 1, "repo-key": 1, "system-id": 7311522712391234567, "version": "15"}],
)
TWO_BACKUPS = _stanza(
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
WRONG_PASSPHRASE = _stanza(99, "other", 99, WRONG_PASSPHRASE_MESSAGE)
# pg_stat_archiver's last_archived_time as the psql query prints it: 2026-11-30T03:40:00Z.
LAST_ARCHIVED = "1796010000\n"
NOW = _utc("2026-11-30T04:00:00")


# ------------------------------------------------------------------------------ a fake Target


class FakeTarget(backup.ComposeTarget):
    """Records every compose argv (and maintenance switch, and the deploy lock taken and given
    back) in order, in `calls` and in `journal` (which two targets may share); answers from
    WORKING updated with `answers`, keyed by an argv prefix, the longest matching prefix
    winning, streamed or not. An OpsError answer is raised. Anything unanswered succeeds with
    no output."""

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
        self.fed: list[tuple[Argv, str]] = []  # (argv, stdin) of the calls given input

    def _record(self, argv: Argv) -> None:
        self.calls.append(argv)
        self.journal.append(argv)

    def compose(self, *args: str, what: str, stream: bool = False, stdin: str | None = None) -> str:
        assert what, "every compose call says what it does"
        self._record(args)
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
        self._record(("maintenance", "on" if on else "off"))
        return f"maintenance {'on' if on else 'off'}"

    @contextmanager
    def locked(self, operation: str) -> Iterator[None]:
        self._record(("lock", operation))
        try:
            yield
        finally:
            self._record(("unlock", operation))


def _healthy_target() -> FakeTarget:
    answers: dict[Argv, str | OpsError] = {INFO: TWO_BACKUPS, PSQL: LAST_ARCHIVED}
    return FakeTarget(answers)


def _repository() -> backup.Repository:
    return backup.read_repository(_healthy_target())


@pytest.fixture
def local(write_env: WriteEnv) -> config.Environment:
    write_env("local", LOCAL_YAML)
    return config.load("local")


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeTarget]]:
    """backup.open_target yields the FakeTarget appended to this list (one per test)."""
    targets: list[FakeTarget] = []

    @contextmanager
    def fake_open(env: config.Environment) -> Iterator[FakeTarget]:
        assert targets, "the test did not provide a target"
        yield targets[0]

    monkeypatch.setattr(backup, "open_target", fake_open)
    yield targets


def _no_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything reaches a stack or loads secrets."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("reached a stack: the refusal came too late")

    monkeypatch.setattr(backup, "open_target", refuse)
    monkeypatch.setattr(secrets, "require", refuse)


# ------------------------------------------------------------------------------------ require_ok


@pytest.mark.parametrize(
    "output",
    [
        OK,
        _log("done") + OK,
        f"{_log('done')}  {backup.OK_LINE}  \n\n",  # blanks around it, empty lines after it
        f"{_log('done')}{backup.OK_LINE}\r\n",  # a host's pseudo-terminal line ending
    ],
)
def test_output_ending_with_the_ok_line_is_success(output: str) -> None:
    assert backup.require_ok(output, "the thing") == output


@pytest.mark.parametrize(
    "output",
    [
        "",
        "\n\n",
        _log("done"),  # compose exited 0, but the script never got to its end
        OK + _log("failed afterwards"),  # the OK line must be the last one
        f"echo {backup.OK_LINE}\n",  # a line merely containing it
    ],
)
def test_output_without_the_ok_line_last_is_a_failure(output: str) -> None:
    with pytest.raises(OpsError) as err:
        backup.require_ok(output, "the thing", "the hint")
    assert str(err.value) == "the thing failed (its lines above say why). the hint"
    with pytest.raises(OpsError) as err:
        backup.require_ok(output, "the thing")
    assert str(err.value) == "the thing failed (its lines above say why)"


# ------------------------------------------------------------------------------------ parse_info


def test_a_repository_without_the_stanza_reads_as_empty() -> None:
    assert backup.parse_info(NO_STANZA) == ("ok", ())


def test_a_stanza_without_backups_reads_as_empty() -> None:
    assert backup.parse_info(NO_BACKUPS) == ("ok", ())


def test_a_full_and_a_differential_backup_are_read_with_their_times_and_sizes() -> None:
    status, backups = backup.parse_info(TWO_BACKUPS)
    assert status == "ok"
    assert backups == (
        backup.BackupSet(
            label=FULL,
            type="full",
            start=_utc("2026-11-29T02:00:01"),
            stop=_utc("2026-11-29T02:00:09"),
            size=31876983,
            repo_size=4072346,
            repo=1,
        ),
        backup.BackupSet(
            label=DIFF,
            type="diff",
            start=_utc("2026-11-30T02:00:02"),
            stop=_utc("2026-11-30T02:00:05"),
            size=31876983,
            repo_size=212345,
            repo=1,
        ),
    )
    assert [b.seconds for b in backups] == [8.0, 3.0]


def test_compose_s_own_lines_around_the_json_are_skipped() -> None:
    # A host merges compose's stderr into the output.
    text = (
        "WARN[0000] Found orphan containers ([x]) for this project. If you removed or renamed "
        "this service in your compose file, you can run this command with the --remove-orphans "
        "flag to clean it up.\n"
        f"{TWO_BACKUPS}\n"
        " Container slipway-local-backup-restore-run-1f2e Removed\n"
    )
    assert backup.parse_info(text) == backup.parse_info(TWO_BACKUPS)
    assert backup.parse_info(text)[0] == "ok"
    assert backup.parse_info(text)[1][1].label == DIFF


def test_a_repository_that_cannot_be_decrypted_reports_the_repository_message() -> None:
    status, backups = backup.parse_info(WRONG_PASSPHRASE)
    assert status.startswith("repo1: [095]: unable to load info file")
    assert "FormatError: key/value found outside of section" in status
    assert backups == ()


def test_an_answer_that_is_not_json_is_refused_with_its_end() -> None:
    text = "WARN: environment contains invalid option 'cipher-pas'\nERROR: [031]: bad option\n"
    with pytest.raises(
        OpsError, match=r"(?s)did not answer JSON: WARN: .*ERROR: \[031\]: bad option"
    ):
        backup.parse_info(text)
    with pytest.raises(OpsError, match="did not answer JSON"):
        backup.parse_info("[]")


# ---------------------------------------------------------------------------------------- advice

PASSPHRASE_ADVICE = "the repository cannot be decrypted with this BACKUP_PASSPHRASE"


@pytest.mark.parametrize(
    "output",
    [
        WRONG_PASSPHRASE_MESSAGE,
        "ERROR: [095]: CryptoError: unable to flush: [101] bad decrypt",
        "FormatError: key/value found outside of section at line 1: \x0f\x9d",
        "HINT: is or was the repo encrypted?",
    ],
)
def test_a_decryption_failure_gets_the_passphrase_advice(output: str) -> None:
    assert backup.advice(output).startswith(PASSPHRASE_ADVICE)
    assert "Rotating the passphrase" in backup.advice(output)
    assert backup.advice(output).endswith("nothing was changed")


@pytest.mark.parametrize(
    "output",
    [
        # Every restore logs its options: an encrypted repository is named in each of them.
        "2026-11-30 04:00:01.123 P00   INFO: restore command begin 2.48: --delta "
        "--exec-id=71-4b9a2e1c --log-level-console=info --pg1-path=/var/lib/postgresql/data "
        "--repo1-cipher-pass=<redacted> --repo1-cipher-type=aes-256-cbc "
        "--repo1-path=/var/lib/pgbackrest --stanza=listings",
        # [095] is not a decryption failure by itself.
        "ERROR: [095]: unable to load info file '/var/lib/pgbackrest/backup/listings/backup.info'"
        ":\nFileOpenError: unable to open file for read: [13] Permission denied",
        "ERROR: [056]: unable to find primary cluster - cannot proceed",
    ],
)
def test_other_failures_get_no_passphrase_advice(output: str) -> None:
    assert backup.advice(output) == ""


# ------------------------------------------------------------------------------ read_repository


def test_the_repository_is_read_in_a_one_off_container_with_the_archiver_s_last_time() -> None:
    target = _healthy_target()
    repo = backup.read_repository(target)
    assert target.calls[0] == INFO
    assert target.calls[1][: len(PSQL)] == PSQL
    assert "pg_stat_archiver" in target.calls[1][-1]
    assert len(target.calls) == 2
    assert repo.status == "ok"
    assert [b.label for b in repo.backups] == [FULL, DIFF]
    assert repo.latest_archived == _utc("2026-11-30T03:40:00")
    assert repo.earliest == _utc("2026-11-29T02:00:09")  # the end of the oldest backup
    assert repo.latest == _utc("2026-11-30T03:40:00")  # the newest archived WAL


def test_the_repository_is_read_without_the_backup_service() -> None:
    # A lost volume, a stopped stack: the one-off container needs neither the backup service
    # nor PostgreSQL.
    target = FakeTarget(
        {
            ("exec", "-T", "backup"): OpsError('service "backup" is not running'),
            INFO: TWO_BACKUPS,
            PSQL: OpsError('service "postgres" is not running'),
        }
    )
    repo = backup.read_repository(target)
    assert [b.label for b in repo.backups] == [FULL, DIFF]
    assert not [argv for argv in target.calls if argv[:3] == ("exec", "-T", "backup")]


def test_without_postgres_the_window_ends_with_the_newest_backup() -> None:
    target = _healthy_target()
    target.answers[PSQL] = OpsError("service postgres is not running")
    repo = backup.read_repository(target)
    assert repo.latest_archived is None
    assert repo.latest == _utc("2026-11-30T02:00:05")
    # Nothing archived yet (an empty answer) reads the same.
    target.answers[PSQL] = "\n"
    assert backup.read_repository(target).latest == _utc("2026-11-30T02:00:05")


def test_a_wrong_passphrase_names_backup_passphrase_and_changes_nothing() -> None:
    target = FakeTarget({INFO: WRONG_PASSPHRASE})
    with pytest.raises(OpsError) as err:
        backup.read_repository(target)
    message = str(err.value)
    assert message.startswith(f"the backup repository of {LABEL} cannot be read: repo1: [095]")
    assert "cannot be decrypted with this BACKUP_PASSPHRASE" in message
    assert "Rotating the passphrase" in message
    assert message.endswith("nothing was changed")
    assert target.calls == [INFO]


def test_an_unreadable_repository_without_advice_still_says_nothing_was_changed() -> None:
    broken = _stanza(99, "other", 99, "[041]: unable to open '/var/lib/pgbackrest': [13] denied")
    target = FakeTarget({INFO: broken})
    with pytest.raises(OpsError) as err:
        backup.read_repository(target)
    assert str(err.value) == (
        f"the backup repository of {LABEL} cannot be read: repo1: [041]: unable to open "
        "'/var/lib/pgbackrest': [13] denied. Nothing was changed"
    )
    assert PASSPHRASE_ADVICE not in str(err.value)


def test_a_failing_info_command_stops_the_read_with_its_own_message() -> None:
    failure = OpsError(
        "read the backup repository (pgbackrest info) failed (exit 1): no such image"
    )
    target = FakeTarget({INFO: failure})
    with pytest.raises(OpsError) as err:
        backup.read_repository(target)
    assert err.value is failure
    assert target.calls == [INFO]  # PostgreSQL is not asked for a window that cannot be read


def test_an_empty_repository_can_be_read() -> None:
    target = FakeTarget({INFO: NO_STANZA, PSQL: LAST_ARCHIVED})
    repo = backup.read_repository(target)
    assert repo.backups == ()
    assert (repo.earliest, repo.latest) == (None, None)


# ---------------------------------------------------------------------------------- archive_now


def test_archiving_now_runs_in_the_postgres_container() -> None:
    target = FakeTarget()
    assert backup.archive_now(target) is True
    assert target.calls == [ARCHIVE_NOW]


@pytest.mark.parametrize(
    "answer",
    [
        OpsError('service "postgres" is not running'),
        # compose exited 0, but archiving did not finish (no OK line).
        _log("WAL segment 00000001000000000000000A was not archived within 300 s"),
        "",
    ],
)
def test_archiving_now_is_false_when_postgres_cannot_archive(answer: str | OpsError) -> None:
    target = FakeTarget({ARCHIVE_NOW: answer})
    assert backup.archive_now(target) is False
    assert target.calls == [ARCHIVE_NOW]


# ------------------------------------------------------------------------------ format_listing


def test_the_listing_has_one_line_per_backup_and_the_recovery_window() -> None:
    lines = backup.format_listing(_repository(), LABEL)
    assert lines[0].split() == [
        "label", "type", "start", "stop", "secs", "db", "size", "stored", "repo",
    ]  # fmt: skip
    assert lines[1].split() == [
        FULL, "full", "2026-11-29T02:00:01Z", "2026-11-29T02:00:09Z", "8", "30.4MB", "3.9MB",
        "repo1",
    ]  # fmt: skip
    assert lines[2].split() == [
        DIFF, "diff", "2026-11-30T02:00:02Z", "2026-11-30T02:00:05Z", "3", "30.4MB", "207.4KB",
        "repo1",
    ]  # fmt: skip
    assert lines[3].startswith(
        "recovery window: 2026-11-29T02:00:09Z .. 2026-11-30T03:40:00Z (earliest: end of the "
        "oldest backup; latest: the newest archived WAL)"
    )
    assert len(lines) == 4


def test_an_incremental_label_keeps_the_columns_aligned() -> None:
    assert len(INCR) == 33
    rows = (
        backup.BackupSet(
            FULL, "full", _utc("2026-11-29T02:00:01"), _utc("2026-11-29T02:00:09"), 1, 1, 1
        ),
        backup.BackupSet(
            INCR, "incr", _utc("2026-11-30T12:00:03"), _utc("2026-11-30T12:00:04"), 1, 1, 2
        ),
    )
    lines = backup.format_listing(backup.Repository("ok", rows, None), LABEL)
    column = lines[0].index("type")
    assert column > len(INCR)  # a space between the longest label and its type
    assert lines[1][column:].startswith("full ")
    assert lines[2][column:].startswith("incr ")
    assert lines[2].startswith(f"{INCR} ")
    assert lines[2].endswith("repo2")
    # The columns after it stay under their headers: nothing pushed right by a long label.
    start = lines[0].index("start")
    assert lines[1][start:].startswith("2026-11-29T02:00:01Z ")
    assert lines[2][start:].startswith("2026-11-30T12:00:03Z ")
    assert len(lines[1]) == len(lines[2])


def test_an_empty_repository_is_listed_as_such_without_a_window() -> None:
    lines = backup.format_listing(backup.Repository("ok", (), None), LABEL)
    assert lines[1:] == [f"no backups in the repository of {LABEL} yet"]
    assert not any("recovery window" in line for line in lines)


def test_list_backups_reads_the_environment_s_repository(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    opened.append(_healthy_target())
    lines = backup.list_backups("local")
    assert lines[-1].startswith("recovery window: 2026-11-29T02:00:09Z .. 2026-11-30T03:40:00Z")
    assert opened[0].calls[0] == INFO


# ------------------------------------------------------------------------------ normalize_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-30T12:00:00Z", "2026-11-30 12:00:00+00"),
        ("2026-11-30T12:00:00+00:00", "2026-11-30 12:00:00+00"),
        ("2026-11-30T14:00:00+02:00", "2026-11-30 12:00:00+00"),  # converted to UTC
        ("2026-11-30T01:30:00-05:00", "2026-11-30 06:30:00+00"),
        ("2026-12-01T00:30:00+01:00", "2026-11-30 23:30:00+00"),  # across midnight
        (" 2026-11-30T12:00:00.750Z ", "2026-11-30 12:00:00+00"),  # blanks, fractions dropped
    ],
)
def test_times_with_an_offset_become_utc(text: str, expected: str) -> None:
    assert backup.normalize_time(text) == expected


def test_a_time_without_offset_is_refused_with_the_fix() -> None:
    with pytest.raises(OpsError) as err:
        backup.normalize_time("2026-11-30T12:00:00")
    assert str(err.value) == (
        "--at=2026-11-30T12:00:00 has no UTC offset, so it is ambiguous. Fix: add one, e.g. "
        "2026-11-30T12:00:00+00:00 or 2026-11-30T12:00:00Z"
    )


@pytest.mark.parametrize("text", ["yesterday", "2026-11-31T12:00:00Z", "12:00", "now+1h"])
def test_garbage_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(OpsError) as err:
        backup.normalize_time(text)
    assert f"--at={text} is not an ISO 8601 time" in str(err.value)
    assert "Fix: write e.g. 2026-11-30T12:00:00+00:00" in str(err.value)


# -------------------------------------------------------------------------------- plan_restore


def test_a_time_inside_the_window_is_restored_as_a_point_in_time() -> None:
    plan = backup.plan_restore(_repository(), at="2026-11-30T01:00:00+01:00", now=NOW)
    assert plan == backup.RestorePlan(
        ("--at=2026-11-30 00:00:00+00",),
        "2026-11-30T00:00:00Z (point in time)",
        _utc("2026-11-30T00:00:00"),
    )


def test_the_window_s_ends_are_inside_it() -> None:
    repo = _repository()
    earliest = backup.plan_restore(repo, at="2026-11-29T02:00:09Z", now=NOW)
    latest = backup.plan_restore(repo, at="2026-11-30T03:40:00Z", now=NOW)
    assert earliest.args == ("--at=2026-11-29 02:00:09+00",)
    assert latest.args == ("--at=2026-11-30 03:40:00+00",)


def test_a_time_before_the_oldest_backup_ends_is_refused() -> None:
    with pytest.raises(OpsError) as err:
        backup.plan_restore(_repository(), at="2026-11-29T02:00:08Z", now=NOW)
    assert str(err.value).startswith(
        "--at=2026-11-29T02:00:08Z is before the recovery window "
        "(2026-11-29T02:00:09Z .. 2026-11-30T03:40:00Z): no backup ends before it."
    )
    assert "Fix: pick a time inside the window (`invoke backup.list`)" in str(err.value)
    assert str(err.value).endswith("Nothing was changed")


def test_a_time_after_the_newest_archived_wal_is_refused() -> None:
    with pytest.raises(OpsError) as err:
        backup.plan_restore(_repository(), at="2026-11-30T03:50:00Z", now=NOW)
    assert str(err.value).startswith(
        "--at=2026-11-30T03:50:00Z is after the newest archived WAL (2026-11-30T03:40:00Z): "
        "PostgreSQL could not reach it."
    )
    assert "omit --at for everything archived" in str(err.value)
    assert str(err.value).endswith("Nothing was changed")


def test_with_postgres_down_a_time_after_the_newest_backup_is_left_to_postgres() -> None:
    # The newest archived WAL is unknown: the repository may hold WAL past the newest backup.
    down = backup.Repository("ok", _repository().backups, None)
    assert down.latest == _utc("2026-11-30T02:00:05")  # the end of the newest backup
    plan = backup.plan_restore(down, at="2026-11-30T03:50:00Z", now=NOW)
    assert plan == backup.RestorePlan(
        ("--at=2026-11-30 03:50:00+00",),
        "2026-11-30T03:50:00Z (point in time)",
        _utc("2026-11-30T03:50:00"),
    )
    # The lower bound and the future are still refused.
    with pytest.raises(OpsError, match="is before the recovery window"):
        backup.plan_restore(down, at="2026-11-29T02:00:08Z", now=NOW)
    with pytest.raises(OpsError, match="is in the future"):
        backup.plan_restore(down, at="2026-11-30T04:10:00Z", now=NOW)


def test_a_time_in_the_future_is_refused() -> None:
    with pytest.raises(OpsError) as err:
        backup.plan_restore(_repository(), at="2026-12-24T00:00:00Z", now=NOW)
    assert str(err.value) == (
        "--at=2026-12-24T00:00:00Z is in the future. Fix: pick a time inside the window. "
        "Nothing was changed"
    )


def test_a_time_without_offset_is_refused_by_the_plan_too() -> None:
    with pytest.raises(OpsError, match="has no UTC offset"):
        backup.plan_restore(_repository(), at="2026-11-30T00:00:00", now=NOW)


def test_a_known_backup_is_restored_to_its_end() -> None:
    plan = backup.plan_restore(_repository(), label=DIFF, now=NOW)
    assert plan == backup.RestorePlan(
        (f"--backup={DIFF}",),
        f"the end of backup {DIFF} (2026-11-30T02:00:05Z)",
        _utc("2026-11-30T02:00:05"),
    )


@pytest.mark.parametrize(
    ("target", "args"),
    [
        ({"label": FULL}, (f"--backup={FULL}", "--repo=1")),
        ({"at": "2026-11-30T00:00:00Z"}, ("--at=2026-11-30 00:00:00+00", "--repo=1")),
        ({}, ("--repo=1",)),
    ],
)
def test_the_extra_arguments_go_with_every_kind_of_target(
    target: dict[str, str], args: Argv
) -> None:
    plan = backup.plan_restore(_repository(), now=NOW, extra=("--repo=1",), **target)
    assert plan.args == args


def test_one_repository_only_restores_from_its_own_backups() -> None:
    repo = _repository()  # both backups are in repo1
    assert backup.plan_restore(repo, label=FULL, now=NOW, only=1).args == (f"--backup={FULL}",)
    with pytest.raises(OpsError, match=r"has no backup to restore from.*Nothing was changed"):
        backup.plan_restore(repo, label=FULL, now=NOW, only=2)


def test_an_unknown_backup_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(OpsError) as err:
        backup.plan_restore(_repository(), label="20261101-020001F", now=NOW)
    assert str(err.value) == (
        f"--backup=20261101-020001F is not in the repository (it holds: {FULL}, {DIFF}). "
        "Nothing was changed"
    )


def test_a_time_and_a_backup_together_are_refused() -> None:
    with pytest.raises(OpsError) as err:
        backup.plan_restore(_repository(), at="2026-11-30T00:00:00Z", label=FULL, now=NOW)
    assert str(err.value) == (
        "--at and --backup both given: choose one restore target. Nothing was changed"
    )


@pytest.mark.parametrize(("at", "label"), [("", ""), ("2026-11-30T00:00:00Z", ""), ("", FULL)])
def test_an_empty_repository_has_nothing_to_restore(at: str, label: str) -> None:
    empty = backup.Repository("ok", (), _utc("2026-11-30T03:40:00"))
    with pytest.raises(OpsError) as err:
        backup.plan_restore(empty, at=at, label=label, now=NOW)
    assert str(err.value).startswith(
        "the repository has no backup to restore from. Fix: `invoke backup` first"
    )
    assert str(err.value).endswith("Nothing was changed")


def test_without_a_target_everything_archived_is_restored() -> None:
    plan = backup.plan_restore(_repository(), now=NOW)
    assert plan == backup.RestorePlan(
        (),
        "everything archived (up to about 2026-11-30T03:40:00Z)",
        _utc("2026-11-30T03:40:00"),
    )


# ----------------------------------------------------------------------------- confirm_restore


def _never_asked(prompt: str) -> str:
    raise AssertionError(f"asked {prompt!r}")


POINT = backup.RestorePlan(
    ("--at=2026-11-30 00:00:00+00",),
    "2026-11-30T00:00:00Z (point in time)",
    _utc("2026-11-30T00:00:00"),
)


def test_yes_goes_on_without_asking_and_says_what_is_lost(
    local: config.Environment, capsys: pytest.CaptureFixture[str]
) -> None:
    backup.confirm_restore(local, POINT, LABEL, yes=True, interactive=True, ask=_never_asked)
    said = capsys.readouterr().out
    assert said.startswith(
        f"Restoring {LABEL} in place to 2026-11-30T00:00:00Z (point in time) loses every "
        "change written after 2026-11-30T00:00:00Z: the live database is replaced."
    )
    assert "The API and worker stop meanwhile." in said


def test_without_yes_and_without_a_terminal_nothing_is_restored(
    local: config.Environment, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(OpsError) as err:
        backup.confirm_restore(local, POINT, LABEL, yes=False, interactive=False, ask=_never_asked)
    assert str(err.value) == (
        "refusing to replace the database of local without confirmation. Fix: add --yes if you "
        "really mean it (nothing was changed)"
    )
    # The cost is printed even when refused: the operator sees what --yes would do.
    assert "loses every change written after 2026-11-30T00:00:00Z" in capsys.readouterr().out


def test_a_closed_stdin_counts_as_no_terminal(
    local: config.Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(OpsError, match="without confirmation"):
        backup.confirm_restore(local, POINT, LABEL, yes=False, ask=_never_asked)


@pytest.mark.parametrize("typed", ["", "y", "yes", "Local", "production"])
def test_a_wrong_typed_name_refuses(local: config.Environment, typed: str) -> None:
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return typed

    with pytest.raises(OpsError, match=r"^not confirmed: local left as it was$"):
        backup.confirm_restore(local, POINT, LABEL, yes=False, interactive=True, ask=ask)
    assert prompts == ["Type the environment's name (local) to go on: "]


def test_the_typed_name_confirms(local: config.Environment) -> None:
    backup.confirm_restore(
        local, POINT, LABEL, yes=False, interactive=True, ask=lambda prompt: "  local\n"
    )


def test_without_a_known_point_the_unarchived_changes_are_named(
    local: config.Environment, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = backup.RestorePlan((), "everything archived (up to about -)", None)
    backup.confirm_restore(local, plan, LABEL, yes=True)
    assert "loses every change not yet archived" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- restore


def test_another_environment_s_backups_are_refused_before_anything_is_touched(
    local: config.Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_target(monkeypatch)
    with pytest.raises(OpsError) as err:
        backup.restore("local", source="production", yes=True)
    assert str(err.value).startswith("--from=production needs --sanitize")
    assert str(err.value).endswith("Nothing was changed")


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("2026-11-30T12:00:00", "--at=2026-11-30T12:00:00 has no UTC offset"),
        ("yesterday", "--at=yesterday is not an ISO 8601 time"),
    ],
)
def test_a_malformed_time_is_refused_before_the_stack_is_reached(
    local: config.Environment, monkeypatch: pytest.MonkeyPatch, at: str, message: str
) -> None:
    _no_target(monkeypatch)
    with pytest.raises(OpsError, match=re.escape(message)):
        backup.restore("local", at=at, yes=True)


def test_a_host_without_its_secrets_is_refused_before_its_stack_is_reached(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_env(
        "staging",
        "name: staging\ntarget: ssh\ndomains: [app.example.org]\n"
        "hosts: [{ssh: deploy@203.0.113.10}]\n",
    )
    (tmp_path / ".env.staging").write_text("POSTGRES_PASSWORD=Jq3vN8xR2mT5wK7pL4sY9b\n")
    monkeypatch.delenv("BACKUP_PASSPHRASE", raising=False)

    def refuse(env: config.Environment) -> None:
        raise AssertionError("reached the host")

    monkeypatch.setattr(backup, "open_target", refuse)
    with pytest.raises(OpsError, match=r"  - BACKUP_PASSPHRASE is missing"):
        backup.restore("staging", yes=True)


def test_a_restore_archives_reads_the_repository_then_runs_the_steps_under_the_lock(
    local: config.Environment,
    opened: list[FakeTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backup, "datetime", _FrozenDatetime)
    target = _healthy_target()
    opened.append(target)
    report = backup.restore(
        "local", at="2026-11-30T00:00:00Z", source="local", yes=True, runner=_quiet()
    )
    assert [o.status for o in report.outcomes] == ["ok"] * 9
    # Everything committed so far into the repository first, then the window read.
    assert target.calls[0] == ARCHIVE_NOW
    assert target.calls[1] == INFO  # read by a one-off container: postgres may be down
    assert target.calls[2][: len(PSQL)] == PSQL
    # The steps run under the deploy lock, and only they do.
    assert target.calls[3] == LOCK_RESTORE
    assert target.calls[4] == ("maintenance", "on")
    assert (*RESTORE_RUN, "--at=2026-11-30 00:00:00+00") in target.calls
    assert target.calls[-2:] == [("maintenance", "off"), UNLOCK_RESTORE]
    # Archived again once the writers are stopped: the last writes are in the repository.
    assert target.calls.count(ARCHIVE_NOW) == 2
    assert report.outcomes[2].note == ARCHIVED


def test_a_restore_of_one_repository_passes_it_to_backup_restore(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    target = _healthy_target()
    opened.append(target)
    backup.restore("local", label=FULL, repo=1, yes=True, runner=_quiet())
    assert (*RESTORE_RUN, f"--backup={FULL}", "--repo=1") in target.calls


def test_a_restore_with_postgres_down_restores_what_the_repository_holds(
    local: config.Environment,
    opened: list[FakeTarget],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(backup, "datetime", _FrozenDatetime)
    down = OpsError('service "postgres" is not running')
    target = FakeTarget({INFO: TWO_BACKUPS, PSQL: down, ARCHIVE_NOW: down})
    opened.append(target)
    # After the newest backup's end: PostgreSQL, not the plan, says whether WAL reaches it.
    report = backup.restore("local", at="2026-11-30T03:50:00Z", yes=True, runner=_quiet())
    assert "PostgreSQL is not running (or cannot archive)" in capsys.readouterr().out
    assert [o.status for o in report.outcomes] == ["ok"] * 9
    assert report.outcomes[2].step.name == "archive the last writes"
    assert report.outcomes[2].note == "skipped: PostgreSQL is not running"
    assert target.calls.count(ARCHIVE_NOW) == 1  # tried once, before the plan: not again
    assert (*RESTORE_RUN, "--at=2026-11-30 03:50:00+00") in target.calls


def test_a_failing_restore_gives_the_lock_back(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    target = _healthy_target()
    target.answers[RESTORE_RUN] = _log("restore failed: [040] no backup set found")
    opened.append(target)
    with pytest.raises(OpsError, match="pgbackrest restore failed"):
        backup.restore("local", yes=True, runner=_quiet())
    assert target.calls[-1] == UNLOCK_RESTORE
    assert target.calls[-2] == RESTORE_RUN


def test_a_restore_without_yes_off_a_terminal_changes_nothing(
    local: config.Environment,
    opened: list[FakeTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    target = _healthy_target()
    opened.append(target)
    with pytest.raises(OpsError, match=r"without confirmation.*\(nothing was changed\)"):
        backup.restore("local", runner=_quiet())
    _only_reads(target)


def test_a_restore_to_a_time_outside_the_window_changes_nothing(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    target = _healthy_target()
    opened.append(target)
    with pytest.raises(OpsError, match=r"is before the recovery window.*Nothing was changed"):
        backup.restore("local", at="2020-01-01T00:00:00Z", yes=True, runner=_quiet())
    _only_reads(target)


def test_a_restore_with_an_undecryptable_repository_changes_nothing(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    target = FakeTarget({INFO: WRONG_PASSPHRASE, ARCHIVE_NOW: OpsError("archive failed")})
    opened.append(target)
    with pytest.raises(OpsError, match=r"BACKUP_PASSPHRASE.*nothing was changed"):
        backup.restore("local", yes=True, runner=_quiet())
    _only_reads(target)


def _only_reads(target: FakeTarget) -> None:
    """Nothing but reads (and archiving: no change to the data) reached the stack; no lock."""
    assert target.calls, "the stack was not even read"
    for argv in target.calls:
        assert argv[:1] == ("exec",) or argv == INFO, f"{argv} changes the stack"


class _FrozenDatetime(datetime):
    """datetime with now() at NOW, for restore()'s own call of plan_restore."""

    @classmethod
    def now(cls, tz: Any = None) -> _FrozenDatetime:
        return cls.fromtimestamp(NOW.timestamp(), tz=tz)


def _quiet() -> Runner:
    return Runner("invoke restore --env local", out=io.StringIO(), clock=lambda: 0.0, groups=False)


# ---------------------------------------------------------------------------- the restore steps


def test_the_restore_steps_run_in_a_safe_order(local: config.Environment) -> None:
    target = FakeTarget()
    plan = backup.plan_restore(_repository(), at="2026-11-30T00:00:00Z", now=NOW)
    report = backup._restore_steps(local, target, plan, _quiet())
    assert target.calls == [
        ("maintenance", "on"),
        # Everything that writes to PostgreSQL stops before it does.
        ("stop", "api", "worker", "backup"),
        # Their last writes into the repository before the live pg_wal is replaced.
        ARCHIVE_NOW,
        ("stop", "postgres"),
        (*RESTORE_RUN, "--at=2026-11-30 00:00:00+00"),
        # Started alone and waited for: WAL replay and promotion before anything connects.
        ("up", "-d", "--no-deps", "--wait", "--wait-timeout", "3600", "postgres"),
        PROMOTED,
        MIGRATE,
        ("up", "-d", "--no-deps", "--wait", "--wait-timeout", "300", "api", "worker", "backup"),
        ("maintenance", "off"),
    ]
    assert target.streamed == [(*RESTORE_RUN, "--at=2026-11-30 00:00:00+00")]
    assert all(o.step.impacting for o in report.outcomes)
    assert [o.note for o in report.outcomes] == [
        "maintenance on",
        "api, worker, backup stopped",
        ARCHIVED,
        "stopped",
        "2026-11-30T00:00:00Z (point in time)",
        "recovered, promoted and healthy",
        SCHEMA,
        "healthy",
        "maintenance off",
    ]


@pytest.mark.parametrize(
    ("plan_args", "restore_argv"),
    [
        ({"label": FULL}, (*RESTORE_RUN, f"--backup={FULL}")),
        ({}, RESTORE_RUN),  # everything archived: backup-restore without a target
    ],
)
def test_the_restore_runs_with_the_plan_s_arguments(
    local: config.Environment, plan_args: dict[str, str], restore_argv: Argv
) -> None:
    target = FakeTarget()
    plan = backup.plan_restore(_repository(), now=NOW, **plan_args)
    backup._restore_steps(local, target, plan, _quiet())
    assert target.calls[4] == restore_argv


def test_without_a_running_postgres_the_last_writes_are_not_archived(
    local: config.Environment,
) -> None:
    target = FakeTarget()
    plan = backup.plan_restore(_repository(), now=NOW)
    report = backup._restore_steps(local, target, plan, _quiet(), live=False)
    assert ARCHIVE_NOW not in target.calls
    assert report.outcomes[2].status == "ok"
    assert report.outcomes[2].note == "skipped: PostgreSQL is not running"
    assert RESTORE_RUN in target.calls


def _failing_runner() -> tuple[Runner, io.StringIO]:
    out = io.StringIO()
    return Runner("invoke restore --env local", out=out, clock=lambda: 0.0, groups=False), out


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (OpsError("pgbackrest restore failed (exit 41)"), r"exit 41"),
        # compose exited 0 (compose 2.40 on Docker 20.10), but the script did not finish.
        (
            _log("restore failed: [040] no backup set found", "backup-restore"),
            r"^pgbackrest restore failed \(its lines above say why\)\. PostgreSQL is stopped "
            r"and must not be started$",
        ),
    ],
)
def test_a_failed_restore_stops_there_in_maintenance_and_says_it_can_be_repeated(
    local: config.Environment, answer: str | OpsError, error: str
) -> None:
    target = FakeTarget({RESTORE_RUN: answer})
    runner, out = _failing_runner()
    plan = backup.plan_restore(_repository(), now=NOW)
    with pytest.raises(OpsError, match=error):
        backup._restore_steps(local, target, plan, runner)
    assert target.calls[-1] == RESTORE_RUN  # nothing started on a half-restored volume
    assert ("maintenance", "off") not in target.calls
    printed = out.getvalue()
    assert "FAILED at step 'restore the data volume (pgbackrest)'" in printed
    assert "it is safe to repeat" in printed and "invoke status --env=local" in printed


def test_last_writes_that_cannot_be_archived_stop_before_postgres_does(
    local: config.Environment,
) -> None:
    broken = _log("WAL segment 00000001000000000000000A was not archived within 300 s")
    target = FakeTarget({ARCHIVE_NOW: broken})
    runner, out = _failing_runner()
    plan = backup.plan_restore(_repository(), now=NOW)
    with pytest.raises(OpsError) as err:
        backup._restore_steps(local, target, plan, runner)
    assert str(err.value) == (
        "archiving the last writes failed (its lines above say why). nothing was restored; the "
        "service is stopped"
    )
    assert target.calls[-1] == ARCHIVE_NOW
    assert ("stop", "postgres") not in target.calls
    assert "FAILED at step 'archive the last writes'" in out.getvalue()


@pytest.mark.parametrize("answer", ["t\n", "", "psql: error: connection refused\n"])
def test_a_postgres_still_in_recovery_stops_before_the_migration(
    local: config.Environment, answer: str
) -> None:
    target = FakeTarget({PROMOTED: answer})
    runner, out = _failing_runner()
    plan = backup.plan_restore(_repository(), now=NOW)
    with pytest.raises(OpsError, match=r"PostgreSQL did not come back promoted"):
        backup._restore_steps(local, target, plan, runner)
    assert target.calls[-1] == PROMOTED
    assert MIGRATE not in target.calls
    assert "FAILED at step 'start PostgreSQL (WAL replay, promotion)'" in out.getvalue()


def test_a_migration_that_does_not_finish_leaves_the_writers_stopped(
    local: config.Environment,
) -> None:
    # compose exited 0 without the migration's last line.
    target = FakeTarget({MIGRATE: "Traceback (most recent call last):\n  ...\nOperationalError\n"})
    runner, _ = _failing_runner()
    plan = backup.plan_restore(_repository(), now=NOW)
    with pytest.raises(OpsError, match=r"(?s)the migration did not finish: .*OperationalError"):
        backup._restore_steps(local, target, plan, runner)
    assert target.calls[-1] == MIGRATE
    assert not [argv for argv in target.calls if argv[:1] == ("up",) and "api" in argv]


# ------------------------------------------------------------------------------ backup and drill


def test_an_unknown_backup_type_is_refused_before_anything_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(name: str) -> None:
        raise AssertionError("loaded the environment")

    monkeypatch.setattr(config, "load", refuse)
    _no_target(monkeypatch)
    with pytest.raises(OpsError) as err:
        backup.backup("local", kind="weekly")
    assert str(err.value) == "--type=weekly is not a backup type: use full, diff or incr"


@pytest.mark.parametrize("kind", backup.BACKUP_TYPES)
def test_a_backup_runs_in_the_backup_service_streaming_its_lines(
    local: config.Environment, opened: list[FakeTarget], kind: str
) -> None:
    target = FakeTarget()
    opened.append(target)
    backup.backup("local", kind=kind)
    assert target.calls == [(*BACKUP_RUN, f"--type={kind}")]
    assert target.streamed == target.calls


def test_a_backup_whose_container_failed_points_at_its_lines_and_the_listing(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    # compose exited 0; the script's own last line says it did not succeed.
    opened.append(FakeTarget({BACKUP_RUN: _log("diff backup failed: [082] WAL not archived")}))
    with pytest.raises(OpsError) as err:
        backup.backup("local")
    assert str(err.value) == (
        f"the diff backup of {LABEL} failed (its lines above say why). `invoke backup.list` "
        "shows what the repository has; docs/runbook.md#backupfailed"
    )


def test_a_failed_compose_run_of_the_backup_keeps_its_message(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    opened.append(FakeTarget({BACKUP_RUN: OpsError("diff backup failed (exit 1)")}))
    with pytest.raises(OpsError) as err:
        backup.backup("local")
    assert str(err.value) == "diff backup failed (exit 1)"


def test_a_stopped_backup_service_says_how_to_start_it(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    opened.append(FakeTarget({BACKUP_RUN: OpsError('service "backup" is not running')}))
    with pytest.raises(OpsError) as err:
        backup.backup("local")
    assert str(err.value).startswith(
        f"the backup service of {LABEL} is not running. Fix: `invoke up`"
    )
    assert str(err.value).endswith("""(service "backup" is not running)""")


def test_a_backup_that_cannot_decrypt_the_repository_gets_the_passphrase_advice(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    failure = "diff backup failed (exit 1): ERROR: [095]: CryptoError: unable to flush"
    opened.append(FakeTarget({BACKUP_RUN: OpsError(failure)}))
    with pytest.raises(OpsError) as err:
        backup.backup("local")
    assert str(err.value).startswith(f"{failure}. {PASSPHRASE_ADVICE}")


def test_a_drill_runs_in_a_scratch_container_with_the_time_in_utc(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    target = FakeTarget()
    opened.append(target)
    backup.drill("local", at="2026-11-30T01:00:00+01:00", repo=1)
    assert target.calls == [(*DRILL_RUN, "--at=2026-11-30 00:00:00+00", "--repo=1")]
    assert target.streamed == target.calls


@pytest.mark.parametrize(
    "answer",
    [
        OpsError("drill failed"),
        # compose exited 0, but the drill did not get to its OK line.
        _log("drill FAILED: 3 listings differ", "backup-drill"),
        "",
    ],
)
def test_a_failed_drill_points_at_the_runbook(
    local: config.Environment, opened: list[FakeTarget], answer: str | OpsError
) -> None:
    failing = FakeTarget({DRILL_RUN: answer})
    opened.append(failing)
    with pytest.raises(OpsError) as err:
        backup.drill("local")
    assert str(err.value) == (
        f"the restore drill of {LABEL} FAILED (its lines above say where). "
        "Runbook: docs/runbook.md#backupdrillfailing"
    )
    assert failing.calls == [DRILL_RUN]  # no --at: the drill writes its own marker


# -------------------------------------------------------------------------------- open_target


SWARM_YAML = (
    "name: staging\ntarget: ssh\nlistings_env: staging\nhosts:\n"
    "  - ssh: deploy@203.0.113.10\n    swarm_address: 10.0.0.10\n"
    "  - ssh: deploy@203.0.113.11\n"
)
STACK_YAML = (
    "# written by invoke deploy\nversion: '3.9'\nservices:\n"
    "  api:\n    deploy: {replicas: 3}\n  worker:\n    deploy: {replicas: 2}\n"
    "  backup:\n    deploy: {placement: {constraints: [node.labels.slipway.data == true]}}\n"
    "  postgres:\n    image: slipway/postgres:1\n"
)


class FakeRemote:
    """The first host of a swarm: records each shell line; `docker ps` finds `containers`."""

    def __init__(
        self,
        containers: str = "c0ffee\n",
        stack_file: str | None = STACK_YAML,
        tasks: list[str] | None = None,
    ) -> None:
        self.host = SimpleNamespace(label="deploy@203.0.113.10")
        self.lines: list[tuple[str, str | None, float | None]] = []
        self.containers = containers
        self.stack_file = stack_file
        self.read: list[str] = []
        self.tasks = tasks or []  # successive `docker service ps` answers; then none running

    def run(
        self,
        command: str,
        *,
        check: bool = True,
        stdin: str | None = None,
        timeout: float | None = None,
        what: str = "",
    ) -> remote.Result:
        assert what, "every remote command says what it does"
        self.lines.append((command, stdin, timeout))
        if command.startswith("docker service ps"):
            out = self.tasks.pop(0) if self.tasks else "Shutdown 1 second ago\n"
        else:
            out = self.containers if command.startswith("docker ps") else "[slipway-ok]\n"
        return remote.Result(command, 0, out, "")

    def read_text(self, path: str) -> str | None:
        self.read.append(path)
        return self.stack_file


class FakeHost:
    def __init__(self, env: config.Environment, fake: FakeRemote) -> None:
        self.env = env
        self.remote = fake
        self.root = "/srv/slipway"

    def current(self) -> str:
        return "20261130-1200-abc1234"


def _swarm_target(write_env: WriteEnv, fake: FakeRemote) -> backup.SwarmTarget:
    write_env("staging", SWARM_YAML)
    env = config.load("staging")
    return backup.SwarmTarget(FakeHost(env, fake))  # type: ignore[arg-type]


def test_a_swarm_environment_opens_its_first_host_as_a_swarm_target(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("staging", SWARM_YAML)
    env = config.load("staging")
    assert env.is_swarm
    fake = FakeRemote()

    @contextmanager
    def fake_host(env: config.Environment) -> Iterator[FakeHost]:
        yield FakeHost(env, fake)

    monkeypatch.setattr(hostops, "Host", fake_host)
    with backup.open_target(env) as target:
        assert isinstance(target, backup.SwarmTarget)
        assert target.label == "slipway-staging (Docker Swarm) on deploy@203.0.113.10"


def test_swarm_exec_runs_in_the_task_container_on_the_first_host(write_env: WriteEnv) -> None:
    fake = FakeRemote(containers="c0ffee\nbadbad\n")
    target = _swarm_target(write_env, fake)
    out = target.exec("postgres", "psql", "-c", "SELECT 1", what="ask")
    assert out == "[slipway-ok]\n"
    find, run = fake.lines
    assert find[0] == (
        "docker ps -q --filter label=com.docker.swarm.service.name=slipway-staging_postgres"
    )
    assert run == ("docker exec c0ffee psql -c 'SELECT 1' 2>&1", None, None)
    target.exec("postgres", "backup-import", what="load", stdin="dump")
    assert fake.lines[-1] == ("docker exec -i c0ffee backup-import 2>&1", "dump", None)


def test_swarm_exec_without_a_running_task_names_the_service_and_the_fix(
    write_env: WriteEnv,
) -> None:
    target = _swarm_target(write_env, FakeRemote(containers=""))
    with pytest.raises(OpsError) as err:
        target.exec("backup", "backup-run", "--type=full", what="full backup")
    message = str(err.value)
    assert message.startswith("no container of backup is running on deploy@203.0.113.10")
    assert "`docker service ps slipway-staging_backup`" in message
    # `invoke backup` turns it into the "is not running" advice
    assert "is not running. Fix: `invoke up` (local) or `invoke deploy`" in (
        backup._not_running_hint(message, target)
    )


def test_swarm_stop_and_start_scale_to_zero_and_back_to_the_release_replicas(
    write_env: WriteEnv,
) -> None:
    # The manager still lists a task running after the scale (stopping on another host).
    fake = FakeRemote(tasks=["Running 9 minutes ago\nShutdown 2 seconds ago\n"])
    target = _swarm_target(write_env, fake)
    target.stop(*backup.WRITERS, what="stop")
    target.start(*backup.WRITERS, what="start", timeout=300)
    stop, still, stopped, start = fake.lines
    assert stop[0] == (
        "docker service scale slipway-staging_api=0 slipway-staging_worker=0 "
        "slipway-staging_backup=0 2>&1"
    )
    # waited for until none runs: not before the next step touches the data
    assert still == stopped
    assert still[0] == (
        "docker service ps slipway-staging_api slipway-staging_worker slipway-staging_backup "
        "--format '{{.CurrentState}}'"
    )
    # replicas as the current release's stack file sets them; 1 where it sets none
    assert start == (
        "docker service scale slipway-staging_api=3 slipway-staging_worker=2 "
        "slipway-staging_backup=1 2>&1",
        None,
        300.0,
    )
    assert fake.read == ["/srv/slipway/releases/20261130-1200-abc1234/stack.yaml"]


def test_swarm_stop_that_does_not_finish_says_what_still_runs(write_env: WriteEnv) -> None:
    fake = FakeRemote(tasks=["Running 9 minutes ago\n"] * 3)
    target = _swarm_target(write_env, fake)
    with pytest.raises(OpsError) as err:
        target.stop("postgres", what="stop PostgreSQL", timeout=0)
    assert str(err.value).startswith(
        "stop PostgreSQL: 1 task(s) of postgres still run after 0 s "
        "(`docker service ps slipway-staging_postgres` on deploy@203.0.113.10 says why)"
    )
    assert str(err.value).endswith("Nothing was restored")


def test_swarm_start_without_the_release_stack_file_says_to_deploy_again(
    write_env: WriteEnv,
) -> None:
    fake = FakeRemote(stack_file=None)
    target = _swarm_target(write_env, fake)
    with pytest.raises(OpsError) as err:
        target.start("postgres", what="start PostgreSQL", timeout=3600)
    assert "releases/20261130-1200-abc1234/stack.yaml is missing" in str(err.value)
    assert "`invoke deploy --env=staging` writes it again" in str(err.value)
    assert not fake.lines  # nothing scaled


def test_another_environment_into_production_is_refused_naming_the_direction(
    write_env: Callable[[str, str], Path],
) -> None:
    write_env(
        "production",
        "name: production\ntarget: ssh\nlistings_env: production\ndomains: [app.example.org]\n"
        "hosts:\n  - ssh: deploy@203.0.113.10\n",
    )
    with pytest.raises(OpsError, match=r"production is never overwritten.*Nothing was changed"):
        backup.restore("production", source="staging", yes=True)


# ------------------------------------------------------------------------ --from with --sanitize

DUMP = f"{backup.BEGIN_DUMP}\nH4sIAAAAAAAAA0tMSgYA\n{backup.END_DUMP}\n"
EXPORT: Argv = ("run", "--rm", "--no-deps", "-T", "backup-export", "backup-export", "--sanitize")
IMPORT: Argv = ("exec", "-T", "postgres", "backup-import")
COPY = "restore from another environment"
LOCK_COPY: Argv = ("lock", COPY)
UNLOCK_COPY: Argv = ("unlock", COPY)
REPLACED = "database listings replaced: 3 listings"


@pytest.fixture
def journal() -> list[Argv]:
    """What both fake stacks of `two` were asked, in order."""
    return []


@pytest.fixture
def two(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch, journal: list[Argv]
) -> dict[str, FakeTarget]:
    """Environments `prod` (listings_env production) and `stage`, each with its fake stack."""
    for name, mode in (("prod", "production"), ("stage", "staging")):
        write_env(name, f"name: {name}\ntarget: local\nlistings_env: {mode}\n")
    exported = "restoring...\n" + DUMP + _log("export done", "backup-export") + OK
    made = {
        "prod": FakeTarget({EXPORT: exported}, journal),
        "stage": FakeTarget({IMPORT: _log(REPLACED, "backup-import") + OK}, journal),
    }

    @contextmanager
    def fake_open(env: config.Environment) -> Iterator[FakeTarget]:
        yield made[env.name]

    monkeypatch.setattr(backup, "open_target", fake_open)
    return made


def test_a_sanitized_copy_is_exported_on_the_source_and_loaded_into_the_target(
    two: dict[str, FakeTarget], journal: list[Argv]
) -> None:
    report = backup.restore("stage", source="prod", sanitize=True, yes=True, runner=_quiet())
    assert [o.status for o in report.outcomes] == ["ok"] * 7
    assert two["prod"].calls == [EXPORT]  # the source is only read, in a scratch container
    stage = two["stage"].calls
    assert stage[0] == LOCK_COPY and stage[-1] == UNLOCK_COPY
    assert stage[1] == ("maintenance", "on") and stage[-2] == ("maintenance", "off")
    assert stage.index(("stop", "api", "worker", "backup")) < stage.index(IMPORT)
    assert stage.index(IMPORT) < stage.index(MIGRATE)
    assert report.outcomes[3].note == REPLACED
    assert report.outcomes[4].note == SCHEMA
    # The whole copy, the export included, runs under the target's deploy lock.
    assert journal[0] == LOCK_COPY and journal[1] == EXPORT and journal[-1] == UNLOCK_COPY


def test_a_sanitized_copy_of_one_repository_exports_from_it(two: dict[str, FakeTarget]) -> None:
    backup.restore("stage", source="prod", sanitize=True, yes=True, runner=_quiet(), repo=1)
    assert two["prod"].calls == [(*EXPORT, "--repo=1")]


def test_the_dump_reaches_the_target_exactly_between_its_markers(
    two: dict[str, FakeTarget],
) -> None:
    backup.restore("stage", source="prod", sanitize=True, yes=True, runner=_quiet())
    assert two["stage"].fed == [(IMPORT, DUMP)]
    assert two["prod"].fed == []


@pytest.mark.parametrize(
    ("env", "source", "sanitize", "message"),
    [
        ("prod", "stage", True, "production is never overwritten"),
        ("stage", "prod", False, "--from=prod needs --sanitize"),
        ("stage", "", True, "--sanitize goes with --from"),
    ],
)
def test_copies_between_environments_are_refused_before_any_stack_is_touched(
    write_env: WriteEnv,
    monkeypatch: pytest.MonkeyPatch,
    env: str,
    source: str,
    sanitize: bool,
    message: str,
) -> None:
    for name, mode in (("prod", "production"), ("stage", "staging")):
        write_env(name, f"name: {name}\ntarget: local\nlistings_env: {mode}\n")
    _no_target(monkeypatch)
    with pytest.raises(OpsError, match=re.escape(message)):
        backup.restore(env, source=source, sanitize=sanitize, yes=True)


@pytest.mark.parametrize(
    ("exported", "message"),
    [
        # Cut off, though the script said it succeeded.
        (f"{backup.BEGIN_DUMP}\nH4sI\n{OK}", "the export produced no complete dump"),
        # compose exited 0, but the export did not get to its end.
        (
            f"{DUMP}{_log('pg_dump failed (above): nothing is exported', 'backup-export')}",
            "the export of prod failed (its lines above say why). nothing was changed",
        ),
        (OpsError("export prod's newest backup failed (exit 1)"), "failed (exit 1)"),
    ],
)
def test_an_export_without_a_complete_dump_changes_nothing_on_the_target(
    two: dict[str, FakeTarget], exported: str | OpsError, message: str
) -> None:
    two["prod"].answers[EXPORT] = exported
    with pytest.raises(OpsError, match=re.escape(message)):
        backup.restore("stage", source="prod", sanitize=True, yes=True, runner=_quiet())
    assert two["stage"].calls == [LOCK_COPY, UNLOCK_COPY]


def test_a_dump_that_does_not_load_stops_before_the_migration(
    two: dict[str, FakeTarget],
) -> None:
    # compose exited 0; backup-import's own last line says the database was not touched.
    failed = _log("the dump did not load (above): the database listings was not touched")
    two["stage"].answers[IMPORT] = failed
    with pytest.raises(OpsError) as err:
        backup.restore("stage", source="prod", sanitize=True, yes=True, runner=_quiet())
    assert str(err.value) == (
        "loading the dump into stage failed (its lines above say why). stage's database is as "
        "it was"
    )
    stage = two["stage"].calls
    assert stage[-2:] == [IMPORT, UNLOCK_COPY]
    assert MIGRATE not in stage and ("maintenance", "off") not in stage


def test_an_undecryptable_file_quoted_with_line_breaks_still_parses_and_gets_the_advice() -> None:
    # pgBackRest quotes the first bytes of a file it cannot decrypt: raw control characters,
    # line breaks included, inside the JSON string; compose's own lines come before it.
    quoted = "key/value found outside of section at line 1: \x0c\x08ab\ncd\x1f"
    text = (
        "WARN[0000] Found orphan containers ([x])\n"
        '[{"name":"listings","status":{"code":99,"message":"other"},"backup":[],'
        '"repo":[{"key":1,"status":{"code":99,"message":"FormatError: ' + quoted + '"}}]}]\n'
    )
    status, backups = backup.parse_info(text)
    assert status.startswith("repo1: FormatError: key/value found outside of section")
    assert backups == ()
    assert "BACKUP_PASSPHRASE" in backup.advice(status)
