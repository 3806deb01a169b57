"""`invoke deploy` and `invoke rollback`: the operation for the environment's shape (one host:
Compose, ops/deploy/onehost.py; several: Docker Swarm, ops/deploy/swarm/operation.py), run."""

from __future__ import annotations

from dataclasses import replace

from ops import compose, config, steps
from ops.compose import Build
from ops.deploy.deployment import Deployment
from ops.deploy.onehost import OneHostDeploy
from ops.deploy.swarm.operation import SwarmDeploy


def operation_for(env: config.Environment, build: Build, **options: object) -> Deployment:
    """Compose on one host; Docker Swarm for several."""
    kind = SwarmDeploy if env.is_swarm else OneHostDeploy
    return kind(env, build, **options)  # type: ignore[arg-type]


def deploy(
    env_name: str,
    version: str | None = None,
    dry_run: bool = False,
    skip_backup: bool = False,
    restore: bool = False,
) -> steps.Report:
    """Pre-flight, lock, build, ship, back up, migrate, switch, smoke, record."""
    env = config.load(env_name)
    build = compose.detect_build()
    if version:
        build = replace(build, version=compose.tag_safe(version))
    operation = operation_for(
        env,
        build,
        dry_run=dry_run,
        explicit_version=bool(version),
        skip_backup=skip_backup,
        restore=restore,
    )
    return operation.run(dry_run=dry_run)


def rollback(env_name: str, to: str | None = None, dry_run: bool = False) -> steps.Report:
    """Put a recorded release back (the previous successful one by default): no build, no
    registry, the images already on the hosts."""
    env = config.load(env_name)
    operation = operation_for(env, compose.detect_build(), kind="rollback", to=to, dry_run=dry_run)
    return operation.run(dry_run=dry_run)
