"""The files of a release, rendered here (pure): the compose files without build sections,
the non-secret variables, the secrets file, the digest that says whether anything changed,
and the certificate tarball of a local CA.

A release directory on a host holds exactly what compose runs there (docs/architecture.md,
"Deploys to hosts"); a swarm release adds its stack files (ops/deploy/swarm/stackfile.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from collections.abc import Mapping

import yaml

from ops import compose, config, paths, secrets
from ops.compose import Build
from ops.errors import OpsError


def render_compose(base_text: str, name: str = "compose.yaml") -> str:
    """A compose file for a host: no build sections, no build secrets (images are shipped)."""
    data = yaml.load(base_text, Loader=ComposeLoader)  # noqa: S506  # nosec B506: safe subclass
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise OpsError(f"compose/{name} has no services")
    for service in data["services"].values():
        if isinstance(service, dict) and service.pop("build", None) is not None:
            service["pull_policy"] = "never"
    data.pop("secrets", None)
    header = (
        f"# Rendered by `invoke deploy` from compose/{name} for this release: build\n"
        "# sections removed (images are shipped, never built on the host).\n"
    )
    return header + yaml.dump(
        data, Dumper=_ComposeDumper, sort_keys=False, default_flow_style=False
    )


class Tagged:
    """A value with a compose merge tag (`!override`, `!reset`), kept through a render."""

    def __init__(self, tag: str, value: object) -> None:
        self.tag = tag
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader that keeps compose's `!override` and `!reset` tags."""


class _ComposeDumper(yaml.SafeDumper):
    """SafeDumper that writes them back, and no aliases (each service gets its own copy)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _construct_tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Tagged:
    if isinstance(node, yaml.MappingNode):
        return Tagged(node.tag, loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Tagged(node.tag, loader.construct_sequence(node, deep=True))
    return Tagged(node.tag, loader.construct_scalar(node))  # type: ignore[arg-type]


def _represent_tagged(dumper: yaml.SafeDumper, data: Tagged) -> yaml.Node:
    if isinstance(data.value, dict):
        return dumper.represent_mapping(data.tag, data.value)
    if isinstance(data.value, list):
        return dumper.represent_sequence(data.tag, data.value)
    return dumper.represent_scalar(data.tag, str(data.value))


for _tag in ("!override", "!reset"):
    ComposeLoader.add_constructor(_tag, _construct_tagged)
_ComposeDumper.add_representer(Tagged, _represent_tagged)


def release_env(
    env: config.Environment, build: Build, release_id: str, secret_names: set[str]
) -> dict[str, str]:
    """Every non-secret variable the compose files need on the host."""
    values = compose.compose_env(
        env, secrets.Secrets({}, secrets.env_file(env)), build, paths.repo_root(), {}
    )
    for name in secret_names:
        values.pop(name, None)
    values.pop("SLIPWAY_TLS_DIR", None)
    values.update(
        {
            "SLIPWAY_RELEASE": release_id,
            "SLIPWAY_BUILD_CA": "/dev/null",
        }
    )
    return values


def dotenv(values: dict[str, str]) -> str:
    """KEY='value' lines (single quotes: compose takes the value literally)."""
    lines = []
    for key in sorted(values):
        value = values[key]
        if "'" in value or "\n" in value:
            raise OpsError(f"value of {key} contains a quote or newline, which .env cannot hold")
        lines.append(f"{key}='{value}'\n")
    return "".join(lines)


def release_digest(
    files: Mapping[str, str], image_ids: Mapping[str, str], secret_values: Mapping[str, str]
) -> str:
    """What a release runs, as one digest (secrets enter only as their own digests)."""
    hashed = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in secret_values.items()}
    blob = json.dumps([dict(files), dict(image_ids), hashed], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def tls_tarball(cert: bytes, key: bytes) -> bytes:
    """tls.crt and tls.key as a tar stream, owned by nginx (uid 101), key private."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data, mode in (("tls.crt", cert, 0o644), ("tls.key", key, 0o600)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.uid = info.gid = 101
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def release_files(
    env: config.Environment, build: Build, release_id: str, monitoring: bool
) -> dict[str, str]:
    """The files of a one-host release directory: exactly what compose runs on the host."""
    compose_dir = paths.compose_dir()
    values = release_env(env, build, release_id, set(secrets.RELEASE_SECRETS))
    files = {
        "compose.yaml": render_compose((compose_dir / "compose.yaml").read_text()),
        "remote.yaml": (compose_dir / "remote.yaml").read_text(),
        "release.env": dotenv(values),
    }
    if monitoring:
        name = compose.LOGGING_OVERLAY
        files[name] = render_compose((compose_dir / name).read_text(), name)
    if env.backup.s3:
        name = compose.BACKUP_S3_OVERLAY
        files[name] = (compose_dir / name).read_text()
    return files


def secrets_file(values: Mapping[str, str]) -> str:
    """secrets.env of a release: every release secret, an optional one empty when unset. Each
    release keeps the secrets it was deployed with: a rollback, or the release still running
    after a failed deploy, never runs with another release's secrets."""
    return dotenv({k: values.get(k, "") for k in secrets.RELEASE_SECRETS})
