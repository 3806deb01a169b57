"""The `monitoring:` section: defaults, validation, and what reaches compose."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from ops_testdata import LOCAL_YAML

from ops import compose, config
from ops.errors import OpsError
from ops.monitoring import monitor
from ops.secrets import Secrets

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]


def test_monitoring_is_on_by_default_with_30_days_and_a_size_bound(write_env: WriteEnv) -> None:
    write_env("e2e", "name: e2e\ntarget: local\n")
    env = config.load("e2e")
    assert env.monitoring == config.Monitoring(True, "30d", "10GB", 9090, 9093)
    assert compose.profiles(env) == [compose.MONITORING_PROFILE]
    values = compose.monitoring_env(env)
    assert values["SLIPWAY_PROMETHEUS_RETENTION"] == "30d"
    assert values["SLIPWAY_PROMETHEUS_RETENTION_SIZE"] == "10GB"


def test_the_committed_local_file_runs_monitoring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLIPWAY_ENVIRONMENTS_DIR", raising=False)
    monkeypatch.delenv("SLIPWAY_ROOT", raising=False)
    env = config.load("local")
    assert compose.runs_monitoring(env)
    assert (env.monitoring.prometheus_port, env.monitoring.alertmanager_port) == (9090, 9093)


def test_settings_reach_compose_and_the_profile(write_env: WriteEnv, tmp_path: Path) -> None:
    write_env(
        "e2e",
        "name: e2e\ntarget: local\ndomains: [localhost, www.localhost]\n"
        "monitoring: {retention: 12w, retention_size: 512MB, prometheus_port: 19090,"
        " alertmanager_port: 19093}\n",
    )
    env = config.load("e2e")
    build = compose.Build("v1", "abc", tmp_path / "ca.pem", {})
    values = compose.Compose(env, Secrets({}, tmp_path / ".env.e2e"), build, tmp_path)
    seen = values.invocation("config").env
    assert seen["COMPOSE_PROFILES"] == "monitoring"
    assert seen["SLIPWAY_PROMETHEUS_RETENTION"] == "12w"
    assert seen["SLIPWAY_PROMETHEUS_RETENTION_SIZE"] == "512MB"
    assert seen["SLIPWAY_PROMETHEUS_PORT"] == "19090"
    assert seen["SLIPWAY_ALERTMANAGER_PORT"] == "19093"
    assert seen["SLIPWAY_PROBE_DOMAINS"] == "localhost www.localhost"


def test_disabled_monitoring_leaves_the_profile_out(write_env: WriteEnv) -> None:
    write_env("e2e", "name: e2e\ntarget: local\nmonitoring: {enabled: false}\n")
    env = config.load("e2e")
    assert not compose.runs_monitoring(env)
    assert compose.MONITORING_PROFILE not in compose.profiles(env)


def test_hosts_run_monitoring_one_or_several_unless_disabled(write_env: WriteEnv) -> None:
    text = LOCAL_YAML.replace("target: local", "target: ssh").replace(
        "name: local", "name: staging"
    )
    assert "target: ssh" in text
    one_host = "hosts:\n  - ssh: deploy@203.0.113.10\n"
    two_hosts = one_host + "  - ssh: deploy@203.0.113.11\n"
    for hosts in (one_host, two_hosts):
        write_env("staging", text + hosts)
        env = config.load("staging")
        assert compose.runs_monitoring(env)
        assert compose.MONITORING_PROFILE in compose.profiles(env)
        write_env("staging", text + hosts + "monitoring: {enabled: false}\n")
        assert not compose.runs_monitoring(config.load("staging"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("monitoring: {enabled: yes please}", r"'monitoring.enabled' must be true or false"),
        ("monitoring: {retention: 30 days}", r"'monitoring.retention' is '30 days', not a Prom"),
        ("monitoring: {retention: 30m}", r"'monitoring.retention' is '30m'"),
        ("monitoring: {retention_size: 10g}", r"'monitoring.retention_size' is '10g'.*10GB"),
        ("monitoring: {prometheus_port: 0}", r"'monitoring.prometheus_port' must be a port"),
        ("monitoring: {alertmanager_port: 8443}", r"'monitoring.alertmanager_port' is 8443, like"),
        ("monitoring: {grafana: true}", r"'monitoring.grafana' is unknown"),
    ],
)
def test_mistakes_name_the_field_and_the_fix(write_env: WriteEnv, body: str, message: str) -> None:
    write_env("e2e", f"name: e2e\ntarget: local\n{body}\n")
    with pytest.raises(OpsError, match=message) as err:
        config.load("e2e")
    assert "Fix:" in str(err.value)


def test_monitor_urls_are_on_the_loopback_with_the_configured_ports(write_env: WriteEnv) -> None:
    write_env(
        "e2e",
        "name: e2e\ntarget: local\nbind: 0.0.0.0\n"
        "monitoring: {prometheus_port: 19090, alertmanager_port: 19093}\n",
    )
    assert monitor.urls(config.load("e2e")) == (
        "http://127.0.0.1:19090",
        "http://127.0.0.1:19093",
    )


def test_monitor_explains_disabled_monitoring_and_hosts(write_env: WriteEnv) -> None:
    write_env("e2e", "name: e2e\ntarget: local\nmonitoring: {enabled: false}\n")
    with pytest.raises(OpsError, match=r"monitoring is off in .*Fix: set it to true"):
        monitor.urls(config.load("e2e"))
    text = LOCAL_YAML.replace("target: local", "target: ssh").replace(
        "name: local", "name: staging"
    )
    write_env("staging", text + "hosts:\n  - ssh: deploy@203.0.113.10\n")
    # On a host they answer on its loopback: urls() is for this machine, the tunnel is the way.
    with pytest.raises(
        OpsError, match=r"answer on that host's loopback only\. Fix: `invoke monitor --env=staging`"
    ):
        monitor.urls(config.load("staging"))
