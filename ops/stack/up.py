"""`invoke up`: the whole stack on this machine's Docker engine, from nothing to ready.

Check the engine, the environment and the compose files, the ports, and plan (pre-flight:
nothing changes); then the base image, the local CA and certificate, the secrets, the missing
images, the data stores, the migration, the rest of the services, and the waits until every
service is healthy and /ready answers through nginx with the CA verified. A second run changes
nothing. The table is at the bottom of the class.
"""

from __future__ import annotations

from ops import certs, compose, config, docker_engine, health, images, paths, ports, secrets
from ops.monitoring import monitor
from ops.stack.local import (
    EDGE_SERVICE,
    UP_FLAGS,
    Stack,
    expected_services,
    local_only,
    long_running_services,
    print_access,
    run_migrate_service,
    service_names,
)
from ops.steps import Operation, Report, Runner, Step, impacting, preflight


class LocalUp(Operation):
    """Bring an environment's stack up on this machine, idempotently."""

    def __init__(self, env: config.Environment, timeout: float = 240.0) -> None:
        self.env = env
        self.timeout = timeout
        self.stack = Stack(env, compose.detect_build())
        self.cfg: dict[str, object] = {}
        self.title = f"invoke up --env {env.name} ({env.project_name})"

    # ------------------------------------------------------------------ pre-flight

    def check_docker(self) -> str:
        return docker_engine.check()

    def check_config(self) -> str:
        env, stack = self.env, self.stack
        preview = secrets.load(env, generate=False) if not env.is_local else None
        stack.secrets = preview or secrets.Secrets(
            {n: "placeholder-for-planning" for n in secrets.REQUIRED}, secrets.env_file(env)
        )
        stack.compose().check_files()
        self.cfg.update(stack.compose().config())
        return f"{env.source.name}, project {env.project_name}, version {stack.build.version}"

    def check_ports(self) -> str:
        env, engine = self.env, self.stack.docker()
        wanted = (env.ports.http, env.ports.https)
        result = ports.check_free(engine, env.bind, wanted, env.project_name, str(env.source))
        if compose.runs_monitoring(env):
            mon = (env.monitoring.prometheus_port, env.monitoring.alertmanager_port)
            fields = "`monitoring.prometheus_port`/`alertmanager_port`"
            found = ports.check_free(
                engine, monitor.LOOPBACK, mon, env.project_name, str(env.source), fields
            )
            logs = ports.check_log_port(
                engine, monitor.LOOPBACK, env.monitoring.log_port, env.project_name, str(env.source)
            )
            result = f"{result}; monitoring {found}; {logs}"
        return result

    def plan(self) -> str:
        env, stack = self.env, self.stack
        engine = stack.docker()
        stack.all_images = images.built_images(self.cfg)
        stack.to_build = images.plan(engine, stack.all_images)
        base = "present" if images.has_image(engine, images.BASE_IMAGE) else "will be built"
        file = secrets.env_file(env)
        lines = [
            f"base image {images.BASE_IMAGE}: {base}",
            f"certificates in {stack.tls_dir}: {'present' if stack.ca_file.exists() else 'new'}",
            f"secrets file {file}: {'present' if file.exists() else 'will be generated'}",
            "images to build: " + (", ".join(b.image for b in stack.to_build) or "none"),
            f"start: {', '.join(service_names(self.cfg))} (migrate runs once, before api)",
        ]
        for line in lines:
            print(f"    plan: {line}", flush=True)
        return f"{len(stack.to_build)} image(s) to build"

    # ------------------------------------------------------------------ impacting

    def base_image(self) -> str:
        return images.ensure_base(self.stack.docker())

    def make_certs(self) -> str:
        paths.ensure_state_dir()
        result = certs.ensure(self.stack.tls_dir, self.env.name, self.env.domains)
        self.stack.certs_changed = result.changed
        return result.reason

    def make_secrets(self) -> str:
        self.stack.secrets = secrets.load(self.env)
        if self.stack.secrets.generated:
            generated = ", ".join(self.stack.secrets.generated)
            return f"generated {generated} into {self.stack.secrets.file.name}"
        return "all present"

    def build_images(self) -> str:
        stack = self.stack
        todo = images.plan(stack.docker(), stack.all_images)
        images.build(stack.compose(), todo, engine=stack.docker())
        for line in images.size_report(stack.docker(), stack.all_images):
            print(f"    {line}", flush=True)
        return f"built {len(todo)}" if todo else "all present, nothing built"

    def start_data(self) -> str:
        present = [s for s in compose.DATA_SERVICES if s in service_names(self.cfg)]
        self.stack.compose().run("up", "-d", *UP_FLAGS, "--wait", *present, what="starting data")
        health.check_started(self.stack.docker(), self.env.project_name, present)
        return ", ".join(present)

    def migrate(self) -> str:
        return run_migrate_service(self.stack)

    def start_rest(self) -> str:
        rest = [s for s in long_running_services(self.cfg) if s not in compose.DATA_SERVICES]
        # New certificate files: recreate nginx so its bind mounts show them.
        recreate = [EDGE_SERVICE] if self.stack.certs_changed and EDGE_SERVICE in rest else []
        others = [s for s in rest if s not in recreate]
        comp = self.stack.compose()
        comp.run("up", "-d", *UP_FLAGS, "--no-deps", "--remove-orphans", *others, what="starting")
        if recreate:
            comp.run("up", "-d", *UP_FLAGS, "--no-deps", "--force-recreate", *recreate)
        started = [s for s in rest if s in expected_services(self.cfg)]
        health.check_started(self.stack.docker(), self.env.project_name, started)
        return ", ".join(rest)

    def wait_healthy(self) -> str:
        return health.wait_healthy(
            self.stack.docker(),
            self.env.project_name,
            expected_services(self.cfg),
            timeout=self.timeout,
        )

    def wait_ready(self) -> str:
        url = f"{self.env.https_url}/ready"
        return health.wait_ready(url, self.stack.ca_file, timeout=self.timeout / 2)

    # ------------------------------------------------------------------ the table

    def steps(self) -> list[Step]:
        env = self.env
        hint = (
            f"inspect with `invoke status --env {env.name}`, stop with `invoke down --env "
            f"{env.name}`"
        )
        return [
            preflight("check the Docker engine and compose plugin", self.check_docker),
            preflight(f"check {env.source.name} and the compose files", self.check_config),
            preflight(
                f"check ports {env.ports.http} and {env.ports.https} on {env.bind}",
                self.check_ports,
            ),
            preflight("plan: base image, certificates, secrets, images", self.plan),
            impacting("ensure the base image", self.base_image),
            impacting("ensure the local CA and server certificate", self.make_certs),
            impacting("ensure the secrets", self.make_secrets),
            impacting(
                "build missing images",
                self.build_images,
                "no container was touched; fix the build and run `invoke up` again",
            ),
            impacting("start postgres and redis", self.start_data, hint),
            impacting(
                "migrate the schema (one-off migrate container)",
                self.migrate,
                "the schema is as the failed migration left it (transactional DDL: "
                "unchanged); api was not started with it",
            ),
            impacting("start api, worker and nginx", self.start_rest, hint),
            impacting("wait until every service is healthy", self.wait_healthy, hint),
            impacting("wait for /ready through nginx (TLS verified)", self.wait_ready, hint),
        ]


def up(
    env_name: str, timeout: float = 240.0, dry_run: bool = False, runner: Runner | None = None
) -> Report:
    """Build what is missing, start the stack, wait healthy and ready; print how to reach it."""
    env = config.load(env_name)
    local_only(env, "up", f"invoke deploy --env={env.name}")
    operation = LocalUp(env, timeout)
    report = operation.run(dry_run=dry_run, runner=runner)
    if dry_run:
        print("dry run: stopped before the impacting steps, nothing was changed")
    else:
        print_access(operation.stack)
    return report
