"""Deploys to several hosts with Docker Swarm (`target: ssh` with more than one host).

The first host manages the swarm and runs the data stores, nginx and certbot (their volumes are
local to it); API replicas and workers spread over every host. `invoke deploy` forms the swarm
when needed (init on the first host, join the others), ships the images to every host, renders
compose.yaml + compose/swarm.yaml into the release's stack.yaml (ops keys `docker stack deploy`
understands, secrets left as ${VARIABLES} that the manager's shell fills from the release's
secrets.env), starts the data stores, migrates with a one-off container on the overlay network,
then `docker stack deploy`s the release: Swarm replaces the replicas (start-first, rolled back
by Swarm itself when a new one fails its healthcheck). The layout on the hosts and the steps:
docs/architecture.md, "Several hosts (Docker Swarm)".
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ops import compose, config, paths, proc, secrets, steps
from ops.deploy.deployment import (
    ACME_SERVICE,
    BACKUP_LOCK_WAIT,
    BACKUP_SERVICE,
    LOG_SERVICE,
    MONITORING_SERVICES,
    RESTORE_WAIT,
    Deployment,
    dotenv,
    ensure_certificates,
    host_has,
    image_refs,
    release_env,
)
from ops.deploy.rollout import RemoteCompose, RolloutError
from ops.errors import OpsError
from ops.remote import Remote, quote
from ops.stack.host import SWARM_ONEOFF_FILE as ONEOFF_FILE
from ops.stack.host import SWARM_STACK_FILE as STACK_FILE
from ops.stack.host import swarm_task

DATA_STACK_FILE = "stack-data.yaml"
DATA_SERVICES = ("postgres", "redis")
# Services the stack does not run: one-off containers (`docker compose run` on the manager).
ONEOFF_SERVICES = ("migrate",)
# The backup tools' one-off containers (profile `tools`, ops/backup.py), on the first host.
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
CONVERGE_TIMEOUT = 600.0
# Tasks of one service failing (or rejected) this often during a deploy: it will not converge.
FAILED_TASKS = 3
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
        "# compose/swarm.yaml (ops/swarm.py). ${POSTGRES_PASSWORD}-style values come from the\n"
        "# release's secrets.env, sourced by the shell that runs `docker stack deploy`.\n"
    )
    return header + yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=False)


def converged(services: Mapping[str, Mapping[str, Any]]) -> tuple[bool, str]:
    """(done, problem) from `docker service inspect` of the stack's services.

    Done when every service runs its desired replicas and no update is in progress; a problem
    (never done) when Swarm paused an update or rolled it back.
    """
    waiting = []
    for name, info in sorted(services.items()):
        state = info.get("update_state") or ""
        if state in ("rollback_started", "rollback_completed", "rollback_paused", "paused"):
            message = info.get("update_message") or ""
            if state == "paused":
                raise OpsError(f"Swarm paused the update of {name}: {message}")
            raise OpsError(
                f"Swarm rolled back the update of {name} ({state.replace('_', ' ')}): {message}. "
                "The service runs its previous version"
            )
        running, desired = info.get("running", 0), info.get("desired", 0)
        if running != desired and info.get("failed", 0) >= FAILED_TASKS:
            raise OpsError(
                f"{name}: {info['failed']} of its tasks failed since the deploy began, the last "
                f"with: {info.get('error') or 'no error message'}"
            )
        if state == "updating" or running != desired:
            waiting.append(f"{name} {running}/{desired}" + (" updating" if state else ""))
    return (not waiting), ", ".join(waiting)


def api_update_order(replicas: int, batch: int) -> str:
    """stop-first while at least one replica keeps serving (the replacement takes the freed
    place, so replicas stay spread over the hosts); start-first when none would."""
    return "stop-first" if replicas - max(1, batch) >= 1 else "start-first"


def task_age(state: str) -> float:
    """Seconds since a task's state began, from `docker stack ps`'s "Rejected 4 seconds ago"
    (infinity when the text says nothing usable)."""
    if "less than a second" in state:
        return 0.0
    words = state.split()
    units = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
    for number, unit in itertools.pairwise(words):
        base = unit.rstrip("s")
        if base not in units:
            continue
        if number.lower() in ("a", "an", "about"):
            return float(units[base])
        try:
            return float(number) * units[base]
        except ValueError:
            continue
    return float("inf")


def oneoff_overlay() -> str:
    """compose overlay for one-off containers on the manager, on the stack's networks."""
    data = {
        "services": {
            "migrate": {"pull_policy": "never"},
            # the backup tools (ops/backup.py): drills, restores, exports, on the data volumes
            **{name: {"pull_policy": "never"} for name in BACKUP_TOOLS},
            ACME_SERVICE: {
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
        "# (ops/swarm.py).\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False)


# ------------------------------------------------------------------------------ the operation


@dataclass
class SwarmDeployment(Deployment):
    """A deploy or rollback of an environment with several hosts; the first one manages."""

    remotes: dict[int, Remote] = field(default_factory=dict)
    lacking: dict[int, list[str]] = field(default_factory=dict)  # images each host needs

    # ------------------------------------------------------------------ helpers

    def on(self, index: int) -> Remote:
        if index == 0:
            return self.sh()
        if index not in self.remotes:
            self.remotes[index] = Remote(self.env.hosts[index])
        return self.remotes[index]

    def every_host(self) -> list[tuple[config.Host, Remote]]:
        return [(host, self.on(i)) for i, host in enumerate(self.env.hosts)]

    @property
    def stack(self) -> str:
        return self.env.project_name

    def overlays(self) -> list[str]:
        """What the release's one-off containers run with (the stack has its own file); the
        central logs' file marks a release that runs the monitoring stack."""
        return [
            ONEOFF_FILE,
            *([compose.LOGGING_OVERLAY] if self.monitoring else []),
            *([compose.BACKUP_S3_OVERLAY] if self.env.backup.s3 else []),
        ]

    def data_services(self) -> tuple[str, ...]:
        """What the data stack starts first: the stores, after the hosts' log collectors."""
        return (*([LOG_SERVICE] if self.monitoring else []), *DATA_SERVICES)

    def rcompose(self, release_id: str) -> RemoteCompose:
        """One-off containers on the manager (migrations, ACME), with the central logs' file
        when the release has it (their lines go to the manager's collector)."""
        release = self.release if self.release and self.release.id == release_id else None
        recorded = tuple(release.overlays) if release else tuple(self.overlays())
        overlays = recorded if ONEOFF_FILE in recorded else (ONEOFF_FILE,)
        return RemoteCompose(
            self.sh(), self.env.project_name, self.root, release_id, overlays=overlays
        )

    def stack_deploy(self, release_id: str, file: str, prune: bool) -> str:
        rel = f"releases/{release_id}"
        script = (
            f"cd {quote(self.root)} && set -a && . {quote(rel + '/secrets.env')} && set +a && "
            f"docker stack deploy --resolve-image never {'--prune ' if prune else ''}"
            f"-c {quote(rel + '/' + file)} {quote(self.stack)} 2>&1"
        )
        return self.sh().run(script, what=f"docker stack deploy ({file})", timeout=300).stdout

    def service_states(self, within: float = 0.0) -> dict[str, dict[str, Any]]:
        """Per service: update state and message, desired and running replicas, and the tasks
        that failed or were rejected in the last `within` seconds (with the latest error)."""
        fmt = (
            "{{.Spec.Name}}\t{{if .UpdateStatus}}{{.UpdateStatus.State}}\t"
            "{{.UpdateStatus.Message}}{{else}}\t{{end}}\t"
            "{{if .Spec.Mode.Replicated}}{{.Spec.Mode.Replicated.Replicas}}{{else}}global{{end}}"
        )
        names = (
            self.sh()
            .run(
                "docker service ls -q --filter "
                f"label=com.docker.stack.namespace={quote(self.stack)}",
                what="list services",
            )
            .stdout.split()
        )
        result: dict[str, dict[str, Any]] = {}
        if not names:
            return result
        inspected = (
            self.sh()
            .run(
                "docker service inspect -f " + quote(fmt) + " " + " ".join(quote(n) for n in names),
                what="inspect services",
            )
            .stdout
        )
        nodes = 0
        if "\tglobal" in inspected:
            # A global service runs one task per node that can take one (Ready and Active).
            listed = self.sh().run(
                "docker node ls --format '{{.Status}} {{.Availability}}'", what="list nodes"
            )
            nodes = listed.stdout.split("\n").count("Ready Active")
        for line in inspected.splitlines():
            parts = ([*line.split("\t"), "", "", "", ""])[:4]
            name, state, message, desired = parts
            short = name.removeprefix(f"{self.stack}_")
            wanted = nodes if desired == "global" else int(desired or 0)
            result[short] = {
                "update_state": state,
                "update_message": message,
                "desired": wanted,
                "running": 0,
                "failed": 0,
                "error": "",
            }
        tasks = (
            self.sh()
            .run(
                f"docker stack ps {quote(self.stack)} --no-trunc "
                "--format '{{.Name}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}'",
                what="list tasks",
            )
            .stdout
        )
        for line in tasks.splitlines():
            name, desired_state, state, error = [*line.split("\t"), "", "", ""][:4]
            service = name.strip(" \\_").removeprefix(f"{self.stack}_").split(".", 1)[0]
            if service not in result:
                continue
            if desired_state == "Running" and state.startswith("Running"):
                result[service]["running"] += 1
            elif state.startswith(("Rejected", "Failed")) and task_age(state) < within:
                result[service]["failed"] += 1
                result[service]["error"] = result[service]["error"] or error
        return result

    def wait_converged(self, only: Iterable[str] = (), timeout: float = CONVERGE_TIMEOUT) -> str:
        wanted = set(only)
        deadline = time.monotonic() + timeout
        last = ""
        began = time.monotonic()
        while True:
            self.refresh_lock()
            states = {
                k: v
                for k, v in self.service_states(time.monotonic() - began).items()
                if not wanted or k in wanted
            }
            done, waiting = converged(states)
            if done and states:
                return f"{len(states)} service(s) converged"
            if waiting != last:
                print(f"    waiting: {waiting} [+{time.monotonic() - began:.0f}s]", flush=True)
                last = waiting
            if time.monotonic() > deadline:
                raise RolloutError(
                    f"the stack did not converge within {timeout:.0f}s: {waiting}",
                    self.task_errors(),
                )
            time.sleep(2.0)

    def task_errors(self) -> str:
        return (
            self.sh()
            .run(
                f"docker stack ps {quote(self.stack)} --no-trunc "
                "--format '{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}' | head -40",
                check=False,
            )
            .stdout
        )

    # ------------------------------------------------------------------ pre-flight

    def check_config(self) -> str:
        if self.env.target != "ssh":
            raise OpsError(
                f"environment {self.env.name!r} has target: {self.env.target}; `invoke deploy` "
                "is for hosts reached over SSH (target: ssh). Fix: use `invoke up` for local"
            )
        self.secrets = secrets.require(self.env)
        self.check_receivers_set()
        self.check_registry()
        labels = ", ".join(h.label for h in self.env.hosts)
        return f"{self.env.source.name}: swarm of {len(self.env.hosts)} hosts ({labels})"

    def plan(self) -> str:
        note = super().plan()
        # Swarm starts a replica on whichever host it picks: every host needs every image.
        engine = self.docker()
        self.lacking = {0: list(self.to_ship)}  # the first host's, from the plan above
        for index, (host, remote) in enumerate(self.every_host()):
            if index == 0:
                continue
            self.lacking[index] = [
                ref
                for ref in image_refs(self.build, self.acme, self.monitoring)
                if not host_has(remote, ref, engine.images.get(ref).id)
            ]
            print(
                f"    plan: {host.label} lacks: " + (", ".join(self.lacking[index]) or "none"),
                flush=True,
            )
            self.to_ship += [ref for ref in self.lacking[index] if ref not in self.to_ship]
        swarm = self.swarm_plan()
        print(f"    plan: swarm: {swarm}", flush=True)
        return f"{note}; swarm: {swarm}"

    def check_mode(self) -> None:
        """The stack never starts next to the Compose project of one host (same volumes, same
        ports): switching is a procedure (docs/runbook.md, "Several hosts")."""
        # The stack's own containers carry the compose labels of their images (compose built
        # them): only those without the stack's namespace are Compose's.
        namespaces = (
            self.sh()
            .run(
                f"docker ps -a --filter label=com.docker.compose.project={quote(self.stack)} "
                "--format '{{.Label \"com.docker.stack.namespace\"}}-'",
                check=False,
            )
            .stdout.split()
        )
        running = "-" in namespaces
        if running:
            raise OpsError(
                f"{self.env.hosts[0].label} runs {self.stack} with Compose (the environment had "
                f"one host), and {self.env.source} now lists {len(self.env.hosts)}. Fix: switch on "
                'purpose (docs/runbook.md, "Several hosts"): `docker compose -p '
                f"{self.stack} down` in the current release's directory on that host (volumes "
                "stay, the stack takes them over), then deploy again"
            )

    def swarm_plan(self) -> str:
        """What forming the swarm needs; a host already in another swarm stops the deploy."""
        states: list[tuple[config.Host, str, str]] = []
        for host, remote in self.every_host():
            words = remote.run(
                "docker info -f '{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}'", what="swarm state"
            ).stdout.split()
            states.append(
                (host, words[0] if words else "inactive", words[1] if len(words) > 1 else "")
            )
        members: set[str] = set()
        if states[0][1] == "active":
            members = set(self.sh().run("docker node ls -q", what="swarm nodes").stdout.split())
        for host, state, node in states[1:]:
            if state == "active" and node[:12] not in {m[:12] for m in members}:
                raise OpsError(
                    f"{host.label} is in a swarm that {self.env.hosts[0].label} does not manage. "
                    "Fix: `docker swarm leave --force` on that host if it runs nothing else"
                )
        todo = [h.label for h, s, _ in states if s != "active"]
        return "form with " + ", ".join(todo) if todo else "formed"

    # ------------------------------------------------------------------ impacting

    def cluster_steps(self) -> list[steps.Step]:
        return [
            steps.Step(
                "form the swarm (init on the first host, join the others)",
                self.ensure_swarm,
                True,
                "the running release is untouched",
            )
        ]

    def ensure_swarm(self) -> str:
        manager = self.sh()
        first = self.env.hosts[0]
        state = manager.run("docker info -f '{{.Swarm.LocalNodeState}}'").stdout.strip()
        done = []
        if state != "active":
            manager.run(
                f"docker swarm init --advertise-addr {quote(first.advertise)}",
                what="docker swarm init",
            )
            done.append(f"initialised on {first.label}")
        joining = [
            (host, remote)
            for host, remote in self.every_host()[1:]
            if remote.run("docker info -f '{{.Swarm.LocalNodeState}}'").stdout.strip() != "active"
        ]
        if joining:
            token = manager.run(
                "docker swarm join-token -q worker", what="join token"
            ).stdout.strip()
            for host, remote in joining:
                remote.run(
                    f"docker swarm join --advertise-addr {quote(host.advertise)} "
                    f"--token {quote(token)} {quote(first.advertise)}:2377",
                    what=f"join {host.label}",
                )
                done.append(f"{host.label} joined")
            # The token was on the joining hosts' command lines: make it worthless now.
            manager.run("docker swarm join-token --rotate -q worker >/dev/null", what="rotate")
        node = manager.run("docker info -f '{{.Swarm.NodeID}}'").stdout.strip()
        labels = " ".join(f"--label-add {label}=true" for label in NODE_LABELS)
        manager.run(f"docker node update {labels} {quote(node)} >/dev/null", what="node labels")
        count = manager.run("docker node ls -q | wc -l").stdout.strip()
        return ", ".join(done) or f"formed ({count} nodes)"

    def ship(self) -> str:
        shipped = []
        for index, (host, remote) in enumerate(self.every_host()):
            self.refresh_lock()
            refs = self.lacking.get(index, [])
            note = self.ship_to(remote, refs) if refs else "has every image"
            shipped.append(f"{host.label}: {note}")
        return "; ".join(shipped)

    def release_files(self, release_id: str) -> dict[str, str]:
        assert self.secrets is not None
        files = super().release_files(release_id)
        files.pop("remote.yaml", None)
        files["release.env"] = dotenv(self.release_variables(release_id))
        files[ONEOFF_FILE] = oneoff_overlay()
        resolved = self.render(release_id)
        files[STACK_FILE] = stack_text(stack_document(resolved), release_id)
        data = stack_document(resolved, self.data_services())
        files[DATA_STACK_FILE] = stack_text(data, release_id)
        return files

    def release_variables(self, release_id: str) -> dict[str, str]:
        assert self.secrets is not None
        values = release_env(self.env, self.build, release_id, set(self.secrets.values))
        values["SLIPWAY_STACK"] = self.stack
        values["SLIPWAY_DEPLOY_BATCH"] = str(self.env.deploy.batch)
        values["SLIPWAY_API_UPDATE_ORDER"] = api_update_order(
            self.env.replicas.api, self.env.deploy.batch
        )
        return values

    def render(self, release_id: str) -> dict[str, Any]:
        """`docker compose config` of compose.yaml + swarm.yaml here, secrets as stand-ins."""
        root = paths.repo_root()
        env = {**self.release_variables(release_id), **sentinel_secrets()}
        env["PATH"] = os.environ.get("PATH", "")
        env["HOME"] = os.environ.get("HOME", "")
        names = ["compose.yaml"]
        names += [compose.LOGGING_OVERLAY] if self.monitoring else []
        names += [compose.BACKUP_S3_OVERLAY] if self.env.backup.s3 else []
        names += ["swarm.yaml"]  # last: it overrides the central logs' network mode
        files = [word for name in names for word in ("-f", str(paths.compose_dir() / name))]
        argv = ["docker", "compose", "-p", self.stack, *files, "config", "--format", "json"]
        result = proc.run(argv, env=env, cwd=root, capture=True, quiet=True, check=False)
        if result.returncode != 0:
            raise OpsError(f"compose/swarm.yaml does not render: {result.stderr.strip()}")
        data = json.loads(result.stdout)
        if not isinstance(data, dict):
            raise OpsError("`docker compose config` did not return an object")
        return data

    def write_release(self) -> str:
        # nginx's flag directory (maintenance mode), bind-mounted on the first host.
        self.sh().run(f"mkdir -p {quote(self.root + '/nginx')}", what="nginx directory")
        return super().write_release()

    def prepare_acme(self) -> str:
        self.ensure_networks()
        self.ensure_volumes()
        return super().prepare_acme()

    def ensure_networks(self) -> None:
        """The stack's overlay networks, made as `docker stack deploy` would (same name, driver,
        options and namespace label, so it adopts them): one-off containers (certbot's prepare,
        migrations) join them before the first stack deploy."""
        for name, internal in (("backend", True), ("edge", False)):
            full = f"{self.stack}_{name}"
            options = "--internal " if internal else ""
            self.sh().run(
                f"docker network inspect {quote(full)} >/dev/null 2>&1 || docker network create "
                f"--driver overlay --attachable {options}"
                f"--label com.docker.stack.namespace={quote(self.stack)} {quote(full)} >/dev/null",
                what=f"network {full}",
            )

    def ensure_volumes(self) -> None:
        """The first host's volumes that one-off containers mount (certbot's; the backup tools'
        before the data stack first runs: the repository check of a first deploy), made as
        `docker stack deploy` would; it uses them as they are."""
        label = f"com.docker.stack.namespace={self.stack}"
        names = [f"{self.stack}_{name}" for name in ONEOFF_VOLUMES]
        self.sh().run(
            " && ".join(
                f"docker volume create --label {quote(label)} {quote(n)} >/dev/null" for n in names
            ),
            what="volumes",
        )

    def start_data(self) -> str:
        self.refresh_lock()
        self.ensure_networks()
        self.ensure_volumes()
        # The release's passphrase must open the repository before PostgreSQL restarts with it.
        rc = self.rcompose(self.release_id())
        rebuilt = self.rebuild_database(rc, self.check_backup_repository(rc))
        out = self.stack_deploy(self.release_id(), DATA_STACK_FILE, prune=False)
        for line in out.splitlines():
            if line.strip():
                print(f"    {line}", flush=True)
        started = self.data_services()
        # A restored database replays its archived WAL before it is healthy.
        timeout = RESTORE_WAIT if self.restored else 240
        return f"{rebuilt}{', '.join(started)}: " + self.wait_converged(started, timeout=timeout)

    def run_backup(self, rc: RemoteCompose) -> str:
        """In the backup task's container on the data host (the first host), if one runs: the
        service comes with the full stack, after the migrations, so a first deploy has none."""
        task = swarm_task(self.sh(), self.stack, BACKUP_SERVICE)
        if task is None:
            return "skipped: no backup task runs yet (it starts with this release)"
        return (
            self.sh()
            .run(
                f"docker exec {quote(task)} backup-run --type=incr --repo=1 "
                f"--wait={BACKUP_LOCK_WAIT} 2>&1",
                check=False,  # its lines say what happened; the deploy decides
                what="backup before migrations",
                timeout=BACKUP_LOCK_WAIT + 3600,
            )
            .stdout
        )

    def start_monitoring(self) -> str:
        """In the stack deployed with the API (or removed by its --prune): wait for it."""
        if not self.release_runs_monitoring():
            return "not part of this release (the stack deploy removed its services)"
        services = (LOG_SERVICE, *MONITORING_SERVICES)
        return "in the stack: " + self.wait_converged(services, timeout=240)

    def nginx_running(self) -> bool:
        running = self.service_states().get("nginx", {}).get("running", 0)
        return bool(running)

    def roll_api(self) -> str:
        self.refresh_lock()
        self.switched = True
        out = self.stack_deploy(self.release_id(), STACK_FILE, prune=True)
        for line in out.splitlines():
            if line.strip():
                print(f"    {line}", flush=True)
        return self.wait_converged()

    def roll_workers(self) -> str:
        return "replaced with the stack (Swarm's rolling update)"

    def start_nginx(self) -> str:
        return "in the stack: " + self.wait_converged(("nginx",), timeout=120)

    def certificates_after_nginx(self) -> str:
        if not self.acme:
            return "skipped: tls local-ca"
        if not self.acme_deferred:
            return "obtained before the switch; renewal service in the stack"
        return ensure_certificates(self.rcompose(self.release_id())) + "; renewal in the stack"

    def unlock(self) -> None:
        super().unlock()
        for remote in self.remotes.values():
            remote.close()


def is_swarm(env: config.Environment) -> bool:
    """Several hosts: Docker Swarm (one host: Compose, ops/deploy.py)."""
    return env.is_swarm
