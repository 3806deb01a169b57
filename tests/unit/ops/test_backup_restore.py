"""ops/backup/restore.py without Docker: the restore target checked against the recovery window,
the confirmation, the refusals before anything is touched, and the order an in-place restore runs
its commands in (the steps of `Restore`), through a fake Target that records every compose argv
(backup_testdata.FakeTarget)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from backup_testdata import (
    ARCHIVE_NOW,
    ARCHIVED,
    DIFF,
    FULL,
    INFO,
    LABEL,
    LOCK_RESTORE,
    MIGRATE,
    NOW,
    PROMOTED,
    PSQL,
    RESTORE_RUN,
    SCHEMA,
    TWO_BACKUPS,
    UNLOCK_RESTORE,
    WRONG_PASSPHRASE,
    Argv,
    FakeTarget,
    healthy_target,
    log,
    no_target,
    quiet,
    repository,
    serve,
    utc,
)
from ops_testdata import LOCAL_YAML

from ops import config
from ops.backup import restore as backup
from ops.backup import targets
from ops.backup.repository import Repository
from ops.errors import OpsError
from ops.steps import IMPACTING

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]


@pytest.fixture
def local(write_env: WriteEnv) -> config.Environment:
    write_env("local", LOCAL_YAML)
    return config.load("local")


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[FakeTarget]:
    """targets.open_target yields the FakeTarget appended to this list (one per test)."""
    made: list[FakeTarget] = []
    serve(monkeypatch, made)
    return made


class _FrozenDatetime(datetime):
    """datetime with now() at NOW, for restore()'s own call of plan_restore."""

    @classmethod
    def now(cls, tz: Any = None) -> _FrozenDatetime:
        return cls.fromtimestamp(NOW.timestamp(), tz=tz)


def _only_reads(target: FakeTarget) -> None:
    """Nothing but reads (and archiving: no change to the data) reached the stack; no lock."""
    assert target.calls, "the stack was not even read"
    for argv in target.calls:
        assert argv[:1] == ("exec",) or argv == INFO, f"{argv} changes the stack"


# -------------------------------------------------------------------------------- plan_restore


def test_a_time_inside_the_window_is_restored_as_a_point_in_time() -> None:
    plan = backup.plan_restore(repository(), at="2026-11-30T01:00:00+01:00", now=NOW)
    assert plan == backup.RestorePlan(
        ("--at=2026-11-30 00:00:00+00",),
        "2026-11-30T00:00:00Z (point in time)",
        utc("2026-11-30T00:00:00"),
    )


def test_the_window_s_ends_are_inside_it() -> None:
    repo = repository()
    earliest = backup.plan_restore(repo, at="2026-11-29T02:00:09Z", now=NOW)
    latest = backup.plan_restore(repo, at="2026-11-30T03:40:00Z", now=NOW)
    assert earliest.args == ("--at=2026-11-29 02:00:09+00",)
    assert latest.args == ("--at=2026-11-30 03:40:00+00",)


def test_a_time_before_the_oldest_backup_ends_is_refused() -> None:
    with pytest.raises(OpsError) as err:
        backup.plan_restore(repository(), at="2026-11-29T02:00:08Z", now=NOW)
    assert str(err.value).startswith(
        "--at=2026-11-29T02:00:08Z is before the recovery window "
        "(2026-11-29T02:00:09Z .. 2026-11-30T03:40:00Z): no backup ends before it."
    )
    assert "Fix: pick a time inside the window (`invoke backup.list`)" in str(err.value)
    assert str(err.value).endswith("Nothing was changed")


def test_a_time_after_the_newest_archived_wal_is_refused() -> None:
    with pytest.raises(OpsError) as err:
        backup.plan_restore(repository(), at="2026-11-30T03:50:00Z", now=NOW)
    assert str(err.value).startswith(
        "--at=2026-11-30T03:50:00Z is after the newest archived WAL (2026-11-30T03:40:00Z): "
        "PostgreSQL could not reach it."
    )
    assert "omit --at for everything archived" in str(err.value)
    assert str(err.value).endswith("Nothing was changed")


def test_with_postgres_down_a_time_after_the_newest_backup_is_left_to_postgres() -> None:
    # The newest archived WAL is unknown: the repository may hold WAL past the newest backup.
    down = Repository("ok", repository().backups, None)
    assert down.latest == utc("2026-11-30T02:00:05")  # the end of the newest backup
    plan = backup.plan_restore(down, at="2026-11-30T03:50:00Z", now=NOW)
    assert plan == backup.RestorePlan(
        ("--at=2026-11-30 03:50:00+00",),
        "2026-11-30T03:50:00Z (point in time)",
        utc("2026-11-30T03:50:00"),
    )
    # The lower bound and the future are still refused.
    with pytest.raises(OpsError, match="is before the recovery window"):
        backup.plan_restore(down, at="2026-11-29T02:00:08Z", now=NOW)
    with pytest.raises(OpsError, match="is in the future"):
        backup.plan_restore(down, at="2026-11-30T04:10:00Z", now=NOW)


def test_a_time_in_the_future_is_refused() -> None:
    with pytest.raises(OpsError) as err:
        backup.plan_restore(repository(), at="2026-12-24T00:00:00Z", now=NOW)
    assert str(err.value) == (
        "--at=2026-12-24T00:00:00Z is in the future. Fix: pick a time inside the window. "
        "Nothing was changed"
    )


def test_a_time_without_offset_is_refused_by_the_plan_too() -> None:
    with pytest.raises(OpsError, match="has no UTC offset"):
        backup.plan_restore(repository(), at="2026-11-30T00:00:00", now=NOW)


def test_a_known_backup_is_restored_to_its_end() -> None:
    plan = backup.plan_restore(repository(), label=DIFF, now=NOW)
    assert plan == backup.RestorePlan(
        (f"--backup={DIFF}",),
        f"the end of backup {DIFF} (2026-11-30T02:00:05Z)",
        utc("2026-11-30T02:00:05"),
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
    plan = backup.plan_restore(repository(), now=NOW, extra=("--repo=1",), **target)
    assert plan.args == args


def test_one_repository_only_restores_from_its_own_backups() -> None:
    repo = repository()  # both backups are in repo1
    assert backup.plan_restore(repo, label=FULL, now=NOW, only=1).args == (f"--backup={FULL}",)
    with pytest.raises(OpsError, match=r"has no backup to restore from.*Nothing was changed"):
        backup.plan_restore(repo, label=FULL, now=NOW, only=2)


def test_an_unknown_backup_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(OpsError) as err:
        backup.plan_restore(repository(), label="20261101-020001F", now=NOW)
    assert str(err.value) == (
        f"--backup=20261101-020001F is not in the repository (it holds: {FULL}, {DIFF}). "
        "Nothing was changed"
    )


def test_a_time_and_a_backup_together_are_refused() -> None:
    with pytest.raises(OpsError) as err:
        backup.plan_restore(repository(), at="2026-11-30T00:00:00Z", label=FULL, now=NOW)
    assert str(err.value) == (
        "--at and --backup both given: choose one restore target. Nothing was changed"
    )


@pytest.mark.parametrize(("at", "label"), [("", ""), ("2026-11-30T00:00:00Z", ""), ("", FULL)])
def test_an_empty_repository_has_nothing_to_restore(at: str, label: str) -> None:
    empty = Repository("ok", (), utc("2026-11-30T03:40:00"))
    with pytest.raises(OpsError) as err:
        backup.plan_restore(empty, at=at, label=label, now=NOW)
    assert str(err.value).startswith(
        "the repository has no backup to restore from. Fix: `invoke backup` first"
    )
    assert str(err.value).endswith("Nothing was changed")


def test_without_a_target_everything_archived_is_restored() -> None:
    plan = backup.plan_restore(repository(), now=NOW)
    assert plan == backup.RestorePlan(
        (),
        "everything archived (up to about 2026-11-30T03:40:00Z)",
        utc("2026-11-30T03:40:00"),
    )


# ----------------------------------------------------------------------------- confirm_restore


def _never_asked(prompt: str) -> str:
    raise AssertionError(f"asked {prompt!r}")


POINT = backup.RestorePlan(
    ("--at=2026-11-30 00:00:00+00",),
    "2026-11-30T00:00:00Z (point in time)",
    utc("2026-11-30T00:00:00"),
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
    no_target(monkeypatch)
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
    no_target(monkeypatch)
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

    monkeypatch.setattr(targets, "open_target", refuse)
    with pytest.raises(OpsError, match=r"  - BACKUP_PASSPHRASE is missing"):
        backup.restore("staging", yes=True)


def test_another_environment_into_production_is_refused_naming_the_direction(
    write_env: WriteEnv,
) -> None:
    write_env(
        "production",
        "name: production\ntarget: ssh\nlistings_env: production\ndomains: [app.example.org]\n"
        "hosts:\n  - ssh: deploy@203.0.113.10\n",
    )
    with pytest.raises(OpsError, match=r"production is never overwritten.*Nothing was changed"):
        backup.restore("production", source="staging", yes=True)


def test_a_restore_archives_reads_the_repository_then_runs_the_steps_under_the_lock(
    local: config.Environment,
    opened: list[FakeTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backup, "datetime", _FrozenDatetime)
    target = healthy_target()
    opened.append(target)
    report = backup.restore(
        "local", at="2026-11-30T00:00:00Z", source="local", yes=True, runner=quiet()
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
    target = healthy_target()
    opened.append(target)
    backup.restore("local", label=FULL, repo=1, yes=True, runner=quiet())
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
    report = backup.restore("local", at="2026-11-30T03:50:00Z", yes=True, runner=quiet())
    assert "PostgreSQL is not running (or cannot archive)" in capsys.readouterr().out
    assert [o.status for o in report.outcomes] == ["ok"] * 2 + ["skipped"] + ["ok"] * 6
    assert report.outcomes[2].step.name == "archive the last writes"
    assert report.outcomes[2].note == "skipped: PostgreSQL is not running"
    assert target.calls.count(ARCHIVE_NOW) == 1  # tried once, before the plan: not again
    assert (*RESTORE_RUN, "--at=2026-11-30 03:50:00+00") in target.calls


def test_a_failing_restore_gives_the_lock_back(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    target = healthy_target()
    target.answers[RESTORE_RUN] = log("restore failed: [040] no backup set found")
    opened.append(target)
    with pytest.raises(OpsError, match="pgbackrest restore failed"):
        backup.restore("local", yes=True, runner=quiet())
    assert target.calls[-1] == UNLOCK_RESTORE
    assert target.calls[-2] == RESTORE_RUN


def test_a_restore_without_yes_off_a_terminal_changes_nothing(
    local: config.Environment,
    opened: list[FakeTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    target = healthy_target()
    opened.append(target)
    with pytest.raises(OpsError, match=r"without confirmation.*\(nothing was changed\)"):
        backup.restore("local", runner=quiet())
    _only_reads(target)


def test_a_restore_to_a_time_outside_the_window_changes_nothing(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    target = healthy_target()
    opened.append(target)
    with pytest.raises(OpsError, match=r"is before the recovery window.*Nothing was changed"):
        backup.restore("local", at="2020-01-01T00:00:00Z", yes=True, runner=quiet())
    _only_reads(target)


def test_a_restore_with_an_undecryptable_repository_changes_nothing(
    local: config.Environment, opened: list[FakeTarget]
) -> None:
    target = FakeTarget({INFO: WRONG_PASSPHRASE, ARCHIVE_NOW: OpsError("archive failed")})
    opened.append(target)
    with pytest.raises(OpsError, match=r"BACKUP_PASSPHRASE.*nothing was changed"):
        backup.restore("local", yes=True, runner=quiet())
    _only_reads(target)


def test_the_confirmation_is_asked_before_the_lock_and_any_impacting_step(
    local: config.Environment, opened: list[FakeTarget], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = healthy_target()
    opened.append(target)
    real = backup.confirm

    def confirm(env: config.Environment, message: str, yes: bool, *rest: Any) -> None:
        target.record(("confirm",))
        real(env, message, yes, *rest)

    monkeypatch.setattr(backup, "confirm", confirm)
    backup.restore("local", yes=True, runner=quiet())
    asked = target.calls.index(("confirm",))
    assert target.calls[asked + 1] == LOCK_RESTORE
    assert target.calls[asked + 2] == ("maintenance", "on")
    # Before it, only the reads (and the archiving) that planned the restore.
    assert target.calls[:asked] == [ARCHIVE_NOW, INFO, target.calls[2]]
    assert target.calls[2][: len(PSQL)] == PSQL


# ---------------------------------------------------------------------------- the restore steps


def test_the_restore_steps_are_named_impacting_and_say_how_to_recover(
    local: config.Environment,
) -> None:
    plan = backup.plan_restore(repository(), now=NOW)
    operation = backup.Restore(local, FakeTarget(), plan)
    assert operation.title == f"invoke restore --env local ({LABEL})"
    steps = operation.steps()
    assert [s.name for s in steps] == [
        "maintenance mode on",
        "stop the API, the worker and the backups",
        "archive the last writes",
        "stop PostgreSQL",
        "restore the data volume (pgbackrest)",
        "start PostgreSQL (WAL replay, promotion)",
        "check the schema (migrate to head)",
        "start the backups, the API and the worker",
        "maintenance mode off",
    ]
    assert {s.phase for s in steps} == {IMPACTING}
    # Every step but the last leaves the service stopped if it fails: each says what to do.
    assert all("it is safe to repeat" in s.on_failure for s in steps[:-1])
    assert steps[-1].on_failure == ""


def test_a_dry_run_of_the_restore_steps_changes_nothing(local: config.Environment) -> None:
    target = FakeTarget()
    plan = backup.plan_restore(repository(), now=NOW)
    report = backup.Restore(local, target, plan).run(dry_run=True, runner=quiet())
    assert [o.status for o in report.outcomes] == ["planned"] * 9
    assert target.calls == []


def test_the_restore_steps_run_in_a_safe_order(local: config.Environment) -> None:
    target = FakeTarget()
    plan = backup.plan_restore(repository(), at="2026-11-30T00:00:00Z", now=NOW)
    report = backup.Restore(local, target, plan).run(runner=quiet())
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
    assert target.reads == [PROMOTED]  # everything else changes the stack
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
    plan = backup.plan_restore(repository(), now=NOW, **plan_args)
    backup.Restore(local, target, plan).run(runner=quiet())
    assert target.calls[4] == restore_argv


def test_without_a_running_postgres_the_last_writes_are_not_archived(
    local: config.Environment,
) -> None:
    target = FakeTarget()
    plan = backup.plan_restore(repository(), now=NOW)
    report = backup.Restore(local, target, plan, live=False).run(runner=quiet())
    assert ARCHIVE_NOW not in target.calls
    assert report.outcomes[2].status == "skipped"
    assert report.outcomes[2].note == "skipped: PostgreSQL is not running"
    assert RESTORE_RUN in target.calls


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (OpsError("pgbackrest restore failed (exit 41)"), r"exit 41"),
        # compose exited 0 (compose 2.40 on Docker 20.10), but the script did not finish.
        (
            log("restore failed: [040] no backup set found", "backup-restore"),
            r"^pgbackrest restore failed\. PostgreSQL is stopped and must not be started; its "
            r"last lines:\n  .*no backup set found",
        ),
    ],
)
def test_a_failed_restore_stops_there_in_maintenance_and_says_it_can_be_repeated(
    local: config.Environment, answer: str | OpsError, error: str
) -> None:
    target = FakeTarget({RESTORE_RUN: answer})
    out = io.StringIO()
    plan = backup.plan_restore(repository(), now=NOW)
    with pytest.raises(OpsError, match=error):
        backup.Restore(local, target, plan).run(runner=quiet(out))
    assert target.calls[-1] == RESTORE_RUN  # nothing started on a half-restored volume
    assert ("maintenance", "off") not in target.calls
    printed = out.getvalue()
    assert "FAILED at step 'restore the data volume (pgbackrest)'" in printed
    assert "it is safe to repeat" in printed and "invoke status --env=local" in printed


def test_last_writes_that_cannot_be_archived_stop_before_postgres_does(
    local: config.Environment,
) -> None:
    broken = log("WAL segment 00000001000000000000000A was not archived within 300 s")
    # PostgreSQL answers; its archiving is what fails.
    target = FakeTarget({ARCHIVE_NOW: broken, PSQL: "slipway-postgres-answers\n"})
    out = io.StringIO()
    plan = backup.plan_restore(repository(), now=NOW)
    with pytest.raises(OpsError) as err:
        backup.Restore(local, target, plan).run(runner=quiet(out))
    assert str(err.value) == (
        "archiving the last writes failed. nothing was restored; the service is stopped; its "
        f"last lines:\n  {broken.strip()}"
    )
    assert target.calls[-2] == ARCHIVE_NOW and target.calls[-1][:4] == PSQL  # does it answer?
    assert ("stop", "postgres") not in target.calls
    assert "FAILED at step 'archive the last writes'" in out.getvalue()


@pytest.mark.parametrize("answer", ["t\n", "", "psql: error: connection refused\n"])
def test_a_postgres_still_in_recovery_stops_before_the_migration(
    local: config.Environment, answer: str
) -> None:
    target = FakeTarget({PROMOTED: answer})
    out = io.StringIO()
    plan = backup.plan_restore(repository(), now=NOW)
    with pytest.raises(OpsError, match=r"PostgreSQL did not come back promoted"):
        backup.Restore(local, target, plan).run(runner=quiet(out))
    assert target.calls[-1] == PROMOTED
    assert MIGRATE not in target.calls
    assert "FAILED at step 'start PostgreSQL (WAL replay, promotion)'" in out.getvalue()


def test_a_migration_that_does_not_finish_leaves_the_writers_stopped(
    local: config.Environment,
) -> None:
    # compose exited 0 without the migration's last line.
    target = FakeTarget({MIGRATE: "Traceback (most recent call last):\n  ...\nOperationalError\n"})
    plan = backup.plan_restore(repository(), now=NOW)
    with pytest.raises(OpsError, match=r"(?s)the migration did not finish: .*OperationalError"):
        backup.Restore(local, target, plan).run(runner=quiet())
    assert target.calls[-1] == MIGRATE
    assert not [argv for argv in target.calls if argv[:1] == ("up",) and "api" in argv]


def test_a_postgres_that_stopped_answering_since_the_restore_began_is_not_archived_again(
    local: config.Environment,
) -> None:
    # It ran when the restore began (live), and now `backup-archive-now` prints nothing (a
    # container restarting in a loop): nothing more can be archived, the restore goes on.
    target = FakeTarget({ARCHIVE_NOW: "", PSQL: ""})
    plan = backup.plan_restore(repository(), now=NOW)
    report = backup.Restore(local, target, plan, live=True).run(runner=quiet())
    assert report.outcomes[2].status == "skipped"
    assert (
        report.outcomes[2].note == "skipped: PostgreSQL stopped answering since the restore began"
    )
    assert RESTORE_RUN in target.calls


def test_archiving_that_fails_while_postgres_answers_stops_the_restore(
    local: config.Environment,
) -> None:
    target = FakeTarget({ARCHIVE_NOW: "", PSQL: "slipway-postgres-answers\n"})
    plan = backup.plan_restore(repository(), now=NOW)
    with pytest.raises(OpsError, match="archiving the last writes"):
        backup.Restore(local, target, plan, live=True).run(runner=quiet())
    assert RESTORE_RUN not in target.calls
