"""Real PostgreSQL and Redis for integration tests, started from our own images.

The services come from compose/compose.yaml with the compose/test.yaml overlay, in a compose
project of their own (slipway-it), so they never touch a developer's running stack. Ports are
chosen free at session start and stay fixed, so a stopped service comes back on the same port.
Set SLIPWAY_IT_KEEP=1 to leave the containers running after the session.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from free_port import free_port

# The sandbox tests' shared helpers assert too: pytest explains those failures as well.
pytest.register_assert_rewrite("sandbox_harness")

ROOT = Path(__file__).resolve().parents[2]
# SLIPWAY_IT_PROJECT lets two sessions on one machine run side by side.
PROJECT = os.environ.get("SLIPWAY_IT_PROJECT", "slipway-it")
SERVICES = ("postgres", "redis")


@dataclass
class Infra:
    """Handle on the real PostgreSQL and Redis of the integration session."""

    env: dict[str, str]
    pg_port: int
    redis_port: int
    password: str
    redis_password: str

    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://listings:{self.password}@127.0.0.1:{self.pg_port}/listings"

    @property
    def redis_url(self) -> str:
        return f"redis://:{self.redis_password}@127.0.0.1:{self.redis_port}/0"

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [
            "docker",
            "compose",
            "-p",
            PROJECT,
            "-f",
            str(ROOT / "compose" / "compose.yaml"),
            "-f",
            str(ROOT / "compose" / "test.yaml"),
            *args,
        ]
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def stop(self, name: str) -> None:
        """Stop one service (its data volume stays)."""
        assert name in SERVICES, name
        self.compose("stop", name)

    def start(self, name: str) -> None:
        """Start a stopped service again and wait until its healthcheck passes."""
        assert name in SERVICES, name
        self.compose("up", "-d", "--wait", "--no-deps", name)


def _build_env(pg_port: int, redis_port: int, password: str, redis_password: str) -> dict[str, str]:
    # The same version, sha and CA discovery `invoke build` uses, so images are shared with it.
    from ops.compose import detect_build

    build = detect_build()
    env = dict(os.environ)
    env.update(
        SLIPWAY_ENV="test",
        SLIPWAY_VERSION=build.version,
        SLIPWAY_GIT_SHA=build.git_sha,
        SLIPWAY_BUILD_CA=str(build.ca_bundle),
        SLIPWAY_IT_PG_PORT=str(pg_port),
        SLIPWAY_IT_REDIS_PORT=str(redis_port),
        POSTGRES_PASSWORD=password,
        REDIS_PASSWORD=redis_password,
        LISTINGS_API_KEY_PEPPER=secrets.token_urlsafe(32),
        BACKUP_PASSPHRASE=secrets.token_urlsafe(32),
        SLIPWAY_TLS_DIR=str(ROOT / ".slipway" / "it-unused"),
    )
    return env


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    handle = Infra(
        env={},
        pg_port=free_port(),
        redis_port=free_port(),
        password=secrets.token_urlsafe(24),
        redis_password=secrets.token_urlsafe(24),
    )
    handle.env = _build_env(
        handle.pg_port, handle.redis_port, handle.password, handle.redis_password
    )
    from ops.images import engine, ensure_base, has_image

    docker = engine()
    ensure_base(docker)
    # A previous session that was killed may have left its project behind: start clean.
    handle.compose("down", "-v", "--remove-orphans", check=False)
    version = handle.env["SLIPWAY_VERSION"]
    missing = [s for s in SERVICES if not has_image(docker, f"slipway/{s}:{version}")]
    if missing:
        handle.compose("build", *missing)
    handle.compose("up", "-d", "--wait", *SERVICES)
    try:
        yield handle
    finally:
        if os.environ.get("SLIPWAY_IT_KEEP") != "1":
            handle.compose("down", "-v", "--remove-orphans", check=False)
