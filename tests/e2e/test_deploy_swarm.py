"""Several hosts with Docker Swarm, for real: two sandbox hosts (each its own Docker engine and
sshd) that `invoke deploy` forms into a swarm, under continuous load through nginx. The shape of
a real production: images through a registry, certificates from an ACME CA (pebble, HTTP-01).

Tests run in file order and build on each other: v1 from nothing (swarm formed, replicas on both
hosts, data stores on the first), v1 again (nothing changes), v2 under load, rollback under
load, a release whose replicas never get healthy (rolled back by Swarm, then by the deploy).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sandboxes import ROOT, SandboxEnv, derived_image, remove_images, sandbox, served
from support.docker import docker
from support.waiting import wait_for

from ops import health

pytestmark = pytest.mark.e2e

TAG = secrets.token_hex(3)
NAME = f"e2e-swm-{TAG}"
STACK = f"slipway-{NAME}"
V1, V2 = f"e2e-{TAG}-v1", f"e2e-{TAG}-v2"
BROKEN = f"e2e-{TAG}-never-healthy"


@pytest.fixture(scope="module")
def swarm() -> Iterator[SandboxEnv]:
    with sandbox(NAME, "--hosts=2", "--registry", "--tls=acme", "--listings-env=staging") as box:
        # sandbox.up gave each host its address on the sandbox network, for Swarm.
        assert [h.advertise for h in box.environment.hosts] == [box.address(1), box.address(2)]
        box.edit(lambda data: data["deploy"].update({"health_timeout": 60, "lock_wait": 30}))
        try:
            yield box
        finally:
            remove_images(f":e2e-{TAG}-")


def _secret(box: SandboxEnv, key: str) -> str:
    for line in (ROOT / f".env.{box.name}").read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1].strip().strip("'\"")
    raise AssertionError(f"{key} not in .env.{box.name}")


def box_label(box: SandboxEnv, index: int) -> str:
    return box.environment.hosts[index - 1].label


def _tasks(box: SandboxEnv, service: str) -> list[str]:
    """Nodes of the service's running tasks."""
    out = box.on_host(
        f"docker service ps {STACK}_{service} --filter desired-state=running "
        "--format '{{.Node}} {{.CurrentState}}'"
    )
    return sorted(line.split()[0] for line in out.splitlines() if " Running" in line)


def _assert_no_failure(traffic: Any) -> None:
    tally = traffic.tally
    assert tally.failures == [], f"{tally.summary()[:600]}: {tally.failures[:5]}"
    assert traffic.rate >= 20, tally.summary()[:600]


def test_the_first_deploy_forms_the_swarm_and_spreads_the_api_over_both_hosts(
    swarm: SandboxEnv,
) -> None:
    result = swarm.invoke("deploy", f"--env={NAME}", version=V1)
    assert "current = " in result.stdout
    assert "initialised on" in result.stdout and "joined" in result.stdout
    # Through the registry: pushed once from here, pulled by each host.
    assert result.stdout.count("pushed 127.0.0.1:") >= 4
    for index in (1, 2):
        label = box_label(swarm, index)
        assert f"{label} pulled slipway/listings:{V1}" in result.stdout
    # The registry's password: never printed, never on a host (the release's files included).
    password = _secret(swarm, "SLIPWAY_REGISTRY_PASSWORD")
    assert len(password) >= 16 and password not in result.stdout + result.stderr
    for index in (1, 2):
        found = swarm.on_host(
            f"grep -rlF -- {password!r} /srv /home /root /tmp /dev/shm 2>/dev/null; true", index
        )
        assert found == "", found
    # One certificate per domain from the CA, served by the swarm's nginx.
    env = swarm.environment
    status = swarm.invoke("certs.status", f"--env={NAME}").stdout
    for domain in env.domains:
        line = next(x for x in status.splitlines() if x.startswith(domain))
        assert "\tca\t" in line, status
    nodes = swarm.on_host("docker node ls --format '{{.Hostname}} {{.Status}}'").split("\n")
    assert sorted(n for n in nodes if n) == [f"{NAME}-1 Ready", f"{NAME}-2 Ready"]
    assert _tasks(swarm, "api") == [f"{NAME}-1", f"{NAME}-2"]
    assert _tasks(swarm, "postgres") == [f"{NAME}-1"]
    assert _tasks(swarm, "nginx") == [f"{NAME}-1"]
    # Every host has the release's images: Swarm may start a replica anywhere.
    for index in (1, 2):
        assert f"slipway/listings:{V1}" in swarm.on_host(
            "docker images --format '{{.Repository}}:{{.Tag}}'", index
        )
    assert swarm.version() == V1
    status = swarm.invoke("status", f"--env={NAME}").stdout
    assert "overall: ready" in status


def test_monitoring_and_central_logs_run_on_every_host_of_the_swarm(swarm: SandboxEnv) -> None:
    both = [f"{NAME}-1", f"{NAME}-2"]
    assert _tasks(swarm, "node-exporter") == both
    assert _tasks(swarm, "logs") == both
    assert _tasks(swarm, "prometheus") == [f"{NAME}-1"]
    assert _tasks(swarm, "alertmanager") == [f"{NAME}-1"]

    # Prometheus scrapes every host's node exporter (and every other target), seen through
    # `invoke monitor`'s tunnel to the first host.
    def every_target_up() -> str:
        out = swarm.invoke("monitor", f"--env={NAME}", "--once", check=False).stdout
        return out if "targets not up: 0" in out else ""

    out = wait_for(
        every_target_up, what="every target up through the tunnel", timeout=180, interval=3
    )
    assert "Watchdog" in out
    nodes = swarm.on_host(
        f"docker exec $(docker ps -q --filter label=com.docker.swarm.service.name={STACK}_"
        "blackbox-exporter) curl -fsS 'http://prometheus:9090/api/v1/query?query=up%7Bjob%3D%22"
        "node%22%7D'"
    )
    assert nodes.count('"value"') == 2, nodes

    # Requests spread over the replicas of both hosts; each host's collector keeps its own
    # lines and `invoke logs` merges them in time order.
    marker = secrets.token_hex(12)
    env = swarm.environment
    with httpx.Client(verify=swarm.verify(), timeout=10) as client:
        for n in range(10):
            client.headers["X-Request-ID"] = f"{marker}{n:08x}"
            answer = health.public_get(client, env.https_url, "/api/v1/listings", env.connect_to)
            assert answer.status_code == 200
            assert answer.headers["x-request-id"] == f"{marker}{n:08x}"

    def all_lines() -> str:
        out = swarm.invoke("logs", f"--env={NAME}", f"--grep={marker}").stdout
        lines = [line for line in out.splitlines() if marker in line]
        services = [line.split()[1] for line in lines]
        return out if services.count("api") == 10 and services.count("nginx") == 10 else ""

    out = wait_for(
        all_lines,
        what="the ten requests' nginx and api lines from both hosts",
        timeout=90,
        interval=3,
    )
    stamps = [line.split()[0] for line in out.splitlines() if marker in line]
    assert stamps == sorted(stamps)
    for index in (1, 2):
        kept = swarm.on_host(
            f"docker exec $(docker ps -q --filter label=com.docker.swarm.service.name={STACK}_logs)"
            f' slipway-logs-read cat --fixed {marker} | grep -c \'"service":"api"\'; true',
            index,
        )
        assert int(kept.strip() or 0) > 0, f"no api line of the requests kept on host {index}"


def test_the_backup_task_runs_next_to_postgres_and_backs_up(swarm: SandboxEnv) -> None:
    # On the data host (it shares PostgreSQL's volumes and socket); its first full backup is
    # taken at start and shows in the metrics node-exporter reads there.
    assert _tasks(swarm, "backup") == [f"{NAME}-1"]
    task = swarm.on_host(
        f"docker ps -q --filter label=com.docker.swarm.service.name={STACK}_backup"
    ).split()
    assert len(task) == 1

    def backed_up() -> str:
        metrics = swarm.on_host(
            f"docker exec {task[0]} cat /var/lib/slipway-metrics/backup.prom 2>/dev/null || true"
        )
        return metrics if re.search(r"^slipway_backup_count [1-9]", metrics, re.M) else ""

    metrics = wait_for(backed_up, what="the first backup in the metrics", timeout=180, interval=3)
    assert 'slipway_backup_last_attempt_success{type="full",repo="1"} 1' in metrics
    assert 'slipway_backup_repo_ok{repo="1"} 1' in metrics


def _psql(box: SandboxEnv, sql: str) -> str:
    """SQL in the postgres task's container on the data host."""
    task = box.on_host(
        f"docker ps -q --filter label=com.docker.swarm.service.name={STACK}_postgres"
    ).split()
    assert len(task) == 1, task
    return box.on_host(f'docker exec {task[0]} psql -X -d listings -tA -c "{sql}"').strip()


def test_backups_are_driven_on_the_swarm_and_restore_to_a_point_in_time(
    swarm: SandboxEnv,
) -> None:
    """`invoke backup`, `backup.list`, `backup.drill` and `restore --at` on a swarm: in the
    tasks' containers and one-off containers on the data host, the services scaled to zero
    meanwhile and back to the release's replicas."""
    taken = swarm.invoke("backup", f"--env={NAME}", "--type=incr").stdout
    assert "(Docker Swarm)" in taken
    listed = swarm.invoke("backup.list", f"--env={NAME}").stdout
    assert re.search(r"\sincr\s.*\srepo1$", listed, re.MULTILINE), listed
    assert "recovery window:" in listed
    drill = swarm.invoke("backup.drill", f"--env={NAME}").stdout
    assert "DRILL PASSED" in drill, drill[-2000:]

    rows = "INSERT INTO listings (source, source_id, title, kind, price, city) VALUES "
    _psql(swarm, rows + "('e2e-pitr', 'a', 'Before', 'house', 1, 'Brest')")
    # Time is what is tested: the target lies between the two rows' commits.
    time.sleep(1.5)
    moment = datetime.now(UTC).isoformat(timespec="seconds")  # one clock: containers
    time.sleep(1.5)
    _psql(swarm, rows + "('e2e-pitr', 'b', 'After', 'house', 1, 'Brest')")
    restored = swarm.invoke("restore", f"--env={NAME}", f"--at={moment}", "--yes")
    out = restored.stdout
    assert "start the backups, the API and the worker" in out, out[-3000:]
    assert (
        _psql(swarm, "SELECT string_agg(source_id, ',') FROM listings WHERE source = 'e2e-pitr'")
        == "a"
    )
    # Back as the release runs them: one API replica per host, the backup task on the data host.
    assert _tasks(swarm, "api") == [f"{NAME}-1", f"{NAME}-2"]
    assert _tasks(swarm, "backup") == [f"{NAME}-1"]
    assert "overall: ready" in swarm.invoke("status", f"--env={NAME}").stdout


def test_deploying_v1_again_changes_nothing(swarm: SandboxEnv) -> None:
    before = swarm.on_host(f"docker service ps -q {STACK}_api --filter desired-state=running")
    result = swarm.invoke("deploy", f"--env={NAME}", f"--version={V1}")
    assert "nothing changed" in result.stdout
    after = swarm.on_host(f"docker service ps -q {STACK}_api --filter desired-state=running")
    assert sorted(after.split()) == sorted(before.split())


def test_deploy_v2_under_load_fails_no_request(swarm: SandboxEnv) -> None:
    with swarm.traffic() as traffic:
        served(traffic)
        swarm.invoke("deploy", f"--env={NAME}", version=V2)
        served(traffic)
    _assert_no_failure(traffic)
    assert traffic.tally.version_changes()[-1] == V2
    assert swarm.version() == V2
    assert _tasks(swarm, "api") == [f"{NAME}-1", f"{NAME}-2"]  # still one per host


def test_rollback_under_load_needs_no_build_and_no_registry(swarm: SandboxEnv) -> None:
    docker("rmi", f"slipway/listings:{V1}")
    registry = f"{NAME}-registry"
    # Paused, not stopped: a restarted registry would be published on another loopback port.
    docker("pause", registry)
    try:
        with swarm.traffic() as traffic:
            served(traffic)
            result = swarm.invoke("rollback", f"--env={NAME}")
            served(traffic)
    finally:
        docker("unpause", registry)
    _assert_no_failure(traffic)
    assert "build" not in result.stdout.lower().replace("rebuild", "")
    assert swarm.version() == V1
    current = [
        line
        for line in swarm.invoke("releases", f"--env={NAME}").stdout.splitlines()
        if line.startswith("* ")
    ]
    assert V1 in current[0]


def test_a_release_whose_replicas_never_get_healthy_is_rolled_back(swarm: SandboxEnv) -> None:
    hang = 'if [ "$0" = api ]; then exec sleep 3600; fi; exec listings "$0" "$@"'
    derived_image(f"slipway/listings:{V2}", BROKEN, ["/bin/sh", "-c", hang], {})
    with swarm.traffic() as traffic:
        served(traffic)
        result = swarm.invoke("deploy", f"--env={NAME}", f"--version={BROKEN}", check=False)
        served(traffic)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert "Swarm rolled back the update of api" in out, out[-3000:]
    current = [
        line
        for line in swarm.invoke("releases", f"--env={NAME}").stdout.splitlines()
        if line.startswith("* ")
    ]
    assert V1 in current[0]
    assert f"rolled back to {current[0].split()[1]}" in out  # the deploy's own rollback too
    _assert_no_failure(traffic)
    assert swarm.version() == V1
    image = swarm.on_host(
        f"docker service inspect -f '{{{{.Spec.TaskTemplate.ContainerSpec.Image}}}}' {STACK}_api"
    ).strip()
    assert image == f"slipway/listings:{V1}"


def test_one_host_never_starts_next_to_the_stack(swarm: SandboxEnv) -> None:
    swarm.edit(lambda data: data.update(hosts=data["hosts"][:1]))
    result = swarm.invoke("deploy", f"--env={NAME}", "--dry-run", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"runs {STACK} as a Docker Swarm stack" in out
    assert f"`docker stack rm {STACK}`" in out
