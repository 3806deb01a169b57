"""The Alertmanager image for real: the configuration its entrypoint renders from the ALERT_*
variables is checked by amtool (`check-config`, `config routes test`) inside the image, bad
settings are refused naming the variable, and a running Alertmanager (read-only root, no
capabilities, as compose runs it) delivers an alert to a webhook and a Slack-compatible
receiver, firing then resolved, and applies the contract's inhibitions.

The receivers are a small HTTP server in this process, bound to the gateway address of a Docker
network of the test's own; the Alertmanager container reaches it there.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import secrets
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from e2e.built import built_image
from support.docker import docker, inspect, logs, output, remove
from support.waiting import wait_for

pytestmark = pytest.mark.integration

TAG = secrets.token_hex(3)
RUNBOOK = "https://github.com/slipway/slipway/blob/main/docs/runbook.md"
EVERY_SECRET = {
    "ALERT_WEBHOOK_URL": "https://hooks.example.org/generic/t0k3n",
    "ALERT_SLACK_URL": "https://hooks.slack.example/services/T000/B000/s3cr3t",
    "ALERT_EMAIL_TO": "ops@example.org,oncall@example.org",
    "ALERT_SMTP_HOST": "smtp.example.org:587",
    "ALERT_SMTP_FROM": "alertmanager@example.org",
    "ALERT_SMTP_USER": "alertmanager",
    "ALERT_SMTP_PASSWORD": "smtp-pa55",
    "ALERT_WATCHDOG_URL": "https://deadman.example.org/ping/w4tch",
}


@pytest.fixture(scope="module")
def image() -> str:
    return built_image("alertmanager", "SLIPWAY_ALERTMANAGER_TAG")


def _env_args(env: dict[str, str]) -> list[str]:
    """`-e NAME` for each variable: docker takes the values from its own environment, so no
    secret is on a command line."""
    return [arg for name in env for arg in ("-e", name)]


def render(image: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return docker("run", "--rm", *_env_args(env), image, "render", env=env, check=False)


def rendered(image: str, env: dict[str, str]) -> str:
    result = render(image, env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def amtool(image: str, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    """amtool inside the image, on `config` (passed on stdin, written to the container's /tmp)."""
    script = 'cat >/tmp/alertmanager.yml && exec amtool "$@"'
    argv = ["run", "--rm", "-i", image, "sh", "-c", script, "amtool", *args]
    return docker(*argv, input=config, check=False)


def check_config(image: str, config: str) -> None:
    result = amtool(image, config, "check-config", "/tmp/alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "3 receivers" in result.stdout and "4 inhibit rules" in result.stdout, result.stdout


def route(image: str, config: str, *labels: str) -> str:
    """The receiver(s) `amtool config routes test` picks for an alert with these labels."""
    result = amtool(
        image, config, "config", "routes", "test", "--config.file=/tmp/alertmanager.yml", *labels
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def receivers(config: str) -> dict[str, dict[str, Any]]:
    parsed = yaml.safe_load(config)
    return {receiver["name"]: receiver for receiver in parsed["receivers"]}


# ---------------------------------------------------------------------------- rendering


def test_without_secrets_the_receivers_exist_empty_and_routing_follows_the_contract(
    image: str,
) -> None:
    config = rendered(image, {})
    check_config(image, config)
    assert receivers(config) == {
        "page": {"name": "page"},
        "ticket": {"name": "ticket"},
        "watchdog": {"name": "watchdog"},
    }
    assert route(image, config, "severity=critical", "alertname=X") == "page"
    assert route(image, config, "severity=warning", "alertname=X") == "ticket"
    assert route(image, config, "severity=info", "alertname=X") == "ticket"
    assert route(image, config, "alertname=Watchdog", "severity=info") == "watchdog"
    assert route(image, config, "alertname=Watchdog", "severity=critical") == "watchdog"


def test_timings_and_inhibitions_are_the_contracts(image: str) -> None:
    parsed = yaml.safe_load(rendered(image, {}))
    top = parsed["route"]
    assert (top["receiver"], top["group_wait"], top["group_interval"], top["repeat_interval"]) == (
        "ticket",
        "30s",
        "5m",
        "12h",
    )
    by_receiver = {r["receiver"]: r for r in top["routes"]}
    assert [r["receiver"] for r in top["routes"]] == ["watchdog", "page"]
    page, watchdog = by_receiver["page"], by_receiver["watchdog"]
    assert page["matchers"] == ['severity="critical"']
    assert (page["group_wait"], page["group_interval"], page["repeat_interval"]) == (
        "10s",
        "1m",
        "4h",
    )
    assert watchdog["matchers"] == ['alertname="Watchdog"']
    assert watchdog["repeat_interval"] == "1m"
    inhibitions = [
        (r["source_matchers"], r["target_matchers"], r.get("equal", []))
        for r in parsed["inhibit_rules"]
    ]
    assert inhibitions == [
        (['alertname="PostgresDown"', 'job="postgres"'], ['component=~"api|ingest|worker"'], []),
        (['alertname="RedisDown"', 'job="redis"'], ['component=~"ingest|worker"'], []),
        (['alertname="HostDown"'], ['component="host"', 'alertname!="HostDown"'], ["instance"]),
        (
            ['severity="critical"'],
            ['severity="warning"'],
            ["alertname", "component", "job", "instance", "domain", "device", "mountpoint"],
        ),
    ]


def test_every_secret_set_gives_webhook_slack_and_email_on_page_and_ticket(image: str) -> None:
    config = rendered(image, EVERY_SECRET)
    check_config(image, config)
    found = receivers(config)
    for name in ("page", "ticket"):
        receiver = found[name]
        assert set(receiver) == {"name", "webhook_configs", "slack_configs", "email_configs"}
        [webhook] = receiver["webhook_configs"]
        assert webhook == {"url": EVERY_SECRET["ALERT_WEBHOOK_URL"], "send_resolved": True}
        [slack] = receiver["slack_configs"]
        assert slack["api_url"] == EVERY_SECRET["ALERT_SLACK_URL"]
        assert slack["send_resolved"] is True
        assert "slipway.slack.text" in slack["text"] and "slipway.slack.title" in slack["title"]
        [email] = receiver["email_configs"]
        assert email == {
            "to": EVERY_SECRET["ALERT_EMAIL_TO"],
            "from": EVERY_SECRET["ALERT_SMTP_FROM"],
            "smarthost": EVERY_SECRET["ALERT_SMTP_HOST"],
            "auth_username": EVERY_SECRET["ALERT_SMTP_USER"],
            "auth_password": EVERY_SECRET["ALERT_SMTP_PASSWORD"],
            "send_resolved": True,
        }
    assert found["watchdog"] == {
        "name": "watchdog",
        "webhook_configs": [{"url": EVERY_SECRET["ALERT_WATCHDOG_URL"], "send_resolved": False}],
    }
    assert route(image, config, "severity=critical", "alertname=PostgresDown") == "page"
    assert route(image, config, "severity=warning", "alertname=HostMemoryLow") == "ticket"
    assert route(image, config, "alertname=Watchdog", "severity=info") == "watchdog"


def test_only_the_receivers_whose_secrets_are_set_are_configured(image: str) -> None:
    env = {"ALERT_SLACK_URL": EVERY_SECRET["ALERT_SLACK_URL"]}
    config = rendered(image, env)
    check_config(image, config)
    found = receivers(config)
    assert set(found["page"]) == set(found["ticket"]) == {"name", "slack_configs"}
    assert found["watchdog"] == {"name": "watchdog"}

    # E-mail without authentication: no auth fields at all.
    env = {name: EVERY_SECRET[name] for name in ("ALERT_EMAIL_TO", "ALERT_SMTP_HOST")}
    env["ALERT_SMTP_FROM"] = EVERY_SECRET["ALERT_SMTP_FROM"]
    config = rendered(image, env)
    check_config(image, config)
    [email] = receivers(config)["page"]["email_configs"]
    assert "auth_username" not in email and "auth_password" not in email


def test_values_with_quotes_and_yaml_characters_survive_rendering(image: str) -> None:
    url = "https://hooks.example.org/x?token='a:b'&c=[d]{e}*f|g>h!%20#i"
    config = rendered(image, {"ALERT_WEBHOOK_URL": url})
    check_config(image, config)
    assert receivers(config)["page"]["webhook_configs"][0]["url"] == url


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ALERT_WEBHOOK_URL": "ftp://files.example.org/hook-s3cr3t"}, "ALERT_WEBHOOK_URL"),
        ({"ALERT_SLACK_URL": "hooks.slack.example/services/s3cr3t"}, "ALERT_SLACK_URL"),
        ({"ALERT_WATCHDOG_URL": "https://"}, "ALERT_WATCHDOG_URL"),
        (
            {"ALERT_EMAIL_TO": "ops@example.org", "ALERT_SMTP_FROM": "am@example.org"},
            "ALERT_SMTP_HOST",
        ),
        (
            {"ALERT_EMAIL_TO": "ops@example.org", "ALERT_SMTP_HOST": "smtp.example.org:25"},
            "ALERT_SMTP_FROM",
        ),
        (
            {
                "ALERT_EMAIL_TO": "ops@example.org",
                "ALERT_SMTP_HOST": "smtp.example.org",
                "ALERT_SMTP_FROM": "am@example.org",
            },
            "ALERT_SMTP_HOST",
        ),
        (
            {
                "ALERT_EMAIL_TO": "ops@example.org",
                "ALERT_SMTP_HOST": "smtp.example.org:587",
                "ALERT_SMTP_FROM": "am@example.org",
                "ALERT_SMTP_PASSWORD": "s3cr3t",
            },
            "ALERT_SMTP_USER",
        ),
        ({"ALERT_SMTP_HOST": "smtp.example.org:587"}, "ALERT_EMAIL_TO"),
        ({"ALERT_WEBHOOK_URL": "https://a.example.org/s3cr3t\nx"}, "ALERT_WEBHOOK_URL"),
        # URLs Alertmanager cannot parse: it would log them whole, secret included.
        ({"ALERT_WEBHOOK_URL": "https://ho st.example.org/s3cr3t"}, "ALERT_WEBHOOK_URL"),
        ({"ALERT_SLACK_URL": "https://h.example.org/%zzs3cr3t"}, "ALERT_SLACK_URL"),
        ({"ALERT_WATCHDOG_URL": "https://h.example.org/s3cr3t%4"}, "ALERT_WATCHDOG_URL"),
    ],
    ids=[
        "an ftp URL",
        "a URL without scheme",
        "a URL without host",
        "e-mail without SMTP host",
        "e-mail without sender",
        "an SMTP host without port",
        "an SMTP password without user",
        "SMTP settings without a recipient",
        "a line break",
        "a space",
        "a bad percent escape",
        "a truncated percent escape",
    ],
)
def test_invalid_settings_stop_render_and_start_naming_the_variable_but_not_its_value(
    image: str, env: dict[str, str], named: str
) -> None:
    result = render(image, env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stderr
    assert result.stdout == ""
    assert "s3cr3t" not in result.stderr

    # The server itself refuses to start the same way (its default command).
    started = docker(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp", *_env_args(env), image, env=env,
        check=False,
    )  # fmt: skip
    assert started.returncode == 2, started.stdout + started.stderr
    assert named in started.stderr and "s3cr3t" not in started.stdout + started.stderr


# ---------------------------------------------------------------------------- a running one


@dataclass
class Received:
    """Notifications the test receivers got: (path, JSON body) in arrival order."""

    items: queue.Queue[tuple[str, dict[str, Any]]] = field(default_factory=queue.Queue)
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def wait_for(self, what: str, match: Any, timeout: float) -> tuple[str, dict[str, Any]]:
        for item in self.seen:
            if match(*item):
                return item
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item = self.items.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(item)
            if match(*item):
                return item
        raise AssertionError(
            f"{what}: nothing within {timeout:.0f}s; received: {json.dumps(self.seen)[-3000:]}"
        )


def _receiver_server(address: str, received: Received) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            received.items.put((self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    return ThreadingHTTPServer((address, 0), Handler)


@dataclass
class Running:
    container: str
    api: str
    received: Received
    token: str

    def post(self, alerts: list[dict[str, Any]]) -> None:
        request = urllib.request.Request(
            f"{self.api}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.api}/api/v2/alerts", timeout=10) as response:
            result: list[dict[str, Any]] = json.loads(response.read())
            return result


def _wait_ready(url: str, container: str, timeout: float = 60) -> None:
    def ready() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)

    wait_for(
        ready,
        what=f"{url} ready",
        timeout=timeout,
        interval=0.3,
        ignoring=(OSError,),
        details=lambda: logs(container),
    )


@pytest.fixture(scope="module")
def running(image: str) -> Iterator[Running]:
    network = f"slipway-it-am-{TAG}"
    container = f"slipway-it-am-{TAG}"
    docker("network", "create", "--label", "slipway.test=alertmanager", network)
    server: ThreadingHTTPServer | None = None
    try:
        gateway = inspect(network, "{{(index .IPAM.Config 0).Gateway}}")
        received = Received()
        server = _receiver_server(gateway, received)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://{gateway}:{server.server_address[1]}"
        token = secrets.token_hex(8)
        env = {
            "ALERT_WEBHOOK_URL": f"{base}/webhook/{token}",
            "ALERT_SLACK_URL": f"{base}/slack/{token}",
        }
        docker(
            "run",
            "-d",
            "--name",
            container,
            "--label",
            "slipway.test=alertmanager",
            "--network",
            network,
            "--read-only",
            "--tmpfs",
            "/tmp:size=16m",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges:true",
            "-p",
            "127.0.0.1::9093",
            "-e",
            "SLIPWAY_ENV=test",
            *_env_args(env),
            image,
            env=env,
        )
        port = output("port", container, "9093/tcp").split()[0].rsplit(":", 1)[1]
        api = f"http://127.0.0.1:{port}"
        _wait_ready(f"{api}/-/ready", container)
        yield Running(container=container, api=api, received=received, token=token)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        remove(container)
        docker("network", "rm", network, check=False)


def _now(offset_s: float = 0) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_s)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_an_alert_reaches_the_webhook_and_slack_firing_then_resolved(running: Running) -> None:
    alert = {
        "labels": {
            "alertname": "SlipwayDeliveryTest",
            "severity": "critical",
            "component": "monitoring",
            "instance": "delivery-test:1",
            "env": "test",
        },
        "annotations": {
            "summary": "Delivery test summary",
            "description": "Delivery test description with the value 42",
            "runbook_url": f"{RUNBOOK}#alert-receivers",
        },
    }
    posted = time.monotonic()
    running.post([{**alert, "startsAt": _now()}])

    def webhook(status: str) -> Any:
        def match(path: str, body: dict[str, Any]) -> bool:
            names = [a["labels"].get("alertname") for a in body.get("alerts", [])]
            return (
                path == f"/webhook/{running.token}"
                and body.get("status") == status
                and "SlipwayDeliveryTest" in names
            )

        return match

    # Critical: group_wait 10 s.
    _, firing = running.received.wait_for("firing webhook", webhook("firing"), timeout=40)
    delay = time.monotonic() - posted
    print(f"firing notification after {delay:.1f}s")
    assert firing["receiver"] == "page"
    [sent] = [a for a in firing["alerts"] if a["labels"]["alertname"] == "SlipwayDeliveryTest"]
    assert sent["status"] == "firing"
    assert sent["annotations"]["summary"] == "Delivery test summary"

    def slack(path: str, body: dict[str, Any]) -> bool:
        return path == f"/slack/{running.token}" and "SlipwayDeliveryTest" in json.dumps(body)

    _, message = running.received.wait_for("firing Slack message", slack, timeout=10)
    [attachment] = message["attachments"]
    assert attachment["title"] == "[FIRING:1] SlipwayDeliveryTest (test)"
    assert attachment["title_link"] == f"{RUNBOOK}#alert-receivers"
    assert (
        "*CRITICAL* SlipwayDeliveryTest on `delivery-test:1`: Delivery test summary"
        in (attachment["text"])
    )
    assert "Delivery test description with the value 42" in attachment["text"]
    assert f"<{RUNBOOK}#alert-receivers|" in attachment["text"]

    # Resolved: the same alert with its end in the past, sent at the group's next interval (1m).
    resolved_at = time.monotonic()
    running.post([{**alert, "startsAt": _now(-30), "endsAt": _now(-1)}])
    _, resolved = running.received.wait_for("resolved webhook", webhook("resolved"), timeout=100)
    print(f"resolved notification after {time.monotonic() - resolved_at:.1f}s")
    [sent] = [a for a in resolved["alerts"] if a["labels"]["alertname"] == "SlipwayDeliveryTest"]
    assert sent["status"] == "resolved"

    # The secrets (the receivers' URLs) never reach the log; the rendered file is private.
    own = docker("logs", running.container)
    assert running.token not in own.stdout + own.stderr
    assert "receivers: page=webhook,slack ticket=webhook,slack watchdog=none" in own.stdout
    mode = output("exec", running.container, "stat", "-c", "%a %U", "/tmp/alertmanager")
    assert mode.split() == ["700", "alertmanager"]
    assert inspect(running.container, "{{.State.Health.Status}}") == "healthy"


def test_inhibitions_silence_what_a_cause_explains(running: Running) -> None:
    def alert(name: str, severity: str, component: str, **labels: str) -> dict[str, Any]:
        return {
            "labels": {"alertname": name, "severity": severity, "component": component, **labels},
            "annotations": {"summary": name},
            "startsAt": _now(),
        }

    disk = "node-exporter:9100"
    running.post(
        [
            alert("PostgresDown", "critical", "postgres", job="postgres"),
            alert("RedisDown", "critical", "redis", job="redis", instance="redis-exporter:9121"),
            alert("InhibitApiErrors", "warning", "api"),
            alert("InhibitWorkerStuck", "warning", "worker"),
            alert("InhibitNginxSlow", "warning", "nginx"),
            alert("HostDown", "critical", "host", instance=disk),
            alert("HostDiskSpaceLow", "warning", "host", instance=disk, mountpoint="/"),
            alert("HostMemoryLow", "warning", "host", instance="other-host:9100"),
            alert("RedisMemoryNearMax", "warning", "redis", instance="redis-exporter:9121"),
            alert("RedisMemoryNearMax", "critical", "redis", instance="redis-exporter:9121"),
            alert("TLSCertificateExpiring", "warning", "tls", domain="a.example.org"),
            alert("TLSCertificateExpiring", "critical", "tls", domain="b.example.org"),
            # Another host: a critical disk alert on / says nothing about /srv.
            alert("HostDiskSpaceLow", "critical", "host", instance=OTHER_DISK, mountpoint="/"),
            alert("HostDiskSpaceLow", "warning", "host", instance=OTHER_DISK, mountpoint="/srv"),
        ]
    )
    # Alertmanager names the first inhibition that applies: with PostgresDown firing that is
    # the one for worker alerts; RedisDown's shows once PostgreSQL is back.
    _eventually(lambda: _check_inhibitions(running.alerts(), postgres_down=True))
    ended = {"startsAt": _now(-60), "endsAt": _now(-1)}
    running.post([{**alert("PostgresDown", "critical", "postgres", job="postgres"), **ended}])
    _eventually(lambda: _check_inhibitions(running.alerts(), postgres_down=False))


OTHER_DISK = "disk-host-2:9100"


def _eventually(check: Callable[[], None], timeout: float = 15) -> None:
    """Retry `check` until it passes: the inhibitor learns new alerts asynchronously."""

    def passes() -> bool:
        check()
        return True

    wait_for(passes, what="the inhibitions", timeout=timeout, ignoring=(AssertionError,))


def _check_inhibitions(alerts: list[dict[str, Any]], postgres_down: bool) -> None:
    by_key = {
        (a["labels"]["alertname"], a["labels"]["severity"], a["labels"].get("domain", "")): a
        for a in alerts
        if a["status"]["state"] != "unprocessed" and a["labels"].get("instance") != OTHER_DISK
    }
    other = {
        a["labels"]["mountpoint"]: a for a in alerts if a["labels"].get("instance") == OTHER_DISK
    }
    assert set(other) == {"/", "/srv"}
    assert other["/srv"]["status"]["inhibitedBy"] == [], "a critical on / silenced /srv"
    fingerprint = {key[0]: a["fingerprint"] for key, a in by_key.items() if key[0].endswith("Down")}

    def inhibited_by(name: str, severity: str = "warning", domain: str = "") -> set[str]:
        return set(by_key[(name, severity, domain)]["status"]["inhibitedBy"])

    if postgres_down:
        assert inhibited_by("InhibitApiErrors") == {fingerprint["PostgresDown"]}
        assert inhibited_by("InhibitWorkerStuck") == {fingerprint["PostgresDown"]}
        assert by_key[("InhibitApiErrors", "warning", "")]["status"]["state"] == "suppressed"
        assert inhibited_by("PostgresDown", "critical") == set()
    else:
        assert inhibited_by("InhibitApiErrors") == set(), "RedisDown does not explain the API"
        assert inhibited_by("InhibitWorkerStuck") == {fingerprint["RedisDown"]}
        assert by_key[("InhibitApiErrors", "warning", "")]["status"]["state"] == "active"
    assert inhibited_by("InhibitNginxSlow") == set()
    assert inhibited_by("HostDiskSpaceLow") == {fingerprint["HostDown"]}
    assert inhibited_by("HostMemoryLow") == set(), "another instance's host alert stays"
    assert inhibited_by("HostDown", "critical") == set()
    critical_redis = by_key[("RedisMemoryNearMax", "critical", "")]["fingerprint"]
    assert inhibited_by("RedisMemoryNearMax") == {critical_redis}
    assert inhibited_by("RedisMemoryNearMax", "critical") == set()
    assert inhibited_by("TLSCertificateExpiring", domain="a.example.org") == set(), (
        "a critical alert of another domain does not silence this one"
    )
