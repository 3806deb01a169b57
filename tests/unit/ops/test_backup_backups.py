"""ops/backup/backups.py without Docker: the repository read from a stack, archiving now,
`invoke backup` (an Operation of one step), `backup.list` and `backup.drill`, through a fake
Target that records every compose argv (backup_testdata.FakeTarget)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from backup_testdata import (
    ARCHIVE_NOW,
    BACKUP_RUN,
    DIFF,
    DRILL_RUN,
    FULL,
    INFO,
    LABEL,
    LAST_ARCHIVED,
    NO_STANZA,
    PASSPHRASE_ADVICE,
    PSQL,
    TWO_BACKUPS,
    WRONG_PASSPHRASE,
    FakeTarget,
    healthy_target,
    log,
    no_target,
    quiet,
    serve,
    stanza,
    utc,
)
from ops_testdata import LOCAL_YAML

from ops import config
from ops.backup import backups as backup
from ops.backup import commands
from ops.errors import OpsError
from ops.steps import IMPACTING

pytestmark = pytest.mark.unit


@pytest.fixture
def local(write_env: Callable[[str, str], Path]) -> config.Environment:
    write_env("local", LOCAL_YAML)
    return config.load("local")


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[FakeTarget]:
    """targets.open_target yields the FakeTarget appended to this list (one per test)."""
    made: list[FakeTarget] = []
    serve(monkeypatch, made)
    return made


# ------------------------------------------------------------------------------ read_repository


def test_the_repository_is_read_in_a_one_off_container_with_the_archiver_s_last_time() -> None:
    target = healthy_target()
    repo = backup.read_repository(target)
    assert target.calls[0] == INFO
    assert target.calls[1][: len(PSQL)] == PSQL
    assert "pg_stat_archiver" in target.calls[1][-1]
    assert len(target.calls) == 2
    assert repo.status == "ok"
    assert [b.label for b in repo.backups] == [FULL, DIFF]
    assert repo.latest_archived == utc("2026-11-30T03:40:00")
    assert repo.earliest == utc("2026-11-29T02:00:09")  # the end of the oldest backup
    assert repo.latest == utc("2026-11-30T03:40:00")  # the newest archived WAL
    # Reads, both of them: nothing to echo on a host, nothing that a dry run would skip.
    assert target.reads == target.calls


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
    target = healthy_target()
    target.answers[PSQL] = OpsError("service postgres is not running")
    repo = backup.read_repository(target)
    assert repo.latest_archived is None
    assert repo.latest == utc("2026-11-30T02:00:05")
    # Nothing archived yet (an empty answer) reads the same.
    target.answers[PSQL] = "\n"
    assert backup.read_repository(target).latest == utc("2026-11-30T02:00:05")


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
    broken = stanza(99, "other", 99, "[041]: unable to open '/var/lib/pgbackrest': [13] denied")
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


def test_list_backups_reads_the_environment_s_repository(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    opened.append(healthy_target())
    lines = backup.list_backups("local")
    assert lines[-1].startswith("recovery window: 2026-11-29T02:00:09Z .. 2026-11-30T03:40:00Z")
    assert opened[0].calls[0] == INFO


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
        log("WAL segment 00000001000000000000000A was not archived within 300 s"),
        "",
    ],
)
def test_archiving_now_is_false_when_postgres_cannot_archive(answer: str | OpsError) -> None:
    target = FakeTarget({ARCHIVE_NOW: answer})
    assert backup.archive_now(target) is False
    assert target.calls == [ARCHIVE_NOW]


# ---------------------------------------------------------------------------------- backup


def test_an_unknown_backup_type_is_refused_before_anything_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(name: str) -> None:
        raise AssertionError("loaded the environment")

    monkeypatch.setattr(config, "load", refuse)
    no_target(monkeypatch)
    with pytest.raises(OpsError) as err:
        backup.backup("local", kind="weekly")
    assert str(err.value) == "--type=weekly is not a backup type: use full, diff or incr"


@pytest.mark.parametrize("kind", commands.BACKUP_TYPES)
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
    opened.append(FakeTarget({BACKUP_RUN: log("diff backup failed: [082] WAL not archived")}))
    with pytest.raises(OpsError) as err:
        backup.backup("local")
    assert str(err.value) == (
        f"the diff backup of {LABEL} failed. `invoke backup.list` shows what the repository "
        "has; docs/runbook.md#backupfailed; its last lines:\n"
        f"  {log('diff backup failed: [082] WAL not archived').strip()}"
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


def test_the_backup_operation_is_one_impacting_step_titled_with_the_kind_and_the_stack() -> None:
    operation = backup.Backup(FakeTarget(), "full")
    assert operation.title == f"backup (full) of {LABEL}"
    assert [(s.name, s.phase) for s in operation.steps()] == [
        ("full backup into the repository (backup-run)", IMPACTING)
    ]


def test_a_backup_prints_its_step_and_its_summary(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    opened.append(FakeTarget())
    out = io.StringIO()
    report = backup.backup("local", "incr", runner=quiet(out))
    assert [o.status for o in report.outcomes] == ["ok"]
    assert "--> [1/1] impacting: incr backup into the repository (backup-run)" in out.getvalue()


def test_a_dry_run_of_the_backup_runs_nothing() -> None:
    target = FakeTarget()
    report = backup.Backup(target, "diff").run(dry_run=True, runner=quiet())
    assert [o.status for o in report.outcomes] == ["planned"]
    assert target.calls == []


# ---------------------------------------------------------------------------------- drill


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
        log("drill FAILED: 3 listings differ", "backup-drill"),
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
