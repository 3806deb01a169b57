"""Deploys to real hosts over real SSH: two sandbox hosts (staging and production), each a
container with its own sshd and Docker engine, driven by `invoke deploy / rollback / releases`.

Tests run in file order and build on each other: v1 first deploy, v2 under load, rollback under
load, a release that never gets ready, a failing migration, two deploys at once, a stale lock,
a killed replica, and last production (which nothing before may have touched).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from alert_receiver import run_argv
from sandboxes import SandboxEnv, derived_image, remove_images, served
from support.docker import docker, output, remove
from support.feed_writers import FeedWriters
from support.waiting import wait_for

from ops.compose import LOG_SERVICE
from ops.deploy.parts import MONITORING_SERVICES
from ops.perf.h2client import Http2Traffic

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TAG = secrets.token_hex(3)
STAGING = f"e2e-stg-{TAG}"
PRODUCTION = f"e2e-prd-{TAG}"
V1, V2 = f"e2e-{TAG}-v1", f"e2e-{TAG}-v2"
BROKEN, BAD_MIGRATION = f"e2e-{TAG}-never-ready", f"e2e-{TAG}-bad-migration"
WRONG = f"e2e-{TAG}-wrong-version"
NO_SEARCH = f"e2e-{TAG}-no-search"
CITY_FAILS = f"e2e-{TAG}-city-fails"
LOAD_RATE = 24.0  # requests/s of mixed reads through nginx during each operation
KEYS: dict[str, str] = {}  # API keys made by one test for the next ones
RECEIVER = f"slipway-e2e-deploy-receiver-{TAG}"
# Where the hosts' Alertmanagers send (set by the fixture: the receiver's sandbox address).
ALERTS: dict[str, str] = {}


class Host(SandboxEnv):
    """A sandbox host of this module, with what its tests look at on it."""

    @property
    def env(self) -> dict[str, str]:
        return self.environ

    @property
    def url(self) -> str:
        return self.environment.https_url

    def popen(self, *args: str, version: str = "") -> subprocess.Popen[str]:
        env = dict(self.env)
        if version:
            env["SLIPWAY_VERSION"] = version
        return subprocess.Popen(
            [sys.executable, "-m", "invoke", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def psql(self, sql: str) -> str:
        project = f"slipway-{self.name}"
        return self.on_host(
            f'docker exec {project}-postgres-1 psql -d listings -tA -c "{sql}"'
        ).strip()

    def all_containers(self) -> str:
        """Name, id and start time of every container on the host (anything recreated shows)."""
        return self.on_host(
            "docker ps -aq | xargs -r docker inspect -f '{{.Name}} {{.Id}} {{.State.StartedAt}}'"
            " | sort"
        )

    def services(self) -> dict[str, str]:
        """Compose service -> "state health" of each container of the project on the host."""
        out = self.on_host(
            f"docker ps -a --filter label=com.docker.compose.project=slipway-{self.name} "
            "--filter label=com.docker.compose.oneoff=False --format "
            "'{{.Label \"com.docker.compose.service\"}} {{.State}} {{.Status}}'"
        )
        return {line.split()[0]: line for line in out.splitlines() if line.strip()}

    def api_containers(self, slot: str = "") -> list[str]:
        """The running API replicas of `slot`; by default the live one's (those serving)."""
        if not slot:
            flag = f"/srv/slipway/{self.name}/nginx/slot-green"
            slot = self.on_host(f"test -e {flag} && echo green || echo blue").strip()
        out = self.on_host(
            f"docker ps --filter label=com.docker.compose.project=slipway-{self.name} "
            f"--filter label=com.docker.compose.service=api --filter label=org.slipway.slot={slot} "
            "--format '{{.Names}}'"
        )
        return sorted(out.split())


@pytest.fixture(scope="module")
def hosts() -> Iterator[dict[str, Host]]:
    envdir = Path(tempfile.mkdtemp(prefix="slipway-deploy-envs-"))
    env = {**os.environ, "SLIPWAY_ENVIRONMENTS_DIR": str(envdir)}
    env.pop("SLIPWAY_VERSION", None)
    made = {name: Host(name, envdir, env) for name in (STAGING, PRODUCTION)}
    remove(RECEIVER)
    try:
        for name, mode in ((STAGING, "staging"), (PRODUCTION, "production")):
            made[name].invoke("sandbox.up", f"--name={name}", f"--listings-env={mode}")
            path = envdir / f"{name}.yaml"
            data = yaml.safe_load(path.read_text())
            # Short waits so the failure cases fail fast; a standby that outlasts the module, so
            # every rollback here happens within it (its end: tests/unit/ops/
            # test_deploy_standby.py runs the scheduled stop); everything else is the default.
            # No watch after the switch, but in the test of the watch: a minute per deploy.
            data["deploy"].update(
                {"health_timeout": 25, "lock_wait": 5, "standby": 1800, "watch": 0}
            )
            data["resources"] = {"api": {"cpus": 1.0, "memory": "512m"}}
            path.write_text(
                "# Written by `invoke sandbox.up`, then edited by tests/e2e/test_deploy.py\n"
                + yaml.safe_dump(data, sort_keys=False)
            )
        # The hosts' Alertmanagers notify a webhook receiver on the sandbox network (python3 of
        # the listings image, built here as the first deploy would).
        made[STAGING].invoke("build", f"--env={STAGING}", version=V1)
        # A tag of its own: the rollback test removes listings:V1 here, which a running
        # container's only tag would block.
        receiver_image = f"slipway/e2e-receiver:e2e-{TAG}-receiver"
        docker("tag", f"slipway/listings:{V1}", receiver_image)
        address = _start_receiver(receiver_image)
        ALERTS.update(
            ALERT_WEBHOOK_URL=f"http://{address}:9000/hook",
            ALERT_WATCHDOG_URL=f"http://{address}:9000/watchdog",
        )
        env.update(ALERTS)  # the process environment of every invoke: CI secrets' way
        yield made
    finally:
        remove(RECEIVER)
        if os.environ.get("SLIPWAY_E2E_KEEP") != "1":
            for host in made.values():
                host.invoke("sandbox.down", f"--name={host.name}", "--yes", check=False)
            shutil.rmtree(envdir, ignore_errors=True)
            shutil.rmtree(ROOT / ".slipway" / STAGING, ignore_errors=True)
            shutil.rmtree(ROOT / ".slipway" / PRODUCTION, ignore_errors=True)
            remove_images(f":e2e-{TAG}-")


def _start_receiver(image: str) -> str:
    """The alert receiver container; its address on the sandbox network."""
    docker(*run_argv(RECEIVER, "slipway-sandbox", image, "127.0.0.1:")[1:])
    return output(
        "inspect", "-f", '{{(index .NetworkSettings.Networks "slipway-sandbox").IPAddress}}',
        RECEIVER,
    )  # fmt: skip


def received(path: str) -> list[dict[str, object]]:
    """What the receiver got at `path` (through its port published on this machine)."""
    port = output("port", RECEIVER, "9000/tcp").split()[0]
    with httpx.Client(timeout=10) as client:
        notes = client.get(f"http://{port}/received").json()
    return [n for n in notes if n["path"] == path]


@pytest.fixture(scope="module")
def staging(hosts: dict[str, Host]) -> Host:
    return hosts[STAGING]


def _assert_clean(tally_summary: str, failures: list[object], seen: list[str]) -> None:
    assert failures == [], f"{tally_summary[:600]}: {failures[:5]}"
    assert seen, "no /api/v1/version answer recorded"
    # Both kinds of client ran: kept-alive ones that never retry, and a connection per request.
    assert "kept-alive 0 " not in tally_summary and "new connection 0 " not in tally_summary
    assert "kept-alive " in tally_summary and "new connection " in tally_summary


def test_first_deploy_builds_ships_and_serves_v1_on_a_fresh_host(staging: Host) -> None:
    assert staging.on_host("docker ps -aq") == ""
    result = staging.invoke("deploy", f"--env={STAGING}", version=V1)
    assert "current = " in result.stdout
    # Secrets: only in the release's own 0600 file, never in output, records or the audit log.
    values = [
        line.split("=", 1)[1].strip("'\"")
        for line in (ROOT / f".env.{STAGING}").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    ]
    root = f"/srv/slipway/{STAGING}"
    assert staging.on_host(f"stat -c %a {root}/releases/*/secrets.env").split() == ["600"]
    public = staging.on_host(
        f"cat {root}/audit.log {root}/releases/*/release.env {root}/releases/*/release.json"
    )
    for value in values:
        assert len(value) >= 16
        assert value not in result.stdout + result.stderr + public
    # The alert receivers are secrets too: in secrets.env, nowhere else.
    for value in ALERTS.values():
        assert value not in result.stdout + result.stderr + public
        assert value in staging.on_host(f"cat {root}/releases/*/secrets.env")
    assert staging.version() == V1
    releases = staging.invoke("releases", f"--env={STAGING}").stdout
    current = [line for line in releases.splitlines() if line.startswith("* ")]
    assert len(current) == 1 and V1 in current[0] and "succeeded" in current[0]
    # Everything a first deploy creates: volumes, schema, the certificate in its volume.
    volumes = staging.on_host("docker volume ls -q").split()
    assert f"slipway-{STAGING}_postgres-data" in volumes
    # Backups: their own volume, a scheduler next to PostgreSQL; nothing to back up yet.
    assert f"slipway-{STAGING}_postgres-backups" in volumes
    assert re.search(
        r"backup before migrations\s+impacting\s+skipped\s+\S+\s+skipped: first", result.stdout
    )
    assert re.search(r"postgres, redis, backup healthy", result.stdout)
    assert f"slipway-{STAGING}-tls" in volumes
    assert staging.psql("SELECT count(*) FROM alembic_version") == "1"
    assert len(staging.api_containers()) == 2
    # The environment's resource limits reach the containers; unlimited services stay so.
    limits = staging.on_host(
        f"docker inspect -f '{{{{.HostConfig.Memory}}}} {{{{.HostConfig.NanoCpus}}}}' "
        f"{staging.api_containers()[0]} slipway-{STAGING}-worker-1"
    ).split()
    assert limits == [str(512 * 1024 * 1024), "1000000000", "0", "0"]


def test_operating_commands_work_on_the_host(staging: Host) -> None:
    status = staging.invoke("status", f"--env={STAGING}").stdout
    assert f"version {V1}, succeeded" in status and "overall: ready" in status
    assert "lock: free" in status and "maintenance: off" in status
    # The live slot, and each API replica's: those serving are in it.
    live = next(line.split()[2] for line in status.splitlines() if "traffic: the " in line)
    assert live in ("blue", "green")
    api_rows = [line for line in status.splitlines() if f"slipway-{STAGING}-api-" in line]
    assert api_rows and all(f"[{live}]" in row for row in api_rows), status
    assert "database schema at" in staging.invoke("db.migrate", f"--env={STAGING}").stdout
    created = staging.invoke("apikey.create", f"--env={STAGING}", "--name=e2e-ops").stdout
    key = next(w for w in created.split() if w.startswith("slw_"))
    KEYS["ops"] = key
    listing = {
        "source": "e2e",
        "source_id": "ops-1",
        "title": "Deployed flat",
        "kind": "apartment",
        "price": 1000,
        "city": "Lyon",
    }
    with httpx.Client(verify=staging.verify(), timeout=10) as client:
        url = f"{staging.url}/api/v1/listings"
        assert client.post(url, json=listing).status_code == 401
        made = client.post(url, json=listing, headers={"Authorization": f"Bearer {key}"})
        assert made.status_code == 201, made.text
        logs = staging.invoke("logs", f"--env={STAGING}", "--service=api", "--tail=50").stdout
        assert '"route": "/api/v1/listings"' in logs
        staging.invoke("maintenance", f"--env={STAGING}", "on")
        try:
            api = client.get(url)
            page = client.get(f"{staging.url}/")
            assert api.status_code == 503 and api.json()["error"] == "maintenance"
            assert api.headers["retry-after"] == "120"
            assert page.status_code == 503 and "maintenance" in page.text
            assert page.headers["content-type"].startswith("text/html")
            assert (
                "maintenance: ON"
                in staging.invoke("status", f"--env={STAGING}", check=False).stdout
            )
        finally:
            staging.invoke("maintenance", f"--env={STAGING}", "off")
        assert client.get(url).status_code == 200
    # Backups on the host: the scheduler's first full, and a drill against the live data.
    listed = staging.invoke("backup.list", f"--env={STAGING}").stdout
    assert re.search(r"\sfull\s.*\srepo1$", listed, re.MULTILINE), listed
    assert "recovery window:" in listed
    drill = staging.invoke("backup.drill", f"--env={STAGING}").stdout
    assert "DRILL PASSED" in drill, drill[-2000:]
    assert re.search(r"public\.listings: [1-9]\d* rows, checksum equal", drill), drill[-2000:]


MONITORING = (LOG_SERVICE, *MONITORING_SERVICES)


def test_the_host_runs_monitoring_and_central_logs_published_on_loopback_only(
    staging: Host,
) -> None:
    def all_healthy() -> dict[str, str]:
        # The deploy ran each healthcheck itself; Docker's own status follows at its interval.
        services = staging.services()
        return services if all("(healthy)" in services.get(n, "") for n in MONITORING) else {}

    services = wait_for(
        all_healthy, what="Docker reports every monitoring service healthy", timeout=90, interval=3
    )
    assert isinstance(services, dict) and set(MONITORING) <= set(services), services
    # Every port published on the host: nginx on `bind`; Prometheus and Alertmanager on the
    # loopback only (operators come through an SSH tunnel); nothing else.
    published = staging.on_host(
        f"docker ps --filter label=com.docker.compose.project=slipway-{STAGING} "
        "--format '{{.Label \"com.docker.compose.service\"}} {{.Ports}}'"
    )
    seen = {}
    for line in published.splitlines():
        service, _, ports = line.partition(" ")
        if "->" in ports:  # `8000/tcp` alone is a port the image exposes, not published
            seen[service] = ports
    assert set(seen) == {"nginx", "prometheus", "alertmanager"}, seen
    assert seen["prometheus"].startswith("127.0.0.1:9090->9090/tcp"), seen
    assert seen["alertmanager"].startswith("127.0.0.1:9093->9093/tcp"), seen
    # Every container but the collector (its own output stays with Docker) logs to it.
    drivers = staging.on_host(
        f"docker ps -q --filter label=com.docker.compose.project=slipway-{STAGING} | xargs "
        'docker inspect -f \'{{index .Config.Labels "com.docker.compose.service"}} '
        "{{.HostConfig.LogConfig.Type}}'"
    )
    for line in drivers.splitlines():
        service, driver = line.split()
        assert driver == ("json-file" if service == "logs" else "syslog"), line


def test_invoke_monitor_reaches_the_host_through_an_ssh_tunnel(staging: Host) -> None:
    def every_target_up() -> str:
        out = staging.invoke("monitor", f"--env={STAGING}", "--once", check=False).stdout
        return out if "targets not up: 0" in out else ""

    out = wait_for(
        every_target_up, what="every target up, seen through the tunnel", timeout=150, interval=3
    )
    assert re.search(r"Prometheus +http://127\.0\.0\.1:\d+/", out), out
    assert "Watchdog" in out, out  # the dead man's switch always fires

    # Without --once the tunnel stays open until Ctrl-C (here SIGINT).
    monitor = staging.popen("monitor", f"--env={STAGING}")
    try:
        assert monitor.stdout is not None
        url = ""
        for line in monitor.stdout:
            found = re.search(r"Prometheus +(http://127\.0\.0\.1:\d+)/", line)
            if found:
                url = found.group(1)
            if "Ctrl-C" in line:
                break
        assert url, "no Prometheus URL printed"
        with httpx.Client(timeout=10) as client:
            ready = client.get(f"{url}/-/ready")
            assert ready.status_code == 200, ready.text
            rules = client.get(f"{url}/api/v1/rules").json()["data"]["groups"]
            assert len(rules) >= 9
        monitor.send_signal(signal.SIGINT)
        assert monitor.wait(timeout=30) == 0
    finally:
        if monitor.poll() is None:
            monitor.kill()


def test_alerts_of_the_host_reach_the_receiver_from_its_secrets(staging: Host) -> None:
    def watchdog() -> list[dict[str, object]]:
        return [
            note
            for note in received("/watchdog")
            if any(
                a["labels"].get("alertname") == "Watchdog"
                for a in note["payload"]["alerts"]  # type: ignore[index]
            )
        ]

    notes = wait_for(watchdog, what="the host's Watchdog at the receiver", timeout=180, interval=3)
    assert notes


def test_a_request_is_followed_through_the_central_logs_of_the_host(staging: Host) -> None:
    request_id = secrets.token_hex(16)
    with httpx.Client(verify=staging.verify(), timeout=10) as client:
        answer = client.get(
            f"{staging.url}/api/v1/listings?city=Lyon", headers={"X-Request-ID": request_id}
        )
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == request_id

    def both_lines() -> str:
        out = staging.invoke("logs", f"--env={STAGING}", f"--request-id={request_id}").stdout
        lines = [line for line in out.splitlines() if request_id in line]
        services = {line.split()[1] for line in lines if len(line.split()) > 1}
        return out if {"nginx", "api"} <= services else ""

    out = wait_for(both_lines, what="nginx and api lines of the request", timeout=60, interval=3)
    assert "Lyon" in out or "/api/v1/listings" in out
    # A regular expression over the history, across services, in time order.
    grep = staging.invoke("logs", f"--env={STAGING}", "--grep=/api/v1/listings").stdout
    stamps = [line.split()[0] for line in grep.splitlines() if line.strip()]
    assert stamps and stamps == sorted(stamps)


def test_the_smoke_load_test_gates_a_host_environment(staging: Host, tmp_path: Path) -> None:
    """What deploy.yml runs after the staging deploy: `nox -s loadtest` runs ops.perf.loadtest."""
    env = {**staging.env, "SLIPWAY_LOADTEST_API_KEY": KEYS["ops"]}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops.perf.loadtest",
            f"--env={STAGING}",
            "--profile=smoke",
            "--run-time=12s",
            f"--reports={tmp_path}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"against {STAGING} ({staging.url})" in result.stdout
    assert list(tmp_path.glob("*.html")), "no HTML report written"


def test_deploying_twice_changes_nothing(staging: Host) -> None:
    before = staging.all_containers()
    releases = staging.invoke("releases", f"--env={STAGING}").stdout
    again = staging.invoke("deploy", f"--env={STAGING}", version=V1)
    assert staging.all_containers() == before, again.stdout[-6000:]  # nothing recreated
    assert staging.invoke("releases", f"--env={STAGING}").stdout == releases
    plan = staging.invoke("deploy", f"--env={STAGING}", "--dry-run", version=V1).stdout
    assert "nothing changed since the current release" in plan


def _http2(staging: Host) -> Http2Traffic:
    """Kept-alive HTTP/2 clients that never retry (curl), next to the HTTP/1.1 traffic."""
    env = staging.environment
    ca = env.verify if isinstance(env.verify, Path) else None
    return Http2Traffic(env.https_url, ca, env.connect_to)


def _writers(staging: Host) -> FeedWriters:
    """A writer POSTing feeds through nginx during the operation (the key of the ops test)."""
    env = staging.environment
    return FeedWriters(env.https_url, staging.verify(), KEYS["ops"], env.connect_to)


def _assert_stored(writers: FeedWriters) -> None:
    assert writers.accepted and writers.refused == [], (len(writers.accepted), writers.refused[:5])
    assert writers.not_stored() == [], f"of {len(writers.accepted)} feeds accepted"


def _assert_http2_clean(h2: Http2Traffic, versions: list[str]) -> None:
    assert h2.tally.requests > 0 and h2.tally.failures == [], h2.tally.summary()
    assert set(h2.tally.protocols) == {"2"}, h2.tally.summary()
    assert h2.tally.in_order(versions), (h2.tally.sequences, h2.tally.summary())


def test_deploy_v2_under_load_fails_no_request_and_switches_once(staging: Host) -> None:
    with staging.traffic(retry=False) as traffic, _http2(staging) as h2, _writers(staging) as w:
        served(traffic)
        result = staging.invoke("deploy", f"--env={STAGING}", version=V2)
        served(traffic)
    tally = traffic.tally
    _assert_clean(tally.summary(), tally.failures, tally.version_changes())
    assert tally.version_changes() == [V1, V2], tally.summary()[:600]
    _assert_http2_clean(h2, [V1, V2])
    _assert_stored(w)  # through the workers' replacement
    # An app-only change: the steps whose inputs did not change are skipped, and say so.
    for step in ("start postgres and redis", "backup before migrations", "nginx"):
        assert re.search(
            rf"{re.escape(step)}\s+impacting\s+skipped\s+\S+\s+unchanged, skipped", result.stdout
        ), step
    assert re.search(r"migrate the schema \(new image\)\s+impacting\s+skipped", result.stdout)
    assert traffic.rate >= 20, tally.summary()[:600]
    # Every command that changed the host was said, with the host, as it ran.
    label = staging.environment.hosts[0].label
    said = [line for line in result.stderr.splitlines() if line.startswith(f"{label} $ ")]
    for change in (
        "(the deploy lock)",
        "docker load -q",
        f"write /srv/slipway/{STAGING}/releases/",
        "--scale api=",
        "nginx/slot-green",
        "(host clock), on the host: stop the ",  # v1's replicas: a standby, stopped later
        "ln -sfn releases/",
    ):
        assert any(change in line for line in said), (change, said[:40])
    # The traffic moved by the flag file: nginx was not reloaded.
    assert not [line for line in said if "nginx -s reload" in line]
    # v1's replicas stay on standby, out of traffic.
    status = staging.invoke("status", f"--env={STAGING}").stdout
    standby = next(line for line in status.splitlines() if "standby: " in line)
    assert f"-{V1} (the " in standby and "s left: `invoke rollback`" in standby, status
    # Its two API replicas and its worker (stopped, started again by a rollback within it).
    assert "(other release!)" not in status and status.count("(standby)") == 3, status
    assert re.search(r"-worker-\S+\s+Up .*\(standby\)", status), status  # parked, running
    assert "overall: ready" in status, status
    assert not [line for line in said if "docker image inspect" in line]  # queries are quiet


def _engine_state(versions: str) -> tuple[str, str]:
    """This machine's images and containers of this module's versions (another test process
    shares the engine: only what this module's deploys could touch is compared)."""

    def docker(*args: str) -> str:
        out = subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout
        return "\n".join(sorted(line for line in out.splitlines() if versions in line))

    images = docker("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    containers = docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Image}} {{.State}}")
    return images, containers


def _host_state(staging: Host) -> str:
    """The host's engine and the environment's directory, byte for byte."""
    return staging.on_host(
        "docker images --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}' | sort; "
        "docker ps -a --no-trunc --format '{{.ID}} {{.Image}} {{.State}} {{.CreatedAt}}' | sort; "
        "docker volume ls -q | sort; docker network ls -q | sort; "
        f"cd /srv/slipway/{STAGING} && find . -printf '%p %y %m %s %l\\n' | sort && "
        "find . -type f -exec sha256sum {} + | sort"
    )


def test_dry_runs_of_a_deploy_and_a_rollback_change_nothing_here_or_on_the_host(
    staging: Host,
) -> None:
    """A version never built: a dry run neither builds it nor touches the host; a rollback's
    dry run neither retags nor locks."""
    unbuilt = f"e2e-{TAG}-dry"
    here, there = _engine_state(f"e2e-{TAG}"), _host_state(staging)
    plan = staging.invoke("deploy", f"--env={STAGING}", "--dry-run", version=unbuilt)
    assert f"plan: images to build first: slipway/listings:{unbuilt}" in plan.stdout
    assert re.search(r"build missing images\s+impacting\s+planned", plan.stdout)
    back = staging.invoke("rollback", f"--env={STAGING}", "--dry-run")
    assert re.search(rf"choose the release and check its images .*-{V1}", back.stdout)
    assert "(dry run: not run)" not in plan.stderr + back.stderr  # no change even asked
    assert _engine_state(f"e2e-{TAG}") == here
    assert _host_state(staging) == there


def test_rollback_under_load_needs_no_build_and_switches_once(staging: Host) -> None:
    # No build, no registry: the local images of v1 are gone, the host still has them.
    docker("rmi", f"slipway/listings:{V1}")
    with staging.traffic(retry=False) as traffic, _http2(staging) as h2, _writers(staging) as w:
        served(traffic)
        result = staging.invoke("rollback", f"--env={STAGING}")
        served(traffic)
    tally = traffic.tally
    _assert_clean(tally.summary(), tally.failures, tally.version_changes())
    assert tally.version_changes() == [V2, V1], tally.summary()[:600]
    _assert_http2_clean(h2, [V2, V1])
    _assert_stored(w)
    assert re.search(r"resumed \S+-worker-\d+ \(parked since the switch\)", result.stdout)
    assert "build" not in result.stdout.lower().replace("rebuild", "")
    # Within the standby: v1's replicas went back into traffic, none was started.
    assert "reusing " in result.stdout and "--scale api=" not in result.stderr
    current = [
        line
        for line in staging.invoke("releases", f"--env={STAGING}").stdout.splitlines()
        if line.startswith("* ")
    ]
    assert V1 in current[0]


def test_a_release_that_never_gets_ready_rolls_back_with_no_failed_request(
    staging: Host,
) -> None:
    # Its API replicas start and hang without ever serving; migrate and worker behave.
    hang = 'if [ "$0" = api ]; then exec sleep 3600; fi; exec listings "$0" "$@"'
    derived_image(f"slipway/listings:{V2}", BROKEN, ["/bin/sh", "-c", hang], {})
    before = staging.api_containers()
    with staging.traffic(retry=False) as traffic, _writers(staging) as w:
        served(traffic)
        result = staging.invoke("deploy", f"--env={STAGING}", f"--version={BROKEN}", check=False)
        served(traffic)
    _assert_stored(w)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert "not ready after 25s" in out
    assert "--- logs of" in out  # the failing container's logs are printed
    tally = traffic.tally
    _assert_clean(tally.summary(), tally.failures, tally.version_changes())
    assert tally.version_changes() == [V1], tally.summary()[:600]
    assert staging.api_containers() == before
    assert staging.version() == V1


def test_a_release_failing_its_check_through_nginx_is_switched_back(staging: Host) -> None:
    # Its replicas are ready, but it reports another version than the one deployed: the check
    # through nginx right after the switch fails and nginx goes back to the old replicas.
    derived_image(f"slipway/listings:{V2}", WRONG, ["listings"], {})
    before = staging.api_containers()
    with staging.traffic(retry=False) as traffic, _writers(staging) as w:
        served(traffic)
        result = staging.invoke("deploy", f"--env={STAGING}", f"--version={WRONG}", check=False)
        served(traffic)
    _assert_stored(w)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert "traffic switched back" in out and "rolled back to" in out
    tally = traffic.tally
    _assert_clean(tally.summary(), tally.failures, tally.version_changes())
    assert tally.version_changes()[-1] == V1, tally.summary()[:600]
    assert staging.api_containers() == before
    history = staging.invoke("releases", f"--env={STAGING}").stdout
    assert any(WRONG in line and "rolled back" in line for line in history.splitlines())
    current = [line for line in history.splitlines() if line.startswith("* ")]
    assert V1 in current[0]


def test_a_release_that_is_ready_but_fails_its_searches_never_takes_a_request(
    staging: Host,
) -> None:
    # Its /ready answers 200; every search fails (500). The checks in its replicas, before
    # any switch, find it: no client ever reaches it, and the deploy names the failed request.
    search = (ROOT / "services/listings/src/listings/search.py").read_text()
    broken = search + (
        "\n\nasync def search_listings(conn, filters):  # e2e: this release cannot search\n"
        '    raise RuntimeError("e2e: every search fails in this release")\n'
    )
    package = "/opt/venv/lib/python3.11/site-packages/listings"
    derived_image(
        f"slipway/listings:{V2}", NO_SEARCH, ["listings"], {f"{package}/search.py": broken}
    )
    before = staging.api_containers()
    with staging.traffic(retry=False) as traffic, _http2(staging) as h2, _writers(staging) as w:
        served(traffic)
        result = staging.invoke("deploy", f"--env={STAGING}", f"--version={NO_SEARCH}", check=False)
        served(traffic)
    _assert_stored(w)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert "failed the checks (deploy.checks) before taking any traffic" in out, out[-3000:]
    assert "FAIL /api/v1/listings?limit=5 500" in out, out[-3000:]
    tally = traffic.tally
    _assert_clean(tally.summary(), tally.failures, tally.version_changes())
    assert tally.version_changes() == [V1], tally.summary()[:600]
    _assert_http2_clean(h2, [V1])
    assert staging.api_containers() == before
    assert staging.version() == V1


def test_a_release_whose_clients_get_errors_is_rolled_back_by_the_watch_after_the_switch(
    staging: Host,
) -> None:
    # Every check passes (none searches by city); the clients' searches by city fail (500):
    # only Prometheus' count of what the clients got can tell, after the switch.
    search = (ROOT / "services/listings/src/listings/search.py").read_text()
    broken = search + (
        "\n\n_search_listings = search_listings\n\n\n"
        "async def search_listings(conn, filters):  # e2e: searches by city fail\n"
        "    if filters.city:\n"
        '        raise RuntimeError("e2e: searches by city fail in this release")\n'
        "    return await _search_listings(conn, filters)\n"
    )
    package = "/opt/venv/lib/python3.11/site-packages/listings"
    derived_image(
        f"slipway/listings:{V2}",
        CITY_FAILS,
        ["listings"],
        {f"{package}/search.py": broken},
        {"LISTINGS_VERSION": CITY_FAILS},  # it reports its own version: the smoke check passes
    )
    staging.edit(lambda data: data["deploy"].update({"watch": 25}))
    running = staging.version()
    try:
        with staging.traffic(retry=False) as traffic, _writers(staging) as w:
            served(traffic)
            result = staging.invoke(
                "deploy", f"--env={STAGING}", f"--version={CITY_FAILS}", check=False
            )
            served(traffic)
    finally:
        staging.edit(lambda data: data["deploy"].update({"watch": 0}))
    _assert_stored(w)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert "watch the error ratio (Prometheus)" in out, out[-3000:]
    assert re.search(r"answered \d+ of \d+ requests with 5xx since the switch", out), out[-3000:]
    assert "rolled back to" in out, out[-3000:]
    assert staging.version() == running
    tally = traffic.tally
    # The clients saw the bad release, and the watch sent them back (to the standby).
    assert tally.version_changes() == [running, CITY_FAILS, running], tally.summary()[:600]
    failed = {(f.path, f.problem[:8]) for f in tally.failures}
    assert failed and failed <= {
        ("/api/v1/listings?city=Lyon&limit=5", "HTTP 500"),
        ("/?city=Paris", "HTTP 500"),
    }, tally.failures[:5]
    releases = staging.invoke("releases", f"--env={STAGING}").stdout
    line = next(line for line in releases.splitlines() if CITY_FAILS in line)
    assert "rolled back" in line, releases


def test_a_rollback_after_the_standby_ended_starts_the_previous_release_again(
    staging: Host,
) -> None:
    staging.edit(lambda data: data["deploy"].update({"standby": 15}))
    try:
        staging.invoke("deploy", f"--env={STAGING}", version=V2)
        # The scheduled stop on the host ends the standby: v1's replicas and worker go.
        wait_for(
            lambda: "standby: none" in staging.invoke("status", f"--env={STAGING}").stdout,
            what="the standby's end",
            timeout=120,
        )
        releases = staging.on_host(
            f"docker ps -a --filter label=com.docker.compose.project=slipway-{STAGING} "
            "--format '{{.Label \"org.slipway.release\"}}'"
        )
        assert V1 not in releases and V2 in releases, releases
        with (
            staging.traffic(retry=False) as traffic,
            _http2(staging) as h2,
            _writers(staging) as w,
        ):
            served(traffic)
            result = staging.invoke("rollback", f"--env={STAGING}")
            served(traffic)
        _assert_stored(w)
    finally:
        staging.edit(lambda data: data["deploy"].update({"standby": 1800}))
    tally = traffic.tally
    _assert_clean(tally.summary(), tally.failures, tally.version_changes())
    assert tally.version_changes() == [V2, V1], tally.summary()[:600]
    _assert_http2_clean(h2, [V2, V1])
    # v1's replicas were started again (no standby to reuse), then one switch.
    assert "reusing " not in result.stdout and "--scale api=" in result.stderr
    assert staging.version() == V1


def test_a_failing_migration_aborts_before_traffic_moves(staging: Host) -> None:
    migration = (
        '"""Fails after creating a table: the transaction must leave nothing behind."""\n'
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        'revision = "0900_broken"\ndown_revision = "0002_api_key_names"\n'
        "branch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade():\n"
        '    op.create_table("should_not_exist", sa.Column("id", sa.Integer, primary_key=True))\n'
        '    op.execute("SELECT 1 / 0")\n\n\n'
        "def downgrade():\n"
        '    op.drop_table("should_not_exist")\n'
    )
    versions = "/opt/venv/lib/python3.11/site-packages/listings/migrations/versions"
    derived_image(
        f"slipway/listings:{V2}",
        BAD_MIGRATION,
        ["listings"],
        {f"{versions}/0900_broken.py": migration},
    )
    revision = staging.psql("SELECT version_num FROM alembic_version")
    before = staging.api_containers()
    count = staging.psql("SELECT count(*) FROM listings")
    result = staging.invoke("deploy", f"--env={STAGING}", f"--version={BAD_MIGRATION}", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "migration failed" in out and "running release was not touched" in out
    # The backup before the migrations ran: the data the migration meant to change is saved.
    assert re.search(r"backup before migrations\s+impacting\s+ok\s+\S+\s+backup \(incr\)", out)
    assert " incr " in staging.invoke("backup.list", f"--env={STAGING}").stdout
    assert re.search(r"rolling update of the API\s+impacting\s+not run", out)
    assert staging.psql("SELECT version_num FROM alembic_version") == revision
    assert staging.psql("SELECT to_regclass('should_not_exist') IS NULL") == "t"
    assert staging.psql("SELECT count(*) FROM listings") == count
    assert staging.api_containers() == before
    assert staging.version() == V1


def test_a_second_deploy_fails_naming_the_holder_while_the_first_runs(staging: Host) -> None:
    first = staging.popen("deploy", f"--env={STAGING}", version=V2)
    try:

        def locked() -> bool:
            assert first.poll() is None, first.communicate()[0][-3000:]
            return "lock" in staging.on_host(f"ls /srv/slipway/{STAGING}", check=False)

        wait_for(locked, what="the first deploy taking the lock", timeout=120, interval=0.2)
        # The second does not wait for the lock: a deploy is now quick enough to end within
        # lock_wait, and the second would then take the lock and succeed.
        staging.edit(lambda data: data["deploy"].update({"lock_wait": 0}))
        try:
            second = staging.invoke("deploy", f"--env={STAGING}", version=V2, check=False)
        finally:
            staging.edit(lambda data: data["deploy"].update({"lock_wait": 5}))
        out = second.stdout + second.stderr
        assert second.returncode != 0
        assert "is locked: deploy of " + V2 + " by " in out
        assert "invoke lock.release" in out
    finally:
        output = first.communicate(timeout=600)[0]
    assert first.returncode == 0, output[-3000:]
    assert staging.version() == V2


def test_a_stale_lock_of_a_killed_deploy_is_taken_over(staging: Host) -> None:
    stale = {
        "owner": "ghost@gone pid 1",
        "token": "deadbeef",
        "version": "v0",
        "started": 1000,
        "refreshed": 1000,
        "ttl": 60,
        "operation": "deploy",
    }
    lock_dir = f"/srv/slipway/{STAGING}/lock"
    staging.on_host(
        f"mkdir {lock_dir} && echo '{json.dumps(stale)}' > {lock_dir}/info.json "
        f"&& chown -R deploy {lock_dir}"
    )
    status = staging.invoke("lock.status", f"--env={STAGING}").stdout
    assert "ghost@gone" in status and "STALE" in status
    result = staging.invoke("deploy", f"--env={STAGING}", version=V1)
    assert "taking over a stale deploy lock" in result.stdout
    assert staging.version() == V1
    assert "not locked" in staging.invoke("lock.status", f"--env={STAGING}").stdout


def _kill_and_wait_back(staging: Host, victim: str) -> None:
    restarts = staging.on_host(f"docker inspect -f '{{{{.RestartCount}}}}' {victim}").strip()
    staging.on_host(f"kill -9 $(docker inspect -f '{{{{.State.Pid}}}}' {victim})")
    wait_for(
        lambda: staging.on_host(
            f"docker inspect -f '{{{{.RestartCount}}}} {{{{.State.Status}}}}' {victim}"
        ).split(),
        until=lambda state: int(state[0]) > int(restarts) and state[1] == "running",
        what=f"{victim} restarted",
        timeout=90,
        interval=1,
    )
    # Up is not ready: wait until it answers again (a new address, which nginx must pick up).
    ready = f"docker exec {victim} listings healthcheck ready >/dev/null && echo READY"
    wait_for(
        lambda: "READY" in staging.on_host(ready, check=False),
        what=f"{victim} ready again",
        timeout=90,
        interval=1,
    )


def test_killing_api_replicas_one_after_the_other_under_load_fails_no_request(
    staging: Host,
) -> None:
    """The second kill proves nginx sends traffic to the first replica again after its restart
    (Docker may give it a new address; nginx resolves the live slot's name per request)."""
    first, second = staging.api_containers()[:2]
    with staging.traffic(retry=False) as traffic:
        served(traffic)
        _kill_and_wait_back(staging, first)
        address = staging.on_host(
            f"docker inspect -f '{{{{range .NetworkSettings.Networks}}}}{{{{.IPAddress}}}}"
            f"{{{{end}}}}' {first}"
        ).strip()
        nginx = f"slipway-{STAGING}-nginx-1"
        back_at = staging.on_host("date -u +%Y-%m-%dT%H:%M:%S").strip()
        # nginx sends the restarted replica requests again (at its new address, if it got one),
        # and they succeed: only then is the other one killed.
        answered = '"status":200,"body_bytes_sent"'

        def used_again() -> bool:
            lines = staging.on_host(f"docker logs --since {back_at} {nginx} 2>&1", check=False)
            return any(
                f'"upstream_addr":"{address}:8000"' in line and answered in line
                for line in lines.splitlines()
            )

        wait_for(used_again, what=f"nginx using {first} at {address} again", interval=1)
        # The other one killed: requests go on, served by the first, until it is back.
        _kill_and_wait_back(staging, second)
    tally = traffic.tally
    _assert_clean(tally.summary(), tally.failures, tally.version_changes())


def test_production_is_a_separate_host_that_staging_never_touched(hosts: dict[str, Host]) -> None:
    production, staging = hosts[PRODUCTION], hosts[STAGING]
    assert production.on_host("docker ps -aq") == ""
    assert production.on_host("docker images -q") == ""
    assert production.on_host("ls -A /srv/slipway") == ""
    staging_releases = staging.invoke("releases", f"--env={STAGING}").stdout
    # Production with monitoring and no alert receiver: refused before the host is touched.
    without = Host(
        PRODUCTION,
        production.envdir,
        {k: v for k, v in production.env.items() if not k.startswith("ALERT_")},
    )
    refused = without.invoke("deploy", f"--env={PRODUCTION}", check=False, version=V1)
    assert refused.returncode != 0
    assert "no alert receiver is set" in refused.stdout + refused.stderr
    assert production.on_host("docker ps -aq") == ""
    # Something else on the host holds Prometheus' port: refused in pre-flight, naming the field.
    production.on_host(
        'perl -MIO::Socket::INET -e \'$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", '
        "LocalPort => 9090, Listen => 1, ReuseAddr => 1) or die; "
        'open(my $f, ">", "/tmp/holder.pid"); print $f $$; close $f; sleep 600\' '
        ">/dev/null 2>&1 &"
    )
    # It writes its pid once it listens.
    production.on_host(
        "for i in $(seq 50); do test -s /tmp/holder.pid && exit 0; sleep 0.2; done; exit 1"
    )
    try:
        clash = production.invoke("deploy", f"--env={PRODUCTION}", check=False, version=V1)
    finally:
        production.on_host("kill $(cat /tmp/holder.pid)")
    assert clash.returncode != 0
    assert "9090/tcp (monitoring.prometheus_port) is in use" in clash.stdout + clash.stderr
    assert production.on_host("docker ps -aq") == ""
    production.invoke("deploy", f"--env={PRODUCTION}", version=V1)
    assert production.version() == V1
    assert staging.invoke("releases", f"--env={STAGING}").stdout == staging_releases
    assert staging.version() == V1


def test_staging_gets_production_data_with_the_personal_data_replaced(
    hosts: dict[str, Host],
) -> None:
    """`invoke restore --env=staging --from=production --sanitize`: production's newest backup,
    stripped of personal data on production's host, replaces staging's database; the reverse
    direction is refused."""
    production, staging = hosts[PRODUCTION], hosts[STAGING]
    # One command sees both environments: production's file next to staging's.
    if production.envdir != staging.envdir:
        shutil.copy(production.envdir / f"{PRODUCTION}.yaml", staging.envdir / f"{PRODUCTION}.yaml")
    created = production.invoke("apikey.create", f"--env={PRODUCTION}", "--name=prod").stdout
    key = next(w for w in created.split() if w.startswith("slw_"))
    private = {
        f"e2e-{i}": (
            f"Jeanne Private{i}",
            f"jeanne{i}@private-mail.test",
            f"+33 6 55 44 33 {i:02d}",
        )
        for i in range(3)
    }
    with httpx.Client(verify=production.verify(), timeout=10) as client:
        for source_id, (name, email, phone) in private.items():
            listing = {
                "source": "e2e-prod", "source_id": source_id, "title": "Production flat",
                "kind": "apartment", "price": 250000, "city": "Nantes",
                "contact_name": name, "contact_email": email, "contact_phone": phone,
            }  # fmt: skip
            made = client.post(
                f"{production.url}/api/v1/listings",
                json=listing,
                headers={"Authorization": f"Bearer {key}"},
            )
            assert made.status_code == 201, made.text
    production.invoke("backup", f"--env={PRODUCTION}", "--type=incr")

    reverse = staging.invoke(
        "restore", f"--env={PRODUCTION}", f"--from={STAGING}", "--sanitize", "--yes", check=False
    )
    assert reverse.returncode != 0
    assert "never overwritten" in reverse.stdout + reverse.stderr
    unsanitized = staging.invoke(
        "restore", f"--env={STAGING}", f"--from={PRODUCTION}", "--yes", check=False
    )
    assert unsanitized.returncode != 0 and "needs --sanitize" in unsanitized.stderr

    result = staging.invoke(
        "restore", f"--env={STAGING}", f"--from={PRODUCTION}", "--sanitize", "--yes"
    )
    assert "personal data replaced" in result.stdout
    assert staging.psql("SELECT count(*) FROM listings WHERE source = 'e2e-prod'") == "3"
    assert staging.psql("SELECT count(*) FROM api_keys") == "0"
    dump = staging.on_host(f"docker exec slipway-{STAGING}-postgres-1 pg_dump -d listings")
    for name, email, phone in private.values():
        assert email not in dump and phone not in dump and name not in dump
    assert "@example.invalid" in dump
    with httpx.Client(verify=staging.verify(), timeout=10) as client:
        assert client.get(f"{staging.url}/ready").status_code == 200
        refused = client.post(
            f"{staging.url}/api/v1/listings",
            json={"source": "x", "source_id": "1", "title": "t", "kind": "land", "price": 1,
                  "city": "c"},
            headers={"Authorization": f"Bearer {key}"},
        )  # fmt: skip
        assert refused.status_code == 401
    # Production itself is untouched: its own data and key still there.
    assert (
        production.psql("SELECT count(*) FROM listings WHERE contact_email LIKE '%private-mail%'")
        == "3"
    )


def test_a_host_that_lost_everything_but_its_backups_is_rebuilt_by_deploy_restore(
    staging: Host,
) -> None:
    """The staging host loses its containers, its data and log volumes and its releases: only
    the backup repository's volume is left (the off-site repository's case, nothing local, is
    the local stack's in test_backups.py). A deploy stops before PostgreSQL starts and names
    `--restore`; `invoke deploy --restore` rebuilds the database from the backups and serves."""
    project = f"slipway-{STAGING}"
    version = staging.version()
    staging.psql(
        "INSERT INTO listings (source, source_id, title, kind, price, city) "
        "VALUES ('e2e-rebuild', 'last', 'Last write', 'land', 1, 'Lorient')"
    )
    archived = staging.on_host(f"docker exec {project}-postgres-1 backup-archive-now")
    assert "[slipway-ok]" in archived, archived
    expected = staging.psql("SELECT count(*) FROM listings")
    staging.on_host(
        f"docker ps -aq --filter label=com.docker.compose.project={project} | xargs -r docker rm -f"
        f" && docker volume ls -q --filter label=com.docker.compose.project={project}"
        f" | grep -vx {project}_postgres-backups | xargs -r docker volume rm"
        f" && rm -rf /srv/slipway/{STAGING}/releases /srv/slipway/{STAGING}/current"
    )
    volumes = staging.on_host("docker volume ls -q").split()
    assert f"{project}_postgres-backups" in volumes and f"{project}_postgres-data" not in volumes

    refused = staging.invoke("deploy", f"--env={STAGING}", f"--version={version}", check=False)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0, out[-3000:]
    assert f"has no database of {STAGING}" in out and f"--env={STAGING} --restore" in out, out
    assert staging.on_host(f"docker ps -q --filter name={project}-postgres") == ""

    rebuilt = staging.invoke("deploy", f"--env={STAGING}", f"--version={version}", "--restore")
    assert "database restored (the newest backup, then the archived WAL)" in rebuilt.stdout
    assert staging.psql("SELECT count(*) FROM listings") == expected
    assert staging.psql("SELECT title FROM listings WHERE source = 'e2e-rebuild'") == "Last write"
    assert staging.version() == version
    assert "overall: ready" in staging.invoke("status", f"--env={STAGING}").stdout
    # The scheduler goes on backing up into the same repository.
    listed = staging.invoke("backup.list", f"--env={STAGING}").stdout
    assert "recovery window:" in listed
