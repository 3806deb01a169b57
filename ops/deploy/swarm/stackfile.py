"""The files of a swarm release, rendered here (pure apart from `docker compose config`,
which reads and changes nothing): the stack file `docker stack deploy` takes (compose.yaml +
compose/swarm.yaml reduced to what it understands, secrets left as ${VARIABLES} the manager's
shell fills in from the release's secrets.env), the data stack started first, and the overlay
with which one-off containers (migrations, certbot, the backup tools) join the stack's
networks and volumes on the first host."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from ops import compose, config, paths, proc, secrets
from ops.deploy.certificates import CERTBOT_SERVICE
from ops.errors import OpsError

STACK_FILE = "stack.yaml"  # the whole stack, as `docker stack deploy` runs it
ONEOFF_FILE = "swarm-oneoff.yaml"
DATA_STACK_FILE = "stack-data.yaml"
# Services the stack does not run: one-off containers (`docker compose run` on the manager).
ONEOFF_SERVICES = ("migrate",)
# The backup tools' one-off containers (profile `tools`, ops/backup/), on the first host.
BACKUP_TOOLS = ("backup-restore", "backup-drill", "backup-export")
# Volumes of the stack that one-off containers mount (external in the one-off overlay).
ONEOFF_VOLUMES = (
    "acme-webroot",
    "letsencrypt",
    "postgres-data",
    "postgres-backups",
    "postgres-socket",
    "backup-metrics",
    "backup-drill",
)
NODE_LABELS = ("slipway.data", "slipway.edge")
STACK_VERSION = "3.9"
_SENTINEL = "SLIPWAYSECRET{}ENDSECRET"

# What `docker stack deploy` (compose file format 3.9) accepts; everything else compose config
# prints is dropped (build, depends_on, pull_policy, restart: Swarm has deploy.restart_policy).
_SERVICE_KEYS = (
    "image",
    "command",
    "entrypoint",
    "environment",
    "healthcheck",
    "labels",
    "logging",
    "networks",
    "ports",
    "read_only",
    "cap_add",
    "cap_drop",
    "stop_grace_period",
    "stop_signal",
    "user",
    "volumes",
    "working_dir",
    "init",
    "ulimits",
    "sysctls",
    "extra_hosts",
    "deploy",
)
_DEPLOY_KEYS = (
    "mode",
    "replicas",
    "endpoint_mode",
    "labels",
    "update_config",
    "rollback_config",
    "restart_policy",
    "placement",
    "resources",
)
_HEALTH_KEYS = ("test", "interval", "timeout", "retries", "start_period", "disable")
_NETWORK_KEYS = ("name", "driver", "internal", "attachable", "external", "labels")
_VOLUME_KEYS = ("name", "external", "driver", "labels")


# ------------------------------------------------------------------------------ pure parts


def sentinel_secrets() -> dict[str, str]:
    """Stand-ins for the secrets while compose renders the stack (never real values)."""
    return {name: _SENTINEL.format(name) for name in secrets.RELEASE_SECRETS}


def _mount(entry: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {
        k: entry[k] for k in ("type", "source", "target", "read_only") if k in entry
    }
    for nested, allowed in (
        ("tmpfs", ("size",)),
        ("volume", ("nocopy",)),
        ("bind", ("propagation",)),
    ):
        inner = {k: v for k, v in (entry.get(nested) or {}).items() if k in allowed}
        if inner:
            kept[nested] = inner
    return kept


def _tmpfs_mounts(tmpfs: object) -> list[dict[str, Any]]:
    """Service-level tmpfs (ignored by Swarm) as tmpfs mounts (which it honours)."""
    entries = [tmpfs] if isinstance(tmpfs, str) else list(tmpfs) if isinstance(tmpfs, list) else []
    mounts = []
    for entry in entries:
        target, _, options = str(entry).partition(":")
        mount: dict[str, Any] = {"type": "tmpfs", "target": target}
        for option in options.split(","):
            key, _, value = option.partition("=")
            if key == "size" and value:
                mount["tmpfs"] = {"size": _bytes(value)}
        mounts.append(mount)
    return mounts


def _bytes(size: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = size.strip().lower().rstrip("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def _port(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "target": int(entry["target"]),
        "published": int(entry["published"]),
        "protocol": entry.get("protocol", "tcp"),
        "mode": entry.get("mode", "host"),
    }


def _deploy(data: Mapping[str, Any]) -> dict[str, Any]:
    kept = {k: data[k] for k in _DEPLOY_KEYS if k in data}
    resources = kept.get("resources") or {}
    clean: dict[str, Any] = {}
    for kind in ("limits", "reservations"):
        values = {k: v for k, v in (resources.get(kind) or {}).items() if k in ("cpus", "memory")}
        # The 3.9 schema wants strings; a plain number of bytes is read as bytes.
        values = {k: str(v) for k, v in values.items() if str(v) not in ("0", "0.0", "")}
        if values:
            clean[kind] = values
    if clean:
        kept["resources"] = clean
    else:
        kept.pop("resources", None)
    return kept


def _service(data: Mapping[str, Any]) -> dict[str, Any]:
    kept = {k: data[k] for k in _SERVICE_KEYS if k in data and data[k] is not None}
    if "healthcheck" in kept:
        kept["healthcheck"] = {k: v for k, v in kept["healthcheck"].items() if k in _HEALTH_KEYS}
    if "environment" in kept:
        kept["environment"] = {k: str(v) for k, v in kept["environment"].items() if v is not None}
    mounts = [_mount(m) for m in data.get("volumes") or []]
    mounts += _tmpfs_mounts(data.get("tmpfs"))
    if mounts:
        kept["volumes"] = mounts
    if "ports" in kept:
        kept["ports"] = [_port(p) for p in kept["ports"]]
    if "deploy" in kept:
        kept["deploy"] = _deploy(kept["deploy"])
    return kept


def _escape(value: Any, secret_names: Iterable[str]) -> Any:
    """`$` doubled for the stack loader's interpolation, then each secret's stand-in made a
    ${NAME} that the manager's shell fills in."""
    if isinstance(value, str):
        text = value.replace("$", "$$")
        for name in secret_names:
            text = text.replace(_SENTINEL.format(name), "${" + name + "}")
        return text
    if isinstance(value, dict):
        return {k: _escape(v, secret_names) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v, secret_names) for v in value]
    return value


def stack_document(resolved: Mapping[str, Any], only: Iterable[str] = ()) -> dict[str, Any]:
    """The stack file for `docker stack deploy` from `docker compose config --format json`
    output rendered with sentinel_secrets(); `only` keeps just those services."""
    services = resolved.get("services")
    if not isinstance(services, Mapping):
        raise OpsError("the rendered compose configuration has no services")
    wanted = set(only)
    chosen = {
        name: _service(data)
        for name, data in services.items()
        if name not in ONEOFF_SERVICES and (not wanted or name in wanted)
    }
    used_networks = {n for s in chosen.values() for n in (s.get("networks") or {})}
    used_volumes = {
        m["source"]
        for s in chosen.values()
        for m in s.get("volumes", [])
        if m.get("type") == "volume"
    }
    document: dict[str, Any] = {"version": STACK_VERSION, "services": chosen}
    networks = {
        name: {k: v for k, v in (data or {}).items() if k in _NETWORK_KEYS}
        for name, data in (resolved.get("networks") or {}).items()
        if name in used_networks
    }
    if networks:
        document["networks"] = networks
    volumes = {
        name: {k: v for k, v in (data or {}).items() if k in _VOLUME_KEYS}
        for name, data in (resolved.get("volumes") or {}).items()
        if name in used_volumes
    }
    if volumes:
        document["volumes"] = volumes
    escaped = _escape(document, secrets.RELEASE_SECRETS)
    assert isinstance(escaped, dict)
    return escaped


def stack_text(document: Mapping[str, Any], release_id: str) -> str:
    header = (
        f"# Rendered by `invoke deploy` for release {release_id} from compose/compose.yaml and\n"
        "# compose/swarm.yaml (ops/deploy/swarm/stackfile.py). ${POSTGRES_PASSWORD}-style values\n"
        "# come from the release's secrets.env, sourced by the shell that runs `docker stack\n"
        "# deploy`.\n"
    )
    return header + yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=False)


def api_update_order(replicas: int, batch: int) -> str:
    """stop-first while at least one replica keeps serving (the replacement takes the freed
    place, so replicas stay spread over the hosts); start-first when none would."""
    return "stop-first" if replicas - max(1, batch) >= 1 else "start-first"


def oneoff_overlay() -> str:
    """compose overlay for one-off containers on the manager, on the stack's networks."""
    data = {
        "services": {
            "migrate": {"pull_policy": "never"},
            # the backup tools (ops/backup/): drills, restores, exports, on the data volumes
            **{name: {"pull_policy": "never"} for name in BACKUP_TOOLS},
            CERTBOT_SERVICE: {
                "pull_policy": "never",
                "volumes": [
                    {"type": "volume", "source": "tls", "target": "/tls"},
                    {"type": "volume", "source": "acme-webroot", "target": "/var/www/acme"},
                    {"type": "volume", "source": "letsencrypt", "target": "/var/lib/acme"},
                ],
            },
        },
        "networks": {
            "backend": {"external": True, "name": "${SLIPWAY_STACK:?}_backend"},
            "edge": {"external": True, "name": "${SLIPWAY_STACK:?}_edge"},
        },
        "volumes": {
            "tls": {"external": True, "name": "${SLIPWAY_TLS_VOLUME:?}"},
            **{
                name: {"external": True, "name": "${SLIPWAY_STACK:?}_" + name}
                for name in ONEOFF_VOLUMES
            },
        },
    }
    header = (
        "# One-off containers of a swarm environment (migrations, API keys, certbot's prepare\n"
        "# and ensure, backup drills and restores), run with `docker compose run` on the first\n"
        "# host, attached to the stack's overlay networks and volumes. Written by `invoke deploy`\n"
        "# (ops/deploy/swarm/stackfile.py).\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False)


def render(
    env: config.Environment, variables: Mapping[str, str], monitoring: bool
) -> dict[str, Any]:
    """`docker compose config` of compose.yaml + swarm.yaml here, secrets as stand-ins."""
    values = {**variables, **sentinel_secrets()}
    values["PATH"] = os.environ.get("PATH", "")
    values["HOME"] = os.environ.get("HOME", "")
    names = ["compose.yaml"]
    names += [compose.LOGGING_OVERLAY] if monitoring else []
    names += [compose.BACKUP_S3_OVERLAY] if env.backup.s3 else []
    names += ["swarm.yaml"]  # last: it overrides the central logs' network mode
    files = [word for name in names for word in ("-f", str(paths.compose_dir() / name))]
    argv = ["docker", "compose", "-p", env.project_name, *files, "config", "--format", "json"]
    result = proc.run(
        argv, env=values, cwd=paths.repo_root(), capture=True, quiet=True, check=False
    )
    if result.returncode != 0:
        raise OpsError(f"compose/swarm.yaml does not render: {result.stderr.strip()}")
    data = json.loads(result.stdout)
    if not isinstance(data, dict):
        raise OpsError("`docker compose config` did not return an object")
    return data
