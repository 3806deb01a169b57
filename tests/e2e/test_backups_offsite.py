"""The off-site backup repository end to end (issue 5): a local stack with `backup.s3` pointing at
an S3 server (SeaweedFS, tests/e2e/s3_server.py), started with `invoke up` like any environment.

One environment of its own (`e2e-offsite`, project slipway-e2e-offsite, free loopback ports,
monitoring off) written to a temporary SLIPWAY_ENVIRONMENTS_DIR. The S3 login travels as a user
passes it: BACKUP_S3_KEY and BACKUP_S3_KEY_SECRET in the environment of the invoke commands.

The S3 server must answer from the very first start: the postgres container prepares repo2 at
start, and the scheduler takes the first backup of each repository at once. So the stack's
`edge` network (`<project>_edge`, the one with a route out, which backup-s3.yaml adds to every
pgBackRest container) is created here before `invoke up`, with the labels compose gives its own
networks, and the S3 server joins it under its certificate's name. Compose adopts a network
with those labels as its own (and removes it at `invoke down` once the server is gone), so the
stack sees the server as it would see a real object store, with no failed first attempt to
tolerate and no restart. (Connecting the server after `invoke up` would leave repo2 without its
stanza until postgres restarts and delay its first backup by the retry interval.)

The tests run in file order on one stack: a full backup into both repositories, a drill from
the off-site one, then the loss of the data volume AND the local repository volume, restored
from S3 with `invoke restore --yes`, after which the scheduler fills the new local repository.
Everything is removed at the end, also after a failure (unless SLIPWAY_E2E_KEEP=1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import s3_server
import yaml
from free_port import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# SLIPWAY_E2E_OFFSITE_ENV runs a second copy next to the first (another name, project, ports).
ENV_NAME = os.environ.get("SLIPWAY_E2E_OFFSITE_ENV", "e2e-offsite")
PROJECT = f"slipway-{ENV_NAME}"
EDGE = f"{PROJECT}_edge"
S3_CONTAINER = f"{PROJECT}-s3"
S3_ALIAS = "s3.offsite.test"
BUCKET = "slipway-offsite"
S3_PATH = f"/slipway/{ENV_NAME}"
DB = "listings"
# Secrets a CI job may export: the environment's generated file must win for these, and the
# S3 login is the test's own.
SECRET_NAMES = (
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "LISTINGS_API_KEY_PEPPER",
    "BACKUP_PASSPHRASE",
    "BACKUP_S3_KEY",
    "BACKUP_S3_KEY_SECRET",
)
ROWS = 250


def docker(*args: str, check: bool = True, timeout: int = 300) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result.stdout


def container_logs(container: str) -> str:
    result = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, timeout=60, check=False
    )
    return result.stdout + result.stderr


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.stdout}\n{result.stderr}"


@dataclass
class OffsiteStack:
    envdir: Path
    environ: dict[str, str]
    https_port: int
    s3: s3_server.S3Server

    @property
    def ca_path(self) -> Path:
        return ROOT / ".slipway" / ENV_NAME / "ca.crt"

    def invoke(
        self, *args: str, check: bool = True, timeout: int = 900
    ) -> subprocess.CompletedProcess[str]:
        """`invoke <args> --env=<this env>` as a user runs it (stdin not a terminal)."""
        result = subprocess.run(
            [sys.executable, "-m", "invoke", *args, f"--env={ENV_NAME}"],
            cwd=ROOT, env=self.environ, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"invoke {' '.join(args)} exited {result.returncode}\n--- stdout\n"
                f"{result.stdout[-8000:]}\n--- stderr\n{result.stderr[-4000:]}"
            )
        return result

    def containers(self) -> dict[str, dict[str, str]]:
        """Every container of the project: name -> state, health."""
        out = docker(
            "ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}",
            "--format", "{{.Names}}\t{{.State}}\t{{.Status}}",
        )  # fmt: skip
        found = {}
        for line in out.splitlines():
            name, state, status = line.split("\t")
            health = (
                "healthy" if "(healthy)" in status else "unhealthy" if "unhealthy" in status else ""
            )
            found[name] = {"state": state, "health": health}
        return found

    def container(self, service: str) -> str:
        out = docker(
            "ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
            "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}",
        ).split()  # fmt: skip
        assert out, f"{PROJECT} has no running {service} container"
        return sorted(out)[0]

    def psql(self, sql: str) -> str:
        result = subprocess.run(
            ["docker", "exec", "-i", self.container("postgres"),
             "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", DB],
            input=sql, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, f"psql failed: {result.stderr}\n{sql[:500]}"
        return result.stdout.strip()

    def backups(self) -> list[dict[str, Any]]:
        """Both repositories' backups (`pgbackrest info` in the backup container)."""
        out = docker("exec", self.container("backup"), "pgbackrest", "info", "--output=json")
        return list(json.loads(out)[0].get("backup", []))

    def wait_backups(
        self, what: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 180
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                backups = self.backups()
            except AssertionError:  # the backup container is (re)starting
                backups = []
            if done(backups):
                return backups
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not seen in {timeout:.0f} s; backups: "
                    f"{[(b['label'], b['type'], repo(b)) for b in backups]}\n"
                    f"{container_logs(self.container('backup'))[-6000:]}"
                )
            time.sleep(2)

    def ready(self) -> httpx.Response:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        with httpx.Client(verify=context, timeout=30) as client:
            return client.get(f"https://localhost:{self.https_port}/ready")


def repo(backup: dict[str, Any]) -> int:
    return int(backup["database"]["repo-key"])


def in_repo(number: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda backups: any(repo(b) == number for b in backups)


def project_volumes() -> list[str]:
    return docker(
        "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"
    ).split()


def write_environment(
    envdir: Path, http_port: int, https_port: int, s3: s3_server.S3Server
) -> None:
    """environments/local.yaml renamed, on free ports, monitoring off, backup.s3 set."""
    local = yaml.safe_load((ROOT / "environments" / "local.yaml").read_text())
    local["name"] = ENV_NAME
    local["ports"] = {**local.get("ports", {}), "http": http_port, "https": https_port}
    local["monitoring"] = {"enabled": False}
    local["overlay"] = "local"
    local["backup"] = {
        # The daily backup at a time that has just passed: none comes in the middle of a test
        # (the first ones, taken at start, are waited for).
        "time": (datetime.now(UTC) - timedelta(minutes=2)).strftime("%H:%M"),
        "s3": {
            "endpoint": s3.alias,
            "port": s3.port,
            "bucket": s3.bucket,
            "region": "us-east-1",
            "path": S3_PATH,
            "uri_style": "path",
            "ca_file": str(s3.ca_file),
        },
    }
    (envdir / f"{ENV_NAME}.yaml").write_text(yaml.safe_dump(local, sort_keys=False))


def _remove_leftovers() -> None:
    """What an earlier killed run (or SLIPWAY_E2E_KEEP=1) left: its stack, server, network."""
    docker("rm", "-f", "-v", S3_CONTAINER, check=False)
    for name in docker(
        "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"
    ).split():
        docker("rm", "-f", "-v", name, check=False)
    for volume in project_volumes():
        docker("volume", "rm", "-f", volume, check=False)
    docker("network", "rm", EDGE, check=False)
    docker("network", "rm", f"{PROJECT}_backend", check=False)


@pytest.fixture(scope="module")
def stack() -> Iterator[OffsiteStack]:
    envdir = Path(tempfile.mkdtemp(prefix=f"slipway-{ENV_NAME}-envs-"))
    tlsdir = Path(tempfile.mkdtemp(prefix=f"slipway-{ENV_NAME}-s3-"))
    env_file = ROOT / f".env.{ENV_NAME}"
    state_dir = ROOT / ".slipway" / ENV_NAME
    env_file_was_there, state_dir_was_there = env_file.exists(), state_dir.exists()
    environ = {k: v for k, v in os.environ.items() if k not in SECRET_NAMES}
    environ["SLIPWAY_ENVIRONMENTS_DIR"] = str(envdir)
    # The checkout's version and image tags as they are now, for every command of the module:
    # the tree may be edited while the test runs (`invoke restore` and the drill would then
    # look for images of the edited tree, which `invoke up` never built).
    from ops.compose import detect_build

    build = detect_build()
    environ.update(SLIPWAY_VERSION=build.version, SLIPWAY_GIT_SHA=build.git_sha, **build.image_tags)
    try:
        _remove_leftovers()
        # The stack's edge network, as compose would create it (see the module's docstring).
        docker(
            "network", "create", "--label", f"com.docker.compose.project={PROJECT}",
            "--label", "com.docker.compose.network=edge", EDGE,
        )  # fmt: skip
        server = s3_server.start(S3_CONTAINER, EDGE, S3_ALIAS, BUCKET, tlsdir)
        environ["BACKUP_S3_KEY"] = server.key
        environ["BACKUP_S3_KEY_SECRET"] = server.secret
        http_port, https_port = free_port(), free_port()
        write_environment(envdir, http_port, https_port, server)
        handle = OffsiteStack(envdir, environ, https_port, server)
        handle.invoke("up")
        # The scheduler's first backup of each (empty) repository, taken at start.
        handle.wait_backups(
            "the first backup of repo1 and repo2", lambda b: in_repo(1)(b) and in_repo(2)(b)
        )
        yield handle
    finally:
        if os.environ.get("SLIPWAY_E2E_KEEP") != "1":
            # The server first: compose removes the network it adopted only once it is empty.
            # (Its CA file stays until after `invoke down`, which reads the environment file.)
            s3_server.remove(S3_CONTAINER)
            down = None
            if (envdir / f"{ENV_NAME}.yaml").exists():  # else nothing was started
                down = subprocess.run(
                    [sys.executable, "-m", "invoke", "down", "--volumes", "--yes",
                     f"--env={ENV_NAME}"],
                    cwd=ROOT, env=environ, stdin=subprocess.DEVNULL, capture_output=True,
                    text=True, timeout=600, check=False,
                )  # fmt: skip
            left = docker(
                "ps", "-a", "--format", "{{.Names}}",
                "--filter", f"label=com.docker.compose.project={PROJECT}",
            ).split()  # fmt: skip
            _remove_leftovers()
            if not env_file_was_there:
                env_file.unlink(missing_ok=True)
            if not state_dir_was_there:
                shutil.rmtree(state_dir, ignore_errors=True)
            shutil.rmtree(envdir, ignore_errors=True)
            shutil.rmtree(tlsdir, ignore_errors=True)
            assert down is None or down.returncode == 0, f"invoke down failed:\n{_output(down)}"
            assert not left, f"`invoke down` left containers: {left}"


# ------------------------------------------------------------------ 1. into both repositories


def test_the_offsite_repository_works_from_the_first_start(stack: OffsiteStack) -> None:
    """PostgreSQL prepared repo2 at its start, and the scheduler's first backup of each
    repository succeeded: nothing failed first (the server was reachable before `invoke up`)."""
    postgres = container_logs(stack.container("postgres"))
    assert "off-site repository ready (repo2, s3)" in postgres, postgres
    assert "cannot be prepared" not in postgres, postgres
    scheduler = container_logs(stack.container("backup"))
    for number in (1, 2):
        assert f"backup (full) into repo{number}: first backup of this repository" in scheduler
        assert re.search(rf"backup \(full\) into repo{number} done in", scheduler), scheduler
    assert "FAILED" not in scheduler, scheduler


def test_a_full_backup_goes_into_the_local_and_the_offsite_repository(stack: OffsiteStack) -> None:
    started = time.time()
    result = stack.invoke("backup", "--type=full")
    new = [b for b in stack.backups() if b["timestamp"]["start"] >= int(started)]
    assert sorted((repo(b), b["type"]) for b in new) == [(1, "full"), (2, "full")], (
        new,
        _output(result),
    )
    listing = stack.invoke("backup.list").stdout
    for b in new:
        line = rf"^{re.escape(b['label'])}\s+full\s.*\srepo{repo(b)}$"
        assert re.search(line, listing, re.MULTILINE), listing


# ---------------------------------------------------------------- 2. a drill from the off-site


def test_a_drill_from_the_offsite_repository_passes(stack: OffsiteStack) -> None:
    drill = stack.invoke("backup.drill", "--repo=2", check=False)
    out = _output(drill)
    print(out)
    assert drill.returncode == 0, out
    # pgBackRest's own line: the backup set came from the off-site repository.
    assert re.search(r"repo2: restore backup set \S+", out), out
    assert "DRILL PASSED" in out, out


# --------------------------------------- 3. both volumes lost: restore from the off-site copy


@dataclass
class Disaster:
    source: str  # rows written before the loss
    restore_started: float  # when `invoke restore` was run
    restore: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def disaster(stack: OffsiteStack) -> Disaster:
    source = f"offsite-{uuid.uuid4().hex[:8]}"
    stack.psql(
        "INSERT INTO listings (source, source_id, title, description, kind, price, city, "
        "postal_code, bedrooms, area_m2, listed_at, contact_email) "
        f"SELECT '{source}', g::text, 'Listing ' || g, 'A place, number ' || g, 'apartment', "
        "100000 + g, 'Lyon', '69001', 2, 50, now(), 'agent@example.test' "
        f"FROM generate_series(1, {ROWS}) AS g"
    )
    assert int(stack.psql(f"SELECT count(*) FROM listings WHERE source = '{source}'")) == ROWS
    # Archive the WAL holding them into both repositories (what the scheduler does every
    # check interval).
    docker("exec", stack.container("backup"), "pgbackrest", "check")

    data, backups = f"{PROJECT}_postgres-data", f"{PROJECT}_postgres-backups"
    users = set()
    for volume in (data, backups):
        users |= set(docker("ps", "-aq", "--filter", f"volume={volume}").split())
    assert len(users) == 2, users  # postgres and backup
    docker("stop", "-t", "60", *users, timeout=120)
    docker("rm", *users)
    docker("volume", "rm", data, backups)
    assert not {data, backups} & set(project_volumes())

    started = time.time()
    result = stack.invoke("restore", "--yes", check=False)
    print(_output(result))
    assert result.returncode == 0, _output(result)
    return Disaster(source, started, result)


def test_lost_data_and_local_repository_are_restored_from_s3(
    stack: OffsiteStack, disaster: Disaster
) -> None:
    out = _output(disaster.restore)
    # pgBackRest found no backup in the new, empty local repository and took the off-site one.
    assert re.search(r"repo2: restore backup set \S+", out), out
    count = stack.psql(f"SELECT count(*) FROM listings WHERE source = '{disaster.source}'")
    assert int(count) == ROWS
    status = stack.invoke("status", check=False)
    assert status.returncode == 0, f"not healthy after the restore:\n{_output(status)}"
    ready = stack.ready()
    assert ready.status_code == 200, ready.text
    running = {n: c for n, c in stack.containers().items() if c["state"] == "running"}
    assert any("-backup-" in n for n in running), running
    unhealthy = {n: c for n, c in running.items() if c["health"] != "healthy"}
    assert not unhealthy, f"not healthy after the restore: {unhealthy}"


def test_the_scheduler_fills_the_new_local_repository(
    stack: OffsiteStack, disaster: Disaster
) -> None:
    backups = stack.wait_backups("a backup in the new local repository", in_repo(1))
    local = [b for b in backups if repo(b) == 1]
    assert [b["type"] for b in local] == ["full"], local
    # Taken after the restore, of the restored cluster; the off-site backups are all still there.
    assert local[0]["timestamp"]["start"] >= int(disaster.restore_started), local
    assert len([b for b in backups if repo(b) == 2]) >= 2, backups
    listing = stack.invoke("backup.list").stdout
    assert re.search(rf"^{re.escape(local[0]['label'])}\s+full\s.*\srepo1$", listing, re.M)
    assert (
        int(stack.psql(f"SELECT count(*) FROM listings WHERE source = '{disaster.source}'")) == ROWS
    )
