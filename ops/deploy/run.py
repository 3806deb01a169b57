"""`invoke deploy` and `invoke rollback`: the operation for the environment's shape (one host:
Compose, ops/deploy/onehost.py; several: Docker Swarm, ops/deploy/swarm/operation.py), run."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
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
    with terminate_as_interrupt():
        return operation.run(dry_run=dry_run)


def rollback(env_name: str, to: str | None = None, dry_run: bool = False) -> steps.Report:
    """Put a recorded release back (the previous successful one by default): no build, no
    registry, the images already on the hosts."""
    env = config.load(env_name)
    operation = operation_for(env, compose.detect_build(), kind="rollback", to=to, dry_run=dry_run)
    with terminate_as_interrupt():
        return operation.run(dry_run=dry_run)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (CI cancelling a job, `kill`) takes the same path as Ctrl-C: roll back what was
    switched, release the lock, say where things stand. Only SIGKILL skips that (the lock then
    goes stale after lock_ttl and the next deploy takes it over)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
