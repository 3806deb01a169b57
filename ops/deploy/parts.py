"""What each part of a one-host release runs, as one digest per part, so a deploy leaves alone
the parts whose inputs did not change (pure).

A part is a set of services a deploy starts in one step: the data services, nginx, the
monitoring stack. Its digest covers what compose would create them from: their definitions in
every compose file of the release, interpolated with the release's variables (a secret enters
as its own digest), the ids of their images, and the networks and volumes they can use. The
release records the digests (release.json), and the release's variables carry them
(SLIPWAY_CONFIG_<PART>), which compose/remote.yaml and compose/logging.yaml put in each
container's label org.slipway.config. So a deploy reads what runs from the containers
themselves, whatever started them (a deploy, a rollback, a restore): a part is skipped only
when each of its services runs, is not unhealthy, and carries the new release's digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from ops import compose
from ops.deploy.release import ComposeLoader, Tagged
from ops.errors import OpsError

MONITORING_SERVICES = (
    "prometheus",
    "alertmanager",
    "node-exporter",
    "postgres-exporter",
    "redis-exporter",
    "nginx-exporter",
    "blackbox-exporter",
)
DATA = "data"
NGINX = "nginx"
MONITORING = "monitoring"
# The services of each part; the log collector is one of the data services (it starts first,
# as the data stores send it their lines) where the release runs it.
PARTS: dict[str, tuple[str, ...]] = {
    DATA: ("postgres", "redis", "backup", compose.LOG_SERVICE),
    NGINX: ("nginx",),
    MONITORING: MONITORING_SERVICES,
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


def variable(part: str) -> str:
    """The release variable that carries the part's digest to its containers' label."""
    return f"SLIPWAY_CONFIG_{part.upper()}"


# ------------------------------------------------------------------------------ interpolation


def interpolate(text: str, values: Mapping[str, str]) -> str:
    """`text` with compose's variable syntax replaced as compose does: $$, $NAME, ${NAME},
    ${NAME:-word}, ${NAME-word}, ${NAME:+word}, ${NAME+word}, ${NAME:?err}, ${NAME?err}, the
    words themselves interpolated (nested defaults). A required variable that is unset is
    empty here: compose on the host stops with its message."""
    return _scan(text, 0, values, inside=False)[0]


def _scan(text: str, start: int, values: Mapping[str, str], inside: bool) -> tuple[str, int]:
    """Interpolated text from `start` to the end, or (inside a word) to its closing brace."""
    out: list[str] = []
    i = start
    while i < len(text):
        char = text[i]
        if inside and char == "}":
            return "".join(out), i + 1
        if char != "$":
            out.append(char)
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            value, i = _braced(text, i + 2, values)
            out.append(value)
        elif match := _NAME.match(text, i + 1):
            out.append(values.get(match.group(), ""))
            i = match.end()
        else:
            out.append("$")
            i += 1
    if inside:
        raise OpsError(f"unclosed ${{ in {text[:120]!r}")
    return "".join(out), i


def _braced(text: str, start: int, values: Mapping[str, str]) -> tuple[str, int]:
    match = _NAME.match(text, start)
    if not match:
        raise OpsError(f"invalid variable reference in {text[:120]!r}")
    name, i = match.group(), match.end()
    if text[i : i + 1] == "}":
        return values.get(name, ""), i + 1
    operator = next((op for op in _OPERATORS if text.startswith(op, i)), None)
    if operator is None:
        raise OpsError(f"invalid variable reference ${{{name}{text[i : i + 1]} in {text[:120]!r}")
    word, end = _scan(text, i + len(operator), values, inside=True)
    present = name in values
    filled = present and values[name] != ""
    if operator == ":-":
        return (values[name] if filled else word), end
    if operator == "-":
        return (values[name] if present else word), end
    if operator == ":+":
        return (word if filled else ""), end
    if operator == "+":
        return (word if present else ""), end
    return values.get(name, ""), end  # :? and ?


def _interpolated(tree: object, values: Mapping[str, str]) -> object:
    """Every string value of a loaded compose document interpolated (not the keys)."""
    if isinstance(tree, str):
        return interpolate(tree, values)
    if isinstance(tree, dict):
        return {str(key): _interpolated(value, values) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_interpolated(item, values) for item in tree]
    if isinstance(tree, Tagged):
        return {"tag": tree.tag, "value": _interpolated(tree.value, values)}
    return tree


# ------------------------------------------------------------------------------ digests


def env_values(text: str) -> dict[str, str]:
    """The KEY='value' lines of a release.env (ops/deploy/release.py `dotenv`)."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            found[key.strip()] = value.strip().removeprefix("'").removesuffix("'")
    return found


def digests(
    files: Mapping[str, str],
    overlays: Iterable[str],
    secret_values: Mapping[str, str],
    image_ids: Mapping[str, str],
    project: str,
) -> dict[str, str]:
    """The digest of each part from the release's files (compose.yaml, then `overlays`, then
    release.env's variables): the interpolated definitions of its services, their images'
    ids, and the networks and volumes of the files."""
    values = {
        **env_values(files.get("release.env", "")),
        **{k: hashlib.sha256(v.encode()).hexdigest() for k, v in secret_values.items()},
        "COMPOSE_PROJECT_NAME": project,
    }
    documents: list[dict[str, Any]] = []
    for name in ("compose.yaml", *overlays):
        if name not in files:
            continue
        loaded = yaml.load(files[name], Loader=ComposeLoader)  # noqa: S506  # nosec B506
        document = _interpolated(loaded, values)
        documents.append(document if isinstance(document, dict) else {})
    shared = [{k: d.get(k) for k in ("networks", "volumes")} for d in documents]
    result = {}
    for part, services in PARTS.items():
        described = []
        for service in services:
            pieces = [d.get("services", {}).get(service) for d in documents]
            pieces = [p for p in pieces if p is not None]
            images = [p["image"] for p in pieces if isinstance(p, dict) and "image" in p]
            image = images[-1] if images else ""
            described.append([service, pieces, image, image_ids.get(str(image), "")])
        blob = json.dumps([part, described, shared], sort_keys=True, default=str)
        result[part] = hashlib.sha256(blob.encode()).hexdigest()
    return result


def variables(part_digests: Mapping[str, str]) -> dict[str, str]:
    """The release variables that carry the digests to the containers' labels."""
    return {variable(part): digest for part, digest in sorted(part_digests.items())}


# ------------------------------------------------------------------------------ what runs


@dataclass(frozen=True)
class Running:
    """One container of the project as `docker ps` lists it (docker.CONFIG_FORMAT)."""

    service: str
    state: str
    status: str
    config: str


def parse_running(output: str) -> list[Running]:
    found = []
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[0]:
            config = fields[3] if len(fields) > 3 else ""
            found.append(Running(fields[0], fields[1], fields[2], config))
    return found


def unchanged(running: Iterable[Running], services: Iterable[str], digest: str) -> str:
    """Why the part can be left alone ('' when it cannot): each of its services has a
    container, every one running, not unhealthy nor still starting, and labelled with
    `digest`."""
    if not digest:
        return ""
    wanted = tuple(services)
    mine = [c for c in running if c.service in wanted]
    if {c.service for c in mine} != set(wanted):
        return ""
    for container in mine:
        if container.state != "running" or container.config != digest:
            return ""
        if "unhealthy" in container.status or "starting" in container.status:
            return ""
    healthy = sum("(healthy)" in c.status for c in mine)
    return f"{', '.join(wanted)}: running this configuration ({healthy} healthy)"
