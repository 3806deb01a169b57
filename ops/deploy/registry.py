"""Shipping images through a registry (`registry:`): push from this machine, pull on a host.

docs/architecture.md, "Shipping through a registry". Compose files, releases, rollbacks and
pruning only ever see canonical names (`slipway/<name>:<tag>`). A registry name
(`<push>/<name>:<tag>` here, `<pull>/<name>:<tag>` on the host) exists only around one transfer:
this machine removes its registry tag after the push, the host removes its own once the pulled
image carries the canonical name and its id was checked against this machine's.

Credentials (secrets.registry_credentials) reach this machine's engine in the push request
only, and the host through the SSH channel's standard input of `docker login --password-stdin`,
into a temporary DOCKER_CONFIG removed when the pull ends, whatever happened: never a command
line, a file left on the host, a release or a message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import docker
from docker.errors import DockerException, NotFound

from ops import config, secrets
from ops.errors import OpsError
from ops.executor import Executor, change, quote

# The canonical namespace of our images: slipway/listings:v1 is <prefix>/listings:v1 there.
CANONICAL_NAMESPACE = "slipway"
# Exit codes of the host script: which step failed.
EXIT_LOGIN = 10
EXIT_PULL = 11
EXIT_ID = 12
EXIT_TAG = 13
_STEPS = {
    EXIT_LOGIN: "docker login",
    EXIT_PULL: "docker pull",
    EXIT_ID: "image id check",
    EXIT_TAG: "docker tag",
}
_PATH_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_AUTH_WORDS = ("unauthorized", "authentication required", "no basic auth credentials", "denied")
_TLS_WORDS = ("x509", "certificate", "tls:")
_NETWORK_WORDS = ("connection refused", "no such host", "timeout", "no route to host")


@dataclass(frozen=True)
class Transfer:
    """One image moved: its canonical reference, its name in the registry, the seconds taken."""

    ref: str
    registry_ref: str
    seconds: float


def split_ref(ref: str) -> tuple[str, str]:
    """(repository, tag) of a canonical image reference; an error for anything else.

    A reference with a digest, without a tag, or whose first component names a registry (a '.',
    a ':' or localhost) is refused: those are not the local names a release uses."""
    repository, sep, tag = ref.rpartition(":")
    parts = repository.split("/")
    problem = ""
    if "@" in ref:
        problem = "has a digest"
    elif not sep or "/" in tag or not _TAG_RE.match(tag):
        problem = "has no tag"
    elif len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        problem = "already names a registry"
    elif not all(_PATH_RE.match(part) for part in parts):
        problem = "is not a valid repository name"
    if problem:
        raise OpsError(
            f"image reference {ref!r} {problem}: only local name:tag references (e.g. "
            f"{CANONICAL_NAMESPACE}/listings:v1) can be shipped through a registry"
        )
    return repository, tag


def registry_ref(prefix: str, ref: str) -> str:
    """`ref` under the registry address `prefix`: slipway/listings:v1 -> <prefix>/listings:v1.

    Other repositories keep their whole path: debian:bookworm-slim -> <prefix>/debian:..."""
    repository, tag = split_ref(ref)
    name = repository.removeprefix(f"{CANONICAL_NAMESPACE}/")
    return f"{prefix.rstrip('/')}/{name}:{tag}"


def registry_host(prefix: str) -> str:
    """host[:port] of a registry address (what `docker login` and certs.d name)."""
    return prefix.split("/", 1)[0]


def _fix(message: str, address: str, where: str, credentials: str) -> str:
    """The fix for a registry error, from the words the engine used."""
    low = message.lower()
    if any(word in low for word in _AUTH_WORDS):
        return (
            f"Fix: check {secrets.REGISTRY_USER}/{secrets.REGISTRY_PASSWORD} ({credentials}): "
            f"the registry at {address} refused them, or needs them and none are set"
        )
    if any(word in low for word in _TLS_WORDS):
        return (
            f"Fix: {where} must trust the registry's certificate: put its CA into "
            f"/etc/docker/certs.d/{registry_host(address)}/ca.crt there (no restart needed)"
        )
    if any(word in low for word in _NETWORK_WORDS):
        return f"Fix: check that the registry at {address} runs and that {where} reaches it"
    return f"Fix: check the registry at {address} (its log) and {where}'s Docker engine"


@dataclass(frozen=True)
class Registry:
    """Where images go (`push_to`, from this machine) and come from (`pull_from`, on hosts)."""

    push_to: str
    pull_from: str
    credentials: secrets.RegistryCredentials | None = None
    env_name: str = ""

    @classmethod
    def from_env(
        cls, env: config.Environment, credentials: secrets.RegistryCredentials | None
    ) -> Registry:
        """The registry of `env` with `credentials` (secrets.registry_credentials(env))."""
        if env.registry is None:
            raise OpsError(
                f"{env.source}: environment {env.name!r} has registry: none, so images go over "
                "SSH. Fix: set `registry:` in the environment file to ship through a registry"
            )
        return cls(env.registry.push, env.registry.pull, credentials, env.name)

    @property
    def _credentials_where(self) -> str:
        env_file = f".env.{self.env_name}" if self.env_name else ".env.<name>"
        if self.credentials is None:
            return f"none set: {env_file} or the process environment"
        if self.credentials.source:
            return f"from {self.credentials.source}"
        return f"in {env_file} or the process environment"

    def push_ref(self, ref: str) -> str:
        return registry_ref(self.push_to, ref)

    def pull_ref(self, ref: str) -> str:
        return registry_ref(self.pull_from, ref)

    # ------------------------------------------------------------------ this machine

    def push(self, engine: docker.DockerClient, refs: Sequence[str]) -> list[Transfer]:
        """Tag each image as <push>/<name>:<tag>, push it, then remove that tag here."""
        done = []
        for ref in refs:
            done.append(self._push_one(engine, ref))
        return done

    def _push_one(self, engine: docker.DockerClient, ref: str) -> Transfer:
        target = self.push_ref(ref)
        repository, tag = target.rsplit(":", 1)
        began = time.monotonic()
        try:
            image = engine.images.get(ref)
        except NotFound as exc:
            raise OpsError(f"cannot push {ref}: no such image here. Fix: build it first") from exc
        except DockerException as exc:
            raise OpsError(f"cannot push {ref}: {exc}") from exc
        auth = None
        if self.credentials is not None:
            auth = {"username": self.credentials.user, "password": self.credentials.password}
        try:
            if not image.tag(repository, tag):
                raise OpsError(f"cannot tag {ref} as {target}")
            try:
                stream = engine.api.push(
                    repository, tag=tag, stream=True, decode=True, auth_config=auth
                )
                error = push_error(stream)
            except DockerException as exc:
                error = str(getattr(exc, "explanation", None) or exc)
        finally:
            _untag(engine, target)
        if error:
            fix = _fix(error, self.push_to, "this machine", self._credentials_where)
            raise OpsError(f"push of {ref} to {target} failed: {error}. {fix}")
        took = time.monotonic() - began
        size = int(image.attrs.get("Size", 0))
        print(f"    {ref}: pushed to {target} ({size / 1e6:.0f} MB) in {took:.1f}s", flush=True)
        return Transfer(ref, target, took)

    # ------------------------------------------------------------------ the host

    def host_script(self, ref: str, expected_id: str) -> str:
        """The shell script that pulls `ref` on a host (the password comes on standard input).

        A temporary DOCKER_CONFIG holds the login for this script only and is removed on any
        exit; the pulled image must have `expected_id`, then gets the canonical name and loses
        the registry's."""
        if not _ID_RE.match(expected_id):
            raise OpsError(f"internal: {expected_id!r} is not an image id (sha256:<64 hex>)")
        source = quote(self.pull_ref(ref))
        lines = [
            "set -u",
            "umask 077",
            # Memory-backed where the host has it: the login never reaches a disk.
            "DOCKER_CONFIG=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d) || exit 1",
            "export DOCKER_CONFIG",
            "trap 'rm -rf \"$DOCKER_CONFIG\"' EXIT",
            "trap 'exit 129' HUP INT TERM",
        ]
        if self.credentials is not None:
            # Its output only on failure: on success it warns about the (temporary) file.
            lines += [
                f"out=$(docker login --username={quote(self.credentials.user)} --password-stdin "
                f"{quote(registry_host(self.pull_from))} 2>&1) || {{",
                '  printf "%s\\n" "$out" >&2',
                f"  exit {EXIT_LOGIN}",
                "}",
            ]
        lines += [
            f"docker pull -q {source} >/dev/null || exit {EXIT_PULL}",
            f"id=$(docker image inspect -f '{{{{.Id}}}}' {source}) || exit {EXIT_PULL}",
            f'if [ "$id" != {quote(expected_id)} ]; then',
            f"  docker rmi {source} >/dev/null 2>&1",
            f'  echo "pulled image id $id, expected {expected_id}" >&2',
            f"  exit {EXIT_ID}",
            "fi",
            f"docker tag {source} {quote(ref)} || exit {EXIT_TAG}",
            f"docker rmi {source} >/dev/null || exit {EXIT_TAG}",
        ]
        return "\n".join(lines) + "\n"

    def pull_on_host(
        self, remote: Executor, refs: Sequence[str], expected_ids: Mapping[str, str]
    ) -> list[Transfer]:
        """Pull each image on the host, check its id, give it its canonical name (one SSH
        command per image; the login lives only as long as that command)."""
        done = []
        for ref in refs:
            if ref not in expected_ids:
                raise OpsError(f"internal: no expected image id for {ref}")
            done.append(self._pull_one(remote, ref, expected_ids[ref]))
        return done

    def _pull_one(self, remote: Executor, ref: str, expected_id: str) -> Transfer:
        source = self.pull_ref(ref)
        script = self.host_script(ref, expected_id)
        stdin = None if self.credentials is None else self.credentials.password + "\n"
        began = time.monotonic()
        command = change(
            script,
            f"pull {source}",
            shown=f"docker pull {source}; check its id is {expected_id[:19]}...; tag it {ref}",
        )
        result = remote.run(command, check=False, stdin=stdin)
        took = time.monotonic() - began
        if not result.ok:
            step = _STEPS.get(result.code, f"exit {result.code}")
            detail = (result.stderr.strip() or result.stdout.strip())[-1500:] or "no output"
            where = f"the host {remote.label}"
            if result.code == EXIT_ID:
                fix = (
                    f"Fix: {source} in the registry is not the image built here; push it again "
                    "(another machine may have pushed the same tag)"
                )
            else:
                fix = _fix(detail, self.pull_from, where, self._credentials_where)
            raise OpsError(
                f"pull of {ref} from {source} on {remote.label} failed ({step}): {detail}. {fix}"
            )
        print(f"    {ref}: pulled from {source} on {remote.label} in {took:.1f}s", flush=True)
        return Transfer(ref, source, took)


def push_error(stream: Iterable[Any]) -> str:
    """Read a push's JSON progress to the end: the registry's error message, '' when none."""
    error = ""
    for chunk in stream:
        if not isinstance(chunk, dict):
            continue
        detail = chunk.get("errorDetail")
        if isinstance(detail, dict) and detail.get("message"):
            error = str(detail["message"])
        elif chunk.get("error"):
            error = str(chunk["error"])
    return error


def _untag(engine: docker.DockerClient, target: str) -> None:
    """Remove the registry tag here (the image keeps its canonical name)."""
    try:
        engine.api.remove_image(target, noprune=True)
    except NotFound:
        return
    except DockerException as exc:
        print(f"    WARNING: could not remove the tag {target} here: {exc}", flush=True)
