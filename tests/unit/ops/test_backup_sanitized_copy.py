"""ops/backup/sanitized_copy.py without Docker: `invoke restore --from=<env> --sanitize`, the
source's export loaded into the target in place of its database, through two fake Targets that
record every compose argv into one journal (backup_testdata.FakeTarget)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from backup_testdata import MIGRATE, OK, SCHEMA, Argv, FakeTarget, log, no_target, quiet

from ops import config
from ops.backup import restore as backup
from ops.backup import sanitized_copy, targets
from ops.errors import OpsError
from ops.steps import IMPACTING, PREFLIGHT

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]

DUMP = f"{sanitized_copy.BEGIN_DUMP}\nH4sIAAAAAAAAA0tMSgYA\n{sanitized_copy.END_DUMP}\n"
EXPORT: Argv = ("run", "--rm", "--no-deps", "-T", "backup-export", "backup-export", "--sanitize")
IMPORT: Argv = ("exec", "-T", "postgres", "backup-import")
COPY = "restore from another environment"
LOCK_COPY: Argv = ("lock", COPY)
UNLOCK_COPY: Argv = ("unlock", COPY)
REPLACED = "database listings replaced: 3 listings"


def _environments(write_env: WriteEnv) -> None:
    """`prod` (listings_env production) and `stage`, both local stacks."""
    for name, mode in (("prod", "production"), ("stage", "staging")):
        write_env(name, f"name: {name}\ntarget: local\nlistings_env: {mode}\n")


@pytest.fixture
def journal() -> list[Argv]:
    """What both fake stacks of `two` were asked, in order."""
    return []


@pytest.fixture
def two(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch, journal: list[Argv]
) -> dict[str, FakeTarget]:
    """Environments `prod` (listings_env production) and `stage`, each with its fake stack."""
    _environments(write_env)
    exported = "restoring...\n" + DUMP + log("export done", "backup-export") + OK
    made = {
        "prod": FakeTarget({EXPORT: exported}, journal),
        "stage": FakeTarget({IMPORT: log(REPLACED, "backup-import") + OK}, journal),
    }

    @contextmanager
    def fake_open(env: config.Environment) -> Iterator[FakeTarget]:
        yield made[env.name]

    monkeypatch.setattr(targets, "open_target", fake_open)
    return made


def _copy(two: dict[str, FakeTarget]) -> sanitized_copy.SanitizedCopy:
    """The operation itself, stage from prod, as copy_from builds it once confirmed."""
    return sanitized_copy.SanitizedCopy(
        config.load("stage"), config.load("prod"), two["prod"], two["stage"], []
    )


def test_a_sanitized_copy_is_exported_on_the_source_and_loaded_into_the_target(
    two: dict[str, FakeTarget], journal: list[Argv]
) -> None:
    report = backup.restore("stage", source="prod", sanitize=True, yes=True, runner=quiet())
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
    backup.restore("stage", source="prod", sanitize=True, yes=True, runner=quiet(), repo=1)
    assert two["prod"].calls == [(*EXPORT, "--repo=1")]


def test_the_dump_reaches_the_target_exactly_between_its_markers(
    two: dict[str, FakeTarget],
) -> None:
    backup.restore("stage", source="prod", sanitize=True, yes=True, runner=quiet())
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
    _environments(write_env)
    no_target(monkeypatch)
    with pytest.raises(OpsError, match=re.escape(message)):
        backup.restore(env, source=source, sanitize=sanitize, yes=True)


@pytest.mark.parametrize(
    ("exported", "message"),
    [
        # Cut off, though the script said it succeeded.
        (f"{sanitized_copy.BEGIN_DUMP}\nH4sI\n{OK}", "the export produced no complete dump"),
        # compose exited 0, but the export did not get to its end.
        (
            f"{DUMP}{log('pg_dump failed (above): nothing is exported', 'backup-export')}",
            "the export of prod failed. nothing was changed; its last lines:\n  ",
        ),
        (OpsError("export prod's newest backup failed (exit 1)"), "failed (exit 1)"),
    ],
)
def test_an_export_without_a_complete_dump_changes_nothing_on_the_target(
    two: dict[str, FakeTarget], exported: str | OpsError, message: str
) -> None:
    two["prod"].answers[EXPORT] = exported
    with pytest.raises(OpsError, match=re.escape(message)):
        backup.restore("stage", source="prod", sanitize=True, yes=True, runner=quiet())
    assert two["stage"].calls == [LOCK_COPY, UNLOCK_COPY]


def test_a_dump_that_does_not_load_stops_before_the_migration(
    two: dict[str, FakeTarget],
) -> None:
    # compose exited 0; backup-import's own last line says the database was not touched.
    failed = log("the dump did not load (above): the database listings was not touched")
    two["stage"].answers[IMPORT] = failed
    with pytest.raises(OpsError) as err:
        backup.restore("stage", source="prod", sanitize=True, yes=True, runner=quiet())
    assert str(err.value) == (
        "loading the dump into stage failed. stage's database is as it was; its last lines:\n"
        f"  {failed.strip()}"
    )
    stage = two["stage"].calls
    assert stage[-2:] == [IMPORT, UNLOCK_COPY]
    assert MIGRATE not in stage and ("maintenance", "off") not in stage


# ------------------------------------------------------------------------ the operation's table


def test_the_copy_exports_in_pre_flight_then_replaces_the_database(
    two: dict[str, FakeTarget],
) -> None:
    operation = _copy(two)
    assert operation.title == "invoke restore --env stage --from=prod --sanitize"
    assert [(s.name, s.phase) for s in operation.steps()] == [
        ("export prod (scratch container, personal data replaced)", PREFLIGHT),
        ("maintenance mode on", IMPACTING),
        ("stop the API, the worker and the backups", IMPACTING),
        ("load prod's data", IMPACTING),
        ("check the schema (migrate to head)", IMPACTING),
        ("start the backups, the API and the worker", IMPACTING),
        ("maintenance mode off", IMPACTING),
    ]
    steps = operation.steps()
    assert all("invoke restore --env=stage" in s.on_failure for s in steps[1:-1])


def test_a_dry_run_of_the_copy_only_exports(two: dict[str, FakeTarget]) -> None:
    report = _copy(two).run(dry_run=True, runner=quiet())
    assert [o.status for o in report.outcomes] == ["ok"] + ["planned"] * 6
    assert two["prod"].calls == [EXPORT]
    assert two["prod"].reads == [EXPORT]  # the export only reads the source's repository
    assert two["stage"].calls == []


def test_the_copy_is_confirmed_before_the_lock_and_the_export(
    two: dict[str, FakeTarget], journal: list[Argv], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sanitized_copy.confirm

    def confirm(env: config.Environment, message: str, yes: bool, *rest: Any) -> None:
        journal.append(("confirm", env.name))
        real(env, message, yes, *rest)

    monkeypatch.setattr(sanitized_copy, "confirm", confirm)
    backup.restore("stage", source="prod", sanitize=True, yes=True, runner=quiet())
    assert journal[:3] == [("confirm", "stage"), LOCK_COPY, EXPORT]
