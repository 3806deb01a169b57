"""Sandbox hosts: disposable deploy targets on this machine (`invoke sandbox.up`, `sandbox.down`).

A host is a container of slipway/sandbox-host running its own dockerd and sshd (Docker in Docker
with the flags of docs/architecture.md, never --privileged), on the network slipway-sandbox. Its
ports 22, 80 and 443 are published on 127.0.0.1 at ports the engine picks: asking the engine
leaves no gap between "found free" and "bound" for concurrent test stacks to fall into.
`up` writes what a deploy to the hosts needs: environments/<name>.yaml (target: ssh), .env.<name>
with generated secrets, and under .slipway/sandbox-<name>/ the login key and known_hosts.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from docker.errors import APIError, DockerException, NotFound

from ops import compose, config, docker_engine, images, paths, proc, secrets
from ops.errors import OpsError
from ops.stack import confirm_destroy
from ops.steps import Report, Runner, Step

IMAGE = "slipway/sandbox-host"
NETWORK = "slipway-sandbox"
# Every sandbox container carries LABEL=<sandbox name>; only those are ever removed.
LABEL = "org.slipway.sandbox"
INDEX_LABEL = "org.slipway.sandbox.index"
KEY_LABEL = "org.slipway.sandbox.key"
NETWORK_LABEL = "org.slipway.sandbox.network"
BUILD_FILE = "compose/sandbox.yaml"
BUILD_PROJECT = "slipway-sandbox"
BUILD_SERVICE = "sandbox-host"
# What the image is built from: its tag is a digest of these, so an edit means a new image.
BUILD_INPUTS = ("services/sandbox-host", BUILD_FILE)
DEFAULT_NAME = "sandbox"
MAX_HOSTS = 8
LOOPBACK = "127.0.0.1"
REMOTE_USER = "deploy"
REMOTE_ROOT = "/srv/slipway"
HOST_PORTS = {"ssh": 22, "http": 80, "https": 443}
# The first line of every environment file sandbox.up writes; down deletes only such files.
MARKER = "# Written by `invoke sandbox.up"
DEFAULT_LISTINGS_ENV = "staging"
CGROUP_ROOT = Path("/sys/fs/cgroup")
HEALTH_COMMAND = ["/usr/local/bin/sandbox-host", "healthcheck"]
# Same rule as environment names (ops/config.py): the sandbox is an environment of that name.
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_PORT_TAKEN = ("port is already allocated", "address already in use")
_START_ATTEMPTS = 3


# ------------------------------------------------------------------------------ pure parts


@dataclass(frozen=True)
class HostPorts:
    """Loopback ports of one host: its sshd, and the 80/443 the deployed nginx will listen on."""

    ssh: int
    http: int
    https: int


@dataclass(frozen=True)
class Existing:
    """A container of the sandbox as found on the engine."""

    container: str
    index: int  # 0 when the label is missing or not a number
    running: bool
    key_matches: bool


@dataclass(frozen=True)
class HostPlan:
    """What `up` does to reach the wanted host count."""

    keep: tuple[int, ...]
    create: tuple[int, ...]
    # (container, reason)
    remove: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SandboxFiles:
    """Every file of sandbox `name` on this machine."""

    name: str
    root: Path
    environment: Path

    @classmethod
    def of(cls, name: str) -> SandboxFiles:
        return cls(name, paths.repo_root(), paths.environments_dir() / f"{name}.yaml")

    @property
    def key_dir(self) -> Path:
        return self.root / ".slipway" / f"sandbox-{self.name}"

    @property
    def private_key(self) -> Path:
        return self.key_dir / "id_ed25519"

    @property
    def public_key(self) -> Path:
        return self.key_dir / "id_ed25519.pub"

    @property
    def known_hosts(self) -> Path:
        return self.key_dir / "known_hosts"

    @property
    def secrets(self) -> Path:
        # The rule of secrets.env_file: .env.<name> at the repository root.
        return self.root / f".env.{self.name}"

    def relative(self, path: Path) -> str:
        """`path` as the environment file writes it: relative to the repository root."""
        return str(path.relative_to(self.root))


def check_name(name: str) -> None:
    """A sandbox name is an environment name: lowercase letters, digits, '-', from a letter."""
    if not _NAME_RE.match(name):
        raise OpsError(
            f"invalid sandbox name {name!r}: it names an environment, so use lowercase letters, "
            "digits and '-', starting with a letter, at most 31 characters"
        )


def check_count(hosts: int) -> None:
    """1 to MAX_HOSTS hosts: each runs a whole Docker engine on this machine."""
    if not 1 <= hosts <= MAX_HOSTS:
        raise OpsError(f"--hosts must be between 1 and {MAX_HOSTS}, got {hosts}")


def container_name(name: str, index: int) -> str:
    """slipway-sandbox-<name>-<n>; also the cgroup parent of that host's nested containers."""
    return f"slipway-sandbox-{name}-{index}"


def hostname(name: str, index: int) -> str:
    """<name>-<n>."""
    return f"{name}-{index}"


def listings_env_for(name: str, requested: str = "") -> str:
    """The service mode: as requested, else the sandbox's name for staging/production, else
    staging (a sandbox rehearses a deploy to a server, so it runs with the server's rules)."""
    if requested:
        if requested not in config.LISTINGS_ENVS:
            raise OpsError(
                f"--listings-env {requested!r} is not a mode of the service. "
                f"Fix: use one of {', '.join(config.LISTINGS_ENVS)}"
            )
        return requested
    return name if name in ("staging", "production") else DEFAULT_LISTINGS_ENV


def key_fingerprint(public_key: str) -> str:
    """Short digest of the login key, stored as a container label to spot a replaced key."""
    return hashlib.sha256(public_key.strip().encode()).hexdigest()[:16]


def plan_hosts(count: int, existing: Sequence[Existing]) -> HostPlan:
    """Keep running hosts 1..count that accept the current key; replace or remove the rest."""
    keep: list[int] = []
    remove: list[tuple[str, str]] = []
    for host in sorted(existing, key=lambda h: (h.index, h.container)):
        if not 1 <= host.index <= count:
            remove.append((host.container, "not wanted"))
        elif host.index in keep:
            remove.append((host.container, "duplicate"))
        elif not host.running:
            remove.append((host.container, "not running: replaced"))
        elif not host.key_matches:
            remove.append((host.container, "login key changed: replaced"))
        else:
            keep.append(host.index)
    create = tuple(i for i in range(1, count + 1) if i not in keep)
    return HostPlan(tuple(keep), create, tuple(remove))


def published_ports(container: str, attrs: Mapping[str, Any]) -> HostPorts:
    """The loopback ports the engine published for 22, 80 and 443 (from `docker inspect`)."""
    bindings = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    found: dict[str, int] = {}
    for role, port in HOST_PORTS.items():
        for entry in bindings.get(f"{port}/tcp") or []:
            if entry.get("HostIp") == LOOPBACK and str(entry.get("HostPort", "")).isdigit():
                found[role] = int(entry["HostPort"])
                break
        else:
            raise OpsError(
                f"{container} does not publish port {port} on {LOOPBACK}. "
                f"Fix: `invoke sandbox.down` and `invoke sandbox.up` again"
            )
    return HostPorts(**found)


def known_hosts_lines(port: int, host_keys: str) -> list[str]:
    """known_hosts lines for a host reached at 127.0.0.1:<port>, from its ssh_host_*.pub."""
    lines = []
    for raw in host_keys.splitlines():
        fields = raw.split()
        if len(fields) >= 2 and fields[0].startswith(("ssh-", "ecdsa-")):
            lines.append(f"[{LOOPBACK}]:{port} {fields[0]} {fields[1]}")
    if not lines:
        raise OpsError(f"no SSH host key found on the host at {LOOPBACK}:{port}")
    return lines


def environment_yaml(
    files: SandboxFiles, hosts: Sequence[HostPorts], listings_env: str, count: int
) -> str:
    """environments/<name>.yaml for the hosts (format: docs/architecture.md, target: ssh)."""
    name = files.name
    lines = [
        f"{MARKER} --name {name} --hosts {count}`.",
        f"# Disposable hosts on this machine; `invoke sandbox.down --name {name}` deletes them",
        "# and this file. Edits are lost: every sandbox.up writes it again.",
        f"name: {name}",
        "target: ssh",
        "hosts:",
    ]
    for ports in hosts:
        lines += [
            f"  - ssh: {REMOTE_USER}@{LOOPBACK}:{ports.ssh}",
            f"    identity: {files.relative(files.private_key)}",
            f"    known_hosts: {files.relative(files.known_hosts)}",
        ]
    lines += [
        "domains: [localhost]",
        "tls: local-ca",
        "bind: 0.0.0.0",
        f"ports: {{http: {HOST_PORTS['http']}, https: {HOST_PORTS['https']}}}",
        f"public_url: https://localhost:{hosts[0].https}",
        f"listings_env: {listings_env}",
        "replicas: {api: 2, worker: 1}",
        "deploy:",
        f"  remote_dir: {REMOTE_ROOT}/{name}",
    ]
    return "\n".join(lines) + "\n"


def written_by_sandbox(path: Path) -> bool:
    """True when `path` is an environment file sandbox.up wrote."""
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.readline().startswith(MARKER)
    except FileNotFoundError:
        return False


def image_tag(root: Path) -> str:
    """`c.<12 hex>`: digest of the image's build inputs (names, exec bits, contents; not docs)."""
    digest = hashlib.sha256()
    for top in BUILD_INPUTS:
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


def build_invocation(root: Path, tag: str, build: compose.Build) -> compose.Invocation:
    """`docker compose -p slipway-sandbox -f compose/sandbox.yaml build` and its environment."""
    env = dict(os.environ)
    env.pop("COMPOSE_FILE", None)
    env.update(
        SLIPWAY_SANDBOX_TAG=tag,
        SLIPWAY_GIT_SHA=build.git_sha,
        SLIPWAY_BUILD_CA=str(build.ca_bundle),
    )
    argv = ["docker", "compose", "-p", BUILD_PROJECT, "-f", str(root / BUILD_FILE)]
    return compose.Invocation([*argv, "build", BUILD_SERVICE], env)


def check_local_engine(environ: Mapping[str, str]) -> None:
    """Hosts publish on the engine's loopback: that must be this machine's loopback."""
    host = environ.get("DOCKER_HOST", "")
    local = ("unix://", "tcp://127.0.0.1", "tcp://localhost", "npipe://")
    if host and not host.startswith(local):
        raise OpsError(
            f"DOCKER_HOST is {host}: sandbox hosts publish their ports on the engine's "
            "127.0.0.1, which would not be this machine's. Fix: unset DOCKER_HOST and use "
            "the local engine"
        )


def remove_cgroups(root: Path, container: str) -> int:
    """Remove the empty cgroups a host's engine left under <hierarchy>/<container>; a count.

    The nested dockerd puts its containers under the cgroup parent /<container>; when the host is
    removed with containers still running, their (now empty) cgroups stay behind.
    """
    removed = 0
    tops = [root / container]
    if root.is_dir():
        tops += [h / container for h in sorted(root.iterdir()) if h.is_dir() and not h.is_symlink()]
    for top in tops:
        if not top.is_dir() or top.is_symlink():
            continue
        for directory, _, _ in os.walk(top, topdown=False):
            try:
                Path(directory).rmdir()
                removed += 1
            except OSError:
                continue
    return removed


# ------------------------------------------------------------------------- engine and files


def write_file(path: Path, text: str, mode: int) -> None:
    """Write `text` to `path` atomically (temporary file, then rename) with `mode`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    tmp.chmod(mode)
    tmp.replace(path)


def ensure_key(files: SandboxFiles) -> bool:
    """The login key pair (ed25519, private 0600 in a 0700 directory); True when created."""
    paths.ensure_state_dir()
    files.key_dir.mkdir(parents=True, exist_ok=True)
    files.key_dir.chmod(0o700)
    if files.private_key.is_file() and files.public_key.is_file():
        files.private_key.chmod(0o600)
        return False
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    write_file(files.private_key, private, 0o600)
    write_file(files.public_key, f"{public.decode()} slipway-sandbox-{files.name}\n", 0o644)
    return True


def sandbox_containers(engine: docker.DockerClient, name: str) -> list[Any]:
    """Every container (running or not) labelled as a host of sandbox `name`."""
    found: list[Any] = engine.containers.list(all=True, filters={"label": f"{LABEL}={name}"})
    return found


def existing_hosts(containers: Sequence[Any], fingerprint: str) -> list[Existing]:
    """The containers as plan_hosts sees them."""
    result = []
    for container in containers:
        labels = container.labels or {}
        index = str(labels.get(INDEX_LABEL, ""))
        result.append(
            Existing(
                container=container.name,
                index=int(index) if index.isdigit() else 0,
                running=container.status == "running",
                key_matches=labels.get(KEY_LABEL) == fingerprint,
            )
        )
    return result


def _port_taken(exc: APIError) -> bool:
    return any(text in str(exc).lower() for text in _PORT_TAKEN)


def start_host(
    engine: docker.DockerClient, name: str, index: int, image: str, public_key: str
) -> Any:
    """Create and start host <index>; ports the engine picks on 127.0.0.1, retried if taken."""
    cname = container_name(name, index)
    for attempt in range(1, _START_ATTEMPTS + 1):
        container = engine.containers.create(
            image,
            name=cname,
            hostname=hostname(name, index),
            detach=True,
            labels={LABEL: name, INDEX_LABEL: str(index), KEY_LABEL: key_fingerprint(public_key)},
            environment={
                "SANDBOX_AUTHORIZED_KEY": public_key.strip(),
                "SANDBOX_CGROUP_PARENT": f"/{cname}",
            },
            # The Docker-in-Docker flags that work on these machines (--privileged does not).
            cap_add=["ALL"],
            cap_drop=["SYS_RESOURCE"],
            security_opt=["seccomp=unconfined", "apparmor=unconfined"],
            cgroupns="host",
            volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
            tmpfs={"/var/lib/docker": "exec"},
            network=NETWORK,
            ports={f"{port}/tcp": (LOOPBACK, None) for port in HOST_PORTS.values()},
            log_config={"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
        )
        try:
            container.start()
        except APIError as exc:
            container.remove(force=True)
            if _port_taken(exc) and attempt < _START_ATTEMPTS:
                continue
            raise OpsError(f"cannot start {cname}: {exc.explanation or exc}") from exc
        return container
    raise AssertionError("unreachable: the last attempt returns or raises")


def read_container_file(container: Any, path: str) -> str:
    """A file's text from a container, running or not ('' when it cannot be read)."""
    try:
        stream, _ = container.get_archive(path)
        data = b"".join(stream)
    except DockerException:
        return ""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.next()
        handle = archive.extractfile(member) if member else None
        return handle.read().decode(errors="replace") if handle else ""


def failure_details(container: Any, lines: int = 40) -> str:
    """Its dockerd log tail, its own log tail and its last health output: what explains it."""
    try:
        container.reload()
        logs = container.logs(tail=lines).decode(errors="replace")
    except DockerException as exc:
        return f"--- {container.name}: cannot read its state ({exc})"
    dockerd_log = read_container_file(container, "/var/log/dockerd.log").splitlines()[-lines:]
    health = (container.attrs.get("State") or {}).get("Health") or {}
    probes = health.get("Log") or []
    last = str(probes[-1].get("Output", "")).strip() if probes else "none yet"
    return "\n".join(
        [
            f"--- {container.name}: status {container.status}, last health check: {last}",
            f"--- {container.name}: /var/log/dockerd.log (last {lines} lines)",
            *(dockerd_log or ["(empty or missing)"]),
            f"--- {container.name}: container log (last {lines} lines)",
            logs.rstrip() or "(empty)",
        ]
    )


def wait_healthy(containers: Sequence[Any], timeout: float) -> str:
    """Wait until every host's dockerd and sshd answer (the image's healthcheck, run now)."""
    pending = {c.name: c for c in containers}
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while pending:
        for cname, container in list(pending.items()):
            container.reload()
            if container.status != "running":
                raise _unhealthy(container, f"{cname} stopped ({container.status})")
            try:
                code, _ = container.exec_run(HEALTH_COMMAND)
            except APIError:
                continue  # it stopped between reload and exec: the next round reports it
            if code == 0:
                del pending[cname]
        if pending and time.monotonic() > deadline:
            first = next(iter(pending.values()))
            raise _unhealthy(first, f"{first.name} not healthy after {timeout:.0f}s")
        if pending:
            time.sleep(0.5)
    return f"{len(containers)} host(s) answer after {time.monotonic() - started:.1f}s"


def _unhealthy(container: Any, problem: str) -> OpsError:
    print(failure_details(container), flush=True)
    return OpsError(
        f"{problem}; its dockerd log and container log are above. Fix: the last lines of the "
        "dockerd log name the cause (a dockerd that cannot start usually lacks a capability or "
        "a kernel feature: compare with the machine's Docker-in-Docker flags); a slow machine "
        "needs a larger --timeout. Then run `invoke sandbox.up` again"
    )


def ssh_run(files: SandboxFiles, port: int, command: str, timeout: float = 30.0) -> str:
    """Run `command` as deploy on the host at 127.0.0.1:<port>, host key checked; its stdout."""
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(str(files.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            LOOPBACK,
            port=port,
            username=REMOTE_USER,
            key_filename=str(files.private_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
        _, stdout, stderr = client.exec_command(command, timeout=timeout)
        out = str(stdout.read().decode(errors="replace"))
        code = stdout.channel.recv_exit_status()
        if code != 0:
            err = stderr.read().decode(errors="replace").strip()
            raise OpsError(f"`{command}` on {LOOPBACK}:{port} exited {code}: {err[-500:]}")
        return out.strip()
    except (paramiko.SSHException, OSError) as exc:
        raise OpsError(
            f"cannot log in as {REMOTE_USER}@{LOOPBACK}:{port} with {files.private_key} "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        client.close()


# ---------------------------------------------------------------------------------------- up


@dataclass
class _Sandbox:
    """State of one `up` run, filled in as the steps progress."""

    files: SandboxFiles
    count: int
    listings_env: str
    engine: docker.DockerClient | None = None
    tag: str = ""
    plan: HostPlan = field(default_factory=lambda: HostPlan((), ()))
    build_needed: bool = False
    public_key: str = ""
    hosts: dict[int, Any] = field(default_factory=dict)
    ports: dict[int, HostPorts] = field(default_factory=dict)

    @property
    def image(self) -> str:
        return f"{IMAGE}:{self.tag}"

    def docker(self) -> docker.DockerClient:
        if self.engine is None:
            self.engine = docker_engine.client()
        return self.engine

    def current(self) -> list[Any]:
        return [self.hosts[i] for i in sorted(self.hosts)]


def up(
    name: str = DEFAULT_NAME,
    hosts: int = 1,
    listings_env: str = "",
    timeout: float = 120.0,
    dry_run: bool = False,
    runner: Runner | None = None,
) -> Report:
    """Start (or reuse) `hosts` sandbox hosts and write the environment `name` that targets them."""
    check_name(name)
    check_count(hosts)
    box = _Sandbox(SandboxFiles.of(name), hosts, listings_env_for(name, listings_env))
    files = box.files

    def check_docker() -> str:
        check_local_engine(os.environ)
        return docker_engine.check()

    def check_files() -> str:
        env_file = files.environment
        if env_file.exists() and not written_by_sandbox(env_file):
            raise OpsError(
                f"{env_file} exists and was not written by `invoke sandbox.up`, which would "
                f"replace it. Fix: choose another --name, or move that file away"
            )
        return f"{env_file} " + ("(a sandbox's: rewritten)" if env_file.exists() else "(new)")

    def plan() -> str:
        engine = box.docker()
        box.tag = image_tag(files.root)
        public = files.public_key.read_text(encoding="utf-8") if files.public_key.is_file() else ""
        found = existing_hosts(sandbox_containers(engine, name), key_fingerprint(public))
        box.plan = plan_hosts(hosts, found)
        box.build_needed = bool(box.plan.create) and not images.has_image(engine, box.image)
        if box.build_needed and not images.has_image(engine, images.BASE_IMAGE):
            raise OpsError(
                f"{box.image} must be built and its base {images.BASE_IMAGE} is missing. "
                "Fix: run `invoke images.base`, then `invoke sandbox.up` again"
            )
        if box.build_needed:
            image = "will be built"
        elif box.plan.create:
            image = "present"
        else:
            image = "not needed (every host is kept)"
        removals = [f"{c} ({why})" for c, why in box.plan.remove]
        lines = [
            f"image {box.image}: {image}",
            "keep: " + (", ".join(hostname(name, i) for i in box.plan.keep) or "none"),
            "start: " + (", ".join(hostname(name, i) for i in box.plan.create) or "none"),
            "remove: " + (", ".join(removals) or "none"),
            f"login key {files.relative(files.private_key)}: "
            + ("present" if public else "will be generated"),
            f"write {files.environment} (listings_env {box.listings_env}) and "
            f"{files.relative(files.secrets)}",
        ]
        for line in lines:
            print(f"    plan: {line}", flush=True)
        return f"keep {len(box.plan.keep)}, start {len(box.plan.create)}"

    def build_image() -> str:
        if not box.build_needed:
            return "skipped: not needed"
        inv = build_invocation(files.root, box.tag, compose.detect_build())
        proc.run(inv.argv, env=inv.env, cwd=files.root, what="docker compose build")
        # compose 2.40 with engine 20.10 may exit 0 after a failed build: trust the image only.
        if not images.has_image(box.docker(), box.image):
            raise OpsError(
                f"the build did not produce {box.image}: see the BuildKit output above. "
                f"Fix services/sandbox-host/Dockerfile, then `invoke sandbox.up` again"
            )
        return f"built {box.image}"

    def make_key() -> str:
        created = ensure_key(files)
        box.public_key = files.public_key.read_text(encoding="utf-8")
        return "generated" if created else "present"

    def make_network() -> str:
        engine = box.docker()
        if _networks(engine):
            return "present"
        engine.networks.create(NETWORK, driver="bridge", labels={NETWORK_LABEL: "true"})
        return "created"

    def remove_hosts() -> str:
        engine = box.docker()
        for cname, _ in box.plan.remove:
            _remove_container(engine, cname)
        return f"removed {len(box.plan.remove)}" if box.plan.remove else "nothing to remove"

    def start_hosts() -> str:
        engine = box.docker()
        for index in box.plan.keep:
            box.hosts[index] = engine.containers.get(container_name(name, index))
        for index in box.plan.create:
            box.hosts[index] = start_host(engine, name, index, box.image, box.public_key)
        reused = [c for i, c in box.hosts.items() if i in box.plan.keep]
        stale = [c.name for c in reused if c.attrs.get("Config", {}).get("Image") != box.image]
        if stale:
            print(
                f"    note: {', '.join(stale)} run(s) an older {IMAGE} and keep(s) it; "
                f"`invoke sandbox.down --name {name}` then `sandbox.up` for the new one",
                flush=True,
            )
        return f"started {len(box.plan.create)}, kept {len(box.plan.keep)}"

    def wait() -> str:
        return wait_healthy(box.current(), timeout)

    def record_host_keys() -> str:
        lines: list[str] = []
        for index, container in sorted(box.hosts.items()):
            container.reload()
            box.ports[index] = published_ports(container.name, container.attrs)
            code, output = container.exec_run(["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"])
            if code != 0:
                raise OpsError(f"cannot read the SSH host keys of {container.name}")
            lines += known_hosts_lines(box.ports[index].ssh, output.decode())
        write_file(files.known_hosts, "\n".join(lines) + "\n", 0o644)
        return f"{len(lines)} key(s) in {files.relative(files.known_hosts)}"

    def write_environment() -> str:
        ports = [box.ports[i] for i in sorted(box.ports)]
        text = environment_yaml(files, ports, box.listings_env, hosts)
        write_file(files.environment, text, 0o644)
        generated = secrets.generate_missing(files.secrets)
        note = f"generated {', '.join(generated)}" if generated else "secrets present"
        return f"{files.environment.name} written, {note}"

    def verify() -> str:
        ids: dict[str, int] = {}
        for index in sorted(box.ports):
            port = box.ports[index].ssh
            engine_id = ssh_run(files, port, "docker info --format '{{.ID}}'")
            compose_version = ssh_run(files, port, "docker compose version --short")
            print(
                f"    {hostname(name, index)}: {REMOTE_USER}@{LOOPBACK}:{port} engine "
                f"{engine_id[:14]}, compose {compose_version}",
                flush=True,
            )
            ids[engine_id] = index
        if len(ids) != len(box.ports):
            raise OpsError("two hosts answered with the same engine: the ports are crossed")
        return f"{len(ids)} host(s): SSH, docker and compose work"

    state_hint = (
        f"inspect with `docker ps -a --filter label={LABEL}={name}`, "
        f"remove with `invoke sandbox.down --name {name} --yes`"
    )
    steps = [
        Step("check the Docker engine and compose plugin", check_docker),
        Step(f"check the files of sandbox {name}", check_files),
        Step("plan: image, hosts, login key, files", plan),
        Step(
            f"build the {IMAGE} image",
            build_image,
            impacting=True,
            on_failure="no host was touched; fix the build and run `invoke sandbox.up` again",
        ),
        Step(f"ensure the login key {files.relative(files.private_key)}", make_key, impacting=True),
        Step(f"ensure the network {NETWORK}", make_network, impacting=True),
        Step("remove unwanted hosts", remove_hosts, impacting=True, on_failure=state_hint),
        Step("start the missing hosts", start_hosts, impacting=True, on_failure=state_hint),
        Step(
            "wait until every host's dockerd and sshd answer",
            wait,
            impacting=True,
            on_failure=state_hint,
        ),
        Step(
            "record the hosts' SSH host keys",
            record_host_keys,
            impacting=True,
            on_failure=state_hint,
        ),
        Step(
            f"write {files.environment.name} and {files.secrets.name}",
            write_environment,
            impacting=True,
            on_failure=state_hint,
        ),
        Step(
            "log in over SSH as deploy: docker and compose on every host",
            verify,
            impacting=True,
            on_failure=state_hint,
        ),
    ]
    runner = runner or Runner(f"invoke sandbox.up --name {name} --hosts {hosts}")
    report = runner.run(steps, dry_run=dry_run)
    if dry_run:
        print("dry run: stopped before the impacting steps, nothing was changed")
    else:
        print_access(box)
    return report


def print_access(box: _Sandbox) -> None:
    """How to reach the hosts and what to do next."""
    files = box.files
    name = files.name
    key = files.relative(files.private_key)
    known = files.relative(files.known_hosts)
    print()
    print(f"Sandbox {name} is up: {len(box.ports)} host(s) on the Docker network {NETWORK}")
    for index in sorted(box.ports):
        ports = box.ports[index]
        print(
            f"  {hostname(name, index):<{len(name) + 3}} "
            f"ssh -i {key} -o UserKnownHostsFile={known} -p {ports.ssh} {REMOTE_USER}@{LOOPBACK}"
            f"    (http :{ports.http}, https :{ports.https})"
        )
    print(f"  environment  {files.environment} (target: ssh, listings_env {box.listings_env})")
    print(f"  secrets      {files.relative(files.secrets)}")
    first = box.ports[min(box.ports)]
    print(f"  public URL   https://localhost:{first.https} (once a deploy runs there)")
    print(f"  remove       invoke sandbox.down --name {name}")


# -------------------------------------------------------------------------------------- down


def _remove_container(engine: docker.DockerClient, cname: str) -> None:
    try:
        engine.containers.get(cname).remove(force=True, v=True)
    except NotFound:
        return
    if os.environ.get("DOCKER_HOST", "unix://").startswith("unix://"):
        remove_cgroups(CGROUP_ROOT, cname)


def _networks(engine: docker.DockerClient) -> list[Any]:
    # The engine's name filter also matches longer names (slipway-sandbox-old): compare exactly.
    return [n for n in engine.networks.list(names=[NETWORK]) if n.name == NETWORK]


def _remove_network_if_unused(engine: docker.DockerClient) -> bool:
    if engine.containers.list(all=True, filters={"label": LABEL}):
        return False
    removed = False
    for network in _networks(engine):
        network.reload()
        if not network.attrs.get("Containers"):
            network.remove()
            removed = True
    return removed


def down(name: str = DEFAULT_NAME, yes: bool = False) -> None:
    """Remove sandbox `name`: its hosts (engines and images with them), files, and the network
    when no sandbox uses it any more. A sandbox that does not exist is reported, not an error."""
    check_name(name)
    files = SandboxFiles.of(name)
    engine = docker_engine.client()
    containers = sandbox_containers(engine, name)
    ours = written_by_sandbox(files.environment)
    exists = bool(containers) or ours or files.key_dir.exists()
    doomed = [files.environment] if ours else []
    # .env.<name> is the sandbox's unless environments/<name>.yaml is someone else's file.
    if exists and files.secrets.exists() and (ours or not files.environment.exists()):
        doomed.append(files.secrets)
    if files.key_dir.exists():
        doomed.append(files.key_dir)
    if not containers and not doomed:
        print(f"sandbox {name} does not exist: no host labelled {LABEL}={name}, no files")
        return
    if files.environment.exists() and not ours:
        print(f"note: {files.environment} was not written by sandbox.up: it is kept")
    what = f"sandbox {name}: {len(containers)} host(s) with everything deployed on them"
    if doomed:
        what += f", and {', '.join(_shown(files, p) for p in doomed)}"
    confirm_destroy(what, yes)
    for container in containers:
        print(f"removing {container.name}", flush=True)
        _remove_container(engine, container.name)
    left = sandbox_containers(engine, name)
    if left:
        raise OpsError(
            f"{', '.join(c.name for c in left)} still exist(s). Fix: `docker rm -f` them, "
            f"then `invoke sandbox.down --name {name}` again"
        )
    if _remove_network_if_unused(engine):
        print(f"removed the network {NETWORK} (no sandbox uses it)")
    for path in doomed:
        print(f"deleting {_shown(files, path)}", flush=True)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    print(f"sandbox {name} is gone")


def _shown(files: SandboxFiles, path: Path) -> str:
    try:
        return files.relative(path)
    except ValueError:
        return str(path)
