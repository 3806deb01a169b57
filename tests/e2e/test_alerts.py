"""Alerts that really fire: faults on the running e2e stack reach a webhook receiver.

Prometheus scrapes every 10 s and evaluates every 10 s; critical down alerts wait `for: 1m`;
Alertmanager's critical route waits 10 s before the first notification and 1 m between updates
of a group (docs/architecture.md "Monitoring"). Each test prints its delay from fault to
notification. Every fault is undone before the test ends: the stack is shared with the other
e2e modules.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from alert_receiver import run_argv
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from free_port import free_port
from stack_names import ALERT_RECEIVER, ENV_NAME, PROJECT
from support import tls
from support.docker import docker, inspect, output, remove
from support.waiting import wait_for

if TYPE_CHECKING:
    from conftest import Stack

pytestmark = pytest.mark.e2e

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
# Generous bounds for a loaded CI machine; the contract is < 2 minutes to notify.
ALERT_TIMEOUT = 300.0
EXPECTED_JOBS = {
    "api",
    "worker",
    "node",
    "postgres",
    "redis",
    "nginx",
    "blackbox",
    "probe",
    "alertmanager",
    "prometheus",
}


# ---------------------------------------------------------------------------------- helpers


def containers(service: str) -> list[str]:
    out = output(
        "ps",
        "-a",
        "--filter",
        f"label=com.docker.compose.project={PROJECT}",
        "--filter",
        f"label=com.docker.compose.service={service}",
        "--format",
        "{{.Names}}",
    )
    return sorted(out.split())


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def eventually(what: str, check: Callable[[], T], timeout: float = ALERT_TIMEOUT) -> T:
    """check()'s first truthy value; a port that does not answer yet counts as "not yet"."""
    return wait_for(check, what=what, timeout=timeout, interval=2, ignoring=(OSError,))


class Receiver:
    """The webhook receiver container and what it got."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/received"

    def notifications(self, path: str) -> list[dict[str, Any]]:
        return [n for n in get_json(self.url) if n["path"] == path]

    def find(
        self, path: str, alertname: str, status: str, since: float, **labels: str
    ) -> float | None:
        """Time of the first notification at/after `since` carrying alertname with status
        (and these labels)."""
        wanted = {"alertname": alertname, **labels}
        for note in self.notifications(path):
            if note["at"] < since:
                continue
            for alert in note["payload"].get("alerts", []):
                have = alert["labels"]
                if alert["status"] == status and all(have.get(k) == v for k, v in wanted.items()):
                    return float(note["at"])
        return None

    def wait(
        self, alertname: str, status: str, since: float, path: str = "/hook", **labels: str
    ) -> float:
        at = eventually(
            f"{alertname} {labels or ''} {status} at the receiver",
            lambda: self.find(path, alertname, status, since, **labels),
        )
        return float(at) - since


@pytest.fixture(scope="module")
def receiver(stack: Stack) -> Iterator[Receiver]:
    api = containers("api")
    assert api, "no api container in the e2e stack"
    image = output("inspect", "--format", "{{.Config.Image}}", api[0])
    port = free_port()
    remove(ALERT_RECEIVER)
    docker(*run_argv(ALERT_RECEIVER, f"{PROJECT}_edge", image, f"127.0.0.1:{port}")[1:])
    handle = Receiver(port)
    eventually("the receiver answering", lambda: get_json(handle.url) is not None, timeout=60)
    try:
        yield handle
    finally:
        remove(ALERT_RECEIVER)


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    def emit(line: str) -> None:
        with capsys.disabled():
            print(f"\n    [alert timing] {line}", flush=True)

    return emit


def prometheus(stack: Stack, path: str) -> Any:
    return get_json(f"http://127.0.0.1:{stack.prometheus_port}{path}")


def wait_stack_ready(stack: Stack, timeout: float = 180.0) -> None:
    def ready() -> bool:
        with stack.client() as client:
            return client.get("/ready").status_code == 200

    eventually("/ready through nginx", ready, timeout=timeout)


# ------------------------------------------------------------------------------------ tests


def test_every_target_is_scraped_and_up(stack: Stack) -> None:
    def all_up() -> list[dict[str, Any]] | None:
        targets = prometheus(stack, "/api/v1/targets")["data"]["activeTargets"]
        jobs = {t["labels"]["job"] for t in targets}
        if jobs >= EXPECTED_JOBS and all(t["health"] == "up" for t in targets):
            return list(targets)
        return None

    targets = eventually("every scrape target up", all_up, timeout=180)
    by_job: dict[str, int] = {}
    for target in targets:
        by_job[target["labels"]["job"]] = by_job.get(target["labels"]["job"], 0) + 1
    # Every API replica is scraped on its own (DNS discovery), not one at random.
    assert by_job["api"] == len(containers("api")) == 2, by_job
    probes = [t for t in targets if t["labels"]["job"] == "probe"]
    assert {t["labels"]["domain"] for t in probes} == {"localhost"}


def test_the_api_metrics_stay_inside_and_prometheus_reads_them(stack: Stack) -> None:
    # What is published where: tests/e2e/test_containers.py.
    with stack.client() as client:
        assert client.get("/metrics").status_code == 404
    # Prometheus itself reads the API's metrics over the internal network.
    result = prometheus(stack, "/api/v1/query?query=sum(listings_build_info)")["data"]["result"]
    assert result and float(result[0]["value"][1]) >= 1


def test_watchdog_reaches_the_dead_mans_switch(stack: Stack, receiver: Receiver) -> None:
    # Always firing: the first notification comes once Prometheus has evaluated the rule.
    at = eventually(
        "Watchdog at the dead man's switch",
        lambda: receiver.find("/watchdog", "Watchdog", "firing", 0.0),
    )
    assert at
    # Routed to the watchdog receiver only (Alertmanager says where each alert goes).
    url = f"http://127.0.0.1:{stack.alertmanager_port}/api/v2/alerts?filter=alertname%3DWatchdog"
    [alert] = get_json(url)
    assert [r["name"] for r in alert["receivers"]] == ["watchdog"]


def test_invoke_monitor_prints_the_urls_and_the_firing_alerts(
    stack: Stack, receiver: Receiver
) -> None:
    eventually("Watchdog firing", lambda: receiver.find("/watchdog", "Watchdog", "firing", 0.0))

    def monitor_output() -> str | None:
        out = stack.invoke("monitor", f"--env={ENV_NAME}").stdout
        return out if "targets not up: 0" in out else None

    out = eventually("`invoke monitor` with every target up", monitor_output, timeout=120)
    assert f"Prometheus    http://127.0.0.1:{stack.prometheus_port}/" in out
    assert f"Alertmanager  http://127.0.0.1:{stack.alertmanager_port}/" in out
    assert re.search(r"^  info +Watchdog ", out, re.MULTILINE), out


def test_postgres_down_pages_and_the_api_recovers_without_restart(
    stack: Stack, receiver: Receiver, report: Callable[[str], None]
) -> None:
    api = containers("api")
    started = {n: inspect(n, "{{.State.StartedAt}}") for n in api}
    (postgres,) = containers("postgres")
    fault = time.time()
    docker("stop", postgres)
    try:
        with stack.client() as client:
            body = eventually(
                "/ready 503 naming postgres",
                lambda: (r := client.get("/ready")).status_code == 503 and r.json(),
                timeout=60,
            )
        assert "postgres" in json.dumps(body).lower()
        delay = receiver.wait("PostgresDown", "firing", fault)
        report(f"PostgreSQL stopped -> PostgresDown notified after {delay:.0f}s")
    finally:
        back = time.time()
        docker("start", postgres)
    delay = receiver.wait("PostgresDown", "resolved", back)
    report(f"PostgreSQL started -> PostgresDown resolved after {delay:.0f}s")
    wait_stack_ready(stack)
    after = {n: inspect(n, "{{.State.StartedAt}}") for n in api}
    assert after == started, "the API was restarted to recover"


def test_all_api_replicas_down_fires_the_job_down_alert(
    stack: Stack, receiver: Receiver, report: Callable[[str], None]
) -> None:
    api = containers("api")
    assert len(api) == 2
    fault = time.time()
    docker("stop", "--time", "5", *api)
    try:
        delay = receiver.wait("APIDown", "firing", fault)
        report(f"every API replica stopped -> APIDown notified after {delay:.0f}s")
    finally:
        docker("start", *api)
    wait_stack_ready(stack)


def _short_lived_certificate(directory: Path, days: int) -> bytes:
    """tls.crt re-issued by the environment's CA for the same key, valid `days` more days."""
    current = x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())
    ca = tls.load(directory / "ca.crt", directory / "ca.key")
    return tls.reissue(current, ca, days).public_bytes(serialization.Encoding.PEM)


def _write_in_place(path: Path, data: bytes) -> None:
    # Same inode: nginx sees the file through a bind mount of that file.
    with path.open("r+b") as handle:
        handle.truncate(0)
        handle.write(data)


def test_a_certificate_close_to_expiry_fires_the_certificate_alert(
    stack: Stack, receiver: Receiver, report: Callable[[str], None]
) -> None:
    directory = ROOT / ".slipway" / ENV_NAME
    original = (directory / "tls.crt").read_bytes()
    fault = time.time()
    _write_in_place(directory / "tls.crt", _short_lived_certificate(directory, days=5))
    try:
        delay = receiver.wait("TLSCertificateExpiring", "firing", fault, severity="critical")
        report(f"certificate with 5 days left served -> alert notified after {delay:.0f}s")
    finally:
        _write_in_place(directory / "tls.crt", original)
    # nginx serves the original again (its watcher reloads on the change), and the probe sees it.
    not_after = x509.load_pem_x509_certificate(original).not_valid_after_utc.timestamp()
    query = "/api/v1/query?query=min(probe_ssl_earliest_cert_expiry)"

    def original_served() -> bool:
        result = prometheus(stack, query)["data"]["result"]
        return bool(result) and abs(float(result[0]["value"][1]) - not_after) < 2

    eventually("the probe seeing the original certificate again", original_served, timeout=180)
    wait_stack_ready(stack)


def test_a_failing_backup_reaches_the_receiver(
    stack: Stack, receiver: Receiver, report: Callable[[str], None]
) -> None:
    """A backup that fails (here: the backup service cannot reach PostgreSQL's socket) is
    recorded in the backup metrics, scraped through node-exporter's textfile collector, and
    BackupFailed reaches the receiver; a good backup of the same type then clears the metric."""
    (backup,) = containers("backup")
    fault = time.time()
    failed = docker(
        "exec", "-e", "PGBACKREST_PG1_SOCKET_PATH=/nonexistent", backup, "backup-run",
        "--type=incr", timeout=180, check=False,
    )  # fmt: skip
    try:
        assert failed.returncode != 0, failed.stdout + failed.stderr
        assert "backup (incr) into repo1 FAILED" in failed.stdout + failed.stderr
        metrics = output("exec", backup, "cat", "/var/lib/slipway-metrics/backup.prom")
        assert 'slipway_backup_last_attempt_success{type="incr",repo="1"} 0' in metrics
        delay = receiver.wait("BackupFailed", "firing", fault, type="incr", repo="1")
        report(f"a backup failed -> BackupFailed notified after {delay:.0f}s")
    finally:
        # A good backup of the same type: the alert's condition clears for the next modules.
        docker("exec", backup, "backup-run", "--type=incr", timeout=180)
    metrics = output("exec", backup, "cat", "/var/lib/slipway-metrics/backup.prom")
    assert 'slipway_backup_last_attempt_success{type="incr",repo="1"} 1' in metrics
