"""The backup scheduler of the postgres image, for real (services/postgres/backup-scheduler).

Containers are started by hand with `docker run` as compose/compose.yaml starts the `postgres`
and `backup` services: read-only root, /tmp on tmpfs, no capabilities, the passphrase in
PGBACKREST_REPO1_CIPHER_PASS, volumes for the data directory (read-only in the scheduler), the
repository, the server's socket directory and the metrics directory. No network: pgBackRest
reaches PostgreSQL over the shared socket and reads the data directory from the volume.

Two rigs (a PostgreSQL and its scheduler each, volumes of their own) run side by side, so one
wait for the daily time covers both cases of the schedule: on a day that is not a full-backup
day the scheduled backup is a differential, on a full-backup day a full one. Everything is
removed at the end, also after a failure.
"""

from __future__ import annotations

import json
import secrets
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from e2e.built import built_image
from support.docker import docker, logs
from support.waiting import wait_for

pytestmark = pytest.mark.integration

PREFIX = f"slipway-schedtest-{secrets.token_hex(3)}"
LABEL = f"org.slipway.test={PREFIX}"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HARDENING = (
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges:true",
    "--network",
    "none",
    "--label",
    LABEL,
)
METRICS = "/var/lib/slipway-metrics/backup.prom"
MARKER_ROWS = 321


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of sample `name` with exactly `labels` in a Prometheus text file (None: absent)."""
    wanted = name
    if labels:
        wanted += "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == wanted:
            return float(parts[1])
    return None


@dataclass
class Rig:
    """One PostgreSQL container and its backup scheduler, on volumes of their own."""

    name: str
    image: str
    passphrase: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    pg: str = ""  # the running PostgreSQL container
    scheduler: str = ""
    health: list[tuple[float, int]] = field(default_factory=list)  # (time, healthcheck exit)

    def volume(self, short: str) -> str:
        return f"{self.name}-{short}"

    def start_postgres(self, passphrase: str = "", suffix: str = "pg", restart: bool = True) -> str:
        """`postgres` as compose runs it (restart: unless-stopped, unless `restart` is false:
        one attempt only); returns the container (not waited for)."""
        container = f"{self.name}-{suffix}"
        docker(
            "run", "-d", "--name", container, *HARDENING, "--tmpfs", "/run",
            "--restart", "unless-stopped" if restart else "no",
            "--shm-size", "256m", "--health-interval", "2s",
            "-e", f"PGBACKREST_REPO1_CIPHER_PASS={passphrase or self.passphrase}",
            "-e", "PGBACKREST_REPO1_RETENTION_FULL=30", "-e", "PGBACKREST_PROCESS_MAX=2",
            "-e", "PGBACKREST_COMPRESS_TYPE=lz4",
            "-e", "POSTGRES_USER=listings", "-e", f"POSTGRES_PASSWORD={self.password}",
            "-e", "POSTGRES_DB=listings",
            "-v", f"{self.volume('data')}:/var/lib/postgresql/data",
            "-v", f"{self.volume('repo')}:/var/lib/pgbackrest",
            "-v", f"{self.volume('socket')}:/run/postgresql",
            self.image,
        )  # fmt: skip
        return container

    def wait_healthy(self, container: str, timeout: float = 120) -> None:
        def state() -> list[str]:
            found = docker(
                "inspect", "-f",
                "{{.State.Status}} {{.HostConfig.RestartPolicy.Name}} {{.State.Health.Status}}",
                container,
            ).stdout.split()  # fmt: skip
            assert found[0] in ("running", "restarting") or found[1] != "no", (
                f"{container} is {found}:\n{logs(container)[-4000:]}"
            )
            return found

        wait_for(
            state,
            until=lambda found: found[-1] == "healthy",
            what=f"{container} healthy",
            timeout=timeout,
            interval=1,
            details=lambda: logs(container)[-4000:],
        )

    def start_scheduler(self, at: str, full_days: str) -> None:
        """`backup` as compose runs it (its healthcheck too, only faster)."""
        self.scheduler = f"{self.name}-backup"
        docker(
            "run", "-d", "--name", self.scheduler, *HARDENING,
            "--health-cmd", "backup-scheduler healthcheck", "--health-interval", "3s",
            "--health-timeout", "5s", "--health-retries", "3", "--health-start-period", "30s",
            "-e", f"PGBACKREST_REPO1_CIPHER_PASS={self.passphrase}",
            "-e", "PGBACKREST_REPO1_RETENTION_FULL=30", "-e", "PGBACKREST_PROCESS_MAX=2",
            "-e", "PGBACKREST_COMPRESS_TYPE=lz4",
            "-e", "PGBACKREST_PG1_SOCKET_PATH=/run/postgresql",
            "-e", f"BACKUP_TIME={at}", "-e", f"BACKUP_FULL_DAYS={full_days}",
            "-e", "BACKUP_CHECK_INTERVAL=900", "-e", "BACKUP_RETRY_INTERVAL=3600",
            "-v", f"{self.volume('data')}:/var/lib/postgresql/data:ro",
            "-v", f"{self.volume('repo')}:/var/lib/pgbackrest",
            "-v", f"{self.volume('socket')}:/run/postgresql",
            "-v", f"{self.volume('metrics')}:/var/lib/slipway-metrics",
            self.image, "backup-scheduler",
        )  # fmt: skip

    def healthcheck(self) -> int:
        """The compose healthcheck of the backup service, run now; its exit is recorded."""
        code = docker("exec", self.scheduler, "backup-scheduler", "healthcheck", check=False)
        self.health.append((time.time(), code.returncode))
        return code.returncode

    def backups(self) -> list[dict[str, Any]]:
        """`pgbackrest info` read in the scheduler's container, oldest first."""
        out = docker("exec", self.scheduler, "pgbackrest", "info", "--output=json").stdout
        return list(json.loads(out)[0].get("backup", []))

    def metrics(self) -> str:
        return docker("exec", self.scheduler, "cat", METRICS, check=False).stdout

    def psql(self, sql: str, container: str = "") -> str:
        result = docker(
            "exec", "-i", container or self.pg, "psql", "-X", "-q", "-At", "-v",
            "ON_ERROR_STOP=1", "-d", "listings", "-c", sql,
        )  # fmt: skip
        return result.stdout.strip()

    def control_data(self) -> str:
        """The cluster's system identifier and state (pg_control), read from the data volume."""
        return docker(
            "run", "--rm", "--network", "none",
            "-v", f"{self.volume('data')}:/var/lib/postgresql/data:ro", self.image,
            "sh", "-c", "pg_controldata | grep -E 'system identifier|cluster state'",
        ).stdout  # fmt: skip

    def scheduler_logs(self) -> str:
        return logs(self.scheduler)[-6000:]


def wait_backups(
    rig: Rig, what: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float
) -> list[dict[str, Any]]:
    """Poll the repository (and the scheduler's healthcheck) until done(backups) is true."""

    def backups() -> list[dict[str, Any]]:
        rig.healthcheck()
        return rig.backups()

    return wait_for(
        backups,
        until=done,
        what=f"{rig.name}: {what}",
        timeout=timeout,
        interval=2,
        details=rig.scheduler_logs,
    )


@dataclass
class Schedule:
    at: datetime  # the daily time given to both schedulers (UTC, whole minute)
    today: str  # the weekday at that time
    other: str  # a weekday that is not today


@dataclass
class Rigs:
    diff: Rig  # full backups on another day: the scheduled backup is a differential
    full: Rig  # full backups today: the scheduled backup is a full one
    schedule: Schedule


@pytest.fixture(scope="module")
def rigs() -> Iterator[Rigs]:
    image = built_image("postgres", "SLIPWAY_POSTGRES_TAG")
    diff, full = Rig(f"{PREFIX}-a", image), Rig(f"{PREFIX}-b", image)
    try:
        for rig in (diff, full):
            rig.pg = rig.start_postgres()
        for rig in (diff, full):
            rig.wait_healthy(rig.pg)
        # The daily time at least 25 s away (the schedulers start before it: their first full
        # backup and archive check come first, then the scheduled one), and at most 85 s.
        now = datetime.now(UTC)
        ahead = 60 - now.second + (60 if now.second > 35 else 0)
        at = (now + timedelta(seconds=ahead)).replace(second=0, microsecond=0)
        today = WEEKDAYS[at.weekday()]
        other = WEEKDAYS[(at.weekday() + 3) % 7]
        diff.start_scheduler(at.strftime("%H:%M"), other)
        full.start_scheduler(at.strftime("%H:%M"), f"{other},{today}")
        yield Rigs(diff, full, Schedule(at, today, other))
    finally:
        for line in docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split():
            docker("rm", "-f", "-v", line, check=False)
        for rig in (diff, full):
            for short in ("data", "repo", "socket", "metrics"):
                docker("volume", "rm", "-f", rig.volume(short), check=False)


# --------------------------------------------------------------------- (a) the first backup


def test_an_empty_repository_gets_a_full_backup_at_start_with_its_metrics(rigs: Rigs) -> None:
    for rig in (rigs.diff, rigs.full):
        backups = wait_backups(rig, "the first backup", lambda b: len(b) >= 1, timeout=120)
        first = backups[0]
        assert first["type"] == "full", first
        assert first["database"]["repo-key"] == 1, first
        assert datetime.now(UTC) < rigs.schedule.at, (
            "the first backup ended after the scheduled time: the machine is too slow for "
            "this test's timing"
        )

    # The first loop iteration ends with the archive check, then the metrics are rewritten.
    rig = rigs.diff

    def checked() -> str:
        rig.healthcheck()
        return rig.metrics()

    prom = wait_for(
        checked,
        until=lambda prom: metric(prom, "slipway_backup_check_success") is not None,
        what="the archive check in the metrics",
        interval=1,
    )
    assert datetime.now(UTC) < rigs.schedule.at, "the scheduled time came before the check"
    first = rig.backups()[0]
    assert metric(prom, "slipway_backup_count") == 1, prom
    assert metric(
        prom, "slipway_backup_last_success_timestamp_seconds", type="full", repo="1"
    ) == float(first["timestamp"]["stop"]), prom
    assert metric(prom, "slipway_backup_check_success") == 1, prom
    assert metric(prom, "slipway_backup_repo_ok", repo="1") == 1, prom
    assert metric(prom, "slipway_backup_last_attempt_success", type="full", repo="1") == 1, prom
    # No differential has been taken yet.
    assert (
        metric(prom, "slipway_backup_last_success_timestamp_seconds", type="diff", repo="1") is None
    )


# ------------------------------------------------------------------ (b) the daily schedule


def test_the_daily_time_takes_a_diff_or_on_a_full_day_a_full_backup(rigs: Rigs) -> None:
    at = rigs.schedule.at.timestamp()
    remaining = at - time.time()
    print(
        f"scheduled at {rigs.schedule.at:%H:%M} UTC ({rigs.schedule.today}), in {remaining:.0f} s"
    )

    def scheduled(backups: list[dict[str, Any]]) -> bool:
        return any(b["timestamp"]["start"] >= at for b in backups)

    results = {}
    for rig in (rigs.diff, rigs.full):
        backups = wait_backups(rig, "the scheduled backup", scheduled, timeout=remaining + 90)
        results[rig.name] = backups
        before = [b for b in backups if b["timestamp"]["start"] < at]
        after = [b for b in backups if b["timestamp"]["start"] >= at]
        assert len(before) == 1 and before[0]["type"] == "full", backups
        assert len(after) == 1, backups
    (diff,) = [b for b in results[rigs.diff.name] if b["timestamp"]["start"] >= at]
    (full,) = [b for b in results[rigs.full.name] if b["timestamp"]["start"] >= at]
    assert diff["type"] == "diff", (diff, rigs.diff.scheduler_logs())
    assert diff["reference"], diff  # it builds on the first full backup
    assert full["type"] == "full", (full, rigs.full.scheduler_logs())
    assert "backup (diff) into repo1: scheduled" in rigs.diff.scheduler_logs()
    assert "backup (full) into repo1: scheduled" in rigs.full.scheduler_logs()

    # The metrics follow (rewritten right after the backup).
    prom = wait_for(
        rigs.diff.metrics,
        until=lambda prom: metric(prom, "slipway_backup_count") == 2,
        what="2 backups in the metrics",
        timeout=30,
        interval=1,
    )
    assert metric(
        prom, "slipway_backup_last_success_timestamp_seconds", type="diff", repo="1"
    ) == float(diff["timestamp"]["stop"]), prom


# ------------------------------------------------------------------------ (c) healthcheck


def test_the_healthcheck_passes_while_the_scheduler_runs(rigs: Rigs) -> None:
    for rig in (rigs.diff, rigs.full):
        assert rig.health, "no healthcheck was run"
        failed = [(t, code) for t, code in rig.health if code != 0]
        assert not failed, f"{rig.name}: healthcheck failed at {failed}\n{rig.scheduler_logs()}"
        assert rig.healthcheck() == 0
        status = docker("inspect", "-f", "{{.State.Health.Status}}", rig.scheduler).stdout
        assert status.strip() == "healthy", (status, rig.scheduler_logs())
    # Also while a backup runs: the scheduled one took a few seconds at least, and was polled.
    assert len(rigs.diff.health) >= 10, rigs.diff.health


# ------------------------------------------------------------------ (d) a wrong passphrase


def test_a_wrong_passphrase_stops_postgres_and_changes_nothing(rigs: Rigs) -> None:
    rig = rigs.diff
    rig.psql("CREATE TABLE marker (n int)")
    rig.psql(f"INSERT INTO marker SELECT generate_series(1, {MARKER_ROWS})")
    labels = [b["label"] for b in rig.backups()]
    docker("rm", "-f", rig.scheduler)
    docker("stop", "-t", "60", rig.pg, timeout=90)
    docker("rm", rig.pg)
    before = rig.control_data()

    # One attempt (compose would retry it in a loop, failing the same way each time).
    wrong = rig.start_postgres(
        passphrase=secrets.token_urlsafe(32), suffix="pg-wrong", restart=False
    )
    code = int(docker("wait", wrong, timeout=120).stdout.strip())
    out = logs(wrong)
    print(out[-2000:])
    assert code != 0, out
    assert "BACKUP_PASSPHRASE" in out, out
    assert "PostgreSQL is not started" in out, out
    after = rig.control_data()
    # The same cluster, shut down cleanly: nothing was initialised, restored or left running.
    assert after == before, (before, after)
    assert "shut down" in after, after

    rig.pg = rig.start_postgres(suffix="pg-again")
    rig.wait_healthy(rig.pg)
    restarts = int(docker("inspect", "-f", "{{.RestartCount}}", rig.pg).stdout)
    if restarts:
        # The WAL segment the failed start could not archive is pushed by the next start's
        # setup server while its entrypoint runs `pgbackrest stanza-create`: both want the
        # stanza's archive lock, and the entrypoint gives up on the first [050]. Compose's
        # restart policy (as here) brings it up at the next attempt.
        errors = [line for line in logs(rig.pg).splitlines() if '"level":"error"' in line]
        warnings.warn(
            f"postgres needed {restarts} restart(s) after the wrong passphrase: {errors}",
            stacklevel=1,
        )
    assert rig.psql("SELECT count(*) FROM marker") == str(MARKER_ROWS)
    # The repository is as it was: its backups read with the right passphrase.
    check = docker(
        "exec", rig.pg, "pgbackrest", "info", "--output=json",
    ).stdout  # fmt: skip
    assert [b["label"] for b in json.loads(check)[0]["backup"]] == labels, check
