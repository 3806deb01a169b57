"""Images of a release as one tar file: built once in CI, deployed to every environment."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ops import compose, docker_engine, images, proc
from ops.deploy.deployment import image_refs
from ops.errors import OpsError


def refs(version: str | None) -> list[str]:
    """The image references of `version` (default: this checkout's)."""
    build = compose.detect_build()
    if version:
        build = dataclasses.replace(build, version=compose.tag_safe(version))
    # Every image a release may run: one artifact deploys to local-ca and acme environments,
    # with or without monitoring.
    return image_refs(build, acme=True, monitoring=True)


def save(output: Path, version: str | None = None) -> str:
    """`docker save` every image of the release into `output` (written atomically)."""
    wanted = refs(version)
    engine = docker_engine.client()
    missing = [r for r in wanted if not images.has_image(engine, r)]
    if missing:
        raise OpsError(
            f"cannot save: {', '.join(missing)} not built. Fix: `invoke build` first "
            "(with SLIPWAY_VERSION set to the same version)"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    proc.run(["docker", "save", "-o", str(partial), *wanted], what="docker save")
    os.replace(partial, output)
    return f"saved {', '.join(wanted)} to {output} ({output.stat().st_size / 1e6:.0f} MB)"


def load(source: Path) -> str:
    """`docker load` a tar file written by save()."""
    if not source.is_file():
        raise OpsError(f"{source} does not exist. Fix: pass the file `invoke images.save` wrote")
    result = proc.run(["docker", "load", "-i", str(source)], capture=True, what="docker load")
    loaded = [line.split(": ", 1)[-1] for line in result.stdout.splitlines() if ": " in line]
    return "loaded " + (", ".join(loaded) or "nothing")
