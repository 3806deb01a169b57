"""Images: the debian:bookworm-slim base, and our images built through `docker compose build`.

The docker SDK inspects images; it never builds them: its legacy builder has no BuildKit
secrets, and the CA bundle reaches pip only as a secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException, ImageNotFound

from ops import docker_engine, paths, proc
from ops.compose import Compose
from ops.errors import OpsError

BASE_IMAGE = "debian:bookworm-slim"
SIZE_BUDGET_MB = 200
# Images whose size is a promise (issue 2: the listings image stays under 200 MB).
BUDGETED = ("slipway/listings",)


@dataclass(frozen=True)
class BuiltImage:
    """An image one or more compose services use, and the service that builds it."""

    image: str
    service: str
    # Every compose service that uses this image (api, worker and migrate share listings).
    users: tuple[str, ...] = ()


def has_image(engine: docker.DockerClient, name: str) -> bool:
    """True when the engine has an image with this name:tag."""
    try:
        engine.images.get(name)
    except ImageNotFound:
        return False
    return True


def try_pull(engine: docker.DockerClient, name: str) -> str | None:
    """Pull `name`; None when it worked, else the registry's answer (no registry, offline...)."""
    try:
        engine.images.pull(name)
    except DockerException as exc:
        return str(exc).splitlines()[0][:200]
    return None


def ensure_base(engine: docker.DockerClient, root: Path | None = None) -> str:
    """Make sure debian:bookworm-slim exists: pull it, else build it with debootstrap."""
    if has_image(engine, BASE_IMAGE):
        return f"{BASE_IMAGE} present"
    pull_error = try_pull(engine, BASE_IMAGE)
    if pull_error is None:
        return f"{BASE_IMAGE} pulled"
    print(f"    cannot pull {BASE_IMAGE} ({pull_error}); building it with debootstrap", flush=True)
    if os.geteuid() != 0:
        raise OpsError(
            f"{BASE_IMAGE} is missing and building it needs root (debootstrap). Fix: run "
            "`sudo invoke images.base`, or load it from a machine that has it: "
            f"`docker save {BASE_IMAGE} | docker load`"
        )
    if not Path("/etc/debian_version").is_file():
        raise OpsError(
            f"{BASE_IMAGE} is missing and this host is not Debian, so it cannot be debootstrapped. "
            f"Fix: `docker pull {BASE_IMAGE}`, or `docker save {BASE_IMAGE} | docker load` "
            "from a machine that has it"
        )
    script = (root or paths.repo_root()) / "scripts" / "build-base-image"
    proc.run([str(script), BASE_IMAGE], what="building the base image")
    return f"{BASE_IMAGE} built"


def built_images(config: Mapping[str, object]) -> list[BuiltImage]:
    """One (image, service) per image that has a `build:` section in the compose config."""
    services = config.get("services")
    if not isinstance(services, Mapping):
        raise OpsError("compose configuration has no services")
    builders: dict[str, str] = {}
    users: dict[str, list[str]] = {}
    for name in sorted(services):
        service = services[name]
        if not isinstance(service, Mapping):
            continue
        image = service.get("image")
        if "build" in service and not isinstance(image, str):
            raise OpsError(f"compose service {name!r} has build: but no image: name")
        if isinstance(image, str):
            users.setdefault(image, []).append(name)
            if "build" in service:
                builders.setdefault(image, name)
    return [BuiltImage(i, builders[i], tuple(users[i])) for i in sorted(builders)]


def plan(
    engine: docker.DockerClient,
    images: Sequence[BuiltImage],
    force: bool = False,
    services: Sequence[str] = (),
) -> list[BuiltImage]:
    """The images to build: missing ones (all selected ones when forced)."""
    selected = [b for b in images if not services or set(b.users or (b.service,)) & set(services)]
    if services and not selected:
        names = ", ".join(sorted({u for b in images for u in (b.users or (b.service,))}))
        raise OpsError(f"no buildable service among {', '.join(services)}. Buildable: {names}")
    return [b for b in selected if force or not has_image(engine, b.image)]


def build(
    compose: Compose,
    todo: Sequence[BuiltImage],
    force: bool = False,
    engine: docker.DockerClient | None = None,
) -> None:
    """`docker compose build <services>` (BuildKit, CA bundle as secret), then verify.

    compose 2.40 against engine 20.10 can exit 0 after a failed solve, so success is judged by
    the images that exist afterwards, not by the exit code alone.
    """
    if not todo:
        return
    args = ["build"]
    if force:
        args.append("--no-cache")
    compose.run(*args, *[b.service for b in todo], what="docker compose build")
    if engine is not None:
        missing = [b for b in todo if not has_image(engine, b.image)]
        if missing:
            raise OpsError(
                "build failed for "
                + ", ".join(f"{b.image} (service {b.service})" for b in missing)
                + ": see the BuildKit output above. Fix the Dockerfile or build context, then "
                "run the command again (images already built are kept)"
            )


def size_report(engine: docker.DockerClient, images: Sequence[BuiltImage]) -> list[str]:
    """One line per image with its size; budgeted images over 200 MB get a WARNING."""
    lines = []
    for b in images:
        try:
            size_mb = engine.images.get(b.image).attrs.get("Size", 0) / 1e6
        except ImageNotFound:
            lines.append(f"{b.image}: not built")
            continue
        line = f"{b.image}: {size_mb:.0f} MB"
        if b.image.split(":")[0] in BUDGETED:
            if size_mb >= SIZE_BUDGET_MB:
                line += f"  WARNING: over the {SIZE_BUDGET_MB} MB budget"
            else:
                line += f"  (budget {SIZE_BUDGET_MB} MB)"
        lines.append(line)
    return lines


def engine() -> docker.DockerClient:
    """The local engine (shortcut for tasks)."""
    return docker_engine.client()
