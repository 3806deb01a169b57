"""The command builders of the deploy (ops/deploy/commands/, the lock's in ops/deploy/locks.py):
the exact lines the hosts run for the operations that matter most, whether each is a change
(echoed with its host, skipped by a dry run) or a query, what its echo shows instead of a
secret, and, for the shell protocols (the lock, `docker stack deploy` sourcing the secrets),
what bash makes of them for real in a scratch directory (tests/support/shell.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from support.recorder import Recorder
from support.shell import LocalShell

from ops.deploy import locks
from ops.deploy.commands import docker, host, nginx, swarm
from ops.deploy.commands.compose import LIVE_SLOT, ReleaseCompose
from ops.deploy.hostcompose import RemoteCompose
from ops.deploy.rollout import Containers

pytestmark = pytest.mark.unit

ROOT = "/srv/slipway/staging"
PROJECT = "slipway-staging"
LIVE = f"SLIPWAY_API_SLOT={LIVE_SLOT}"
RELEASE_FILES = (
    "--env-file releases/r1/secrets.env --env-file releases/r1/release.env "
    "-f releases/r1/compose.yaml"
)


# ------------------------------------------------------------------------------ compose


def test_compose_of_a_release_names_its_project_variables_and_recorded_files() -> None:
    spec = ReleaseCompose(PROJECT, ROOT, "r1", ("remote.yaml", "logging.yaml"))
    assert spec.line("ps") == (
        f"cd {ROOT} && {LIVE} docker compose -p {PROJECT} {RELEASE_FILES} "
        "-f releases/r1/remote.yaml -f releases/r1/logging.yaml ps"
    )
    # The default overlay: remote.yaml alone (records written before the central logs).
    assert (
        ReleaseCompose(PROJECT, ROOT, "r1")
        .line("ps")
        .endswith(f"{RELEASE_FILES} -f releases/r1/remote.yaml ps")
    )


def test_compose_commands_merge_their_errors_and_are_changes_unless_told() -> None:
    spec = ReleaseCompose(PROJECT, ROOT, "r1")
    base = (
        f"cd {ROOT} && {LIVE} docker compose -p {PROJECT} {RELEASE_FILES} "
        "-f releases/r1/remote.yaml"
    )
    up = spec.up("postgres", "redis", what="start postgres and redis")
    assert up.line == f"{base} up -d --no-deps postgres redis 2>&1"
    assert (up.what, up.changes) == ("start postgres and redis", True)
    migrate = spec.oneoff("migrate", what="migrate", timeout=900.0)
    assert migrate.line == f"{base} run --rm --no-deps -T migrate 2>&1"
    assert (migrate.changes, migrate.timeout) == (True, 900.0)
    backup = spec.exec("backup", "backup-run", "--type=incr")
    assert backup.line == f"{base} exec -T backup backup-run --type=incr 2>&1"
    assert backup.what == "compose exec"
    ps = spec.command("ps", changes=False)
    assert (ps.line, ps.changes, ps.what) == (f"{base} ps 2>&1", False, "compose ps")
    scaled = spec.up("api", flags=("--no-recreate", "--scale", "api=3"))
    assert scaled.line == f"{base} up -d --no-deps --no-recreate --scale api=3 api 2>&1"


def test_compose_on_a_host_gives_the_api_the_live_slot_unless_told_another() -> None:
    # The live slot is read from nginx's flag file where the line runs (the environment's
    # directory); the rolling deploy names the slot its new replicas go to.
    assert LIVE == "SLIPWAY_API_SLOT=$(test -e nginx/slot-green && echo green || echo blue)"
    green = replace(ReleaseCompose(PROJECT, ROOT, "r1"), slot="green").up("api")
    assert green.line.startswith(f"cd {ROOT} && SLIPWAY_API_SLOT=green docker compose -p ")
    # A swarm's one-off containers (no remote.yaml) have no slots.
    swarm = ReleaseCompose(PROJECT, ROOT, "r1", ("swarm-oneoff.yaml",)).line("ps")
    assert swarm.startswith(f"cd {ROOT} && docker compose -p ")


def test_a_remote_dir_with_a_space_is_quoted() -> None:
    line = ReleaseCompose(PROJECT, "/srv/my env", "r1").line("ps")
    assert line.startswith(f"cd '/srv/my env' && {LIVE} docker compose ")


def test_remote_compose_runs_the_release_command_on_its_host() -> None:
    remote = Recorder().on(r" ps 2>&1$", stdout="NAME\n")
    rc = RemoteCompose(remote, PROJECT, ROOT + "/", "r1", ("remote.yaml",))
    assert rc.root == ROOT  # a trailing slash of deploy.remote_dir is dropped
    assert rc.run("ps", changes=False) == "NAME\n"
    rc.run("up", "-d", "--no-deps", "nginx", what="start or update nginx", stdin="x")
    first, second = remote.issued
    assert (first.command.line, first.command.changes) == (rc.command("ps") + " 2>&1", False)
    assert second.command.line == rc.command("up", "-d", "--no-deps", "nginx") + " 2>&1"
    assert (second.command.what, second.stdin) == ("start or update nginx", "x")


# ------------------------------------------------------------------------------ nginx


def test_the_traffic_moves_by_one_flag_file_that_a_first_deploy_may_have_to_place() -> None:
    flags = "/srv/slipway/staging/nginx"
    live = nginx.live_slot(flags)
    assert live.line == ("test -e /srv/slipway/staging/nginx/slot-green && echo green || echo blue")
    assert not live.changes
    green = nginx.set_live_slot(flags, "green")
    assert green.line == (
        "mkdir -p /srv/slipway/staging/nginx && touch /srv/slipway/staging/nginx/slot-green"
    )
    assert green.changes and green.what == "send the traffic to the green API replicas"
    assert nginx.set_live_slot(flags, "blue").line == "rm -f /srv/slipway/staging/nginx/slot-green"
    with pytest.raises(ValueError, match="unknown slot 'red'"):
        nginx.set_live_slot(flags, "red")
    assert [nginx.other_slot(s) for s in ("blue", "green", "")] == ["green", "blue", "blue"]


def test_nginx_is_tested_before_its_graceful_reload() -> None:
    command = nginx.test_and_reload("slipway-staging-nginx-1")
    assert command.line == (
        "docker exec slipway-staging-nginx-1 nginx -t -q && "
        "docker exec slipway-staging-nginx-1 nginx -s reload"
    )
    assert (command.what, command.changes) == ("check and reload nginx", True)


def test_the_running_nginx_is_found_whether_compose_or_swarm_started_it() -> None:
    command = nginx.running(PROJECT)
    assert command.line == (
        "docker ps -q --filter label=com.docker.swarm.service.name=slipway-staging_nginx; "
        "docker ps -q --filter label=com.docker.compose.project=slipway-staging "
        "--filter label=com.docker.compose.service=nginx "
        "--filter label=com.docker.compose.oneoff=False"
    )
    assert not command.changes
    assert not nginx.draining("n1").changes


def test_the_upstream_file_names_the_replicas_on_the_api_port() -> None:
    assert nginx.upstream_text(["p-api-2", "p-api-1"]).splitlines()[1:] == [
        "server p-api-1:8000 max_fails=1 fail_timeout=3s;",
        "server p-api-2:8000 max_fails=1 fail_timeout=3s;",
    ]


def test_the_certificate_install_echoes_a_summary_not_its_script() -> None:
    command = nginx.install_certificate("slipway-staging_tls", "slipway/nginx:c.3")
    assert command.line.startswith(
        "docker volume create slipway-staging_tls >/dev/null && docker run --rm -i "
        "--network none --user 0 --entrypoint sh -v slipway-staging_tls:/tls "
        "slipway/nginx:c.3 -c "
    )
    assert command.display == (
        "install tls.crt and tls.key into the volume slipway-staging_tls (with slipway/nginx:c.3)"
    )


# ------------------------------------------------------------------------------ swarm


def test_a_swarm_join_masks_its_token_in_what_is_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = "SWMTKN-1-0123456789abcdef-secretpart"
    command = swarm.join("10.0.0.11", token, "10.0.0.10", "deploy@203.0.113.11:22")
    assert command.line == (
        f"docker swarm join --advertise-addr 10.0.0.11 --token {token} 10.0.0.10:2377"
    )
    assert command.display == (
        "docker swarm join --advertise-addr 10.0.0.11 --token <worker token> 10.0.0.10:2377"
    )
    assert command.what == "join deploy@203.0.113.11:22"
    Recorder().run(command)
    echoed = capsys.readouterr().err
    assert f"deploy@203.0.113.10:22 $ {command.display}" in echoed
    assert token not in echoed
    # Reading the token is a query: never echoed; the token is rotated once the hosts joined.
    assert not swarm.worker_token().changes
    assert swarm.rotate_token().line == "docker swarm join-token --rotate -q worker >/dev/null"


@pytest.mark.parametrize(("prune", "flag"), [(True, "--prune "), (False, "")])
def test_a_stack_deploy_sources_the_releases_secrets_env(prune: bool, flag: str) -> None:
    command = swarm.stack_deploy(ROOT, "r1", "stack.yaml", PROJECT, prune)
    assert command.line == (
        f"cd {ROOT} && set -a && . releases/r1/secrets.env && set +a && "
        f"docker stack deploy --resolve-image never {flag}-c releases/r1/stack.yaml "
        f"{PROJECT} 2>&1"
    )
    assert command.what == "docker stack deploy (stack.yaml)"
    assert (command.changes, command.timeout) == (True, swarm.STACK_DEPLOY_TIMEOUT)


def test_a_stack_deploy_gives_docker_the_secrets_in_its_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run by bash with a `docker` that prints its arguments and one secret's variable."""
    secret = "Pg7s3cretValue00123"
    release = tmp_path / "env" / "releases" / "r1"
    release.mkdir(parents=True)
    (release / "secrets.env").write_text(f"POSTGRES_PASSWORD='{secret}'\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text('#!/bin/sh\necho "args: $*"\necho "password: $POSTGRES_PASSWORD"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.delenv("POSTGRES_PASSWORD", raising=False)
    command = swarm.stack_deploy(str(tmp_path / "env"), "r1", "stack.yaml", PROJECT, True)
    assert secret not in command.line
    out = LocalShell().run(command).stdout.splitlines()
    assert out == [
        "args: stack deploy --resolve-image never --prune -c releases/r1/stack.yaml "
        "slipway-staging",
        f"password: {secret}",
    ]


def test_the_stack_network_and_volumes_are_made_as_docker_stack_deploy_would() -> None:
    network = swarm.ensure_network(PROJECT, "backend", internal=True)
    assert network.line == (
        "docker network inspect slipway-staging_backend >/dev/null 2>&1 || docker network "
        "create --driver overlay --attachable --internal "
        "--label com.docker.stack.namespace=slipway-staging slipway-staging_backend >/dev/null"
    )
    volumes = swarm.ensure_volumes(PROJECT, ["postgres-data", "tls"])
    assert volumes.line == (
        "docker volume create --label com.docker.stack.namespace=slipway-staging "
        "slipway-staging_postgres-data >/dev/null && "
        "docker volume create --label com.docker.stack.namespace=slipway-staging "
        "slipway-staging_tls >/dev/null"
    )


def test_swarm_states_are_queries() -> None:
    reads = [
        swarm.node_state(),
        swarm.node_ids(),
        swarm.node_count(),
        swarm.ready_nodes(),
        swarm.service_ids(PROJECT),
        swarm.inspect_services(["id1", "id2"]),
        swarm.tasks(PROJECT),
        swarm.task_errors(PROJECT),
    ]
    assert [c.changes for c in reads] == [False] * len(reads)
    assert swarm.inspect_services(["id1", "id2"]).line.endswith(" id1 id2")
    assert swarm.init("10.0.0.10").line == "docker swarm init --advertise-addr 10.0.0.10"
    assert swarm.label_node("n1", ["slipway.data", "slipway.edge"]).line == (
        "docker node update --label-add slipway.data=true --label-add slipway.edge=true "
        "n1 >/dev/null"
    )


# ------------------------------------------------------------------------------ docker, host


def test_the_replicas_of_a_service_are_listed_with_their_release() -> None:
    command = docker.containers(PROJECT, "api")
    assert command.line == (
        "docker ps -a --filter label=com.docker.compose.project=slipway-staging "
        "--filter label=com.docker.compose.oneoff=False "
        "--filter label=com.docker.compose.service=api "
        '--format \'{{.Names}}\t{{.State}}\t{{.Label "org.slipway.release"}}'
        '\t{{.Label "org.slipway.slot"}}\''
    )
    assert not command.changes


def test_replicas_stop_gracefully_then_go() -> None:
    assert docker.stop(["p-api-1", "p-api-2"], 45).line == (
        "docker stop -t 45 p-api-1 p-api-2 >/dev/null"
    )
    assert docker.remove(["p-api-1"]).line == "docker rm -f p-api-1 >/dev/null"


def test_images_are_tagged_loaded_and_pruned_as_changes() -> None:
    tag = docker.tag("sha256:" + "a" * 64, "slipway/listings:v1")
    assert tag.line == f"docker tag sha256:{'a' * 64} slipway/listings:v1"
    load = docker.load("slipway/listings:v1")
    assert (load.line, load.display) == (
        "docker load -q",
        "docker load -q   # slipway/listings:v1, from here",
    )
    # A container still uses some: docker refuses those, and the command still succeeds.
    assert docker.remove_images(["slipway/listings:v0"]).line == (
        "docker image rm slipway/listings:v0 >/dev/null 2>&1; true"
    )
    assert [c.changes for c in (tag, load)] == [True, True]
    assert docker.image_id("slipway/listings:v1").line == (
        "docker image inspect -f '{{.Id}}' slipway/listings:v1 2>/dev/null"
    )


def test_the_backup_task_of_a_stack_is_found_and_run_in() -> None:
    find = docker.swarm_task(PROJECT, "backup")
    assert find.line == (
        "docker ps -q --filter label=com.docker.swarm.service.name=slipway-staging_backup"
    )
    run = docker.exec_in("abc123", ["backup-run", "--type=incr"], "backup", timeout=10.0)
    assert run.line == "docker exec abc123 backup-run --type=incr 2>&1"
    assert (run.changes, run.timeout) == (True, 10.0)


def test_host_facts_are_queries_and_create_nothing(tmp_path: Path) -> None:
    assert host.engine_version().line == "docker version -f '{{.Server.Version}}'"
    assert host.compose_version().line == "docker compose version --short"
    assert not host.engine_version().changes and not host.compose_version().changes
    place = tmp_path / "a" / "b"
    command = host.writable_place(str(place))
    assert not command.changes
    # The nearest existing directory, and nothing made on the way.
    assert LocalShell().run(command).stdout.strip() == str(tmp_path)
    assert not (tmp_path / "a").exists()
    assert host.make_directory("/srv/x").line == "mkdir -p /srv/x"
    assert host.make_directory("/srv/x").changes


# ------------------------------------------------------------------------------ the lock


def _dir(tmp_path: Path) -> str:
    (tmp_path / "env").mkdir(exist_ok=True)
    return str(tmp_path / "env" / "lock")


def test_the_lock_is_a_mkdir_whose_echo_says_so(tmp_path: Path) -> None:
    directory = _dir(tmp_path)
    command = locks.take_lock(directory)
    assert command.line == (
        f"mkdir -p {tmp_path}/env && if mkdir {directory} 2>/dev/null; then "
        f"cat > {directory}/info.json; echo taken; else cat >/dev/null; echo busy; fi"
    )
    assert command.display == f"mkdir {directory} (the deploy lock), then write its info.json"
    shell = LocalShell()
    assert shell.run(command, stdin='{"owner": "me"}').stdout == "taken\n"
    assert shell.run(command, stdin='{"owner": "you"}').stdout == "busy\n"
    assert json.loads(Path(directory, "info.json").read_text()) == {"owner": "me"}


def test_reading_the_lock_gives_the_hosts_time_then_who_holds_it(tmp_path: Path) -> None:
    directory = _dir(tmp_path)
    shell = LocalShell()
    free = shell.run(locks.read_lock(directory)).stdout.splitlines()
    assert len(free) == 1 and free[0].isdigit()
    shell.run(locks.take_lock(directory), stdin='{"owner": "me"}\n')
    now, held, made, digest, info = shell.run(locks.read_lock(directory)).stdout.splitlines()
    assert held == "held" and now.isdigit() and made.isdigit()
    assert len(digest) == 64 and json.loads(info) == {"owner": "me"}
    assert not locks.read_lock(directory).changes


def test_only_the_token_holder_refreshes_or_releases_the_lock(tmp_path: Path) -> None:
    directory = _dir(tmp_path)
    guard = str(tmp_path / "env" / ".lock-guard")
    shell = LocalShell()
    shell.run(locks.take_lock(directory), stdin='{"token": "t1"}')
    assert shell.run(locks.refresh_lock(directory, guard, "t2"), stdin="{}").stdout == "lost\n"
    assert shell.run(locks.release_lock(directory, guard, "t2")).stdout == "not-ours\n"
    refreshed = '{"token": "t1", "refreshed": 2}'
    assert shell.run(locks.refresh_lock(directory, guard, "t1"), stdin=refreshed).stdout == "ok\n"
    assert Path(directory, "info.json").read_text() == refreshed
    assert shell.run(locks.release_lock(directory, guard, "t1")).stdout == "released\n"
    assert not Path(directory).exists()


def test_a_stale_lock_is_broken_only_while_it_is_what_was_judged(tmp_path: Path) -> None:
    directory = _dir(tmp_path)
    guard = str(tmp_path / "env" / ".lock-guard")
    shell = LocalShell()
    shell.run(locks.take_lock(directory), stdin='{"token": "old"}')
    judged = shell.run(locks.read_lock(directory)).stdout.splitlines()[3]
    Path(directory, "info.json").write_text('{"token": "old", "refreshed": 9}')  # alive after all
    shell.run(locks.break_stale_lock(directory, guard, judged, directory + ".stale.1"))
    assert Path(directory).is_dir()
    judged = shell.run(locks.read_lock(directory)).stdout.splitlines()[3]
    shell.run(locks.break_stale_lock(directory, guard, judged, directory + ".stale.2"))
    assert not Path(directory).exists() and not Path(directory + ".stale.2").exists()


def test_replicas_are_read_with_or_without_their_slot() -> None:
    # The last line of an output may lose its trailing tab (an empty slot: a swarm's replicas,
    # or replicas from before the slots).
    remote = Recorder().on(
        r"^docker ps -a ",
        stdout="p-api-1\trunning\tr1\tgreen\np-api-2\trunning\tr1\t\np-api-3\texited\tr0",
    )
    found = Containers(remote, PROJECT).of()
    assert [(c.name, c.state, c.release, c.slot) for c in found] == [
        ("p-api-1", "running", "r1", "green"),
        ("p-api-2", "running", "r1", ""),
        ("p-api-3", "exited", "r0", ""),
    ]
