"""The sandbox's three images (hosts, ACME test server, registry): their tags and their builds.

Each image is a service of compose/sandbox.yaml, tagged with a digest of its own build inputs:
an edit of one means a new image of that one only (editing the ACME server never replaces
running hosts).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import docker

from ops import compose, images, proc
from ops.errors import OpsError
from ops.sandbox.names import up_command

BUILD_FILE = "compose/sandbox.yaml"
BUILD_PROJECT = "slipway-sandbox"
# The hosts' image (services/sandbox-host).
IMAGE = "slipway/sandbox-host"
BUILD_SERVICE = "sandbox-host"
BUILD_INPUTS = ("services/sandbox-host", BUILD_FILE)
# The ACME test server of `--tls=acme` (services/sandbox-acme, pebble). Not the deploy's ACME
# client: that is the `certbot` service of ops/deploy (its ACME_SERVICE).
ACME_SERVER_IMAGE = "slipway/sandbox-acme"
ACME_SERVER_SERVICE = "sandbox-acme"
ACME_SERVER_BUILD_INPUTS = ("services/sandbox-acme", BUILD_FILE)
# The registry of `--registry` (services/sandbox-registry).
REGISTRY_IMAGE = "slipway/sandbox-registry"
REGISTRY_SERVICE = "sandbox-registry"
REGISTRY_BUILD_INPUTS = ("services/sandbox-registry", BUILD_FILE)
# compose/sandbox.yaml's variable holding each service's tag.
TAG_VARIABLES = {
    BUILD_SERVICE: "SLIPWAY_SANDBOX_TAG",
    ACME_SERVER_SERVICE: "SLIPWAY_SANDBOX_ACME_TAG",
    REGISTRY_SERVICE: "SLIPWAY_SANDBOX_REGISTRY_TAG",
}


def image_tag(root: Path, inputs: Sequence[str] = BUILD_INPUTS) -> str:
    """`c.<12 hex>`: digest of the image's build inputs (names, exec bits, contents; not docs).

    BUILD_INPUTS for the hosts' image, ACME_SERVER_BUILD_INPUTS for the ACME server's."""
    digest = hashlib.sha256()
    for top in inputs:
        base = root / top
        if not base.exists():
            raise OpsError(f"{base} is missing: the sandbox image is built from it")
        found = sorted(base.rglob("*")) if base.is_dir() else [base]
        # Documentation is not copied into the image: editing it must not force a rebuild.
        files = [p for p in found if p.is_file() and p.suffix != ".md"]
        for path in files:
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(oct(path.stat().st_mode & 0o111).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return f"c.{digest.hexdigest()[:12]}"


def build_invocation(
    root: Path, tag: str, build: compose.Build, service: str = BUILD_SERVICE
) -> compose.Invocation:
    """`docker compose -p slipway-sandbox -f compose/sandbox.yaml build <service>` and its
    environment (sandbox-host, or sandbox-acme for the ACME server)."""
    env = dict(os.environ)
    env.pop("COMPOSE_FILE", None)
    env.update(
        {TAG_VARIABLES[service]: tag},
        SLIPWAY_GIT_SHA=build.git_sha,
        SLIPWAY_BUILD_CA=str(build.ca_bundle),
    )
    argv = ["docker", "compose", "-p", BUILD_PROJECT, "-f", str(root / BUILD_FILE)]
    return compose.Invocation([*argv, "build", service], env)


def build_image(
    root: Path, engine: docker.DockerClient, service: str, image: str, flag: str = ""
) -> str:
    """Build `image` (<name>:<tag>) of `service` through compose/sandbox.yaml; `flag` is the
    sandbox.up option that asks for it (named in the fix of a failed build)."""
    tag = image.rsplit(":", 1)[1]
    inv = build_invocation(root, tag, compose.detect_build(), service)
    proc.run(inv.argv, env=inv.env, cwd=root, what="docker compose build")
    # compose 2.40 with engine 20.10 may exit 0 after a failed build: trust the image only.
    if not images.has_image(engine, image):
        raise OpsError(
            f"the build did not produce {image}: see the BuildKit output above. "
            f"Fix services/{service}/Dockerfile, then `{up_command(flag)}` again"
        )
    return f"built {image}"
