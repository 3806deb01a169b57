"""The running containers and their images keep the security and operability rules."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Any

import docker
import pytest
from stack_names import PROJECT

if TYPE_CHECKING:
    from conftest import Stack

pytestmark = pytest.mark.e2e

LONG_RUNNING = {
    "postgres",
    "redis",
    "api",
    "worker",
    "nginx",
    # Scheduled backups and archive checks (pgBackRest, the postgres image).
    "backup",
    # Monitoring (profile monitoring) and the central log collector (compose/logging.yaml).
    "prometheus",
    "alertmanager",
    "node-exporter",
    "postgres-exporter",
    "redis-exporter",
    "nginx-exporter",
    "blackbox-exporter",
    "logs",
}
# What may be published, always on the loopback: nginx (the e2e `bind`), and on local
# environments Prometheus and Alertmanager. The log collector listens on the host's loopback
# through the host network (compose/logging.yaml), publishing nothing.
PUBLISHED = {
    "nginx": {"8080/tcp", "8443/tcp"},
    "prometheus": {"9090/tcp"},
    "alertmanager": {"9093/tcp"},
}
SECRET_NAMES = (
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "LISTINGS_API_KEY_PEPPER",
    "BACKUP_PASSPHRASE",
)


def _containers() -> list[Any]:
    client = docker.from_env()
    return client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={PROJECT}"}
    )


def _service(container: Any) -> str:
    return str(container.labels["com.docker.compose.service"])


def test_every_long_running_service_is_healthy_restarts_and_caps_its_logs(stack: Stack) -> None:
    running = {_service(c): c for c in _containers() if c.status == "running"}
    assert set(running) == LONG_RUNNING
    for name, container in running.items():
        attrs = container.attrs
        assert attrs["State"]["Health"]["Status"] == "healthy", name
        assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped", name
        log = attrs["HostConfig"]["LogConfig"]
        if log["Type"] == "syslog":
            # To the central collector; a container never waits for it.
            assert log["Config"].get("mode") == "non-blocking", name
        else:
            assert log["Type"] == "json-file" and log["Config"].get("max-size"), name


def test_only_nginx_and_monitoring_publish_ports_and_only_on_loopback(stack: Stack) -> None:
    seen = set()
    for container in _containers():
        published = {
            port: bindings
            for port, bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).items()
            if bindings
        }
        service = _service(container)
        if service not in PUBLISHED:
            assert not published, f"{service} publishes {published}"
            continue
        seen.add(service)
        hosts = {b["HostIp"] for bindings in published.values() for b in bindings}
        assert hosts == {"127.0.0.1"}, (service, published)
        assert set(published) == PUBLISHED[service], (service, published)
    assert seen == set(PUBLISHED)


def test_containers_run_as_non_root_on_a_read_only_filesystem(stack: Stack) -> None:
    for container in _containers():
        if container.status != "running":
            continue
        uid = container.exec_run(["id", "-u"]).output.decode().strip()
        assert uid != "0", f"{_service(container)} runs as root"
        assert container.attrs["HostConfig"]["ReadonlyRootfs"], _service(container)
        assert "no-new-privileges:true" in container.attrs["HostConfig"]["SecurityOpt"]


def test_images_carry_version_labels_a_healthcheck_and_no_secret(stack: Stack) -> None:
    client = docker.from_env()
    generated = (stack.env_file.read_text() if stack.env_file.exists() else "").splitlines()
    secret_values = [
        line.split("=", 1)[1] for line in generated if line.split("=", 1)[0] in SECRET_NAMES
    ]
    assert secret_values, "the e2e environment should have generated secrets"
    for image_id in {c.image.id for c in _containers()}:
        image = client.images.get(image_id)
        image_name = (image.tags or [image_id])[0]
        config = image.attrs["Config"]
        labels = config.get("Labels") or {}
        assert labels.get("org.opencontainers.image.version"), image_name
        assert labels.get("org.opencontainers.image.revision"), image_name
        assert config.get("Healthcheck", {}).get("Test"), f"{image_name} has no HEALTHCHECK"
        baked = " ".join(config.get("Env") or []) + " ".join(
            str(step.get("CreatedBy", "")) for step in image.history()
        )
        for value in secret_values:
            assert value not in baked, f"a secret is baked into {image_name}"


def test_the_listings_image_is_small_and_has_no_pip_or_compiler(stack: Stack) -> None:
    listings = next(c for c in _containers() if _service(c) == "api").image
    size_mb = listings.attrs["Size"] / 1e6
    print(f"listings image: {size_mb:.0f} MB")
    assert size_mb < 200
    probe = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            listings.tags[0],
            "-c",
            "command -v pip pip3 gcc cc g++ || true; python3 -m pip --version 2>&1 || true; "
            "ls /run/secrets 2>&1 || true",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = probe.stdout
    assert "/pip" not in out and "gcc" not in out and "/cc" not in out, out
    assert "No module named pip" in out, out
    assert "No such file" in out, "the build's CA secret must not exist in the image"
