"""Deploys and backups: the backup before migrations (when it runs, when it is skipped), the
repository opened with the release's passphrase before PostgreSQL is recreated, the off-site
overlay in a release, and the swarm's backup in its running task."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ops_testdata import ONE_HOST
from support.recorder import Recorder

from ops import compose, config, secrets
from ops.compose import Build
from ops.deploy import data
from ops.deploy.commands.compose import ONEOFF
from ops.deploy.deployment import Deployment
from ops.deploy.onehost import OneHostDeploy
from ops.deploy.swarm.operation import SwarmDeploy
from ops.errors import OpsError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
WriteEnv = Callable[[str, str], Path]
S3 = """\
backup:
  s3: {endpoint: s3.example.org, bucket: slipway-backups, uri_style: path}
"""
TAGS = {"SLIPWAY_POSTGRES_TAG": "c.1", "SLIPWAY_REDIS_TAG": "c.2", "SLIPWAY_NGINX_TAG": "c.3"}
DONE = json.dumps(
    {"service": "backup", "message": "backup (incr) into repo1 done in 2s: 20261130-1F_2I"}
)


class FakeCompose:
    """RemoteCompose stand-in: records argv, answers with `output`."""

    def __init__(self, output: str = "") -> None:
        self.calls: list[tuple[str, ...]] = []
        self.output = output

    def run(self, *args: str, what: str = "", timeout: float | None = None, **_: Any) -> str:
        self.calls.append(args)
        return self.output

    # RemoteCompose's shortcuts, with the argv of the real builders (commands/compose.py).
    def up(self, *services: str, what: str = "", flags: tuple[str, ...] = ()) -> str:
        return self.run("up", "-d", "--no-deps", *flags, *services, what=what)

    def oneoff(self, service: str, *args: str, what: str = "", timeout: float | None = None) -> str:
        return self.run(*ONEOFF, service, *args, what=what, timeout=timeout)

    def exec(
        self, service: str, *args: str, what: str = "", timeout: float | None = None, **_: Any
    ) -> str:
        return self.run("exec", "-T", service, *args, what=what, timeout=timeout)


def deployment(write_env: WriteEnv, extra: str = "", **options: Any) -> Deployment:
    write_env("staging", ONE_HOST + extra)
    d = OneHostDeploy(
        config.load("staging"),
        Build("v7", "abc", Path("/dev/null"), TAGS),
        connect=lambda host: Recorder(host),
        **options,
    )
    d.secrets = secrets.Secrets({}, Path("/nonexistent"))
    return d


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCompose:
    made = FakeCompose(f"backup-run lines\n{DONE}\n[slipway-ok]\n")
    monkeypatch.setattr(OneHostDeploy, "rcompose", lambda self, release_id: made)
    monkeypatch.setattr(Deployment, "release_id", lambda self: "r1")
    monkeypatch.setattr(Deployment, "refresh_lock", lambda self: None)
    return made


def test_the_backup_before_migrations_waits_for_a_running_one_and_names_its_label(
    write_env: WriteEnv, fake: FakeCompose
) -> None:
    d = deployment(write_env)
    note = d.backup_before_migrations()
    assert fake.calls == [
        (
            "exec", "-T", "backup", "backup-run", "--type=incr", "--repo=1",
            f"--wait={data.BACKUP_LOCK_WAIT}",
        )
    ]  # fmt: skip
    assert note == "backup (incr) into repo1 done in 2s: 20261130-1F_2I"


def test_a_failed_backup_before_migrations_stops_the_deploy_naming_skip_backup(
    write_env: WriteEnv, fake: FakeCompose
) -> None:
    # compose exits 0 whatever the container did: no OK line is a failure.
    fake.output = '{"message": "backup (incr) into repo1 FAILED after 1s (pgbackrest exit 1)"}\n'
    with pytest.raises(
        OpsError, match=r"failed \(the running release is untouched\).*--skip-backup"
    ):
        deployment(write_env).backup_before_migrations()


def test_a_backup_still_running_after_the_wait_lets_the_deploy_go_on(
    write_env: WriteEnv, fake: FakeCompose
) -> None:
    fake.output = '{"message": "backup (incr) into repo1 not started: another backup is running"}\n'
    assert (
        deployment(write_env)
        .backup_before_migrations()
        .startswith("skipped: a backup was still running")
    )


@pytest.mark.parametrize(
    ("setup", "extra", "reason"),
    [
        ({"skip_backup": True}, "", "skipped: --skip-backup"),
        ({}, "backup: {before_migrations: false}\n", "skipped: backup.before_migrations is false"),
        ({"first_deploy": True}, "", "skipped: first deploy"),
        ({"unchanged": True}, "", "skipped: the current release already runs this"),
    ],
)
def test_the_backup_before_migrations_is_skipped_only_for_a_reason_it_names(
    write_env: WriteEnv, fake: FakeCompose, setup: dict[str, bool], extra: str, reason: str
) -> None:
    d = deployment(write_env, extra, **{k: v for k, v in setup.items() if k == "skip_backup"})
    for key, value in setup.items():
        setattr(d, key, value)
    assert d.backup_before_migrations().startswith(reason)
    assert fake.calls == []


def test_a_passphrase_that_does_not_open_the_repository_stops_before_postgres(
    write_env: WriteEnv, fake: FakeCompose
) -> None:
    status = {"code": 99, "message": "[FormatError] key/value found outside of section"}
    fake.output = "Pulling...\n" + json.dumps(
        [{"name": "listings", "status": {"code": 99, "message": "other"},
          "repo": [{"key": 1, "status": status}], "backup": []}]
    )  # fmt: skip
    d = deployment(write_env)
    with pytest.raises(OpsError, match=r"BACKUP_PASSPHRASE.*PostgreSQL was not touched"):
        data.open_repository(fake, d.host.label)  # type: ignore[arg-type]
    assert fake.calls == [
        ("run", "--rm", "--no-deps", "-T", "backup-restore", "pgbackrest", "info", "--output=json")
    ]


def test_an_off_site_repository_that_does_not_answer_only_warns(
    write_env: WriteEnv, fake: FakeCompose, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.output = "WARN[0000] Found orphan containers ([slipway-x-logs-1])\n" + json.dumps(
        [{"name": "listings", "status": {"code": 99, "message": "other"}, "backup": [],
          "repo": [{"key": 1, "status": {"code": 0, "message": "ok"}},
                   {"key": 2, "status": {"code": 99, "message": "[HostConnectError] timeout"}}]}]
    )  # fmt: skip
    data.open_repository(fake, deployment(write_env).host.label)  # type: ignore[arg-type]
    assert "warning: the off-site repository cannot be read" in capsys.readouterr().out


def test_an_empty_or_readable_repository_lets_the_deploy_go_on(
    write_env: WriteEnv, fake: FakeCompose
) -> None:
    for code in (0, 1, 2):
        fake.output = json.dumps(
            [{"name": "listings", "status": {"code": code, "message": "x"}, "backup": []}]
        )
        data.open_repository(fake, deployment(write_env).host.label)  # type: ignore[arg-type]


def test_a_release_with_backup_s3_carries_the_overlay_and_records_it(
    write_env: WriteEnv, tmp_path: Path
) -> None:
    shutil.copytree(ROOT / "compose", tmp_path / "compose")  # the scratch root's compose files
    plain = deployment(write_env)
    assert compose.BACKUP_S3_OVERLAY not in plain.overlays()
    assert compose.BACKUP_S3_OVERLAY not in plain.release_files("r1")
    offsite = deployment(write_env, S3)
    assert offsite.overlays()[-1] == compose.BACKUP_S3_OVERLAY
    text = offsite.release_files("r1")[compose.BACKUP_S3_OVERLAY]
    assert "PGBACKREST_REPO2_S3_KEY: ${BACKUP_S3_KEY:?" in text
    release_env = offsite.release_files("r1")["release.env"]
    assert "SLIPWAY_BACKUP_S3_ENDPOINT='s3.example.org'" in release_env
    assert "SLIPWAY_BACKUP_S3_PATH='/slipway/staging'" in release_env


def test_swarm_backs_up_in_the_running_backup_task_or_says_there_is_none(
    write_env: WriteEnv,
) -> None:
    write_env("staging", ONE_HOST + "  - ssh: deploy@203.0.113.11\n")
    manager = Recorder().on(r"^docker ps", stdout="").on(r"^docker exec ", stdout=DONE)
    d = SwarmDeploy(
        config.load("staging"),
        Build("v7", "abc", Path("/x"), TAGS),
        connect=lambda host: manager,
    )
    assert d.run_backup().startswith("skipped: no backup task")
    manager.on(r"^docker ps", stdout="abc123\n")
    assert DONE in d.run_backup()
    commands = [c.line for c in manager.commands]
    assert "label=com.docker.swarm.service.name=slipway-staging_backup" in commands[-2]
    assert commands[-1].startswith("docker exec abc123 backup-run --type=incr --repo=1 --wait=")


# ------------------------------------------------------------- deploy --restore: a lost host


def info(backups: int) -> str:
    """`pgbackrest info --output=json` of readable repositories holding that many backups."""
    sets = [
        {"label": f"2026113{i}-020000F", "type": "full", "database": {"repo-key": 1},
         "timestamp": {"start": 1796000000 + i, "stop": 1796000010 + i},
         "info": {"size": 1, "repository": {"delta": 1}}}
        for i in range(backups)
    ]  # fmt: skip
    status = {"code": 0 if backups else 2, "message": "ok"}
    return json.dumps([{"name": "listings", "status": status, "backup": sets}])


class ScriptedCompose(FakeCompose):
    """Answers `pgbackrest info` with `repository`, the database probe with `volume`
    ("cluster" or "empty") and backup-restore with `restored`; records every call with its
    timeout."""

    def __init__(
        self, volume: str, repository: str, restored: str = "restore done\n[slipway-ok]\n"
    ) -> None:
        super().__init__()
        self.volume = volume
        self.repository = repository
        self.restored = restored
        self.timeouts: list[float | None] = []

    def run(self, *args: str, what: str = "", timeout: float | None = None, **_: Any) -> str:
        assert what
        self.calls.append(args)
        self.timeouts.append(timeout)
        if args == INFO:
            return self.repository
        if args[-3:-1] == ("sh", "-c"):
            assert args[-1] == data.DATABASE_PROBE
            return f"Creating volume\n[slipway-{self.volume}]\n"
        assert args[-1] == "backup-restore", args
        return self.restored


INFO = ("run", "--rm", "--no-deps", "-T", "backup-restore", "pgbackrest", "info", "--output=json")
PROBE = ("run", "--rm", "--no-deps", "-T", "backup-restore", "sh", "-c", data.DATABASE_PROBE)
RESTORE = ("run", "--rm", "--no-deps", "-T", "backup-restore", "backup-restore")


def test_a_host_without_its_database_next_to_backups_stops_naming_deploy_restore(
    write_env: WriteEnv,
) -> None:
    fake = ScriptedCompose("empty", info(3))
    d = deployment(write_env)
    with pytest.raises(OpsError) as err:
        d.database_ready_for(fake)  # type: ignore[arg-type]
    message = str(err.value)
    assert "deploy@203.0.113.10:22 has no database of staging" in message
    assert "hold 3 backup(s)" in message
    assert "`invoke deploy --env=staging --restore`" in message
    assert "Rebuilding a lost host" in message and message.endswith("PostgreSQL was not started")
    assert fake.calls == [INFO, PROBE]  # nothing restored without --restore
    assert not d.restored


def test_deploy_restore_fills_the_empty_volume_before_postgres_starts(
    write_env: WriteEnv, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = ScriptedCompose("empty", info(2))
    d = deployment(write_env, restore=True)
    # The lock is checked once more right before the volume is written.
    monkeypatch.setattr(d, "refresh_lock", lambda: fake.calls.append(("refresh the lock",)))
    note = d.database_ready_for(fake)  # type: ignore[arg-type]
    assert note.startswith("database restored (the newest backup, then the archived WAL)")
    # newest backup, every archived WAL: no target
    assert fake.calls == [INFO, PROBE, ("refresh the lock",), RESTORE]
    assert fake.timeouts[-1] == data.RESTORE_WAIT
    assert d.restored
    assert "    restore done" in capsys.readouterr().out


def test_a_restore_that_does_not_confirm_stops_the_deploy(write_env: WriteEnv) -> None:
    fake = ScriptedCompose(
        "empty", info(2), restored="ERROR: [028]: backup and archive info mismatch\n"
    )
    d = deployment(write_env, restore=True)
    with pytest.raises(OpsError, match="PostgreSQL was not started"):
        d.database_ready_for(fake)  # type: ignore[arg-type]
    assert not d.restored


def test_deploy_restore_refuses_a_host_that_has_its_database(write_env: WriteEnv) -> None:
    fake = ScriptedCompose("cluster", info(2))
    with pytest.raises(OpsError) as err:
        deployment(write_env, restore=True).database_ready_for(fake)  # type: ignore[arg-type]
    assert "has one. Nothing was changed" in str(err.value)
    assert "`invoke restore --env=staging --at=<time>`" in str(err.value)
    assert fake.calls == [INFO, PROBE]


def test_deploy_restore_without_any_backup_says_where_backups_come_from(
    write_env: WriteEnv,
) -> None:
    fake = ScriptedCompose("empty", info(0))
    with pytest.raises(OpsError, match="hold no backup to rebuild the database from"):
        deployment(write_env, restore=True).database_ready_for(fake)  # type: ignore[arg-type]
    assert fake.calls == [INFO, PROBE]


@pytest.mark.parametrize(("volume", "stored"), [("cluster", 4), ("empty", 0), ("cluster", 0)])
def test_an_ordinary_deploy_goes_on_with_a_database_or_without_backups(
    write_env: WriteEnv, volume: str, stored: int
) -> None:
    fake = ScriptedCompose(volume, info(stored))
    assert deployment(write_env).database_ready_for(fake) == ""  # type: ignore[arg-type]
    assert fake.calls == [INFO, PROBE]


def test_opening_the_repository_counts_the_backups_of_every_repository(
    write_env: WriteEnv, fake: FakeCompose
) -> None:
    backups = [
        {"label": f"2026113{i}-020000F", "type": "full", "database": {"repo-key": key},
         "timestamp": {"start": 1796000000 + i, "stop": 1796000010 + i},
         "info": {"size": 1, "repository": {"delta": 1}}}
        for i, key in ((0, 1), (1, 2), (2, 2))
    ]  # fmt: skip
    fake.output = json.dumps(
        [{"name": "listings", "status": {"code": 0, "message": "ok"}, "backup": backups}]
    )
    label = deployment(write_env).host.label
    assert data.open_repository(fake, label).backups == 3  # type: ignore[arg-type]


OFFSITE_DOWN = json.dumps(
    [{"name": "listings", "status": {"code": 99, "message": "other"}, "backup": [],
      "repo": [{"key": 1, "status": {"code": 1, "message": "missing stanza path"}},
               {"key": 2, "status": {"code": 99, "message": "[HostConnectError] timeout"}}]}]
)  # fmt: skip


@pytest.mark.parametrize("restore", [False, True])
def test_a_host_without_its_database_and_an_unreadable_off_site_repository_stops(
    write_env: WriteEnv, fake: FakeCompose, restore: bool
) -> None:
    """A new host has an empty local repository: an off-site one that does not answer may hold
    the backups, so an empty count does not mean a new environment."""
    d = deployment(write_env, S3, restore=restore)
    fake.output = OFFSITE_DOWN
    stored = data.open_repository(fake, d.host.label).backups  # type: ignore[arg-type]
    assert stored == 0
    probe = ScriptedCompose("empty", OFFSITE_DOWN)
    with pytest.raises(OpsError) as err:
        d.database_ready_for(probe)  # type: ignore[arg-type]
    message = str(err.value)
    assert "off-site backup repository cannot be read (repo2: [HostConnectError] timeout" in message
    assert "BACKUP_S3_KEY" in message and message.endswith("PostgreSQL was not started")
    assert probe.calls == [INFO, PROBE]


def test_an_unreadable_off_site_repository_does_not_stop_a_host_that_has_its_database(
    write_env: WriteEnv,
) -> None:
    d = deployment(write_env, S3)
    probe = ScriptedCompose("cluster", OFFSITE_DOWN)
    assert d.database_ready_for(probe) == ""  # type: ignore[arg-type]
