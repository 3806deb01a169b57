"""What a release on several hosts runs, rendered for real by `docker compose config` (the
compose CLI, no engine): the Swarm stack with monitoring and central logs, and no secret value."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ops import config, secrets
from ops.compose import detect_build
from ops.deploy.swarm.operation import SwarmDeploy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VALUES = {
    "POSTGRES_PASSWORD": "Pg7s3cretValue00123",
    "REDIS_PASSWORD": "Rd7s3cretValue00456",
    "LISTINGS_API_KEY_PEPPER": "Pepper7s3cretValue0000000000789xyz",
    "BACKUP_PASSPHRASE": "Backup7s3cretPassphrase00000000246abc",
    "ALERT_WEBHOOK_URL": "https://hooks.test/Wh00kSecretPath",
    "SENTRY_DSN": "https://Sentr7Key@sentry.test/1",
}


@pytest.fixture
def rendered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    shutil.copytree(ROOT / "compose", tmp_path / "compose")
    envs = tmp_path / "environments"
    envs.mkdir()
    (envs / "staging.yaml").write_text(
        "name: staging\ntarget: ssh\nlistings_env: staging\ndomains: [app.example.org]\n"
        "hosts:\n  - ssh: deploy@203.0.113.10\n  - ssh: deploy@203.0.113.11\n"
        "resources:\n  logs: {memory: 128m}\n"
    )
    monkeypatch.setenv("SLIPWAY_ENVIRONMENTS_DIR", str(envs))
    monkeypatch.setenv("SLIPWAY_ROOT", str(tmp_path))
    d = SwarmDeploy(config.load("staging"), detect_build())
    d.secrets = secrets.Secrets(VALUES, tmp_path / ".env.staging")
    return d.release_files("r1")


def test_the_swarm_stack_runs_monitoring_and_a_collector_per_host(
    rendered: dict[str, str],
) -> None:
    stack = yaml.safe_load(rendered["stack.yaml"])["services"]
    assert stack["logs"]["deploy"]["mode"] == "global"
    assert list(stack["logs"]["networks"]) == ["host-network"]
    assert stack["logs"]["deploy"]["resources"]["limits"]["memory"] == str(128 * 1024**2)
    assert stack["node-exporter"]["deploy"]["mode"] == "global"
    assert stack["prometheus"]["environment"]["PROMETHEUS_NODES_BY_DNS"] == "true"
    on_data = ["node.labels.slipway.data == true"]
    for name in ("prometheus", "alertmanager", "postgres-exporter", "redis-exporter"):
        assert stack[name]["deploy"]["placement"]["constraints"] == on_data, name
    # Nothing but nginx is published: Prometheus and Alertmanager are reached by a tunnel.
    assert [n for n, s in stack.items() if s.get("ports")] == ["nginx"]
    # Every service but the collector logs to its host's collector.
    for name, service in stack.items():
        driver = service["logging"]["driver"]
        assert driver == ("json-file" if name == "logs" else "syslog"), name
    data = yaml.safe_load(rendered["stack-data.yaml"])["services"]
    assert sorted(data) == ["logs", "postgres", "redis"]


def test_no_secret_value_is_in_any_file_of_the_release(rendered: dict[str, str]) -> None:
    for value in VALUES.values():
        for name, text in rendered.items():
            assert value not in text, f"{name} holds a secret"
    # The stack names them for the manager's shell, which fills them from secrets.env.
    assert "ALERT_WEBHOOK_URL: ${ALERT_WEBHOOK_URL}" in rendered["stack.yaml"]
    assert "LISTINGS_SENTRY_DSN: ${SENTRY_DSN}" in rendered["stack.yaml"]
