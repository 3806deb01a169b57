"""`invoke deploy` and `invoke rollback` for `target: ssh` environments (one host, Compose).

A flat list of timed steps, pre-flight first (nothing on the host changes), then impacting ones
under the host's deploy lock. A failure during or after the rolling update restores the previous
release with the same procedure and says so; a failure before it (shipping, migration) leaves
the running release untouched. The layout on the host is in docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import signal
import ssl
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
import yaml

from ops import certs, compose, config, docker_engine, health, images, paths, ports, secrets, steps
from ops.compose import Build, Compose
from ops.deploy import locks as locks
from ops.deploy import registry as registry
from ops.deploy.releases import Release, ReleaseStore, iso, new_id, utc_now
from ops.deploy.rollout import RemoteCompose, Rollout, RolloutError
from ops.errors import OpsError
from ops.executor import change
from ops.remote import Remote, quote

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
LOG_SERVICE = "logs"
ALERTMANAGER_ENTRYPOINT = "/usr/local/bin/alertmanager-entrypoint"
MONITORING_SERVICES = (
    "prometheus",
    "alertmanager",
    "node-exporter",
    "postgres-exporter",
    "redis-exporter",
    "nginx-exporter",
    "blackbox-exporter",
)
ACME_SERVICE = "certbot"
# `slipway-acme prepare` runs as root to give the volumes to nginx's uid: only these capabilities.
PREPARE_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER")
ACME_TIMEOUT = 600.0
DATA_SERVICES = ("postgres", "redis")
# Scheduled backups (services/postgres/backup-scheduler); also where the pre-migration backup runs.
BACKUP_SERVICE = "backup"
# How long the pre-migration backup waits for a running one (the scheduler's) to end; after
# that the deploy goes on without it (the running backup and the archived WAL cover it).
BACKUP_LOCK_WAIT = 600
SMOKE_TIMEOUT = 60.0
SERVICE_WAIT = 180.0
# A database restored by `deploy --restore` replays every archived WAL before it is healthy.
RESTORE_WAIT = 3600.0
# In a one-off container on the data volume: is there a PostgreSQL cluster?
DATABASE_PROBE = (
    'if [ -s "$PGDATA/PG_VERSION" ]; then echo "[slipway-cluster]"; else echo "[slipway-empty]"; fi'
)


# ------------------------------------------------------------------------------ pure parts


def image_refs(build: Build, acme: bool = False, monitoring: bool = False) -> list[str]:
    """Every image a release runs: listings at the release version, infra at content tags
    (certbot too with `acme`; Prometheus, Alertmanager, the exporters and the log collector
    with `monitoring`)."""
    refs = [f"{LISTINGS_IMAGE}:{build.version}"]
    extra = {**(ACME_IMAGES if acme else {}), **(MONITORING_IMAGES if monitoring else {})}
    for var, name in {**INFRA_IMAGES, **extra}.items():
        refs.append(f"{name}:{build.image_tags.get(var, build.version)}")
    return refs


def render_compose(base_text: str, name: str = "compose.yaml") -> str:
    """A compose file for a host: no build sections, no build secrets (images are shipped)."""
    data = yaml.load(base_text, Loader=_ComposeLoader)  # noqa: S506  # nosec B506: safe subclass
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


class _Tagged:
    """A value with a compose merge tag (`!override`, `!reset`), kept through a render."""

    def __init__(self, tag: str, value: object) -> None:
        self.tag = tag
        self.value = value


class _ComposeLoader(yaml.SafeLoader):
    """SafeLoader that keeps compose's `!override` and `!reset` tags."""


class _ComposeDumper(yaml.SafeDumper):
    """SafeDumper that writes them back, and no aliases (each service gets its own copy)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _construct_tagged(loader: yaml.SafeLoader, node: yaml.Node) -> _Tagged:
    if isinstance(node, yaml.MappingNode):
        return _Tagged(node.tag, loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return _Tagged(node.tag, loader.construct_sequence(node, deep=True))
    return _Tagged(node.tag, loader.construct_scalar(node))  # type: ignore[arg-type]


def _represent_tagged(dumper: yaml.SafeDumper, data: _Tagged) -> yaml.Node:
    if isinstance(data.value, dict):
        return dumper.represent_mapping(data.tag, data.value)
    if isinstance(data.value, list):
        return dumper.represent_sequence(data.tag, data.value)
    return dumper.represent_scalar(data.tag, str(data.value))


for _tag in ("!override", "!reset"):
    _ComposeLoader.add_constructor(_tag, _construct_tagged)
_ComposeDumper.add_representer(_Tagged, _represent_tagged)


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


def parse_size_kib(text: str) -> int:
    return int(text.strip().split()[-1]) if text.strip() else 0


# ------------------------------------------------------------------------------ the operation


@dataclass
class Deployment:
    """State shared by the steps of one deploy or rollback."""

    env: config.Environment
    build: Build
    kind: str = "deploy"
    explicit_version: bool = False  # --version given: never build, only use existing images
    skip_backup: bool = False  # --skip-backup: no backup before the migrations
    restore: bool = False  # --restore: a host without its database rebuilds it from the backups
    restored: bool = False  # this deploy restored the database (PostgreSQL replays WAL at start)
    offsite_problem: str = ""  # why the off-site backup repository could not be read, if not
    secrets: secrets.Secrets | None = None
    remote: Remote | None = None
    lock: locks.DeployLock | None = None
    store: ReleaseStore | None = None
    release: Release | None = None
    previous: Release | None = None
    engine: docker.DockerClient | None = None
    to_ship: list[str] = field(default_factory=list)
    first_deploy: bool = False
    unchanged: bool = False  # the current release already runs exactly this
    started: float = field(default_factory=time.monotonic)
    switched: bool = False  # the rolling update began: a failure now needs a rollback
    heartbeat: locks.Heartbeat | None = None
    maintenance: bool = False  # maintenance mode is on: public smoke checks answer 503
    acme_deferred: bool = False  # tls: acme and nginx not running yet: certificates after it
    shipping: registry.Registry | None = None  # registry: set; None: docker save/load over SSH
    pushed: set[str] = field(default_factory=set)  # pushed to the registry by this deploy

    # ------------------------------------------------------------------ helpers

    @property
    def host(self) -> config.Host:
        return self.env.hosts[0]

    @property
    def acme(self) -> bool:
        return self.env.tls == "acme"

    @property
    def root(self) -> str:
        return self.env.deploy.remote_dir.rstrip("/")

    @property
    def monitoring(self) -> bool:
        """The release runs Prometheus, Alertmanager, the exporters and the central logs."""
        return compose.runs_monitoring(self.env)

    def overlays(self) -> list[str]:
        """The compose files of a new release after compose.yaml."""
        return [
            "remote.yaml",
            *([compose.LOGGING_OVERLAY] if self.monitoring else []),
            *([compose.BACKUP_S3_OVERLAY] if self.env.backup.s3 else []),
        ]

    def sh(self) -> Remote:
        if self.remote is None:
            self.remote = Remote(self.host)
        return self.remote

    def docker(self) -> docker.DockerClient:
        if self.engine is None:
            self.engine = docker_engine.client()
        return self.engine

    def rcompose(self, release_id: str) -> RemoteCompose:
        """Compose of a release with its recorded files (a rollback target may predate some)."""
        release = self.release if self.release and self.release.id == release_id else None
        overlays = tuple(release.overlays) if release else tuple(self.overlays())
        return RemoteCompose(
            self.sh(), self.env.project_name, self.root, release_id, overlays=overlays
        )

    def releases(self) -> ReleaseStore:
        if self.store is None:
            self.store = ReleaseStore(self.sh(), self.root)
        return self.store

    def check_mode(self) -> None:
        """Compose on one host never starts next to a Swarm stack of the same environment
        (same volumes, same ports): switching is a procedure (docs/runbook.md)."""
        stack = (
            self.sh()
            .run(
                "docker service ls -q --filter "
                f"label=com.docker.stack.namespace={quote(self.env.project_name)} 2>/dev/null",
                check=False,
            )
            .stdout.split()
        )
        if stack:
            raise OpsError(
                f"{self.host.label} runs {self.env.project_name} as a Docker Swarm stack (the "
                f"environment had several hosts), and {self.env.source} now lists one. Fix: "
                'switch on purpose (docs/runbook.md, "Several hosts"): `docker stack rm '
                f"{self.env.project_name}` on that host (volumes stay), then deploy again"
            )

    def every_host(self) -> list[tuple[config.Host, Remote]]:
        """Each host of the environment with its connection (one here; several for Swarm)."""
        return [(self.host, self.sh())]

    def cluster_steps(self) -> list[steps.Step]:
        """Steps that bring several hosts together before shipping (none for one host)."""
        return []

    def refresh_lock(self) -> None:
        """Stop before changing anything more if the lock is no longer ours."""
        if self.heartbeat is not None:
            self.heartbeat.check()

    # ------------------------------------------------------------------ pre-flight

    def check_config(self) -> str:
        if self.env.target != "ssh":
            raise OpsError(
                f"environment {self.env.name!r} has target: {self.env.target}; `invoke deploy` "
                "is for hosts reached over SSH (target: ssh). Fix: use `invoke up` for local"
            )
        self.check_registry()
        self.secrets = secrets.require(self.env)
        self.check_receivers_set()
        return f"{self.env.source.name}: {self.host.label}, version {self.build.version}"

    def check_receivers_set(self) -> None:
        """Production with monitoring never deploys alerts that reach nobody. A rollback runs
        with the secrets its release recorded: not checked."""
        assert self.secrets is not None
        if self.kind == "rollback" or not self.monitoring:
            return
        receivers = [n for n in secrets.ALERT_RECEIVERS if self.secrets.values.get(n)]
        if self.env.listings_env == "production" and not receivers:
            raise OpsError(
                f"{self.env.name} runs in production mode with monitoring, but no alert receiver "
                f"is set: its alerts would reach nobody. Fix: set {secrets.ALERT_RECEIVERS[0]} "
                f"(or ALERT_SLACK_URL, or ALERT_EMAIL_TO with ALERT_SMTP_HOST and "
                f"ALERT_SMTP_FROM) in {secrets.env_file(self.env).name} or the CI secrets "
                '(docs/environments.md, "Secrets")'
            )

    def check_registry(self) -> None:
        """The registry images ship through, if any; half-set or unusable credentials stop the
        deploy here, before any host is touched."""
        if self.env.registry is not None:
            self.shipping = registry.Registry.from_env(
                self.env, secrets.registry_credentials(self.env)
            )

    def check_images(self) -> str:
        note = self.ensure_images()
        if self.monitoring:
            note += "; " + self.check_alert_receivers()
        return note

    def check_alert_receivers(self) -> str:
        """Alertmanager's own entrypoint renders the receivers here (no network, nothing kept):
        a malformed URL or address stops the deploy in pre-flight, not on the host."""
        assert self.secrets is not None
        values = self.secrets.values
        given = {n: values[n] for n in secrets.OPTIONAL if n.startswith("ALERT_") and values.get(n)}
        if not given:
            return "alert receivers: none (alerts are dropped)"
        ref = next(r for r in image_refs(self.build, monitoring=True) if "/alertmanager:" in r)
        try:
            # The rendered configuration holds the secrets: to /dev/null inside the container,
            # never to Docker's log driver (a file, or a log service).
            self.docker().containers.run(
                ref,
                ["-c", f"exec {ALERTMANAGER_ENTRYPOINT} render >/dev/null"],
                entrypoint="/bin/sh",
                environment=given,
                network_mode="none",
                remove=True,
                stdout=False,
                stderr=True,
            )
        except docker.errors.ContainerError as exc:
            raw = exc.stderr or b""
            detail = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            raise OpsError(
                f"the alert receivers of {self.env.name} are not usable: {detail.strip()[-600:]}"
            ) from exc
        return "alert receivers: " + ", ".join(sorted(given))

    def ensure_images(self) -> str:
        engine = self.docker()
        refs = image_refs(self.build, self.acme, self.monitoring)
        missing = [r for r in refs if not images.has_image(engine, r)]
        if not missing:
            return "all present locally"
        if self.explicit_version:
            # CI deploys exactly what it built and tested: never a quiet rebuild here.
            raise OpsError(
                f"images missing for version {self.build.version}: {', '.join(missing)}. Fix: "
                "load the images that were built for it (`invoke images.load --input=...`), or "
                "build them from that commit (`invoke build` with SLIPWAY_VERSION set)"
            )
        assert self.secrets is not None
        comp = Compose(self.env, self.secrets, self.build, paths.repo_root())
        built = images.built_images(comp.config())
        todo = images.plan(engine, built)
        print(f"    building {', '.join(b.image for b in todo)}", flush=True)
        images.ensure_base(engine)
        images.build(comp, todo, engine=engine)
        return f"built {len(todo)}"

    def check_host(self) -> str:
        """Every host: docker (and on the first, which runs compose, the compose plugin) usable
        by the user, and room on Docker's data root (and the first's remote_dir)."""
        notes = [
            self.check_one_host(host, remote, first=index == 0)
            for index, (host, remote) in enumerate(self.every_host())
        ]
        return "; ".join(notes)

    def check_one_host(self, host: config.Host, remote: Remote, first: bool) -> str:
        command = "docker version -f '{{.Server.Version}}'"
        if first:
            command += " && docker compose version --short"
        info = remote.run(command, what="docker and compose versions").stdout.split()
        if len(info) < (2 if first else 1):
            raise OpsError(
                f"{host.label}: docker{' or the compose v2 plugin' if first else ''} is missing "
                "or not usable by this user. Fix: install Docker Engine (with the compose plugin) "
                "and add the user to the docker group"
            )
        if first:
            remote.run(
                f"mkdir -p {quote(self.root)} && test -w {quote(self.root)}",
                what=f"create {self.root}",
            )
        # Images land in Docker's data root, releases under remote_dir: both need room.
        docker_root = remote.run(
            "docker info -f '{{.DockerRootDir}}'", what="docker data root"
        ).stdout.strip()
        places = [self.root] if first else []
        want = self.env.deploy.min_free_disk_bytes // 1024
        free = {}
        for where in dict.fromkeys([*places, docker_root or self.root]):
            free[where] = parse_size_kib(
                remote.run(
                    f"df -Pk {quote(where)} | awk 'NR==2 {{print $4}}'", what=f"free disk {where}"
                ).stdout
            )
            if free[where] < want:
                raise OpsError(
                    f"{host.label}: only {free[where] // 1024} MiB free under {where}, "
                    f"below deploy.min_free_disk ({want // 1024} MiB). Fix: free space (old "
                    "images: `docker image prune`) or lower min_free_disk"
                )
        room = ", ".join(f"{kib // 1024} MiB free in {where}" for where, kib in free.items())
        versions = f"docker {info[0]}" + (f", compose {info[1]}" if first else "")
        if first or self.monitoring:  # every swarm host runs a log collector
            room += "; " + self.check_host_ports(host, remote, first)
        return (f"{versions}, " if first else f"{host.label}: {versions}, ") + room

    def check_host_ports(self, host: config.Host, remote: Remote, first: bool = True) -> str:
        """The ports the stack takes on the host are free, or held by the stack itself (two
        environments on one host must not share one: a clash found now changes nothing). The
        first host: nginx's, and on one host Prometheus' and Alertmanager's loopback ports
        (a swarm publishes neither); with monitoring every host: the log collector's."""
        env, mon = self.env, self.env.monitoring
        wanted = []
        if first:
            wanted += [
                ("tcp", env.ports.http, "nginx", "ports.http"),
                ("tcp", env.ports.https, "nginx", "ports.https"),
            ]
        if self.monitoring and first and not env.is_swarm:
            wanted += [
                ("tcp", mon.prometheus_port, "prometheus", "monitoring.prometheus_port"),
                ("tcp", mon.alertmanager_port, "alertmanager", "monitoring.alertmanager_port"),
            ]
        if self.monitoring:
            wanted.append(("udp", mon.log_port, LOG_SERVICE, "monitoring.log_port"))
        held = ports.listening(remote.run(ports.SOCKET_TABLES, what="ports in use").stdout)
        # The stack's services, run by Compose or (an environment that had several hosts, which
        # the plan then refuses with its own message) by Swarm.
        project = quote(env.project_name)
        found = remote.run(
            f"docker ps --filter label=com.docker.compose.project={project} "
            "--format '{{.Label \"com.docker.compose.service\"}}'; "
            f"docker ps --filter label=com.docker.stack.namespace={project} "
            "--format '{{.Label \"com.docker.swarm.service.name\"}}'",
            what="services running",
        ).stdout.split()
        ours = [name.removeprefix(f"{env.project_name}_") for name in found]
        clashes = ports.host_conflicts(held, wanted, ours)
        if clashes:
            raise OpsError(
                f"{host.label}: {'; '.join(clashes)}. Fix: stop what holds it, or choose other "
                f"ports in {env.source} (another environment on this host needs its own)"
            )
        return f"{len(wanted)} ports free or already this stack's"

    def plan(self) -> str:
        self.check_mode()
        store = self.releases()
        current = store.current_id()
        self.previous = store.get(current) if current else None
        self.first_deploy = self.previous is None
        self.unchanged = False
        engine = self.docker()
        self.to_ship = []
        self.maintenance = (
            self.sh().run(f"test -e {quote(self.root + '/nginx/maintenance')}", check=False).ok
        )
        if self.maintenance:
            print(
                "    plan: WARNING maintenance mode is on: the public smoke checks are skipped "
                "(new replicas still pass /ready from inside before any switch)",
                flush=True,
            )
        ids = {}
        for ref in image_refs(self.build, self.acme, self.monitoring):
            local_id = engine.images.get(ref).id
            remote_id = image_id_on(self.sh(), ref)
            # Infrastructure tags name their build inputs: a host that has the tag runs the
            # same thing even if this machine built it again (another id). Shipping it would
            # restart PostgreSQL, Redis or nginx for nothing.
            if remote_id and (remote_id == local_id or not ref.startswith(f"{LISTINGS_IMAGE}:")):
                ids[ref] = remote_id
            else:
                ids[ref] = local_id
                self.to_ship.append(ref)
        assert self.secrets is not None
        digest = release_digest(self.release_files("-"), ids, self.secrets.values)
        previous = self.previous
        if previous and previous.outcome == "succeeded" and previous.digest == digest:
            self.unchanged = True
            self.release = previous
            print(
                f"    plan: nothing changed since the current release {previous.id} (same "
                "images, configuration and secrets): check it and leave it running",
                flush=True,
            )
            return "unchanged"
        release_id = new_id(self.build.version)
        self.release = Release(
            digest=digest,
            id=release_id,
            version=self.build.version,
            git_sha=self.build.git_sha,
            images=ids,
            who=locks.default_owner(),
            kind=self.kind,
            started=iso(utc_now()),
            previous=self.previous.id if self.previous else "",
            overlays=self.overlays(),
        )
        for line in (
            f"host {self.host.label}, {self.root}",
            "current release: " + (self.previous.id if self.previous else "none (first deploy)"),
            f"new release: {release_id}",
            "images to ship: " + (", ".join(self.to_ship) or "none (the host has them)"),
            f"API: {self.env.replicas.api} replica(s), {self.env.deploy.batch} at a time; "
            f"workers: {self.env.replicas.worker}",
            f"then smoke checks through {self.env.https_url}",
        ):
            print(f"    plan: {line}", flush=True)
        return f"{len(self.to_ship)} image(s) to ship"

    # ------------------------------------------------------------------ impacting

    def take_lock(self) -> str:
        self.lock = locks.DeployLock(self.sh(), self.root, self.env.deploy.lock_ttl)
        held = self.lock.acquire(
            self.build.version, wait=float(self.env.deploy.lock_wait), operation=self.kind
        )
        self.heartbeat = locks.Heartbeat(self.lock).start()
        planned = self.previous.id if self.previous else None
        if self.releases().current_id() != planned:
            # Another deploy finished while this one waited: plan again from what runs now.
            print("    the current release changed while waiting for the lock: planning again")
            self.plan()
        return f"held by {held.owner}"

    def ship(self) -> str:
        self.refresh_lock()
        return self.ship_to(self.sh(), self.to_ship) or "nothing to ship"

    def ship_to(self, remote: Remote, refs: list[str]) -> str:
        """The images to one host: through the registry (pushed once per deploy) or over SSH."""
        if self.shipping is None or not refs:
            return ship_images(self.docker(), remote, refs)
        engine = self.docker()
        new = [r for r in refs if r not in self.pushed]
        for done in self.shipping.push(engine, new):
            print(f"    pushed {done.registry_ref} in {done.seconds:.1f}s", flush=True)
        self.pushed.update(new)
        ids = {ref: engine.images.get(ref).id for ref in refs}
        for done in self.shipping.pull_on_host(remote, refs, ids):
            print(f"    {remote.host.label} pulled {done.ref} in {done.seconds:.1f}s", flush=True)
        return ", ".join(f"{r} (registry)" for r in refs)

    def release_files(self, release_id: str) -> dict[str, str]:
        """The files of a release directory: exactly what compose runs on the host."""
        assert self.secrets is not None
        compose_dir = paths.compose_dir()
        values = release_env(self.env, self.build, release_id, set(secrets.RELEASE_SECRETS))
        files = {
            "compose.yaml": render_compose((compose_dir / "compose.yaml").read_text()),
            "remote.yaml": (compose_dir / "remote.yaml").read_text(),
            "release.env": dotenv(values),
        }
        if self.monitoring:
            name = compose.LOGGING_OVERLAY
            files[name] = render_compose((compose_dir / name).read_text(), name)
        if self.env.backup.s3:
            name = compose.BACKUP_S3_OVERLAY
            files[name] = (compose_dir / name).read_text()
        return files

    def write_release(self) -> str:
        assert self.release is not None and self.secrets is not None
        remote = self.sh()
        store = self.releases()
        # A local CA first: the release's files carry it (the blackbox probe verifies with it).
        note = "" if self.acme else self.install_certificates()
        if not self.unchanged:
            # A first deploy creates the local CA above: the digest then covers it too.
            self.release.digest = release_digest(
                self.release_files("-"), self.release.images, self.secrets.values
            )
            store.write_files(self.release.id, self.release_files(self.release.id))
            store.record(self.release)
        # Each release keeps the secrets it was deployed with: a rollback, or the release still
        # running after a failed deploy, never runs with another release's secrets.
        # Optional ones (Sentry, alert receivers) are written empty when unset.
        secret_values = {k: self.secrets.values.get(k, "") for k in secrets.RELEASE_SECRETS}
        remote.put_text(
            store.path(self.release.id, "secrets.env"), dotenv(secret_values), mode=0o600
        )
        if self.acme:  # a one-off container of this release: after its files exist
            note = self.install_certificates()
        store.audit(
            {"event": f"{self.kind} started", "release": self.release.id, "who": self.release.who}
        )
        return f"releases/{self.release.id}; {note}"

    def install_certificates(self) -> str:
        if self.acme:
            return self.prepare_acme()
        paths.ensure_state_dir()
        directory = paths.env_state_dir(self.env.name)
        names = [*self.env.domains]
        result = certs.ensure(directory, self.env.name, names)
        cert = (directory / "tls.crt").read_bytes()
        key = (directory / "tls.key").read_bytes()
        volume = compose.tls_volume(self.env)
        nginx_ref = (
            f"{INFRA_IMAGES['SLIPWAY_NGINX_TAG']}:{self.build.image_tags['SLIPWAY_NGINX_TAG']}"
        )
        script = (
            f"docker volume create {quote(volume)} >/dev/null && "
            f"docker run --rm -i --network none --user 0 --entrypoint sh "
            f"-v {quote(volume)}:/tls {quote(nginx_ref)} -c "
            + quote(
                "set -e; cd /tls; before=$(cat tls.crt tls.key 2>/dev/null | sha256sum); "
                "tar -x --same-owner -p -f -; chown 101:101 tls.crt tls.key; "
                "chmod 644 tls.crt; chmod 600 tls.key; after=$(cat tls.crt tls.key | sha256sum); "
                'if [ "$before" = "$after" ]; then echo same; else echo changed; fi'
            )
        )
        volume_state = self.sh().stream_into(
            change(script, "install the certificate"), [tls_tarball(cert, key)]
        )
        changed = volume_state.stdout.strip() == "changed"
        # nginx reads certificates when it (re)loads: whichever machine deployed last, the
        # volume's content is what it must serve.
        if changed:
            Rollout(self.rcompose(self.release_id()), 1, 1, 1).reload_nginx()
        state = "installed" if changed else "unchanged on the host"
        return f"certificate {result.reason}; {state}"

    def release_id(self) -> str:
        assert self.release is not None
        return self.release.id

    def restore_images(self, images: Mapping[str, str]) -> list[str]:
        """Point each recorded tag back at its recorded image on every host (a rebuilt version
        may have moved the tag since), or nothing when an image is gone: what is missing where."""
        missing = [
            f"{ref} on {host.label}"
            for host, remote in self.every_host()
            for ref, image_id in images.items()
            if image_id_on(remote, image_id) != image_id
        ]
        if not missing:
            for _, remote in self.every_host():
                for ref, image_id in images.items():
                    remote.run(f"docker tag {quote(image_id)} {quote(ref)}", what=f"tag {ref}")
        return missing

    # ------------------------------------------------------------------ ACME (tls: acme)

    def prepare_acme(self) -> str:
        """The tls volume owned by nginx's uid, a placeholder for domains still without one."""
        volume = compose.tls_volume(self.env)
        self.sh().run(f"docker volume create {quote(volume)} >/dev/null", what="tls volume")
        caps = [word for cap in PREPARE_CAPS for word in ("--cap-add", cap)]
        out = self.rcompose(self.release_id()).run(
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "--user",
            "0",
            *caps,
            ACME_SERVICE,
            "prepare",
            what="prepare the ACME volumes",
        )
        return "ACME: " + _acme_message(out, "prepared")

    def nginx_running(self) -> bool:
        return Rollout(self.rcompose(self.release_id()), 1, 1, 1).nginx_container() is not None

    def certificates_before_switch(self) -> str:
        """With nginx already serving: certificates before any check through it."""
        if not self.acme:
            return "skipped: tls local-ca (installed with the release files)"
        if not self.nginx_running():
            self.acme_deferred = True
            return "deferred: nginx is not running yet (first deploy); after it starts"
        return self.obtain_certificates()

    def certificates_after_nginx(self) -> str:
        """First deploy: certificates once nginx answers HTTP-01; then the renewal service."""
        if not self.acme:
            return "skipped: tls local-ca"
        done = self.obtain_certificates() if self.acme_deferred else "obtained before the switch"
        self.rcompose(self.release_id()).run(
            "up", "-d", "--no-deps", ACME_SERVICE, what="start the renewal service"
        )
        return f"{done}; renewal service running"

    def obtain_certificates(self, force: bool = False) -> str:
        self.refresh_lock()
        return ensure_certificates(self.rcompose(self.release_id()), force=force)

    def start_data(self) -> str:
        rc = self.rcompose(self.release_id())
        # The log collector first: the data stores' first lines go through it.
        collector = (LOG_SERVICE,) if self.release_runs_monitoring() else ()
        if collector:
            rc.run("up", "-d", "--no-deps", *collector, what="start the log collector")
        rebuilt = self.rebuild_database(rc, self.check_backup_repository(rc))
        rc.run("up", "-d", "--no-deps", *DATA_SERVICES, what="start postgres and redis")
        # A restored database replays its archived WAL before it is healthy.
        self.wait_healthy(
            (*collector, *DATA_SERVICES), RESTORE_WAIT if self.restored else SERVICE_WAIT
        )
        rc.run("up", "-d", "--no-deps", BACKUP_SERVICE, what="start the backup service")
        self.wait_healthy((BACKUP_SERVICE,))
        return rebuilt + ", ".join((*collector, *DATA_SERVICES, BACKUP_SERVICE)) + " healthy"

    def check_backup_repository(self, rc: RemoteCompose) -> int:
        """The release's BACKUP_PASSPHRASE opens the host's backup repository (or there is none
        yet), checked before PostgreSQL is recreated with it: its entrypoint refuses to start
        with a passphrase that does not, which would take the database down. Returns how many
        backups the repositories hold."""
        from ops.backup import operations as backup

        out = rc.run(
            "run", "--rm", "--no-deps", "-T", backup.RESTORE_SERVICE,
            "pgbackrest", "info", "--output=json",
            what="open the backup repository with the release's passphrase",
        )  # fmt: skip
        status, stored = backup.parse_info(out)
        if status.startswith("repo2:"):
            # The off-site store not answering must not stop deploys (nor a running PostgreSQL:
            # its entrypoint asks only before creating a cluster); the alerts tell. A host
            # without its database is another matter: rebuild_database.
            print(f"    warning: the off-site repository cannot be read: {status[:300]}")
            self.offsite_problem = status.strip()[:300]
        elif status != "ok":
            hint = backup.advice(status) or (
                "Fix: check the repository with `invoke backup.list`; docs/disaster-recovery.md"
            )
            raise OpsError(
                f"the backup repository on {self.host.label} cannot be read with this release's "
                f"secrets: {status.strip()[:300]}. {hint}. PostgreSQL was not touched"
            )
        return len(stored)

    def rebuild_database(self, rc: RemoteCompose, stored: int) -> str:
        """A host without its database (a new host in place of a lost one, a lost volume) next
        to backups of it: with --restore the newest backup and every archived WAL go into the
        data volume before PostgreSQL starts; without, the deploy stops here, as PostgreSQL
        would refuse to start. A note for the step summary ("" when nothing was restored)."""
        from ops.backup import operations as backup

        probe = rc.run(
            "run", "--rm", "--no-deps", "-T", backup.RESTORE_SERVICE, "sh", "-c", DATABASE_PROBE,
            what="look for the database on the data volume",
        )  # fmt: skip
        if "[slipway-cluster]" in probe:
            if self.restore:
                raise OpsError(
                    f"--restore rebuilds a host that lost its database, and {self.host.label} has "
                    f"one. Nothing was changed. To take it back in time: `invoke restore "
                    f"--env={self.env.name} --at=<time>` (docs/disaster-recovery.md)"
                )
            return ""
        if "[slipway-empty]" not in probe:
            raise OpsError(
                f"could not tell whether {self.host.label} has a database: {probe.strip()[-300:]}"
            )
        if not stored and self.offsite_problem:
            raise OpsError(
                f"{self.host.label} has no database of {self.env.name} and its off-site backup "
                f"repository cannot be read ({self.offsite_problem}): it may hold this "
                "database's backups, so neither a new database is created nor a restore "
                "started. Fix: make the object store answer (backup.s3, BACKUP_S3_KEY and "
                "BACKUP_S3_KEY_SECRET), then deploy again (with --restore to rebuild from its "
                "backups). PostgreSQL was not started"
            )
        if not stored:
            if self.restore:
                raise OpsError(
                    f"--restore: the backup repositories of {self.env.name} hold no backup to "
                    "rebuild the database from (`invoke backup.list` shows them; an off-site "
                    "repository needs backup.s3 and its keys). Nothing was changed"
                )
            return ""  # a new environment: PostgreSQL creates its database
        if not self.restore:
            raise OpsError(
                f"{self.host.label} has no database of {self.env.name}, but its backup "
                f"repositories hold {stored} backup(s) of it: PostgreSQL would refuse to start "
                "empty next to them. Fix: if this is a new host in place of a lost one (or its "
                f"data volume was lost), `invoke deploy --env={self.env.name} --restore` "
                "rebuilds the database from the newest backup and every archived WAL "
                '(docs/disaster-recovery.md, "Rebuilding a lost host"). PostgreSQL was not started'
            )
        self.refresh_lock()
        out = rc.run(
            "run", "--rm", "--no-deps", "-T", backup.RESTORE_SERVICE, "backup-restore",
            what="restore the newest backup and the archived WAL into the data volume",
            timeout=RESTORE_WAIT,
        )  # fmt: skip
        for line in out.splitlines():
            if line.strip():
                print(f"    {line}", flush=True)
        backup.require_ok(out, "the restore", "PostgreSQL was not started")
        self.restored = True
        return "database restored (the newest backup, then the archived WAL); "

    def backup_before_migrations(self) -> str:
        """A backup right before the schema changes (`backup.before_migrations`, --skip-backup)."""
        if self.skip_backup:
            return "skipped: --skip-backup"
        if not self.env.backup.before_migrations:
            return "skipped: backup.before_migrations is false"
        if self.first_deploy:
            return "skipped: first deploy, no data to protect yet"
        if self.unchanged:
            return "skipped: the current release already runs this, no migration to protect from"
        self.refresh_lock()
        out = self.run_backup(self.rcompose(self.release_id()))
        if out.startswith("skipped:"):
            return out
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        if lines and lines[-1] == "[slipway-ok]":
            return _backup_label(out)
        if "another backup is running" in out:
            return (
                f"skipped: a backup was still running after {BACKUP_LOCK_WAIT}s (it and the "
                "archived WAL cover the migration)"
            )
        raise OpsError(
            "the backup before the migrations failed (the running release is untouched): "
            f"{out.strip()[-600:]}. Fix the cause (`invoke backup --env={self.env.name}` "
            "retries it), or deploy with --skip-backup to go on without it"
        )

    def run_backup(self, rc: RemoteCompose) -> str:
        """backup-run's output (an incremental backup into the local repository: the off-site
        one is the scheduler's business, and must not block a deploy)."""
        return rc.run(
            "exec", "-T", BACKUP_SERVICE, "backup-run", "--type=incr", "--repo=1",
            f"--wait={BACKUP_LOCK_WAIT}",
            what="backup before migrations", timeout=BACKUP_LOCK_WAIT + 3600,
        )  # fmt: skip

    def release_runs_monitoring(self) -> bool:
        """The release being deployed or put back has the monitoring stack (its own record)."""
        assert self.release is not None
        return compose.LOGGING_OVERLAY in self.release.overlays

    def start_monitoring(self) -> str:
        """Prometheus, Alertmanager and the exporters of the release (and the collector, which
        an older release's rollback target may not have started), healthy."""
        if not self.release_runs_monitoring():
            reason = "monitoring.enabled is false" if not self.monitoring else "an older release"
            self.stop_monitoring()
            return f"not part of this release ({reason}); the monitoring services are stopped"
        self.refresh_lock()
        rc = self.rcompose(self.release_id())
        services = (LOG_SERVICE, *MONITORING_SERVICES)
        rc.run("up", "-d", "--no-deps", *services, what="start or update the monitoring stack")
        self.wait_healthy(services, timeout=float(self.env.deploy.health_timeout) + 60.0)
        return f"{len(services)} services healthy"

    def stop_monitoring(self) -> None:
        """Remove the monitoring containers of a stack that no longer runs them (data volumes
        stay): an environment switched to monitoring.enabled: false leaves nothing behind. The
        collector stays while a container still sends it its lines (after a rollback to such
        a release, postgres and redis keep the log driver the newer one gave them)."""
        project = quote(self.env.project_name)
        drivers = (
            self.sh()
            .run(
                f"docker ps -q --filter label=com.docker.compose.project={project} | xargs -r "
                "docker inspect -f '{{.HostConfig.LogConfig.Type}}'",
                what="log drivers",
            )
            .stdout.split()
        )
        keep_collector = "syslog" in drivers
        services = (*([] if keep_collector else [LOG_SERVICE]), *MONITORING_SERVICES)
        names = " ".join(quote(n) for n in services)
        self.sh().run(
            f"for s in {names}; do docker ps -aq --filter label=com.docker.compose.project="
            f"{project} --filter label=com.docker.compose.service=$s; done | "
            "xargs -r docker rm -f >/dev/null",
            what="remove the monitoring containers",
        )
        if keep_collector:
            print(
                "    the log collector stays: containers still send it their lines (they change "
                "log driver when next recreated by a deploy)",
                flush=True,
            )

    def wait_healthy(self, services: tuple[str, ...], timeout: float = SERVICE_WAIT) -> None:
        """Every container of `services` passes its healthcheck (run now, not at Docker's pace)."""
        rollout = Rollout(self.rcompose(self.release_id()), 1, 1, 1)
        deadline = time.monotonic() + timeout
        while True:
            bad = {}
            names = [c.name for service in services for c in rollout.containers(service)]
            for name in names:
                ok, why = rollout.probe(name)
                if not ok:
                    bad[name] = why
            if names and not bad:
                return
            if time.monotonic() > deadline:
                detail = "\n".join(rollout.diagnose(n) for n in bad)
                what = "; ".join(f"{n}: {w}" for n, w in bad.items()) or "no containers"
                raise RolloutError(
                    f"{', '.join(services)} not healthy after {timeout:.0f}s: {what}", detail
                )
            time.sleep(1.0)

    def migrate(self) -> str:
        self.refresh_lock()
        rc = self.rcompose(self.release_id())
        try:
            out = rc.run("run", "--rm", "--no-deps", "-T", "migrate", what="migrate", timeout=900)
        except OpsError as exc:
            raise OpsError(
                f"migration failed: {exc}. The schema is as it was (each migration runs in a "
                "transaction) and the running release was not touched"
            ) from exc
        last = [line for line in out.splitlines() if line.strip()][-1:]
        return last[0][-120:] if last else "schema at head"

    def roll_api(self) -> str:
        self.refresh_lock()
        self.switched = True
        rollout = Rollout(
            self.rcompose(self.release_id()),
            self.env.replicas.api,
            self.env.deploy.batch,
            float(self.env.deploy.health_timeout),
        )
        assert self.release is not None
        version = self.release.version

        def through_nginx() -> None:
            # Before the old replicas go: a failure here switches nginx straight back.
            if not self.maintenance:
                smoke_check(self.env, version, timeout=30.0)

        return rollout.run(verify=through_nginx)

    def roll_workers(self) -> str:
        self.refresh_lock()
        rc = self.rcompose(self.release_id())
        rc.run(
            "up",
            "-d",
            "--no-deps",
            "--scale",
            f"worker={self.env.replicas.worker}",
            "worker",
            what="replace workers",
        )
        if self.env.replicas.worker:
            self.wait_healthy(("worker",), timeout=float(self.env.deploy.health_timeout))
        return f"{self.env.replicas.worker} worker(s)"

    def start_nginx(self) -> str:
        rc = self.rcompose(self.release_id())
        rc.run("up", "-d", "--no-deps", "nginx", what="start or update nginx")
        self.wait_healthy(("nginx",), timeout=60.0)
        return "nginx healthy"

    def smoke(self) -> str:
        assert self.release is not None
        if self.maintenance:
            return "skipped: maintenance mode is on (nginx answers 503)"
        return smoke_check(self.env, self.release.version)

    def record(self) -> str:
        assert self.release is not None
        store = self.releases()
        if self.unchanged:
            store.audit(
                {
                    "event": f"{self.kind}: nothing changed",
                    "release": self.release.id,
                    "who": locks.default_owner(),
                }
            )
            return f"current = {self.release.id} (unchanged)"
        self.release.outcome = "succeeded"
        self.release.finished = iso(utc_now())
        self.release.seconds = round(time.monotonic() - self.started, 1)
        store.record(self.release)
        store.set_current(self.release.id)
        store.audit(
            {
                "event": f"{self.kind} succeeded",
                "release": self.release.id,
                "version": self.release.version,
                "who": self.release.who,
                "seconds": self.release.seconds,
            }
        )
        self.switched = False  # recorded: from here on nothing rolls the release back
        protect = [self.release.id] + ([self.previous.id] if self.previous else [])
        try:
            pruned = store.prune(self.env.deploy.keep_releases, protect)
            self.prune_images()
        except OpsError as exc:
            print(f"    WARNING: pruning old releases failed (the deploy stands): {exc}")
            pruned = []
        return f"current = {self.release.id}" + (f"; pruned {len(pruned)}" if pruned else "")

    def prune_images(self) -> None:
        """Remove listings images no kept release uses, on every host (docker refuses to remove
        those a container runs)."""
        kept = {ref for r in self.releases().history() for ref in r.images}
        for _, remote in self.every_host():
            listed = remote.run(
                f"docker images {LISTINGS_IMAGE} --format '{{{{.Repository}}}}:{{{{.Tag}}}}'",
                check=False,
            ).stdout.split()
            unused = [ref for ref in listed if ref not in kept]
            if unused:
                remote.run(
                    "docker image rm " + " ".join(quote(r) for r in unused) + " >/dev/null 2>&1; "
                    "true",
                    check=False,
                )

    # ------------------------------------------------------------------ failure

    def roll_back_automatically(self, error: BaseException) -> str:
        """Put the previous release back after a failure during or after the switch."""
        assert self.release is not None
        store = self.releases()
        if isinstance(error, RolloutError) and error.details:
            print(error.details, flush=True)
        if self.previous is not None and self.previous.id == self.release.id:
            store.audit(
                {
                    "event": f"{self.kind} of the unchanged release failed",
                    "release": self.release.id,
                    "error": str(error)[:300],
                }
            )
            return (
                f"the release {self.release.id} was already current (nothing changed): left as "
                "it is; check `invoke status`"
            )
        if self.previous is None:
            self.release.outcome = "failed"
            store.record(self.release)
            store.audit({"event": f"{self.kind} failed", "release": self.release.id})
            return "no previous release to roll back to (first deploy): fix and deploy again"
        print(f"\n==> automatic rollback to {self.previous.id}", flush=True)
        back = type(self)(self.env, self.build, kind="rollback", secrets=self.secrets)
        back.remote, back.lock, back.store = self.remote, self.lock, self.store
        back.release, back.previous = self.previous, None
        runner = steps.Runner(f"automatic rollback of {self.env.name} to {self.previous.id}")
        runner.run(
            [
                steps.Step("API replicas back to the previous release", back.roll_api, True),
                steps.Step("workers back", back.roll_workers, True),
                steps.Step("nginx", back.start_nginx, True),
                steps.Step("monitoring and central logs", back.start_monitoring, True),
                steps.Step(
                    "smoke checks of the previous release",
                    lambda: smoke_check(self.env, self.previous.version if self.previous else ""),
                    True,
                ),
            ]
        )
        self.release.outcome = "rolled back"
        self.release.finished = iso(utc_now())
        self.release.note = str(error)[:500]
        store.record(self.release)
        store.set_current(self.previous.id)
        store.audit(
            {
                "event": f"{self.kind} failed, rolled back",
                "release": self.release.id,
                "restored": self.previous.id,
            }
        )
        return f"rolled back to {self.previous.id}"

    def unlock(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.lock is not None and self.lock.held is not None:
            try:
                self.lock.release()
            except OpsError as exc:
                print(f"    WARNING: could not release the deploy lock: {exc}", flush=True)
        if self.remote is not None:
            self.remote.close()


def ensure_certificates(rc: RemoteCompose, force: bool = False) -> str:
    """`slipway-acme ensure` in a one-off certbot container; nginx reloaded when one changed."""
    args = ["run", "--rm", "--no-deps", "-T", ACME_SERVICE, "ensure"]
    try:
        out = rc.run(*args, *(["--force"] if force else []), what="ACME", timeout=ACME_TIMEOUT)
    except OpsError as exc:
        raise OpsError(
            f"the ACME CA did not issue every certificate: {exc}. nginx keeps serving the "
            "previous certificates (a placeholder for a new domain). Fix: check that each domain "
            "resolves to this host and that port 80 reaches nginx, then run the command again"
        ) from exc
    for line in out.splitlines():
        if line.strip():
            print(f"    {_acme_message(line, line)}", flush=True)
    summary = _acme_message(out, "done", prefix="ensure done: ")
    if "changed none" not in summary:
        reloaded = reload_nginx(rc.remote, rc.project)
        summary += (
            "; nginx reloaded" if reloaded else "; nginx not running (it loads them at start)"
        )
    return summary


def reload_nginx(remote: Remote, project: str) -> bool:
    """`nginx -t`, then a graceful reload of the project's running nginx, whether Compose or
    Swarm started it; False when none runs on this host."""
    found = remote.run(
        f"docker ps -q --filter label=com.docker.swarm.service.name={quote(project + '_nginx')}; "
        f"docker ps -q --filter label=com.docker.compose.project={quote(project)} "
        "--filter label=com.docker.compose.service=nginx "
        "--filter label=com.docker.compose.oneoff=False",
        what="find nginx",
    ).stdout.split()
    for container in found:
        remote.run(
            f"docker exec {quote(container)} nginx -t -q && "
            f"docker exec {quote(container)} nginx -s reload",
            what="check and reload nginx",
        )
    return bool(found)


def _acme_message(output: str, default: str, prefix: str = "") -> str:
    """The message of the last JSON log line of slipway-acme (starting with `prefix`)."""
    found = default
    for line in output.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        message = data.get("message", "") if isinstance(data, dict) else ""
        if isinstance(message, str) and message.startswith(prefix):
            found = message
    return found


def image_id_on(remote: Remote, image: str) -> str:
    """The id of `image` (a reference or an id) on the host; "" when it has no such image."""
    return remote.run(
        f"docker image inspect -f '{{{{.Id}}}}' {quote(image)} 2>/dev/null", check=False
    ).stdout.strip()


def host_has(remote: Remote, ref: str, image_id: str) -> bool:
    """The host has `ref`: with that image id, or (an infrastructure image, content-tagged:
    the tag names its build inputs) under that tag at all."""
    found = image_id_on(remote, ref)
    if not found:
        return False
    return found == image_id or not ref.startswith(f"{LISTINGS_IMAGE}:")


def ship_images(engine: docker.DockerClient, remote: Remote, refs: list[str]) -> str:
    """docker save here | SSH | docker load there, each image timed; an image the host has
    under another tag is only tagged."""
    shipped = []
    for ref in refs:
        image = engine.images.get(ref)
        if image_id_on(remote, image.id) == image.id:  # same content under another tag: just tag it
            remote.run(f"docker tag {quote(image.id)} {quote(ref)}", what=f"tag {ref}")
            shipped.append(f"{ref} (tagged)")
            continue
        began = time.monotonic()
        size = int(image.attrs.get("Size", 0))
        remote.stream_into(change("docker load -q", f"ship {ref}"), _save_chunks(image, ref))
        took = time.monotonic() - began
        print(f"    {remote.host.label} {ref}: {size / 1e6:.0f} MB in {took:.1f}s", flush=True)
        shipped.append(ref)
    return ", ".join(shipped)


def _save_chunks(image: object, ref: str) -> Iterator[bytes]:
    save = getattr(image, "save")  # noqa: B009 - docker's Image.save, chunked tar stream
    # named=ref: the tar names this tag (named=True would name the image's first tag).
    yield from save(chunk_size=1024 * 1024, named=ref)


def smoke_check(env: config.Environment, version: str, timeout: float = SMOKE_TIMEOUT) -> str:
    """/ready answers 200 and /api/v1/version reports `version`, through the public URL."""
    base = env.https_url
    deadline = time.monotonic() + timeout
    problem = ""
    with httpx.Client(verify=verify_context(env), timeout=10.0) as client:
        while time.monotonic() < deadline:
            try:
                ready = health.public_get(client, base, "/ready", env.connect_to)
                seen = health.public_get(client, base, "/api/v1/version", env.connect_to)
                reported = seen.json().get("version") if seen.status_code == 200 else None
                if ready.status_code == 200 and reported == version:
                    return f"{base}: ready, version {version}"
                problem = f"/ready {ready.status_code}, version {reported!r} (want {version!r})"
            except (httpx.HTTPError, ValueError) as exc:
                problem = str(exc)
            time.sleep(1.0)
    raise OpsError(f"smoke check through {base} failed: {problem}")


def verify_context(env: config.Environment) -> ssl.SSLContext | bool:
    """An SSL context trusting the environment's CA file, or True for the system CAs."""
    verify = env.verify
    if isinstance(verify, Path):
        if not verify.is_file():
            raise OpsError(
                f"CA file {verify} to verify {env.https_url} is missing. Fix: set `ca_file:` in "
                f"{env.source}, or run the deploy from the machine that holds .slipway/{env.name}/"
            )
        return health.tls_context(verify)
    return True


# ------------------------------------------------------------------------------ entry points


def deployment_for(env: config.Environment, build: Build, **options: object) -> Deployment:
    """Compose on one host; Docker Swarm (ops/swarm.py) for several."""
    from ops.deploy import swarm as swarm

    kind = swarm.SwarmDeployment if swarm.is_swarm(env) else Deployment
    return kind(env, build, **options)  # type: ignore[arg-type]


def deploy(
    env_name: str,
    version: str | None = None,
    dry_run: bool = False,
    skip_backup: bool = False,
    restore: bool = False,
) -> steps.Report | None:
    """Pre-flight, lock, ship, back up, migrate, roll the API, workers, nginx, smoke, record."""
    env = config.load(env_name)
    build = compose.detect_build()
    if version:
        build = Build(compose.tag_safe(version), build.git_sha, build.ca_bundle, build.image_tags)
    d = deployment_for(
        env, build, explicit_version=bool(version), skip_backup=skip_backup, restore=restore
    )
    title = f"invoke deploy --env={env.name} (version {build.version})"
    preflight = [
        steps.Step("check configuration and secrets", d.check_config),
        steps.Step("check the images (build them if missing)", d.check_images),
        steps.Step("check the host (SSH, docker, compose, disk)", d.check_host),
        steps.Step("plan", d.plan),
    ]
    impacting = [
        steps.Step("take the deploy lock", d.take_lock, True, "no lock was taken"),
        *d.cluster_steps(),
        steps.Step("ship images", d.ship, True, "the running release is untouched"),
        steps.Step("write the release files", d.write_release, True, "running release untouched"),
        steps.Step("start postgres and redis", d.start_data, True),
        steps.Step(
            "backup before migrations",
            d.backup_before_migrations,
            True,
            "the running release is untouched; `invoke backup.list` shows the repository",
        ),
        steps.Step(
            "migrate the schema (new image)", d.migrate, True, "the running release is untouched"
        ),
        steps.Step(
            "TLS certificates from the ACME CA (nginx running)",
            d.certificates_before_switch,
            True,
            "the running release is untouched; the previous certificates stay in place",
        ),
        steps.Step("rolling update of the API", d.roll_api, True),
        steps.Step("replace the workers", d.roll_workers, True),
        steps.Step("nginx", d.start_nginx, True),
        steps.Step(
            "TLS certificates (first deploy) and renewals", d.certificates_after_nginx, True
        ),
        steps.Step("monitoring and central logs", d.start_monitoring, True),
        steps.Step("smoke checks through the public URL", d.smoke, True),
        steps.Step("record the release", d.record, True),
    ]
    runner = steps.Runner(title)
    try:
        with _terminate_as_interrupt():
            return runner.run(preflight + impacting, dry_run=dry_run)
    except (Exception, KeyboardInterrupt) as exc:
        if d.switched and d.release is not None:
            try:
                outcome = d.roll_back_automatically(exc)
            except (Exception, KeyboardInterrupt) as again:
                back = f" --to={d.previous.id}" if d.previous else ""
                raise OpsError(
                    f"deploy failed ({exc}) and the automatic rollback failed too ({again}). "
                    f"State: mixed. Fix: `invoke rollback --env={env.name}{back}`, then "
                    f"`invoke status --env={env.name}`"
                ) from again
            raise OpsError(f"deploy failed: {exc}. {outcome}") from exc
        if isinstance(exc, RolloutError) and exc.details:
            print(exc.details, flush=True)
        if not isinstance(exc, (OpsError, KeyboardInterrupt)):
            raise OpsError(f"deploy failed: {type(exc).__name__}: {exc}") from exc
        raise
    finally:
        d.unlock()


def _backup_label(output: str) -> str:
    """The summary note of a backup: its label as backup-run logged it."""
    for line in reversed(output.splitlines()):
        if "backup (" in line and " done in " in line:
            try:
                return str(json.loads(line)["message"])
            except (ValueError, KeyError, TypeError):
                return line.strip()[-120:]
    return "backup taken"


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (CI cancelling a job, `kill`) takes the same path as Ctrl-C: roll back what was
    switched, release the lock, say where things stand. Only SIGKILL skips that (the lock then
    goes stale after lock_ttl and the next deploy takes it over)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _checked_rollback_target(d: Deployment, to: str | None) -> str:
    store = d.releases()
    current = store.current_id()
    known = store.history()
    if to:
        target = store.get(to)
    else:
        good = [r for r in known if r.outcome == "succeeded" and r.id != current]
        older = [r for r in good if current is None or r.id < current]
        if not older:
            raise OpsError(
                f"no earlier successful release to roll back to on {d.host.label} "
                f"(current: {current or 'none'}). Fix: `invoke releases --env={d.env.name}` "
                "lists them; pass one with --to"
            )
        target = older[-1]
    if target.id == current:
        print(f"    plan: {target.id} is the current release: putting it back in place (repair)")
    missing = d.restore_images(target.images)
    if missing:
        raise OpsError(
            f"images of {target.id} are no longer on the host: {', '.join(missing)}. Fix: deploy "
            f"that version instead (`invoke deploy --env={d.env.name} --version={target.version}`)"
        )
    d.previous = store.get(current) if current else None
    d.release = target
    print(f"    plan: current {current or 'none'} -> {target.id} (version {target.version})")
    print("    plan: uses the recorded compose files and the images already on the host")
    return f"to {target.id}"


def rollback(env_name: str, to: str | None = None, dry_run: bool = False) -> steps.Report:
    """Put a recorded release back (the previous successful one by default): no build, no
    registry, the same rolling procedure as a deploy."""
    env = config.load(env_name)
    d = deployment_for(env, compose.detect_build(), kind="rollback")

    def plan() -> str:
        return _checked_rollback_target(d, to)

    def take_lock() -> str:
        assert d.release is not None
        d.lock = locks.DeployLock(d.sh(), d.root, env.deploy.lock_ttl)
        held = d.lock.acquire(
            d.release.version, wait=float(env.deploy.lock_wait), operation="rollback"
        )
        d.heartbeat = locks.Heartbeat(d.lock).start()
        planned = d.previous.id if d.previous else None
        if d.releases().current_id() != planned:
            print("    the current release changed while waiting for the lock: choosing again")
            _checked_rollback_target(d, to)
        d.releases().audit(
            {"event": "rollback started", "release": d.release.id, "who": held.owner}
        )
        return f"held by {held.owner}"

    def smoke() -> str:
        assert d.release is not None
        return smoke_check(env, d.release.version)

    def record() -> str:
        assert d.release is not None
        store = d.releases()
        store.set_current(d.release.id)
        store.audit(
            {
                "event": "rollback succeeded",
                "release": d.release.id,
                "from": d.previous.id if d.previous else "",
                "who": locks.default_owner(),
                "seconds": round(time.monotonic() - d.started, 1),
            }
        )
        return f"current = {d.release.id}"

    runner = steps.Runner(f"invoke rollback --env={env.name}")
    try:
        with _terminate_as_interrupt():
            return runner.run(
                [
                    steps.Step("check configuration and secrets", d.check_config),
                    steps.Step("check the host (SSH, docker, compose, disk)", d.check_host),
                    steps.Step("choose the release and check its images", plan),
                    steps.Step("take the deploy lock", take_lock, True, "no lock was taken"),
                    steps.Step("rolling update of the API", d.roll_api, True),
                    steps.Step("replace the workers", d.roll_workers, True),
                    steps.Step("nginx", d.start_nginx, True),
                    steps.Step("monitoring and central logs", d.start_monitoring, True),
                    steps.Step("smoke checks through the public URL", smoke, True),
                    steps.Step("record the current release", record, True),
                ],
                dry_run=dry_run,
            )
    except RolloutError as exc:
        if exc.details:
            print(exc.details, flush=True)
        raise
    finally:
        d.unlock()
