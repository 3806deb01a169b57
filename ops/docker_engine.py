"""The Docker engine through the docker SDK, with errors turned into actionable OpsError."""

from __future__ import annotations

import shutil

import docker
from docker.errors import DockerException

from ops import proc
from ops.errors import OpsError


def client() -> docker.DockerClient:
    """A client for the local engine; fails with the fix when the engine is unreachable."""
    try:
        engine = docker.from_env()
        engine.ping()
    except DockerException as exc:
        raise OpsError(
            f"cannot reach the Docker engine ({exc}). Fix: run `sudo scripts/install-docker` "
            "(installs and starts it), or start dockerd and check DOCKER_HOST"
        ) from exc
    return engine


def check() -> str:
    """Engine reachable and the compose v2 plugin present; returns a one-line description."""
    engine = client()
    if shutil.which("docker") is None:
        raise OpsError("the docker CLI is not on PATH. Fix: run `sudo scripts/install-docker`")
    result = proc.run(
        ["docker", "compose", "version", "--short"], capture=True, check=False, quiet=True
    )
    if result.returncode != 0:
        raise OpsError(
            "`docker compose` (the v2 CLI plugin) is missing. Fix: run "
            "`sudo scripts/install-docker` (Debian's docker-compose v1 does not work)"
        )
    version = str(engine.version().get("Version", "?"))
    return f"engine {version}, compose {result.stdout.strip()}"
