"""Deploys to one host carry the monitoring stack and the central logs: images, release files,
recorded overlays, optional secrets, and the pre-flight refusals."""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from ops_testdata import GOOD_SECRETS, IMAGE_TAGS
from support.recorder import Recorder

from ops import compose, config, secrets
from ops.compose import Build
from ops.deploy import preflight, release, releases
from ops.deploy.deployment import Deployment
from ops.deploy.hostcompose import RemoteCompose
from ops.deploy.images import image_refs
from ops.deploy.onehost import OneHostDeploy
from ops.deploy.swarm.cluster import Swarm, converged
from ops.deploy.swarm.operation import SwarmDeploy
from ops.errors import OpsError
from ops.remote import Remote
from ops.stack import host as hostops

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
WriteEnv = Callable[[str, str], Path]

ONE_HOST = """\
name: {name}
target: ssh
listings_env: {mode}
domains: [app.example.org]
hosts:
  - ssh: deploy@203.0.113.10
"""
GOOD = GOOD_SECRETS
OPTIONAL_VALUES = {
    "ALERT_WEBHOOK_URL": "https://hooks.test/Wh00kSecretPath",
    "SENTRY_DSN": "https://Sentr7Key@sentry.test/1",
}
TAGS = IMAGE_TAGS


@pytest.fixture
def tree(tmp_path: Path, write_env: WriteEnv) -> Path:
    """A scratch repository root with the real compose files."""
    shutil.copytree(ROOT / "compose", tmp_path / "compose")
    return tmp_path


def deployment(name: str, values: dict[str, str]) -> Deployment:
    env = config.load(name)
    d = OneHostDeploy(
        env, Build("v7", "abc", Path("/dev/null"), TAGS), connect=lambda host: Recorder(host)
    )
    d.secrets = secrets.Secrets(values, Path("/nonexistent"))
    return d


def test_a_monitoring_release_ships_the_four_monitoring_images_at_their_content_tags() -> None:
    build = Build("v7", "abc", Path("/dev/null"), TAGS)
    plain = image_refs(build)
    full = image_refs(build, monitoring=True)
    assert full[: len(plain)] == plain
    assert full[len(plain) :] == [
        "slipway/logs:c.4",
        "slipway/prometheus:c.5",
        "slipway/alertmanager:c.6",
        "slipway/exporters:c.7",
    ]


def test_the_rendered_logging_overlay_keeps_its_merge_tags_and_never_builds() -> None:
    source = (ROOT / "compose" / compose.LOGGING_OVERLAY).read_text()
    text = release.render_compose(source, compose.LOGGING_OVERLAY)
    assert text.startswith("# Rendered by `invoke deploy` from compose/logging.yaml")
    # `!override` must survive: without it compose merges json-file options into syslog's.
    assert text.count("logging: !override") == source.count("logging: !override") > 5
    data = yaml.load(text, Loader=release.ComposeLoader)
    logs = data["services"]["logs"]
    assert "build" not in logs
    assert logs["pull_policy"] == "never"
    assert logs["network_mode"] == "host"
    # Services without a build section are left alone (remote.yaml says never for them).
    assert "pull_policy" not in data["services"]["postgres"]
    # No YAML aliases: each service has its own copy of the syslog options.
    assert "*" not in text.replace("'*", "")


def test_release_files_include_the_logging_overlay_only_with_monitoring(
    tree: Path, write_env: WriteEnv
) -> None:
    write_env("staging", ONE_HOST.format(name="staging", mode="staging"))
    d = deployment("staging", {**GOOD, **OPTIONAL_VALUES})
    assert d.monitoring
    assert d.overlays() == ["remote.yaml", "logging.yaml"]
    files = d.release_files("r1")
    for value in [*GOOD.values(), *OPTIONAL_VALUES.values()]:
        assert all(value not in text for text in files.values()), value
    assert set(files) == {"compose.yaml", "remote.yaml", "release.env", "logging.yaml"}
    assert "COMPOSE_PROFILES='monitoring'" in files["release.env"]
    # No secret, optional or not, in the non-secret variables.
    for name in secrets.RELEASE_SECRETS:
        assert f"\n{name}=" not in "\n" + files["release.env"], name

    write_env(
        "staging",
        ONE_HOST.format(name="staging", mode="staging") + "monitoring: {enabled: false}\n",
    )
    off = deployment("staging", GOOD)
    assert not off.monitoring
    assert off.overlays() == ["remote.yaml"]
    assert "logging.yaml" not in off.release_files("r1")
    assert "COMPOSE_PROFILES=''" in off.release_files("r1")["release.env"]


def test_a_release_is_run_with_the_overlays_it_recorded(tree: Path, write_env: WriteEnv) -> None:
    write_env("staging", ONE_HOST.format(name="staging", mode="staging"))
    d = deployment("staging", GOOD)
    old = releases.Release.from_json('{"id": "20260101T000000Z-v1", "version": "v1"}')
    assert old.overlays == ["remote.yaml"]  # recorded before the central logs existed
    d.release = old
    command = d.rcompose(old.id).command("ps")
    assert "logging.yaml" not in command
    d.release = releases.Release(id="r2", version="v7", overlays=d.overlays())
    assert "-f releases/r2/remote.yaml -f releases/r2/logging.yaml ps" in d.rcompose("r2").command(
        "ps"
    )
    again = releases.Release.from_json(d.release.to_json())
    assert again.overlays == ["remote.yaml", "logging.yaml"]


def test_a_local_ca_reaches_the_probe_as_base64_on_hosts(tree: Path, write_env: WriteEnv) -> None:
    write_env("staging", ONE_HOST.format(name="staging", mode="staging") + "tls: local-ca\n")
    env = config.load("staging")
    assert compose.probe_ca_b64(env) == ""  # no CA yet: the deploy creates it first
    ca = tree / ".slipway" / "staging" / "ca.crt"
    ca.parent.mkdir(parents=True)
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert base64.b64decode(compose.probe_ca_b64(env)) == ca.read_bytes()
    d = deployment("staging", GOOD)
    assert (
        "SLIPWAY_PROBE_CA_B64='" + compose.probe_ca_b64(env) in d.release_files("r")["release.env"]
    )


def test_optional_secrets_are_loaded_when_set_and_absent_otherwise(
    tree: Path, write_env: WriteEnv
) -> None:
    write_env("staging", ONE_HOST.format(name="staging", mode="staging"))
    env = config.load("staging")
    (tree / ".env.staging").write_text(
        "".join(f"{k}={v}\n" for k, v in GOOD.items()) + "SENTRY_DSN=http://k@sentry.test/1\n"
    )
    loaded = secrets.require(env, environ={"ALERT_WEBHOOK_URL": "https://hooks.test/a"})
    assert loaded.values["SENTRY_DSN"] == "http://k@sentry.test/1"
    assert loaded.values["ALERT_WEBHOOK_URL"] == "https://hooks.test/a"
    assert "ALERT_SLACK_URL" not in loaded.values
    assert "https://hooks.test/a" not in repr(loaded)


def test_production_with_monitoring_refuses_to_deploy_without_an_alert_receiver(
    tree: Path, write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("production", ONE_HOST.format(name="production", mode="production"))
    (tree / ".env.production").write_text("".join(f"{k}={v}\n" for k, v in GOOD.items()))
    for name in secrets.OPTIONAL:
        monkeypatch.delenv(name, raising=False)
    d = deployment("production", {})
    with pytest.raises(OpsError) as err:
        d.check_config()
    # Several hosts too (Swarm has its own check_config).
    write_env(
        "production",
        ONE_HOST.format(name="production", mode="production") + "  - ssh: deploy@203.0.113.11\n",
    )
    many = SwarmDeploy(config.load("production"), Build("v7", "abc", Path("/x"), TAGS))
    with pytest.raises(OpsError, match="no alert receiver is set"):
        many.check_config()
    # A rollback runs with the secrets its release recorded: never refused for this.
    back = SwarmDeploy(
        config.load("production"), Build("v7", "abc", Path("/x"), TAGS), kind="rollback"
    )
    assert "swarm of 2 hosts" in back.check_config()
    write_env("production", ONE_HOST.format(name="production", mode="production"))
    message = str(err.value)
    assert "no alert receiver" in message
    assert "Fix: set ALERT_WEBHOOK_URL" in message
    assert ".env.production" in message

    monkeypatch.setenv("ALERT_SLACK_URL", "https://hooks.test/slack")
    assert "production" in deployment("production", {}).check_config()

    # Staging, or production without monitoring, may run without receivers.
    monkeypatch.delenv("ALERT_SLACK_URL")
    write_env(
        "production",
        ONE_HOST.format(name="production", mode="production") + "monitoring: {enabled: false}\n",
    )
    assert "production" in deployment("production", {}).check_config()


# ------------------------------------------------------------------------------ several hosts

TWO_HOSTS = ONE_HOST + "  - ssh: deploy@203.0.113.11\n"


def _canned(answers: dict[str, str]) -> Recorder:
    """A host answering `docker ...` commands with canned output (by the command's start)."""
    remote = Recorder()
    for start, out in answers.items():
        remote.on("^" + re.escape(start), stdout=out)
    return remote


def test_a_swarm_release_records_the_logs_and_starts_the_collectors_with_the_stores(
    tree: Path, write_env: WriteEnv
) -> None:
    write_env("staging", TWO_HOSTS.format(name="staging", mode="staging"))
    d = SwarmDeploy(config.load("staging"), Build("v7", "abc", Path("/dev/null"), TAGS))
    assert d.monitoring
    assert d.overlays() == ["swarm-oneoff.yaml", "logging.yaml"]
    assert d.data_services() == ("logs", "postgres", "redis")
    write_env(
        "staging",
        TWO_HOSTS.format(name="staging", mode="staging") + "monitoring: {enabled: false}\n",
    )
    off = SwarmDeploy(config.load("staging"), Build("v7", "abc", Path("/dev/null"), {}))
    assert off.overlays() == ["swarm-oneoff.yaml"]
    assert off.data_services() == ("postgres", "redis")


def test_a_global_service_wants_one_task_per_active_node(tree: Path, write_env: WriteEnv) -> None:
    write_env("staging", TWO_HOSTS.format(name="staging", mode="staging"))
    d = SwarmDeploy(config.load("staging"), Build("v7", "abc", Path("/dev/null"), TAGS))
    manager = _canned(
        {
            "docker service ls": "id1\nid2\n",
            # Three nodes, one drained: a global service wants a task on the two others.
            "docker node ls": "Ready Active\nReady Drain\nReady Active\n",
            "docker service inspect": "slipway-staging_logs\t\t\tglobal\n"
            "slipway-staging_api\t\t\t2\n",
            "docker stack ps": "slipway-staging_logs.n1\tRunning\tRunning 1 minute ago\t\n"
            "slipway-staging_api.1\tRunning\tRunning 1 minute ago\t\n"
            "slipway-staging_api.2\tRunning\tRunning 1 minute ago\t\n",
        }
    )
    states = Swarm(d.stack, [(d.host, manager)]).service_states()
    assert states["logs"]["desired"] == 2 and states["logs"]["running"] == 1
    assert states["api"]["desired"] == 2 and states["api"]["running"] == 2
    done, waiting = converged(states)
    assert not done and waiting == "logs 1/2"


def test_host_logs_with_tail_0_ask_docker_for_every_line(
    tree: Path, write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--tail=0` means no limit, as locally: docker's own `--tail 0` would print nothing."""
    streamed: list[str] = []
    monkeypatch.setattr(Remote, "stream", lambda self, command: streamed.append(command.line))
    monkeypatch.setattr(
        hostops.Host,
        "compose",
        lambda self: RemoteCompose(self.remote, "slipway-staging", "/srv/x", "r1"),
    )
    for text in (ONE_HOST, TWO_HOSTS):
        write_env("staging", text.format(name="staging", mode="staging"))
        env = config.load("staging")
        hostops.logs(env, service="api", tail=0)
        hostops.logs(env, service="api", tail=30)
    assert ["--tail all" in c for c in streamed] == [True, False, True, False]
    assert ["--tail 30" in c for c in streamed] == [False, True, False, True]


def test_an_optional_secret_a_release_file_cannot_hold_stops_the_deploy_in_pre_flight(
    tree: Path, write_env: WriteEnv
) -> None:
    write_env("staging", ONE_HOST.format(name="staging", mode="staging"))
    env = config.load("staging")
    (tree / ".env.staging").write_text("".join(f"{k}={v}\n" for k, v in GOOD.items()))
    with pytest.raises(OpsError) as err:
        secrets.require(env, environ={"ALERT_SMTP_PASSWORD": "it's"})
    assert "ALERT_SMTP_PASSWORD contains a quote or a line break" in str(err.value)
    assert "it's" not in str(err.value)


def test_the_port_pre_flight_of_a_swarm_checks_the_log_port_on_every_host(
    tree: Path, write_env: WriteEnv
) -> None:
    write_env("staging", TWO_HOSTS.format(name="staging", mode="staging"))
    d = SwarmDeploy(config.load("staging"), Build("v7", "abc", Path("/dev/null"), TAGS))
    # 80/tcp, 443/tcp and 5514/udp held on the host.
    tables = (
        "== tcp\n   0: 00000000:0050 00000000:0000 0A 0\n   1: 00000000:01BB 00000000:0000 0A 0\n"
        "== udp\n   2: 0100007F:158A 00000000:0000 07 0\n"
    )
    host = d.env.hosts[1]

    def on(services: str) -> Recorder:
        return _canned({"for t in": tables, "docker ps": services})

    def check_host_ports(host: config.Host, remote: Recorder, first: bool) -> str:
        return preflight.check_host_ports(d.env, host, remote, first, d.monitoring)

    # A second host: only the collector's port is checked, and another's collector is a clash.
    with pytest.raises(OpsError, match=r"5514/udp \(monitoring\.log_port\) is in use"):
        check_host_ports(host, on(""), first=False)
    assert "1 ports" in check_host_ports(host, on("slipway-staging_logs\n"), first=False)
    # The first host: nginx's ports too (held by the stack's own nginx task), never 9090/9093.
    with pytest.raises(OpsError) as err:
        check_host_ports(d.env.hosts[0], on("slipway-staging_logs\n"), first=True)
    assert "80/tcp (ports.http)" in str(err.value) and "prometheus" not in str(err.value)
    ours = "slipway-staging_nginx\nslipway-staging_logs\n"
    assert "3 ports" in check_host_ports(d.env.hosts[0], on(ours), first=True)
