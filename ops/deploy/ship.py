"""Getting a release's images onto its hosts, and out of this machine as one file.

Without a registry an image goes `docker save` here | SSH | `docker load` there, each timed; an
image the host already has under another tag is only tagged. With a registry
(ops/deploy/registry.py) each image is pushed once per deploy and pulled by every host that
lacks it. `save` and `load` carry a release's images between machines as one tar file (CI
builds once and deploys the same images everywhere).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ops import compose, docker_engine, images, proc
from ops.deploy.commands import docker
from ops.deploy.images import LISTINGS_IMAGE, LocalEngine, content_tagged, image_refs
from ops.deploy.registry import Registry
from ops.errors import OpsError
from ops.executor import Executor


def image_id_on(remote: Executor, image: str) -> str:
    """The id of `image` (a reference or an id) on the host; "" when it has no such image."""
    return remote.run(docker.image_id(image), check=False).stdout.strip()


def image_ids_on(remote: Executor, images: Sequence[str]) -> dict[str, str]:
    """The id on the host of each image (a reference or an id), "" for those it lacks: one
    command."""
    if not images:
        return {}
    found = dict.fromkeys(images, "")
    for line in remote.run(docker.image_ids(images), check=False).stdout.splitlines():
        name, _, image_id = line.partition("\t")
        if name in found:
            found[name] = image_id.strip()
    return found


def not_recorded(remote: Executor, images: Mapping[str, str]) -> list[str]:
    """The refs of a release's images (ref -> recorded id) the host no longer has. It has one
    under its recorded id, or for a content-tagged image under the tag at all (the tag names
    its build inputs; on a swarm another host may hold another build of them, shipped from
    here)."""
    ids = image_ids_on(remote, [*images.values(), *images])
    return [
        ref
        for ref, image_id in images.items()
        if ids.get(image_id) != image_id and not (content_tagged(ref) and ids.get(ref))
    ]


def point_tags(remote: Executor, images: Mapping[str, str]) -> int:
    """Point each ref back at its recorded image (a rebuild may have moved it since), in one
    command, where it does not already; a content tag whose recorded id this host never had
    already names the same build. Returns how many moved."""
    ids = image_ids_on(remote, [*images.values(), *images])
    moves = [
        (image_id, ref)
        for ref, image_id in images.items()
        if ids.get(image_id) == image_id and ids.get(ref) != image_id
    ]
    if moves:
        remote.run(docker.tags(moves))
    return len(moves)


def prune_listings_images(remote: Executor, kept: set[str]) -> None:
    """Remove the listings images no kept release uses (docker refuses to remove those a
    container runs; infrastructure images are kept)."""
    listed = remote.run(docker.image_refs(LISTINGS_IMAGE), check=False).stdout.split()
    unused = [ref for ref in listed if ref not in kept]
    if unused:
        remote.run(docker.remove_images(unused), check=False)


def over_ssh(local: LocalEngine, remote: Executor, refs: Sequence[str]) -> str:
    """docker save here | SSH | docker load there, each image timed."""
    shipped = []
    for ref in refs:
        image_id = local.image_id(ref) or ""
        if image_id and image_id_on(remote, image_id) == image_id:
            remote.run(docker.tag(image_id, ref))  # same content under another tag
            shipped.append(f"{ref} (tagged)")
            continue
        began = time.monotonic()
        remote.stream_into(docker.load(ref), local.save(ref))
        took = time.monotonic() - began
        print(
            f"    {remote.label} {ref}: {local.size(ref) / 1e6:.0f} MB in {took:.1f}s", flush=True
        )
        shipped.append(ref)
    return ", ".join(shipped)


class Shipper:
    """Ships the images of one deploy: through the registry (each pushed once) or over SSH."""

    def __init__(self, local: LocalEngine, registry: Registry | None) -> None:
        self.local = local
        self.registry = registry
        self.pushed: set[str] = set()

    def to(self, remote: Executor, refs: Sequence[str]) -> str:
        if not refs:
            return "nothing to ship"
        if self.registry is None:
            return over_ssh(self.local, remote, refs)
        new = [r for r in refs if r not in self.pushed]
        for done in self.registry.push(self.local.client, new):
            print(f"    pushed {done.registry_ref} in {done.seconds:.1f}s", flush=True)
        self.pushed.update(new)
        ids = {ref: self.local.image_id(ref) or "" for ref in refs}
        for done in self.registry.pull_on_host(remote, refs, ids):
            print(f"    {remote.label} pulled {done.ref} in {done.seconds:.1f}s", flush=True)
        return ", ".join(f"{r} (registry)" for r in refs)


# ------------------------------------------------------------------------------ one file


def release_refs(version: str | None) -> list[str]:
    """Every image a release of `version` (default: this checkout's) may run: one artifact
    deploys to local-ca and acme environments, with or without monitoring."""
    build = compose.detect_build()
    if version:
        build = dataclasses.replace(build, version=compose.tag_safe(version))
    return image_refs(build, acme=True, monitoring=True)


def save(output: Path, version: str | None = None) -> str:
    """`docker save` every image of the release into `output` (written atomically)."""
    wanted = release_refs(version)
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
