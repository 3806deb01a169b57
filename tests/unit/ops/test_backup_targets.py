"""ops/backup/targets.py: how the operations reach a stack on a host, through a recording executor
(tests/support/recorder.py) in place of SSH: a swarm's task containers and replica counts, a
host's compose. What changes something is echoed with its host; what only reads is not."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from support.recorder import Recorder

from ops import config
from ops.backup import backups, commands, targets
from ops.backup.inplace import WRITERS
from ops.deploy.commands.compose import LIVE_SLOT
from ops.deploy.rollout import RemoteCompose
from ops.errors import OpsError
from ops.stack import host as hostops

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]
Line = tuple[str, str | None, float | None]  # what ran: the line, its input, its timeout

RELEASE = "20261130-1200-abc1234"
SWARM_YAML = (
    "name: staging\ntarget: ssh\nlistings_env: staging\nhosts:\n"
    "  - ssh: deploy@203.0.113.10\n    swarm_address: 10.0.0.10\n"
    "  - ssh: deploy@203.0.113.11\n"
)
HOST_YAML = (
    "name: staging\ntarget: ssh\nlistings_env: staging\nhosts: [{ssh: deploy@203.0.113.10}]\n"
)
STACK_YAML = (
    "# written by invoke deploy\nversion: '3.9'\nservices:\n"
    "  api:\n    deploy: {replicas: 3}\n  worker:\n    deploy: {replicas: 2}\n"
    "  backup:\n    deploy: {placement: {constraints: [node.labels.slipway.data == true]}}\n"
    "  postgres:\n    image: slipway/postgres:1\n"
)


def host_executor(kind: type[Recorder] = Recorder) -> Recorder:
    """A recording executor labelled as the host's messages name it here (no port)."""
    return kind(SimpleNamespace(label="deploy@203.0.113.10"))  # type: ignore[arg-type]


def first_host(
    containers: str = "c0ffee\n",
    stack_file: str | None = STACK_YAML,
    tasks: list[str] | None = None,
) -> Recorder:
    """`docker ps` finds `containers`; the release's stack file reads as `stack_file`;
    `docker service ps` answers `tasks` one after the other, then none running."""
    host = host_executor()
    host.on(r"^docker ps -q", stdout=containers)
    host.on(r"^docker exec ", stdout="[slipway-ok]\n")
    if stack_file is None:
        host.on(r"^cat .*/stack\.yaml", code=1)
    else:
        host.on(r"^cat .*/stack\.yaml", stdout=stack_file)
    answers = list(tasks or [])
    host.on_call(
        r"^docker service ps ",
        lambda command, stdin: answers.pop(0) if answers else "Shutdown 1 second ago\n",
    )
    return host


def ran(host: Recorder) -> list[Line]:
    """Every command but the file reads, as it ran; each one says what it does."""
    assert all(c.what for c in host.commands), "every remote command says what it does"
    return [
        (i.command.line, i.stdin, i.command.timeout)
        for i in host.issued
        if not i.command.line.startswith("cat ")
    ]


def read(host: Recorder) -> list[str]:
    """The files read, by path."""
    return [c.what.removeprefix("read ") for c in host.find(r"^cat ")]


class FakeHost:
    """hostops.Host of an environment whose current release is RELEASE, over `remote`."""

    def __init__(self, env: config.Environment, remote: Recorder) -> None:
        self.env = env
        self.remote = remote
        self.root = "/srv/slipway"

    def current(self) -> str:
        return RELEASE

    def compose(self) -> RemoteCompose:
        return RemoteCompose(self.remote, self.env.project_name, self.root, RELEASE)  # type: ignore[arg-type]


def _swarm_target(write_env: WriteEnv, fake: Recorder) -> targets.SwarmTarget:
    write_env("staging", SWARM_YAML)
    env = config.load("staging")
    return targets.SwarmTarget(FakeHost(env, fake))  # type: ignore[arg-type]


def _host_target(write_env: WriteEnv, fake: Recorder) -> targets.HostTarget:
    write_env("staging", HOST_YAML)
    env = config.load("staging")
    return targets.HostTarget(FakeHost(env, fake))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ open_target


def test_a_swarm_environment_opens_its_first_host_as_a_swarm_target(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("staging", SWARM_YAML)
    env = config.load("staging")
    assert env.is_swarm
    fake = first_host()

    @contextmanager
    def fake_host(env: config.Environment) -> Iterator[FakeHost]:
        yield FakeHost(env, fake)

    monkeypatch.setattr(hostops, "Host", fake_host)
    with targets.open_target(env) as target:
        assert isinstance(target, targets.SwarmTarget)
        assert target.label == "slipway-staging (Docker Swarm) on deploy@203.0.113.10"


def test_a_one_host_environment_opens_its_host_as_a_host_target(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("staging", HOST_YAML)
    env = config.load("staging")

    @contextmanager
    def fake_host(env: config.Environment) -> Iterator[FakeHost]:
        yield FakeHost(env, host_executor())

    monkeypatch.setattr(hostops, "Host", fake_host)
    with targets.open_target(env) as target:
        assert type(target) is targets.HostTarget
        assert target.label == "slipway-staging on deploy@203.0.113.10"


# ------------------------------------------------------------------------------ a swarm


def test_swarm_exec_runs_in_the_task_container_on_the_first_host(write_env: WriteEnv) -> None:
    fake = first_host(containers="c0ffee\nbadbad\n")
    target = _swarm_target(write_env, fake)
    ask = commands.InContainer("postgres", ("psql", "-c", "SELECT 1"), "ask", changes=False)
    out = target.exec(ask)
    assert out == "[slipway-ok]\n"
    find, run = ran(fake)
    assert find[0] == (
        "docker ps -q --filter label=com.docker.swarm.service.name=slipway-staging_postgres"
    )
    assert run == ("docker exec c0ffee psql -c 'SELECT 1' 2>&1", None, None)
    target.exec(commands.InContainer("postgres", ("backup-import",), "load"), stdin="dump")
    assert ran(fake)[-1] == ("docker exec -i c0ffee backup-import 2>&1", "dump", None)


def test_swarm_exec_echoes_what_changes_with_the_host_and_not_what_reads(
    write_env: WriteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = first_host()
    target = _swarm_target(write_env, fake)
    target.exec(commands.last_archived())
    target.exec(commands.backup_run("full"), stream=True)
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "deploy@203.0.113.10 $ docker exec c0ffee backup-run --type=full 2>&1"
    ]
    assert captured.out == "[slipway-ok]\n"  # streamed: printed once it has run
    assert [c.line for c in fake.changes] == ["docker exec c0ffee backup-run --type=full 2>&1"]


def test_swarm_exec_without_a_running_task_names_the_service_and_the_fix(
    write_env: WriteEnv,
) -> None:
    target = _swarm_target(write_env, first_host(containers=""))
    with pytest.raises(OpsError) as err:
        target.exec(commands.backup_run("full"))
    message = str(err.value)
    assert message.startswith("no container of backup is running on deploy@203.0.113.10")
    assert "`docker service ps slipway-staging_backup`" in message
    # `invoke backup` turns it into the "is not running" advice
    assert "is not running. Fix: `invoke up` (local) or `invoke deploy`" in (
        backups._not_running_hint(message, target)
    )


def test_swarm_stop_and_start_scale_to_zero_and_back_to_the_release_replicas(
    write_env: WriteEnv,
) -> None:
    # The manager still lists a task running after the scale (stopping on another host).
    fake = first_host(tasks=["Running 9 minutes ago\nShutdown 2 seconds ago\n"])
    target = _swarm_target(write_env, fake)
    target.stop(*WRITERS, what="stop")
    target.start(*WRITERS, what="start", timeout=300)
    stop, still, stopped, start = ran(fake)
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
    assert read(fake) == ["/srv/slipway/releases/20261130-1200-abc1234/stack.yaml"]
    # Scaling changes the swarm; polling the tasks only reads it.
    assert [c.line for c in fake.changes] == [stop[0], start[0]]


def test_swarm_stop_that_does_not_finish_says_what_still_runs(write_env: WriteEnv) -> None:
    fake = first_host(tasks=["Running 9 minutes ago\n"] * 3)
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
    fake = first_host(stack_file=None)
    target = _swarm_target(write_env, fake)
    with pytest.raises(OpsError) as err:
        target.start("postgres", what="start PostgreSQL", timeout=3600)
    assert "releases/20261130-1200-abc1234/stack.yaml is missing" in str(err.value)
    assert "`invoke deploy --env=staging` writes it again" in str(err.value)
    assert not ran(fake)  # nothing scaled


def test_swarm_one_off_containers_run_with_the_release_s_compose(write_env: WriteEnv) -> None:
    fake = first_host()
    fake.on(r"pgbackrest info", stdout="[]\n")
    target = _swarm_target(write_env, fake)
    assert target.oneoff(commands.repository_info()) == "[]\n"
    (line,) = fake.lines_run
    assert line.startswith("cd /srv/slipway && ")
    assert " docker compose -p slipway-staging --env-file " in line
    assert line.endswith(" run --rm --no-deps -T backup-restore pgbackrest info --output=json 2>&1")
    assert not fake.changes


# ------------------------------------------------------------------------------ one host


def test_host_compose_echoes_its_changes_and_runs_its_reads_quietly(
    write_env: WriteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = host_executor()
    fake.on(r" exec -T postgres psql ", stdout="f\n")
    target = _host_target(write_env, fake)
    assert target.exec(commands.in_recovery()) == "f\n"
    target.stop("postgres", what="stop PostgreSQL (clean shutdown)")
    target.start("postgres", what="start PostgreSQL", timeout=3600)
    prefix = (
        f"cd /srv/slipway && SLIPWAY_API_SLOT={LIVE_SLOT} docker compose -p slipway-staging "
        f"--env-file releases/{RELEASE}/secrets.env --env-file releases/{RELEASE}/release.env "
        f"-f releases/{RELEASE}/compose.yaml -f releases/{RELEASE}/remote.yaml"
    )
    assert [c.line for c in fake.changes] == [
        f"{prefix} stop postgres 2>&1",
        f"{prefix} up -d --no-deps --wait --wait-timeout 3600 postgres 2>&1",
    ]
    assert [c.what for c in fake.changes] == [
        "stop PostgreSQL (clean shutdown)",
        "start PostgreSQL",
    ]
    echoed = capsys.readouterr().err.splitlines()
    assert echoed == [f"deploy@203.0.113.10 $ {c.line}" for c in fake.changes]


def test_host_compose_feeds_the_input_and_prints_what_streams(
    write_env: WriteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = host_executor()
    fake.on(r" backup-import ", stdout="loaded\n[slipway-ok]\n")
    fake.on(r" backup-restore ", stdout="restored\n[slipway-ok]\n")
    target = _host_target(write_env, fake)
    target.exec(commands.import_dump("staging"), stdin="the dump")
    assert fake.issued[-1].stdin == "the dump"
    assert fake.issued[-1].command.line.endswith(" exec -T postgres backup-import 2>&1")
    target.oneoff(commands.restore(("--repo=1",)), stream=True)
    assert capsys.readouterr().out == "restored\n[slipway-ok]\n"


def test_stopping_the_api_on_a_host_removes_the_standby_first(write_env: WriteEnv) -> None:
    # A standby (API replicas of the slot out of traffic) would be recreated into the live slot
    # by the `compose up api` that follows a restore: it goes before the API stops.
    fake = host_executor()
    target = _host_target(write_env, fake)
    target.stop("api", "worker", what="stop the API and the worker")
    target.stop("postgres", what="stop PostgreSQL")
    lines = [c.line for c in fake.changes]
    assert (
        lines[0].startswith("cd /srv/slipway && r=$(sed -n ") and "ids=$(docker ps -aq " in lines[0]
    )
    assert (
        "--filter label=org.slipway.slot=$(test -e nginx/slot-green && echo blue || echo green)"
        in lines[0]
    )
    assert lines[0].endswith("rm -f nginx/standby.json")
    assert lines[1].endswith(" stop api worker 2>&1")
    assert lines[2].endswith(" stop postgres 2>&1") and len(lines) == 3
    assert fake.changes[0].what == "remove the standby API replicas and workers"
