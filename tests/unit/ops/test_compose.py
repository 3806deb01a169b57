"""Compose invocations: exact argv and the environment the compose files interpolate."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from docker.errors import ImageNotFound
from ops_testdata import LOCAL_YAML

from ops import compose, config, images, proc
from ops.errors import OpsError
from ops.secrets import Secrets

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]
SECRETS = {
    "POSTGRES_PASSWORD": "pg",
    "REDIS_PASSWORD": "rd",
    "LISTINGS_API_KEY_PEPPER": "pp",
    "BACKUP_PASSPHRASE": "bp",
}


@pytest.fixture
def e2e(write_env: WriteEnv) -> config.Environment:
    write_env(
        "e2e",
        LOCAL_YAML.replace("name: local", "name: e2e")
        .replace("8080", "18080")
        .replace("8443", "18443")
        + "overlay: local\n",
    )
    return config.load("e2e")


def _build(tmp_path: Path) -> compose.Build:
    return compose.Build("v1.2-3-gabc", "abc123", tmp_path / "ca.pem")


def test_argv_names_project_env_file_and_both_compose_files(
    e2e: config.Environment, tmp_path: Path
) -> None:
    env_file = tmp_path / ".env.e2e"
    env_file.write_text("POSTGRES_PASSWORD=pg\n")
    argv = compose.compose_argv(e2e, Secrets(SECRETS, env_file), tmp_path, ["up", "-d"])
    assert argv == [
        "docker", "compose", "-p", "slipway-e2e",
        "--env-file", str(env_file),
        "-f", str(tmp_path / "compose" / "compose.yaml"),
        "-f", str(tmp_path / "compose" / "local.yaml"),
        # Central logs: monitoring is on by default for local targets.
        "-f", str(tmp_path / "compose" / "logging.yaml"),
        "up", "-d",
    ]  # fmt: skip


def test_argv_leaves_out_a_missing_env_file(e2e: config.Environment, tmp_path: Path) -> None:
    argv = compose.compose_argv(e2e, Secrets(SECRETS, tmp_path / ".env.e2e"), tmp_path, ["ps"])
    assert "--env-file" not in argv
    assert argv[-1] == "ps"


def test_env_carries_config_build_facts_and_secrets(
    e2e: config.Environment, tmp_path: Path
) -> None:
    base = {"PATH": "/usr/bin", "COMPOSE_PROJECT_NAME": "other", "SLIPWAY_HTTPS_PORT": "1"}
    env = compose.compose_env(
        e2e, Secrets(SECRETS, tmp_path / "x"), _build(tmp_path), tmp_path, base
    )
    assert env["PATH"] == "/usr/bin"
    assert "COMPOSE_PROJECT_NAME" not in env  # -p decides, never a stray variable
    expected = {
        "SLIPWAY_ENV": "local",  # becomes LISTINGS_ENV: the service's mode, not the name
        "SLIPWAY_ENV_NAME": "e2e",
        "SLIPWAY_VERSION": "v1.2-3-gabc",
        "SLIPWAY_GIT_SHA": "abc123",
        "SLIPWAY_BUILD_CA": str(tmp_path / "ca.pem"),
        "SLIPWAY_BIND": "127.0.0.1",
        "SLIPWAY_HTTP_PORT": "18080",
        "SLIPWAY_HTTPS_PORT": "18443",
        "SLIPWAY_TLS_DIR": str(tmp_path / ".slipway" / "e2e"),
        "SLIPWAY_SERVER_NAME": "localhost",
        "SLIPWAY_API_REPLICAS": "2",
        "SLIPWAY_WORKER_REPLICAS": "1",
        "SLIPWAY_RATE_LIMIT": "50r/s",
        "SLIPWAY_RATE_BURST": "100",
        "SLIPWAY_MAX_FEED_SIZE": "64m",
        "LISTINGS_MAX_FEED_BYTES": str(64 * 1024 * 1024),
        "SLIPWAY_VIEWER_RATE_LIMIT": "10r/s",
        "SLIPWAY_VIEWER_RATE_BURST": "20",
        "SLIPWAY_READY_RATE_LIMIT": "5r/s",
        "SLIPWAY_READY_RATE_BURST": "10",
        "SLIPWAY_INGEST_CONNECTIONS": "4",
        # The environment file has no `backup:` section: the defaults.
        "SLIPWAY_BACKUP_TIME": "02:00",
        "SLIPWAY_BACKUP_FULL_DAYS": "sun",
        "SLIPWAY_BACKUP_RETENTION_DAYS": "30",
        "SLIPWAY_BACKUP_CHECK_INTERVAL": "900",
        "SLIPWAY_BACKUP_RETRY_INTERVAL": "3600",
        "SLIPWAY_BACKUP_PROCESS_MAX": "2",
        "SLIPWAY_BACKUP_COMPRESS": "lz4",
        **SECRETS,
    }
    assert {k: env[k] for k in expected} == expected


def test_version_is_dev_outside_git(tmp_path: Path) -> None:
    assert compose.detect_version(tmp_path, {}) == ("dev", "unknown")


def test_version_is_dev_where_git_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))
    assert compose.detect_version(tmp_path, {}) == ("dev", "unknown")


def test_exported_version_wins(tmp_path: Path) -> None:
    assert compose.detect_version(tmp_path, {"SLIPWAY_VERSION": "1.0/rc 1"})[0] == "1.0-rc-1"


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_version_follows_git_and_build_input_changes(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@example.test")
    _git(tmp_path, "config", "user.name", "t")
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "a.txt").write_text("1")
    (tmp_path / "README").write_text("r")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "one")
    clean, sha = compose.detect_version(tmp_path, {})
    assert len(sha) == 40 and sha.startswith(clean)

    (tmp_path / "README").write_text("docs change only")
    assert compose.detect_version(tmp_path, {})[0] == clean

    (tmp_path / "services" / "a.txt").write_text("2")
    dirty = compose.detect_version(tmp_path, {})[0]
    assert dirty.startswith(f"{clean}-dirty.")
    (tmp_path / "services" / "a.txt").write_text("3")
    assert compose.detect_version(tmp_path, {})[0] not in (clean, dirty)


PIP_CONFIG = """\
:env:.cert='/from/env.pem'
:env:.default-timeout='180'
global.cert='/from/global.pem'
global.find-links='/opt/wheels'
"""


def test_pip_config_cert_prefers_env_over_global() -> None:
    assert compose.parse_pip_config_cert(PIP_CONFIG) == "/from/env.pem"
    assert compose.parse_pip_config_cert("global.cert='/g.pem'\n") == "/g.pem"
    assert compose.parse_pip_config_cert("global.index-url='x'\n") is None


def test_pip_config_cert_asks_pip_quietly_with_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[str], dict[str, object]]] = []

    def fake_run(argv: list[str], **options: object) -> subprocess.CompletedProcess[str]:
        calls.append((argv, options))
        return subprocess.CompletedProcess(argv, 0, PIP_CONFIG, "")

    monkeypatch.setenv("SLIPWAY_PYTHON", "/opt/python3")
    monkeypatch.setattr(proc, "run", fake_run)
    assert compose.pip_config_cert() == "/from/env.pem"
    assert calls == [
        (
            ["/opt/python3", "-m", "pip", "config", "list"],
            {"capture": True, "check": False, "quiet": True, "timeout": 30},
        )
    ]


def test_pip_config_cert_is_none_when_pip_cannot_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIPWAY_PYTHON", str(tmp_path / "no-such-python"))
    assert compose.pip_config_cert() is None

    def too_slow(argv: list[str], **options: object) -> subprocess.CompletedProcess[str]:
        raise OpsError("command did not finish within 30s and was stopped: pip config list")

    monkeypatch.setattr(proc, "run", too_slow)
    assert compose.pip_config_cert() is None


def test_ca_bundle_order_pip_cert_then_pip_config_then_requests(tmp_path: Path) -> None:
    pip_cert, configured, requests = (tmp_path / n for n in ("a.pem", "b.pem", "c.pem"))
    for path in (pip_cert, configured, requests):
        path.write_text("PEM")
    state = tmp_path / "state"
    every = {"PIP_CERT": str(pip_cert), "REQUESTS_CA_BUNDLE": str(requests)}
    assert compose.find_ca_bundle(every, state, str(configured)) == pip_cert
    no_pip_cert = {"REQUESTS_CA_BUNDLE": str(requests)}
    assert compose.find_ca_bundle(no_pip_cert, state, str(configured)) == configured
    assert compose.find_ca_bundle(no_pip_cert, state, None) == requests


def test_ca_bundle_skips_missing_files_and_falls_back_to_an_empty_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    found = compose.find_ca_bundle({"PIP_CERT": str(tmp_path / "gone.pem")}, state, None)
    assert found == state / "empty-ca.pem"
    assert found.read_text() == ""


def test_built_images_are_built_once_and_selectable_by_any_user() -> None:
    cfg = {
        "services": {
            "api": {"image": "slipway/listings:v", "build": {}},
            "worker": {"image": "slipway/listings:v", "build": {}},
            "nginx": {"image": "slipway/nginx:v", "build": {}},
            "other": {"image": "busybox"},
        }
    }
    built = images.built_images(cfg)
    assert [(b.image, b.service, b.users) for b in built] == [
        ("slipway/listings:v", "api", ("api", "worker")),
        ("slipway/nginx:v", "nginx", ("nginx",)),
    ]

    class Engine:
        class images:  # mimics docker.DockerClient.images
            @staticmethod
            def get(name: str) -> None:
                raise ImageNotFound(name)

    assert [b.image for b in images.plan(Engine(), built, services=["worker"])] == [
        "slipway/listings:v"
    ]
    with pytest.raises(OpsError, match="Buildable: api, nginx, worker"):
        images.plan(Engine(), built, services=["nope"])
