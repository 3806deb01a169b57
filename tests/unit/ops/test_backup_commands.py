"""ops/backup/commands.py: the commands the backup operations run, by their text, and whether
each one changes something (echoed on a host) or only reads; the tools' arguments from --at and
--repo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ops import config
from ops.backup import commands
from ops.backup.commands import InContainer
from ops.errors import OpsError

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]


# ------------------------------------------------------------------------------ the tools


def test_the_tools_run_in_their_services_with_their_arguments() -> None:
    assert commands.backup_run("incr") == InContainer(
        "backup", ("backup-run", "--type=incr"), "incr backup"
    )
    assert commands.drill(["--repo=2"]) == InContainer(
        "backup-drill", ("backup-drill", "--repo=2"), "restore drill"
    )
    assert commands.restore(("--backup=X", "--repo=1")) == InContainer(
        "backup-restore", ("backup-restore", "--backup=X", "--repo=1"), "pgbackrest restore"
    )
    assert commands.export("production", []).argv == ("backup-export", "--sanitize")
    assert commands.export("production", []).service == "backup-export"
    assert commands.import_dump("staging") == InContainer(
        "postgres", ("backup-import",), "load the dump into staging"
    )
    assert commands.migrate() == InContainer(
        "migrate", (), "bring the schema to the release's head"
    )
    assert commands.archive_now("archive it").argv == ("backup-archive-now",)


def test_reads_of_the_repository_and_of_postgres_are_queries() -> None:
    reads = [
        commands.repository_info(),
        commands.last_archived(),
        commands.in_recovery(),
        # a scratch container: the live database is not touched
        commands.export("production", ["--repo=1"]),
    ]
    assert [c.changes for c in reads] == [False] * 4
    assert commands.repository_info().argv == ("pgbackrest", "info", "--output=json")
    assert commands.in_recovery().argv == (
        "psql", "-X", "-At", "-d", "postgres", "-c", "SELECT pg_is_in_recovery()",
    )  # fmt: skip
    assert "pg_stat_archiver" in commands.last_archived().argv[-1]


def test_what_writes_is_a_change() -> None:
    writes = [
        commands.backup_run("diff"),
        commands.drill([]),  # a marker in the live database, drill.prom
        commands.archive_now("archive"),  # a commit record, a WAL switch
        commands.restore(()),
        commands.migrate(),
        commands.import_dump("staging"),
    ]
    assert [c.changes for c in writes] == [True] * 6
    assert all(c.what for c in writes)


# ------------------------------------------------------------------------------ compose


def test_compose_runs_a_command_in_the_running_container_or_a_one_off_one() -> None:
    psql = commands.in_recovery()
    assert commands.compose_exec(psql) == ("exec", "-T", "postgres", *psql.argv)
    assert commands.compose_oneoff(commands.migrate()) == (
        "run", "--rm", "--no-deps", "-T", "migrate",
    )  # fmt: skip
    assert commands.compose_stop(("api", "worker")) == ("stop", "api", "worker")
    assert commands.compose_start(("postgres",), 3600) == (
        "up", "-d", "--no-deps", "--wait", "--wait-timeout", "3600", "postgres",
    )  # fmt: skip


def test_compose_on_a_host_merges_stderr_and_says_whether_it_changes_anything() -> None:
    line = "cd /srv/slipway && docker compose -p slipway-staging stop api"
    stop = commands.on_host(line, "stop the API", changes=True)
    assert (stop.line, stop.what, stop.changes) == (f"{line} 2>&1", "stop the API", True)
    assert commands.on_host(line, "read", changes=False).changes is False


# ------------------------------------------------------------------------------ Docker Swarm


def test_swarm_exec_quotes_the_words_and_feeds_input_only_when_given() -> None:
    psql = InContainer("postgres", ("psql", "-c", "SELECT 1"), "ask", changes=False)
    asked = commands.swarm_exec("c0ffee", psql, stdin=False)
    assert (asked.line, asked.what, asked.changes) == (
        "docker exec c0ffee psql -c 'SELECT 1' 2>&1",
        "ask",
        False,
    )
    load = commands.swarm_exec("c0ffee", commands.import_dump("staging"), stdin=True)
    assert load.line == "docker exec -i c0ffee backup-import 2>&1"
    assert load.changes


def test_swarm_scaling_is_a_change_with_its_timeout_and_the_task_list_a_query() -> None:
    scale = commands.service_scale("slipway-staging", {"api": 0, "worker": 2}, "stop", 300)
    assert scale.line == (
        "docker service scale slipway-staging_api=0 slipway-staging_worker=2 2>&1"
    )
    assert (scale.what, scale.changes, scale.timeout) == ("stop", True, 300.0)
    states = commands.service_states("slipway-staging", ("api", "backup"))
    assert states.line == (
        "docker service ps slipway-staging_api slipway-staging_backup --format '{{.CurrentState}}'"
    )
    assert not states.changes


# ------------------------------------------------------------------------------ --repo


def test_repo_arguments_name_one_repository_or_none(write_env: WriteEnv) -> None:
    write_env("local", "name: local\ntarget: local\n")
    env = config.load("local")
    assert commands.repo_args(env, 0) == []
    assert commands.repo_args(env, 1) == ["--repo=1"]
    with pytest.raises(OpsError) as err:
        commands.repo_args(env, 2)
    assert str(err.value).startswith("--repo=2 is the off-site repository, but local has none.")
    assert "Fix: set backup.s3 in local.yaml" in str(err.value)
    with pytest.raises(OpsError, match=r"^--repo=3: use 1 \(the local repository\) or 2"):
        commands.repo_args(env, 3)


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
    assert commands.normalize_time(text) == expected


def test_a_time_without_offset_is_refused_with_the_fix() -> None:
    with pytest.raises(OpsError) as err:
        commands.normalize_time("2026-11-30T12:00:00")
    assert str(err.value) == (
        "--at=2026-11-30T12:00:00 has no UTC offset, so it is ambiguous. Fix: add one, e.g. "
        "2026-11-30T12:00:00+00:00 or 2026-11-30T12:00:00Z"
    )


@pytest.mark.parametrize("text", ["yesterday", "2026-11-31T12:00:00Z", "12:00", "now+1h"])
def test_garbage_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(OpsError) as err:
        commands.normalize_time(text)
    assert f"--at={text} is not an ISO 8601 time" in str(err.value)
    assert "Fix: write e.g. 2026-11-30T12:00:00+00:00" in str(err.value)
