"""The central log collector for real: the slipway/logs image (Debian's rsyslog) run as
compose/logging.yaml runs it (host network, a loopback UDP port of its own), receiving from
Docker's syslog log driver with the options compose renders; containers named like compose names
them print lines; the lines are read back the way `invoke logs` reads them (ops.logsearch
through `slipway-logs-read` in the container).

Also: the disk bound under a flood several times LOG_MAX_SIZE (exhaustion), retention by age,
rotation by age, surviving a restart of the collector, and the compose overlay itself.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.built import built_image
from support.docker import docker, inspect, logs, remove
from support.waiting import wait_for

from ops.monitoring import collectors, logsearch
from ops.monitoring.logsearch import Entry

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TAG = secrets.token_hex(3)
PROJECT = f"slipway-it-logs-{TAG}"
LABEL = f"slipway.test=logs-{TAG}"
BASE = "debian:bookworm-slim"
# compose/logging.yaml's service `logs`, as `docker run` options (with --network host).
HARDENING = (
    "--read-only",
    "--tmpfs",
    "/tmp:size=16m",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges:true",
)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def logs_image() -> str:
    """slipway/logs:<content tag>, built through compose when missing (the `logs` service is in
    the compose/logging.yaml overlay)."""
    return built_image("logs", "SLIPWAY_LOGS_TAG", overlays=("logging.yaml",))


@functools.cache
def compose_config() -> dict[str, Any]:
    """The services of compose.yaml + local.yaml + logging.yaml as compose merges them (every
    profile, SLIPWAY_LOG_PORT=15514)."""
    env = dict(
        os.environ,
        SLIPWAY_ENV="test",
        POSTGRES_PASSWORD="x",
        REDIS_PASSWORD="x",
        LISTINGS_API_KEY_PEPPER="x",
        BACKUP_PASSPHRASE="x",
        SLIPWAY_BUILD_CA=os.devnull,
        SLIPWAY_TLS_DIR="/nonexistent",
        SLIPWAY_LOG_PORT="15514",
        COMPOSE_PROFILES="monitoring,acme,tools",
    )
    argv = ["docker", "compose", "-p", PROJECT]
    for name in ("compose.yaml", "local.yaml", "logging.yaml"):
        argv += ["-f", str(ROOT / "compose" / name)]
    result = subprocess.run(
        [*argv, "config", "--format", "json"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = json.loads(result.stdout)["services"]
    return services


@dataclass
class Collector:
    """One collector container with its volume and loopback UDP port."""

    name: str
    port: int
    volume: str
    settings: dict[str, str]

    def read(self, *fixed: str) -> list[Entry]:
        """Every collected line, as `invoke logs` reads them."""
        names = [f.name for f in collectors.list_files(self.name)]
        with collectors.read_lines(self.name, names, fixed) as raw:
            parsed = [logsearch.parse_entry(line) for line in raw]
        return [entry for entry in parsed if entry is not None]

    def shell(self, script: str) -> str:
        return docker("exec", self.name, "bash", "-c", script).stdout

    def own_logs(self) -> str:
        return logs(self.name)

    def health(self) -> subprocess.CompletedProcess[str]:
        """The image's HEALTHCHECK command, run now instead of waiting for its interval."""
        return docker("exec", self.name, "slipway-logs-health", check=False)


@dataclass
class Lab:
    image: str
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def collector(self, name: str, **settings: str) -> Collector:
        container = f"{PROJECT}-collector-{name}"
        port = _free_udp_port()
        volume = f"{container}-data"
        argv = ["run", "-d", "--name", container, "--label", LABEL, *HARDENING]
        argv += ["-v", f"{volume}:/var/log/slipway", "--network", "host"]
        listen = {"LOG_LISTEN_ADDRESS": "127.0.0.1", "LOG_LISTEN_PORT": str(port)}
        for key, value in {"LOG_PROJECT": PROJECT, **listen, **settings}.items():
            argv += ["-e", f"{key}={value}"]
        self.containers.append(container)
        self.volumes.append(volume)
        docker(*argv, self.image)
        handle = Collector(container, port, volume, settings)
        wait_for(
            lambda: handle.health().returncode == 0,
            what="the collector answering its healthcheck",
            interval=0.3,
            details=handle.own_logs,
        )
        return handle

    def emit(
        self,
        collector: Collector,
        service: str,
        script: str,
        name: str = "",
        detach: bool = False,
    ) -> str:
        """Run `sh -c script` in a container named like compose's, logging to the collector
        with compose/logging.yaml's options."""
        logging = compose_config()["api"]["logging"]
        container = name or f"{PROJECT}-{service}-1"
        argv = ["run", "--name", container, "--label", LABEL, "--log-driver", logging["driver"]]
        for key, value in logging["options"].items():
            if key == "syslog-address":
                value = f"udp://127.0.0.1:{collector.port}"
            argv += ["--log-opt", f"{key}={value}"]
        argv += ["-d"] if detach else []
        self.containers.append(container)
        docker(*argv, BASE, "sh", "-c", script, timeout=600)
        if not detach:
            remove(container)
        return container

    def cleanup(self) -> None:
        remove(*self.containers)
        for volume in self.volumes:
            docker("volume", "rm", "-f", volume, check=False)


def lines_of(collector: Collector, marker: str, count: int) -> list[Entry]:
    """The collected lines containing `marker`, once there are `count` of them."""
    return wait_for(
        lambda: collector.read(marker),
        until=lambda found: len(found) >= count,
        what=f"{count} lines with {marker}",
        timeout=30,
        interval=0.3,
    )


def settle(collector: Collector) -> None:
    """Wait until nothing has been written for a second (Docker sends a container's buffered
    lines after it has exited)."""
    seen: list[str] = []

    def unchanged() -> bool:
        seen.append(collector.shell("stat -c %s /var/log/slipway/current.log; ls /var/log/slipway"))
        return len(seen) >= 2 and seen[-1] == seen[-2]

    wait_for(unchanged, what="the collector to stop writing", timeout=120, interval=1)


def maintenance_runs(collector: Collector, runs: int) -> None:
    """Until the maintenance loop has started `runs` more times (it touches its heartbeat file
    at the start of each run): with 2, one whole run has happened since the call."""
    beat = "stat -c %y /tmp/slipway-logs/maintain.beat"  # to the nanosecond
    beats = {collector.shell(beat)}

    def started() -> bool:
        beats.add(collector.shell(beat))
        return len(beats) > runs

    wait_for(started, what=f"{runs} more runs of the maintenance loop", timeout=30, interval=0.2)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    handle = Lab(image=logs_image())
    try:
        yield handle
    finally:
        handle.cleanup()


@pytest.fixture(scope="module")
def collector(lab: Lab) -> Collector:
    return lab.collector("main")


# ---------------------------------------------------------------------------- collecting


def test_lines_land_in_order_with_their_service_and_container(
    lab: Lab, collector: Collector
) -> None:
    marker = f"m{secrets.token_hex(4)}"
    script = (
        f'for i in 1 2 3 4 5; do echo "{{\\"marker\\":\\"{marker}\\",\\"n\\":$i,'
        f'\\"request_id\\":\\"{marker}-$i\\"}}"; done'
    )
    lab.emit(collector, "api", script)
    lab.emit(collector, "worker", script)
    lab.emit(collector, "migrate", script, name=f"{PROJECT}-migrate-run-0123456789ab")
    found = lines_of(collector, marker, 15)

    by_container: dict[str, list[Entry]] = {}
    for entry in found:
        by_container.setdefault(entry.container, []).append(entry)
    assert {c: e[0].service for c, e in by_container.items()} == {
        f"{PROJECT}-api-1": "api",
        f"{PROJECT}-worker-1": "worker",
        f"{PROJECT}-migrate-run-0123456789ab": "migrate",
    }
    for container, entries in by_container.items():
        numbers = [json.loads(e.line)["n"] for e in entries]
        assert numbers == [1, 2, 3, 4, 5], container
        stamps = [e.ts for e in entries]
        assert stamps == sorted(stamps), container
        # Microseconds, with the offset: RFC 5424 with rfc5424micro.
        assert all(len(e.ts_text) >= len("2026-01-01T00:00:00.000000Z") for e in entries)

    # `invoke logs --request-id` finds exactly one line of one container.
    query = logsearch.Query(request_id=f"{marker}-3", service="worker")
    names = [f.name for f in collectors.list_files(collector.name)]
    with collectors.read_lines(collector.name, names, logsearch.prefilters(query)) as lines:
        result = list(logsearch.search(lines, query))
    assert len(result) == 1
    assert result[0].split(" ", 2)[1:] == [
        "worker",
        f'{{"marker":"{marker}","n":3,"request_id":"{marker}-3"}}',
    ]


def test_swarm_task_names_give_their_service(lab: Lab, collector: Collector) -> None:
    """Docker Swarm names a task's container <stack>_<service>.<slot or node id>.<task id>,
    often longer than the 48 characters syslog keeps: the service still comes out."""
    marker = f"s{secrets.token_hex(4)}"
    replica = f"{PROJECT}_api.2.{'a' * 25}"
    per_host = f"{PROJECT}_node-exporter.{'b' * 25}.{'c' * 25}"
    lab.emit(collector, "api", f'echo "{marker} replica"', name=replica)
    lab.emit(collector, "node-exporter", f'echo "{marker} global"', name=per_host)
    found = lines_of(collector, marker, 2)
    assert {e.line.split()[1]: e.service for e in found} == {
        "replica": "api",
        "global": "node-exporter",
    }


def test_the_line_is_kept_exactly_as_the_container_wrote_it(lab: Lab, collector: Collector) -> None:
    marker = f"x{secrets.token_hex(4)}"
    tricky = [
        f'{{"message":"quote \\" and backslash \\\\ and tab\\t","m":"{marker}"}}',
        f"plain {marker} with\ttab, ünïcödé, / slash and 'quotes'",
        f"   {marker} leading spaces",
    ]
    script = "; ".join(f"printf '%s\\n' {_sh_quote(text)}" for text in tricky)
    lab.emit(collector, "nginx", script)
    found = lines_of(collector, marker, 3)
    assert [e.line for e in found] == tricky
    assert json.loads(found[0].line)["message"] == 'quote " and backslash \\ and tab\t'


def test_docker_logs_still_shows_a_container_that_logs_to_the_collector(
    lab: Lab, collector: Collector
) -> None:
    marker = f"d{secrets.token_hex(4)}"
    container = lab.emit(
        collector, "redis", f"echo {marker}-out; echo {marker}-err >&2; sleep 60", detach=True
    )
    wait_for(lambda: len(collector.read(marker)) == 2, what="both lines collected", timeout=30)
    local = docker("logs", container)
    assert f"{marker}-out" in local.stdout
    assert f"{marker}-err" in local.stderr


def test_lines_arrive_again_after_the_collector_restarts(lab: Lab) -> None:
    """UDP: a running container is not affected by the collector's restart, and its lines
    reach the new collector process (same published port) without a restart of its own."""
    restarted = lab.collector("restart")
    marker = f"r{secrets.token_hex(4)}"
    sender = lab.emit(
        restarted,
        "api",
        f'i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo "{marker} $i"; sleep 0.1; done',
        name=f"{PROJECT}-api-2",
        detach=True,
    )
    lines_of(restarted, marker, 5)
    docker("restart", "-t", "10", restarted.name)
    wait_for(lambda: restarted.health().returncode == 0, what="healthy after the restart")
    before = len(restarted.read(marker))
    lines_of(restarted, marker, before + 10)
    assert inspect(sender, "{{.State.Running}}") == "true"


# ---------------------------------------------------------------------------- bounds


def test_a_flood_never_takes_more_disk_than_the_bound(lab: Lab) -> None:
    """Exhaustion: lines many times LOG_MAX_SIZE; the log directory never exceeds
    LOG_MAX_SIZE + LOG_CHUNK_SIZE (measured every 20 ms from inside), the newest lines are
    kept, the oldest deleted, and lines sent afterwards are still collected."""
    max_size, chunk = 2 * 1024 * 1024, 128 * 1024
    flooded = lab.collector(
        "flood",
        LOG_MAX_SIZE=str(max_size),
        LOG_CHUNK_SIZE=str(chunk),
        LOG_MAINTAIN_INTERVAL="1",
    )
    # Peak bytes of every file in the directory, sampled until told to stop (then it says so).
    flooded.shell(
        "nohup bash -c 'peak=0; while [ ! -e /tmp/stop-measuring ]; do "
        's=$(find /var/log/slipway -maxdepth 1 -type f -printf "%s\\n" '
        '| awk "{t+=\\$1} END {print t+0}"); '
        "if [ $s -gt $peak ]; then peak=$s; echo $peak >/tmp/peak; fi; sleep 0.02; done; "
        "touch /tmp/measured' >/dev/null 2>&1 &"
    )
    lines = 120_000
    # ~150 random base64 characters a line (they compress to ~75%): ~20 MB of lines, ~35 MB as
    # collected JSON, more than ten times LOG_MAX_SIZE even once compressed.
    flood = (
        f"base64 -w 150 /dev/urandom | head -n {lines} | "
        'awk \'{printf "{\\"seq\\":%d,\\"pad\\":\\"%s\\"}\\n", NR, $0}\''
    )
    started = time.monotonic()
    lab.emit(flooded, "flood", flood)
    settle(flooded)
    # Afterwards, once the collector has caught up: the newest lines.
    lab.emit(
        flooded,
        "after",
        f"i={lines}; while [ $i -lt {lines + 100} ]; do i=$((i+1)); "
        'echo "{\\"seq\\":$i,\\"after\\":true}"; done',
    )
    after = lines_of(flooded, '\\"after\\":true', 100)
    elapsed = time.monotonic() - started
    wait_for(
        lambda: ".log.gz" in flooded.shell("ls /var/log/slipway"),
        what="rotated files compressed once they settled",
        timeout=30,
    )
    maintenance_runs(flooded, 2)
    flooded.shell("touch /tmp/stop-measuring")
    wait_for(
        lambda: "measured" in flooded.shell("ls /tmp"), what="the measuring stopped", interval=0.1
    )
    peak = int(flooded.shell("cat /tmp/peak"))
    used = int(flooded.shell("du -sb /var/log/slipway | cut -f1"))
    files = flooded.shell("ls -1 /var/log/slipway").split()
    rotations = flooded.own_logs().count("rotated current.log")
    deletions = flooded.own_logs().count("the logs use more than LOG_MAX_SIZE")
    kept = [json.loads(e.line)["seq"] for e in flooded.read('\\"seq\\":') if e.service == "flood"]
    print(
        f"\nexhaustion: {lines} lines flooded in {elapsed:.1f}s; {rotations} rotations of "
        f"{chunk} bytes (~{rotations * chunk / max_size:.1f}x LOG_MAX_SIZE written), "
        f"{deletions} files deleted; peak {peak} bytes (bound {max_size + chunk}, "
        f"LOG_MAX_SIZE {max_size}); now {used} bytes in {len(files)} files; "
        f"{len(kept)} flood lines kept (seq {min(kept)}..{max(kept)})"
    )
    assert rotations * chunk > 5 * max_size, "the flood did not reach the collector in volume"
    assert peak <= max_size + chunk
    assert used <= max_size + chunk
    assert min(kept) > 1, "the oldest lines are deleted first"
    assert kept == sorted(kept)
    assert [json.loads(e.line)["seq"] for e in after] == list(range(lines + 1, lines + 101))
    # Still accepting, still healthy.
    lab.emit(flooded, "api", "echo still-collecting")
    lines_of(flooded, "still-collecting", 1)
    assert flooded.health().returncode == 0


def test_rotated_files_older_than_the_retention_are_deleted(lab: Lab) -> None:
    kept = lab.collector("retention", LOG_RETENTION_DAYS="2", LOG_MAINTAIN_INTERVAL="1")
    lab.emit(kept, "api", "echo current-line")
    lines_of(kept, "current-line", 1)
    old = "slipway-20260101T000000.000000Z.log.gz"
    recent = "slipway-20260102T000000.000000Z.log.gz"
    kept.shell(
        f"cd /var/log/slipway && echo '{{}}' | gzip >{old} && echo '{{}}' | gzip >{recent} && "
        f"touch -d '3 days ago' {old} && touch -d '47 hours ago' {recent}"
    )
    wait_for(
        lambda: old not in kept.shell("ls /var/log/slipway"),
        what="the old file deleted",
        timeout=15,
    )
    left = kept.shell("ls /var/log/slipway").split()
    assert recent in left and "current.log" in left
    assert f"deleted {old}: older than LOG_RETENTION_DAYS=2" in kept.own_logs()
    assert kept.read("current-line")


def test_the_current_file_is_rotated_by_age_and_rsyslog_reopens_it(lab: Lab) -> None:
    aged = lab.collector("age", LOG_MAINTAIN_INTERVAL="1")
    lab.emit(aged, "api", "echo before-rotation")
    lines_of(aged, "before-rotation", 1)
    aged.shell("touch -d '2 days ago' /var/log/slipway/.current-since")
    wait_for(
        lambda: "older than LOG_ROTATE_SECONDS" in aged.own_logs(),
        what="current.log rotated",
        timeout=15,
    )
    lab.emit(aged, "worker", "echo after-rotation")
    lines_of(aged, "after-rotation", 1)
    files = [f.name for f in collectors.list_files(aged.name)]
    assert files[-1] == "current.log" and len(files) == 2
    # Compressed once it has settled; both lines still read, in order.
    wait_for(
        lambda: collectors.list_files(aged.name)[0].name.endswith(".gz"),
        what="the rotated file compressed",
        timeout=30,
    )
    assert [e.line for e in aged.read("-rotation")] == ["before-rotation", "after-rotation"]


def test_settings_out_of_bounds_stop_the_start_with_the_fix(lab: Lab) -> None:
    for settings, message in [
        ({"LOG_MAX_SIZE": "512k"}, "LOG_MAX_SIZE=512k is below the minimum of 1m"),
        ({"LOG_MAX_SIZE": "2 GB"}, "LOG_MAX_SIZE=2 GB is not a size"),
        (
            {"LOG_MAX_SIZE": "1m", "LOG_CHUNK_SIZE": "512k"},
            "LOG_CHUNK_SIZE=524288 is more than LOG_MAX_SIZE/4",
        ),
        ({"LOG_RETENTION_DAYS": "0"}, "LOG_RETENTION_DAYS=0 is not a whole number of at least 1"),
        ({"LOG_PROJECT": "Bad Name"}, "LOG_PROJECT=Bad Name is not a compose project name"),
    ]:
        argv = ["run", "--rm", "--label", LABEL, *HARDENING]
        for key, value in settings.items():
            argv += ["-e", f"{key}={value}"]
        result = docker(*argv, lab.image, "check", check=False)
        assert result.returncode == 2, (settings, result.stdout, result.stderr)
        assert message in result.stderr and "Fix:" in result.stderr


def test_a_taken_port_stops_the_start_with_the_fix(lab: Lab) -> None:
    """rsyslogd itself keeps running without its UDP socket: the entrypoint checks it has it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        volume = f"{PROJECT}-taken-data"
        lab.volumes.append(volume)
        argv = ["run", "--rm", "--label", LABEL, *HARDENING, "--network", "host"]
        argv += ["-v", f"{volume}:/var/log/slipway", "-e", "LOG_LISTEN_ADDRESS=127.0.0.1"]
        result = docker(*argv, "-e", f"LOG_LISTEN_PORT={port}", lab.image, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert f"rsyslogd is not receiving on udp 127.0.0.1:{port}" in result.stderr
    assert "Fix: free the port" in result.stderr


# ---------------------------------------------------------------------------- compose


def test_compose_sends_every_service_to_the_collector_with_syslog_options_only() -> None:
    services = compose_config()
    base = yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text())["services"]
    assert set(base) <= set(services)
    # The sanitized export streams a copy of the database on stdout: no log driver at all, so
    # it never lands in a log (compose/compose.yaml).
    assert services["backup-export"]["logging"] == {"driver": "none"}
    for name in set(base) - {"backup-export"}:
        assert services[name]["logging"] == {
            "driver": "syslog",
            "options": {
                "syslog-address": "udp://127.0.0.1:15514",
                "syslog-format": "rfc5424micro",
                "tag": "{{.Name}}",
                "mode": "non-blocking",
                "max-buffer-size": "4m",
            },
        }, name
        assert "logs" in services[name]["depends_on"], name
    logs = services["logs"]
    assert logs["logging"]["driver"] == "json-file"
    assert logs["network_mode"] == "host" and "ports" not in logs
    assert {k: v for k, v in logs["environment"].items() if k.startswith("LOG_")} == {
        "LOG_PROJECT": PROJECT,
        "LOG_LISTEN_ADDRESS": "127.0.0.1",
        "LOG_LISTEN_PORT": "15514",
        "LOG_RETENTION_DAYS": "30",
        "LOG_MAX_SIZE": "2147483648",
    }


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
