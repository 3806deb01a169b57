"""The images of a release, and this machine's engine as a deploy uses it.

A release runs slipway/listings at the release version and the infrastructure images at
content tags (certbot with tls: acme; Prometheus, Alertmanager, the exporters and the log
collector with monitoring). `LocalEngine` is everything a deploy asks of this machine's Docker
engine: which images exist, building the missing ones, rendering the alert receivers in a
throwaway container, and the bytes of an image to ship. Unit tests replace it with a fake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import docker
import requests
from docker.errors import DockerException, ImageNotFound

from ops import config, docker_engine, images, paths, secrets
from ops.compose import Build, Compose
from ops.errors import OpsError

LISTINGS_IMAGE = "slipway/listings"
INFRA_IMAGES = {
    "SLIPWAY_POSTGRES_TAG": "slipway/postgres",
    "SLIPWAY_REDIS_TAG": "slipway/redis",
    "SLIPWAY_NGINX_TAG": "slipway/nginx",
}
# Only environments with tls: acme run certbot (compose profile acme).
ACME_IMAGES = {"SLIPWAY_CERTBOT_TAG": "slipway/certbot"}
# Environments that run the monitoring stack and the central logs (compose.runs_monitoring).
MONITORING_IMAGES = {
    "SLIPWAY_LOGS_TAG": "slipway/logs",
    "SLIPWAY_PROMETHEUS_TAG": "slipway/prometheus",
    "SLIPWAY_ALERTMANAGER_TAG": "slipway/alertmanager",
    "SLIPWAY_EXPORTERS_TAG": "slipway/exporters",
}
ALERTMANAGER_ENTRYPOINT = "/usr/local/bin/alertmanager-entrypoint"


def image_refs(build: Build, acme: bool = False, monitoring: bool = False) -> list[str]:
    """Every image a release runs: listings at the release version, infra at content tags."""
    refs = [f"{LISTINGS_IMAGE}:{build.version}"]
    extra = {**(ACME_IMAGES if acme else {}), **(MONITORING_IMAGES if monitoring else {})}
    for var, name in {**INFRA_IMAGES, **extra}.items():
        refs.append(f"{name}:{build.image_tags.get(var, build.version)}")
    return refs


def nginx_ref(build: Build) -> str:
    return f"{INFRA_IMAGES['SLIPWAY_NGINX_TAG']}:{build.image_tags['SLIPWAY_NGINX_TAG']}"


def content_tagged(ref: str) -> bool:
    """Infrastructure tags name their build inputs: a host that has the tag runs the same thing
    even if this machine built it again (another id)."""
    return not ref.startswith(f"{LISTINGS_IMAGE}:")


@contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """The engine's own failures (a full disk, the daemon gone) as an operator's error."""
    try:
        yield
    except (DockerException, requests.RequestException) as exc:
        raise OpsError(
            f"{what} failed on this machine's Docker engine: {exc}. Fix: check `docker info` "
            "and the free disk of Docker's data root, then run the command again"
        ) from exc


# Printed by a container of the listings image: the head of its migrations.
SCHEMA_HEAD = "from listings.migrate import head_revision; print(head_revision())"


class LocalEngine:
    """This machine's Docker engine, as a deploy uses it (connected at first use)."""

    def __init__(self, connect: Callable[[], docker.DockerClient] = docker_engine.client) -> None:
        self._connect = connect
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def image_id(self, ref: str) -> str | None:
        """The image's id here, None when this engine has no such image."""
        with engine_errors(f"reading the image {ref}"):
            try:
                return str(self.client.images.get(ref).id)
            except ImageNotFound:
                return None

    def missing(self, refs: list[str]) -> list[str]:
        return [ref for ref in refs if self.image_id(ref) is None]

    def size(self, ref: str) -> int:
        with engine_errors(f"reading the image {ref}"):
            return int(self.client.images.get(ref).attrs.get("Size", 0))

    def save(self, ref: str) -> Iterator[bytes]:
        """The image as a tar stream naming `ref` (named=True would name its first tag)."""
        with engine_errors(f"`docker save` of {ref}"):
            image = self.client.images.get(ref)
            save = getattr(image, "save")  # noqa: B009 - docker's Image.save, chunked tar stream
            yield from save(chunk_size=1024 * 1024, named=ref)

    def build_missing(self, env: config.Environment, values: secrets.Secrets, build: Build) -> str:
        """Build the images of this version the engine lacks (base image first)."""
        comp = Compose(env, values, build, paths.repo_root())
        todo = images.plan(self.client, images.built_images(comp.config()))
        if not todo:
            return "all present"
        print(f"    building {', '.join(b.image for b in todo)}", flush=True)
        images.ensure_base(self.client)
        images.build(comp, todo, engine=self.client)
        return f"built {len(todo)}"

    def schema_head(self, ref: str) -> str:
        """The newest schema revision the listings image `ref` ships (its migrations, as
        alembic reads them in a container of it without a network)."""
        try:
            out = self.client.containers.run(
                ref,
                ["-c", SCHEMA_HEAD],
                entrypoint="python",
                network_mode="none",
                remove=True,
                stdout=True,
                stderr=True,
            )
        except (DockerException, requests.RequestException) as exc:
            raise OpsError(f"could not read the schema revision of {ref} here: {exc}") from exc
        text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
        return text.strip().splitlines()[-1] if text.strip() else ""

    def render_alert_receivers(self, ref: str, given: Mapping[str, str]) -> None:
        """Alertmanager's entrypoint renders the receivers in a container of `ref` without a
        network; the rendered file (it holds the secrets) goes to /dev/null, never to a log.
        A receiver it cannot use raises OpsError with its message."""
        try:
            self.client.containers.run(
                ref,
                ["-c", f"exec {ALERTMANAGER_ENTRYPOINT} render >/dev/null"],
                entrypoint="/bin/sh",
                environment=dict(given),
                network_mode="none",
                remove=True,
                stdout=False,
                stderr=True,
            )
        except docker.errors.ContainerError as exc:
            raw = exc.stderr or b""
            detail = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            raise OpsError(detail.strip()[-600:]) from exc
        except (DockerException, requests.RequestException) as exc:
            raise OpsError(f"Alertmanager's image could not render them here: {exc}") from exc
