"""A stack on this machine's Docker engine: opening it (environment, secrets, the version it
runs), down, status, build, migrations and API keys in one-off containers, and what `invoke up`
(ops/stack/up.py) and `invoke logs` (ops/stack/logs.py) share. Tasks in ops/tasks/ only parse
arguments and call these functions; a `target: ssh` environment goes to ops/stack/host.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import docker

from ops import certs, compose, config, docker_engine, health, images, paths, secrets
from ops.compose import Compose
from ops.errors import OpsError
from ops.monitoring import monitor
from ops.stack import host as hostops
from ops.steps import Operation, Report, Step, impacting, preflight

# Service names are part of the compose contract (docs/architecture.md).
MIGRATE_SERVICE = "migrate"
EDGE_SERVICE = "nginx"
LISTINGS_IMAGE = "slipway/listings"
ONE_OFF_SERVICES = (MIGRATE_SERVICE,)
UP_FLAGS = ("--no-build", "--pull", "never")


@dataclass
class Stack:
    """One environment's stack on this machine, filled in as `up` progresses."""

    env: config.Environment
    build: compose.Build
    secrets: secrets.Secrets | None = None
    engine: docker.DockerClient | None = None
    to_build: list[images.BuiltImage] = field(default_factory=list)
    all_images: list[images.BuiltImage] = field(default_factory=list)
    # A new server certificate is a new file: nginx's bind mount still shows the old one.
    certs_changed: bool = False

    @property
    def tls_dir(self) -> Path:
        return compose.tls_dir(self.env, paths.repo_root())

    @property
    def ca_file(self) -> Path:
        return certs.CertPaths(self.tls_dir).ca_crt

    def compose(self) -> Compose:
        if self.secrets is None:
            raise OpsError("internal: secrets not loaded before compose was used")
        return Compose(self.env, self.secrets, self.build, paths.repo_root())

    def docker(self) -> docker.DockerClient:
        if self.engine is None:
            self.engine = docker_engine.client()
        return self.engine


def open_stack(env_name: str, follow_running: bool = True) -> Stack:
    """Load the environment and its secrets (generating local ones) for a compose command.

    With follow_running, commands on a running stack use the version it runs (from its
    containers' image tags) rather than the checkout's: `apikey.create` after an edit must
    neither build nor run an image the stack does not use.
    """
    env = config.load(env_name)
    build = compose.detect_build()
    if follow_running:
        engine = docker_engine.client()
        running = running_version(engine, env.project_name)
        if running and running != build.version:
            print(f"using version {running}, the one {env.project_name} runs", flush=True)
            build = replace(build, version=running)
        # The infrastructure images too (content tags): a restore or a drill after an edit of
        # services/postgres runs the image the stack runs, never an unbuilt one.
        tags = running_tags(engine, env.project_name)
        if tags and any(build.image_tags.get(k) != v for k, v in tags.items()):
            build = replace(build, image_tags={**build.image_tags, **tags})
    stack = Stack(env, build)
    stack.secrets = secrets.load(env)
    stack.compose().check_files()
    return stack


def running_tags(engine: docker.DockerClient, project: str) -> dict[str, str]:
    """SLIPWAY_<NAME>_TAG of each content-tagged image the project's containers run."""
    found: dict[str, str] = {}
    for container in health.project_containers(engine, project):
        image = str(container.attrs.get("Config", {}).get("Image", ""))
        name, _, tag = image.rpartition(":")
        variable = f"SLIPWAY_{name.rpartition('/')[2].upper().replace('-', '_')}_TAG"
        if name.startswith("slipway/") and tag and variable in compose.CONTENT_TAGGED:
            found[variable] = tag
    return found


def running_version(engine: docker.DockerClient, project: str) -> str | None:
    """Tag of the image the project's listings containers run (None when none runs)."""
    tags = set()
    for container in health.project_containers(engine, project):
        image = str(container.attrs.get("Config", {}).get("Image", ""))
        name, _, tag = image.rpartition(":")
        if name.endswith(LISTINGS_IMAGE) and tag:
            tags.add(tag)
    return tags.pop() if len(tags) == 1 else None


def service_names(cfg: dict[str, object]) -> list[str]:
    services = cfg.get("services")
    return sorted(services) if isinstance(services, dict) else []


def expected_services(cfg: dict[str, object]) -> list[str]:
    """Services that must have a container (a service scaled to 0 has none)."""
    services = cfg.get("services")
    if not isinstance(services, dict):
        return []
    expected = []
    for name, service in sorted(services.items()):
        deploy = service.get("deploy") if isinstance(service, dict) else None
        replicas = deploy.get("replicas") if isinstance(deploy, dict) else None
        if replicas is None or int(replicas) > 0:
            expected.append(name)
    return expected


def long_running_services(cfg: dict[str, object]) -> list[str]:
    return [s for s in service_names(cfg) if s not in ONE_OFF_SERVICES]


# ----------------------------------------------------------------------------- up, shared


def local_only(env: config.Environment, task: str, instead: str) -> None:
    if env.target != "local":
        raise OpsError(
            f"`invoke {task}` drives this machine's Docker engine, but {env.name} runs on "
            f"{env.hosts[0].label if env.hosts else 'a host'} (target: {env.target}). "
            f"Fix: use `{instead}` for that environment"
        )


def run_migrate_service(stack: Stack) -> str:
    """Run the compose `migrate` service to completion; fail with its logs when it fails."""
    comp = stack.compose()
    comp.run("up", *UP_FLAGS, "--no-deps", "--no-log-prefix", MIGRATE_SERVICE, what="migrate")
    engine = stack.docker()
    containers = [
        c
        for c in health.project_containers(engine, stack.env.project_name)
        if (c.labels or {}).get("com.docker.compose.service") == MIGRATE_SERVICE
    ]
    if not containers:
        raise OpsError(
            "the migrate container did not start. Fix: check `invoke logs --service migrate`"
        )
    container = containers[0]
    container.reload()
    code = int(container.attrs.get("State", {}).get("ExitCode", -1))
    if container.status != "exited" or code != 0:
        print(health.failure_details(engine, stack.env.project_name), flush=True)
        raise OpsError(
            f"migrations failed (migrate exited {code}, status {container.status}); logs above. "
            "The API was not started on the new schema"
        )
    return "schema at head"


def print_access(stack: Stack) -> None:
    """URLs, CA path and the next commands."""
    env = stack.env
    ca = stack.ca_file
    rel_ca = _relative(ca)
    print()
    print(f"Slipway {env.name} is up ({env.project_name}, version {stack.build.version}):")
    print(f"  viewer     {env.https_url}/")
    print(f"  API        {env.https_url}/api/v1/listings")
    print(f"  version    {env.https_url}/api/v1/version")
    print(f"  HTTP       {env.http_url}/ (redirects to HTTPS)")
    print(f"  CA         {ca}")
    if compose.runs_monitoring(env):
        prometheus, alertmanager = monitor.urls(env)
        print(f"  Prometheus {prometheus}/  (alerts, consoles)")
        print(f"  Alertmanager {alertmanager}/")
    print(f"  try        curl --cacert {rel_ca} {env.https_url}/ready")
    print(f"  API key    invoke apikey.create --env {env.name} --name <who>")
    print(f"  stop       invoke down --env {env.name}   (add --volumes to delete the data)")


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# -------------------------------------------------------------------------------------- down


def confirm_destroy(
    what: str,
    yes: bool,
    interactive: bool | None = None,
    ask: Callable[[str], str] = input,
) -> None:
    """Ask before destroying `what`; refuse without --yes when nobody can answer."""
    if yes:
        return
    interactive = sys.stdin.isatty() if interactive is None else interactive
    if not interactive:
        raise OpsError(
            f"refusing to delete {what} without confirmation in a non-interactive session. "
            "Fix: add --yes if you really mean it"
        )
    answer = ask(f"This deletes {what}. Type 'yes' to continue: ").strip().lower()
    if answer != "yes":
        raise OpsError(f"not confirmed: {what} kept")


def down(env_name: str, volumes: bool = False, yes: bool = False) -> None:
    """Stop and remove the stack's containers (and, with volumes, its data)."""
    env = config.load(env_name)
    local_only(env, "down", f"invoke maintenance --env={env.name} on")
    if volumes:
        confirm_destroy(
            f"all data of {env.project_name} (its volumes: PostgreSQL and its backups, Redis)", yes
        )
    stack = open_stack(env_name)
    args = ["down", "--remove-orphans"]
    if volumes:
        args.append("--volumes")
    # The one-off tools' profile too (added to the environment's, never instead of them): their
    # volumes (the drills' scratch) go with the others.
    tools = replace(stack.compose(), profiles=(compose.TOOLS_PROFILE,))
    tools.run(*args, what="docker compose down")
    left = health.project_containers(stack.docker(), env.project_name)
    if left:
        raise OpsError(
            f"{len(left)} container(s) of {env.project_name} still exist: "
            f"{', '.join(c.name for c in left)}. Fix: `docker rm -f` them"
        )
    print(f"{env.project_name} is down" + (" and its volumes are deleted" if volumes else ""))


# ------------------------------------------------------------------------ status, logs, build


def status(env_name: str) -> bool:
    """Print services, health, image versions and the URL; True when everything is ready."""
    env = config.load(env_name)
    if env.target == "ssh":
        return hostops.status(env)
    engine = docker_engine.client()
    current = health.states(engine, env.project_name)
    print(f"environment {env.name} (project {env.project_name}, {env.source})")
    if not current:
        print(f"  not running. Start it with `invoke up --env {env.name}`")
        return False
    versions = {}
    for container in health.project_containers(engine, env.project_name):
        versions[container.name] = str(container.attrs.get("Config", {}).get("Image", "?"))
    width = max(len(s.name) for s in current)
    print(f"  {'container':<{width}}  {'state':<12}  image")
    for s in current:
        print(f"  {s.name:<{width}}  {s.label:<12}  {versions.get(s.name, '?')}")
    ready = all(s.ready for s in current)
    ca = certs.CertPaths(compose.tls_dir(env, paths.repo_root())).ca_crt
    print(f"  url: {env.https_url}/  (CA: {ca})")
    print(f"  overall: {'ready' if ready else 'NOT ready'}")
    return ready


class LocalBuild(Operation):
    """`invoke build`: the images of this version that are missing (the selected ones, all of
    them with force). Every image a release may run, certbot (tls: acme) and monitoring
    included: one build (CI's) is shipped to environments of every kind."""

    def __init__(self, stack: Stack, services: Sequence[str], force: bool) -> None:
        self.stack = stack
        self.services = services
        self.force = force
        self.todo: list[images.BuiltImage] = []
        self.compose = replace(
            stack.compose(), profiles=(compose.ACME_PROFILE, compose.MONITORING_PROFILE)
        )
        self.title = f"invoke build --env {stack.env.name} (version {stack.build.version})"

    def plan(self) -> str:
        stack = self.stack
        stack.all_images = images.built_images(self.compose.config())
        self.todo = images.plan(stack.docker(), stack.all_images, self.force, self.services)
        print("    plan: " + (", ".join(b.image for b in self.todo) or "nothing to build"))
        return f"{len(self.todo)} to build"

    def base(self) -> str:
        return images.ensure_base(self.stack.docker())

    def build(self) -> str:
        engine = self.stack.docker()
        images.build(self.compose, self.todo, force=self.force, engine=engine)
        for line in images.size_report(engine, self.stack.all_images):
            print(f"    {line}", flush=True)
        return f"built {len(self.todo)}" if self.todo else "nothing to build"

    def steps(self) -> list[Step]:
        return [
            preflight("check the Docker engine and compose plugin", docker_engine.check),
            preflight("plan the images", self.plan),
            impacting("ensure the base image", self.base),
            impacting("build", self.build),
        ]


def build(env_name: str, services: Sequence[str] = (), force: bool = False) -> Report:
    """Build the images that are missing for this version (all selected ones with force)."""
    return LocalBuild(open_stack(env_name, follow_running=False), services, force).run()


# -------------------------------------------------------------------- one-off service commands


def migrate(env_name: str) -> None:
    """Run migrations in a one-off container of the listings image (starts postgres if needed)."""
    env = config.load(env_name)
    if env.target == "ssh":
        print(hostops.migrate(env).rstrip())
        return
    stack = open_stack(env_name)
    stack.compose().run("run", "--rm", "--pull", "never", MIGRATE_SERVICE, what="migrate")


def apikey(env_name: str, action: str, name: str) -> None:
    """`listings apikey <action> --name <name>` in a one-off container on the stack's network."""
    if action not in ("create", "revoke"):
        raise OpsError(f"unknown apikey action {action!r}: use create or revoke")
    env = config.load(env_name)
    if env.target == "ssh":
        print(hostops.apikey(env, action, name).rstrip())
        return
    stack = open_stack(env_name)
    engine = stack.docker()
    running = {s.service for s in health.states(engine, stack.env.project_name) if s.ready}
    if "postgres" not in running:
        raise OpsError(
            f"postgres of {stack.env.project_name} is not running. "
            f"Fix: `invoke up --env {env_name}`"
        )
    run_listings(stack, "apikey", action, "--name", name)


def run_listings(
    stack: Stack, *args: str, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    """`listings <args>` in a one-off container of the stack's listings image and network."""
    return stack.compose().run(
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "--pull",
        "never",
        "--entrypoint",
        "listings",
        MIGRATE_SERVICE,
        *args,
        capture=capture,
        what=f"listings {' '.join(args[:2])}",
    )


def base_image() -> str:
    """Make sure debian:bookworm-slim exists (debootstrap when missing)."""
    return images.ensure_base(docker_engine.client())


def local_certs(env_name: str) -> certs.Result:
    """Create or reuse the local CA and server certificate of an environment."""
    env = config.load(env_name)
    if env.tls != "local-ca":
        raise OpsError(f"{env.source}: tls is {env.tls!r}; certs.local is for tls: local-ca")
    paths.ensure_state_dir()
    return certs.ensure(compose.tls_dir(env, paths.repo_root()), env.name, env.domains)
