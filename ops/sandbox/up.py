"""`invoke sandbox.up`: start (or reuse) the hosts and servers, write the environment.

SandboxUp is the operation (ops.steps): its state in attributes, one method a step, the table
in steps() at the bottom. Pre-flight: the engine, the files, the plan (printed). Impacting:
builds, the login key, the network, the hosts, the ACME server and the registry when asked
for, the environment file and secrets, and a login on every host.
"""

from __future__ import annotations

import os
from typing import Any

import docker

from ops import certs, docker_engine, images, secrets
from ops.errors import OpsError
from ops.sandbox import build
from ops.sandbox.access import print_access
from ops.sandbox.acme_server import (
    AcmeServer,
    acme_extra_hosts,
    acme_server,
    check_domain_leads_to,
    fetch_acme_roots,
    running_acme_problem,
    start_acme_with_certificate,
    wait_acme_directory,
)
from ops.sandbox.engine import (
    check_local_engine,
    check_role_name,
    ensure_network,
    remove_container,
    sandbox_containers,
)
from ops.sandbox.files import (
    SandboxFiles,
    ensure_key,
    environment_yaml,
    forget_servers,
    known_hosts_lines,
    write_file,
    written_by_sandbox,
)
from ops.sandbox.hosts import (
    compose_version,
    engine_id,
    host_keys,
    ssh_run,
    start_host,
    wait_healthy,
)
from ops.sandbox.names import (
    ACME_ROLE,
    DEFAULT_NAME,
    DEFAULT_TLS,
    LABEL,
    LOOPBACK,
    NETWORK,
    REGISTRY_ROLE,
    REMOTE_USER,
    ROLE_FLAGS,
    UNWANTED,
    acme_container_name,
    check_count,
    check_name,
    check_tls,
    container_name,
    hostname,
    is_acme,
    is_registry,
    listings_env_for,
    registry_container_name,
    role_of,
    up_command,
)
from ops.sandbox.plan import (
    HostPlan,
    HostPorts,
    existing_hosts,
    key_fingerprint,
    network_address,
    plan_hosts,
    published_ports,
)
from ops.sandbox.registry_server import (
    CERTS_D,
    REGISTRY_PORT,
    RegistryServer,
    check_hosts_reach,
    ensure_registry_credentials,
    registry_server,
    running_registry_problem,
    start_registry_with_files,
    trust_registry,
    wait_registry,
)
from ops.sandbox.servers import start_or_reuse
from ops.steps import Operation, Report, Runner, Step, impacting, preflight


class SandboxUp(Operation):
    """Start (or reuse) `hosts` sandbox hosts and write the environment `name` that targets
    them; with tls `acme` the ACME server too, with `registry` the registry too."""

    def __init__(
        self,
        name: str = DEFAULT_NAME,
        hosts: int = 1,
        listings_env: str = "",
        timeout: float = 120.0,
        tls: str = DEFAULT_TLS,
        registry: bool = False,
    ) -> None:
        check_name(name)
        check_count(hosts)
        check_tls(tls)
        self.name = name
        self.files = SandboxFiles.of(name)
        self.acme_name = acme_container_name(name)
        self.registry_name = registry_container_name(name)
        self.count = hosts
        self.listings_env = listings_env_for(name, listings_env)
        self.timeout = timeout
        self.tls = tls
        self.with_registry = registry
        self.title = f"invoke sandbox.up --name {name} --hosts {hosts}"
        self.title += f" --tls {tls}" if self.with_acme else ""
        self.title += " --registry" if registry else ""
        self.engine: docker.DockerClient | None = None
        # Filled in as the steps run.
        self.tag = ""
        self.host_plan = HostPlan((), ())
        self.build_needed = False
        self.public_key = ""
        self.hosts: dict[int, Any] = {}
        self.ports: dict[int, HostPorts] = {}
        self.acme_tag = ""
        self.acme_build_needed = False
        self.acme_container: Any = None
        self.acme: AcmeServer | None = None
        self.acme_certificate: certs.Result | None = None
        self.host_address = ""  # host 1's address on the network (where the domains resolve)
        self.registry_tag = ""
        self.registry_build_needed = False
        self.registry_container: Any = None
        self.registry: RegistryServer | None = None
        self.registry_credentials: secrets.RegistryCredentials | None = None
        self.registry_certificate: certs.Result | None = None

    # ------------------------------------------------------------------ state

    @property
    def image(self) -> str:
        return f"{build.IMAGE}:{self.tag}"

    @property
    def acme_image(self) -> str:
        return f"{build.ACME_SERVER_IMAGE}:{self.acme_tag}"

    @property
    def registry_image(self) -> str:
        return f"{build.REGISTRY_IMAGE}:{self.registry_tag}"

    @property
    def with_acme(self) -> bool:
        return self.tls == ACME_ROLE

    @property
    def roles(self) -> tuple[str, ...]:
        """The servers besides the hosts this run wants."""
        return tuple(
            role
            for role, wanted in ((ACME_ROLE, self.with_acme), (REGISTRY_ROLE, self.with_registry))
            if wanted
        )

    def docker(self) -> docker.DockerClient:
        if self.engine is None:
            self.engine = docker_engine.client()
        return self.engine

    def current(self) -> list[Any]:
        """The hosts' containers, by index."""
        return [self.hosts[i] for i in sorted(self.hosts)]

    # ------------------------------------------------------------------ pre-flight

    def check_docker(self) -> str:
        check_local_engine(os.environ)
        return docker_engine.check()

    def check_files(self) -> str:
        env_file = self.files.environment
        if env_file.exists() and not written_by_sandbox(env_file):
            raise OpsError(
                f"{env_file} exists and was not written by `invoke sandbox.up`, which would "
                f"replace it. Fix: choose another --name, or move that file away"
            )
        return f"{env_file} " + ("(a sandbox's: rewritten)" if env_file.exists() else "(new)")

    def plan(self) -> str:
        files, engine = self.files, self.docker()
        self.tag = build.image_tag(files.root)
        public = files.public_key.read_text(encoding="utf-8") if files.public_key.is_file() else ""
        containers = sandbox_containers(engine, self.name)
        self.host_plan = self._plan_hosts(containers, public)
        self.build_needed = bool(self.host_plan.create) and not images.has_image(engine, self.image)
        for role in self.roles:
            check_role_name(engine, self.name, role)
        server_lines = [*self._plan_acme(containers), *self._plan_registry(containers)]
        self._check_base_image()
        for line in self._plan_lines(public, server_lines):
            print(f"    plan: {line}", flush=True)
        return f"keep {len(self.host_plan.keep)}, start {len(self.host_plan.create)}"

    def _plan_hosts(self, containers: list[Any], public_key: str) -> HostPlan:
        """The hosts' plan, plus the servers this run does not want (removed with them)."""
        found = existing_hosts(
            [c for c in containers if not role_of(c)], key_fingerprint(public_key)
        )
        planned = plan_hosts(self.count, found)
        unwanted = [
            (c.name, UNWANTED.get(role_of(c), f"{role_of(c)}: not asked for"))
            for c in containers
            if role_of(c) and role_of(c) not in self.roles
        ]
        if not unwanted:
            return planned
        return HostPlan(planned.keep, planned.create, (*planned.remove, *unwanted))

    def _plan_acme(self, containers: list[Any]) -> list[str]:
        if not self.with_acme:
            return []
        self.acme_tag = build.image_tag(self.files.root, build.ACME_SERVER_BUILD_INPUTS)
        self.acme_build_needed = not images.has_image(self.docker(), self.acme_image)
        running = any(is_acme(c) for c in containers)
        return [
            f"ACME server {self.acme_name} (image {self.acme_image}: "
            + ("will be built" if self.acme_build_needed else "present")
            + "): "
            + ("reused when it runs that image for host 1" if running else "will be started")
        ]

    def _plan_registry(self, containers: list[Any]) -> list[str]:
        if not self.with_registry:
            return []
        self.registry_tag = build.image_tag(self.files.root, build.REGISTRY_BUILD_INPUTS)
        self.registry_build_needed = not images.has_image(self.docker(), self.registry_image)
        running = any(is_registry(c) for c in containers)
        return [
            f"registry {self.registry_name} (image {self.registry_image}: "
            + ("will be built" if self.registry_build_needed else "present")
            + "): "
            + (
                "reused when it runs that image with its certificate and credentials"
                if running
                else "will be started"
            )
            + f"; its CA into every host's /{CERTS_D}/<address>:{REGISTRY_PORT}/ca.crt"
        ]

    def _check_base_image(self) -> None:
        """An image to build needs the base image: refused now, before anything changes."""
        for image, needed in (
            (self.image, self.build_needed),
            (self.acme_image, self.acme_build_needed),
            (self.registry_image, self.registry_build_needed),
        ):
            if needed and not images.has_image(self.docker(), images.BASE_IMAGE):
                raise OpsError(
                    f"{image} must be built and its base {images.BASE_IMAGE} is missing. "
                    "Fix: run `invoke images.base`, then `invoke sandbox.up` again"
                )

    def _plan_lines(self, public_key: str, server_lines: list[str]) -> list[str]:
        files, plan, name = self.files, self.host_plan, self.name
        if self.build_needed:
            image = "will be built"
        elif plan.create:
            image = "present"
        else:
            image = "not needed (every host is kept)"
        removals = [f"{c} ({why})" for c, why in plan.remove]
        return [
            f"image {self.image}: {image}",
            "keep: " + (", ".join(hostname(name, i) for i in plan.keep) or "none"),
            "start: " + (", ".join(hostname(name, i) for i in plan.create) or "none"),
            "remove: " + (", ".join(removals) or "none"),
            *server_lines,
            f"login key {files.relative(files.private_key)}: "
            + ("present" if public_key else "will be generated"),
            f"write {files.environment} (tls {self.tls}, listings_env {self.listings_env}"
            + (", registry" if self.with_registry else "")
            + f") and {files.relative(files.secrets)}",
        ]

    # ------------------------------------------------------------------ images, key, network

    def build_image(self) -> str:
        if not self.build_needed:
            return "skipped: not needed"
        return self._build(build.BUILD_SERVICE, self.image)

    def build_acme_image(self) -> str:
        if not self.acme_build_needed:
            return "skipped: present"
        return self._build(build.ACME_SERVER_SERVICE, self.acme_image, ROLE_FLAGS[ACME_ROLE])

    def build_registry_image(self) -> str:
        if not self.registry_build_needed:
            return "skipped: present"
        return self._build(build.REGISTRY_SERVICE, self.registry_image, ROLE_FLAGS[REGISTRY_ROLE])

    def _build(self, service: str, image: str, flag: str = "") -> str:
        return build.build_image(self.files.root, self.docker(), service, image, flag)

    def make_key(self) -> str:
        created = ensure_key(self.files)
        self.public_key = self.files.public_key.read_text(encoding="utf-8")
        return "generated" if created else "present"

    def make_network(self) -> str:
        return ensure_network(self.docker())

    # ------------------------------------------------------------------ hosts

    def remove_hosts(self) -> str:
        plan = self.host_plan
        for cname, _ in plan.remove:
            remove_container(self.docker(), cname)
        forget_servers(self.files, acme=not self.with_acme, registry=not self.with_registry)
        return f"removed {len(plan.remove)}" if plan.remove else "nothing to remove"

    def start_hosts(self) -> str:
        engine, plan = self.docker(), self.host_plan
        for index in plan.keep:
            self.hosts[index] = engine.containers.get(container_name(self.name, index))
        for index in plan.create:
            self.hosts[index] = start_host(engine, self.name, index, self.image, self.public_key)
        reused = [c for i, c in self.hosts.items() if i in plan.keep]
        stale = [c.name for c in reused if c.attrs.get("Config", {}).get("Image") != self.image]
        if stale:
            print(
                f"    note: {', '.join(stale)} run(s) an older {build.IMAGE} and keep(s) it; "
                f"`invoke sandbox.down --name {self.name}` then `sandbox.up` for the new one",
                flush=True,
            )
        return f"started {len(plan.create)}, kept {len(plan.keep)}"

    def wait_hosts(self) -> str:
        return wait_healthy(self.current(), self.timeout)

    def record_host_keys(self) -> str:
        lines: list[str] = []
        for index, container in sorted(self.hosts.items()):
            container.reload()
            self.ports[index] = published_ports(container.name, container.attrs)
            lines += known_hosts_lines(self.ports[index].ssh, host_keys(container))
        write_file(self.files.known_hosts, "\n".join(lines) + "\n", 0o644)
        return f"{len(lines)} key(s) in {self.files.relative(self.files.known_hosts)}"

    # ------------------------------------------------------------------ ACME server

    def start_acme_server(self) -> str:
        first = self.hosts[min(self.hosts)]
        first.reload()
        self.host_address = network_address(first.name, first.attrs)
        container, reused = start_or_reuse(
            self.docker(), self.acme_name, self._acme_problem, self._start_acme
        )
        self.acme_container, self.acme = container, acme_server(self.acme_name, container.attrs)
        if reused:
            return f"reused {self.acme_name} at {self.acme.address}"
        assert self.acme_certificate is not None  # made by _start_acme
        return (
            f"started {self.acme_name} at {self.acme.address}, "
            f"certificate: {self.acme_certificate.reason}"
        )

    def _acme_problem(self, found: Any) -> str:
        wanted = acme_extra_hosts(self.name, self.host_address)
        return running_acme_problem(found, self.files, self.acme_image, wanted)

    def _start_acme(self) -> Any:
        container, self.acme_certificate = start_acme_with_certificate(
            self.docker(), self.files, self.acme_image, self.host_address
        )
        return container

    def wait_acme(self) -> str:
        assert self.acme is not None  # set by start_acme_server
        container = self.acme_container
        note = wait_acme_directory(container, self.acme, self.files.acme_server_ca, self.timeout)
        domain = check_domain_leads_to(container, self.name, self.host_address)
        return f"{note}; {domain} -> host 1 ({self.host_address})"

    def fetch_roots(self) -> str:
        assert self.acme is not None  # set by start_acme_server
        root = fetch_acme_roots(self.acme, self.files)
        subject = root.subject.rfc4514_string()
        return f"{self.files.relative(self.files.acme_roots)}: {subject}"

    # ------------------------------------------------------------------ registry

    def start_registry_server(self) -> str:
        files = self.files
        self.registry_credentials, how = ensure_registry_credentials(files)
        container, reused = start_or_reuse(
            self.docker(), self.registry_name, self._registry_problem, self._start_registry
        )
        self.registry_container = container
        self.registry = registry_server(self.registry_name, container.attrs)
        note = f"credentials {how} in {files.relative(files.secrets)}"
        if reused:
            return f"reused {self.registry_name} at {self.registry.address}; {note}"
        assert self.registry_certificate is not None  # made by _start_registry
        return (
            f"started {self.registry_name} at {self.registry.address}, certificate: "
            f"{self.registry_certificate.reason}; {note}"
        )

    def _credentials(self) -> secrets.RegistryCredentials:
        assert self.registry_credentials is not None  # set by start_registry_server
        return self.registry_credentials

    def _registry_problem(self, found: Any) -> str:
        return running_registry_problem(found, self.files, self.registry_image, self._credentials())

    def _start_registry(self) -> Any:
        container, self.registry_certificate = start_registry_with_files(
            self.docker(), self.files, self.registry_image, self._credentials()
        )
        return container

    def wait_registry_answers(self) -> str:
        assert self.registry is not None  # set by start_registry_server
        return wait_registry(
            self.registry_container,
            self.registry,
            self.files.registry_ca,
            self._credentials(),
            self.timeout,
        )

    def trust_registry_on_hosts(self) -> str:
        assert self.registry is not None  # set by start_registry_server
        trust_registry(self.current(), self.registry, self.files.registry_ca.read_bytes())
        check_hosts_reach(self.current(), self.registry, self.name)
        host_port = self.registry.host_port
        return f"{len(self.current())} host(s) trust {host_port} (/{CERTS_D}/{host_port}/ca.crt)"

    # ------------------------------------------------------------------ environment, login

    def write_environment(self) -> str:
        files, indexes = self.files, sorted(self.ports)
        ports = [self.ports[i] for i in indexes]
        directory = self.acme.directory if self.acme is not None else ""
        addresses = self.registry.addresses if self.registry is not None else None
        swarm = [network_address(self.hosts[i].name, self.hosts[i].attrs) for i in indexes]
        text = environment_yaml(
            files, ports, self.listings_env, self.count, directory, addresses, swarm
        )
        write_file(files.environment, text, 0o644)
        generated = secrets.generate_missing(files.secrets)
        note = f"generated {', '.join(generated)}" if generated else "secrets present"
        return f"{files.environment.name} written, {note}"

    def verify(self) -> str:
        ids: dict[str, int] = {}
        for index in sorted(self.ports):
            port = self.ports[index].ssh
            found_id = ssh_run(self.files, port, engine_id())
            version = ssh_run(self.files, port, compose_version())
            print(
                f"    {hostname(self.name, index)}: {REMOTE_USER}@{LOOPBACK}:{port} engine "
                f"{found_id[:14]}, compose {version}",
                flush=True,
            )
            ids[found_id] = index
        if len(ids) != len(self.ports):
            raise OpsError("two hosts answered with the same engine: the ports are crossed")
        return f"{len(ids)} host(s): SSH, docker and compose work"

    # ------------------------------------------------------------------ the table

    def steps(self) -> list[Step]:
        files, acme, registry = self.files, self.with_acme, self.with_registry
        hint = (
            f"inspect with `docker ps -a --filter label={LABEL}={self.name}`, "
            f"remove with `invoke sandbox.down --name {self.name} --yes`"
        )
        return [
            preflight("check the Docker engine and compose plugin", self.check_docker),
            preflight(f"check the files of sandbox {self.name}", self.check_files),
            preflight("plan: image, hosts, login key, files", self.plan),
            impacting(f"build the {build.IMAGE} image", self.build_image, _build_failed("")),
            *_when(
                acme,
                impacting(
                    f"build the {build.ACME_SERVER_IMAGE} image",
                    self.build_acme_image,
                    _build_failed(ROLE_FLAGS[ACME_ROLE]),
                ),
            ),
            *_when(
                registry,
                impacting(
                    f"build the {build.REGISTRY_IMAGE} image",
                    self.build_registry_image,
                    _build_failed(ROLE_FLAGS[REGISTRY_ROLE]),
                ),
            ),
            impacting(f"ensure the login key {files.relative(files.private_key)}", self.make_key),
            impacting(f"ensure the network {NETWORK}", self.make_network),
            impacting("remove unwanted hosts", self.remove_hosts, hint),
            impacting("start the missing hosts", self.start_hosts, hint),
            impacting("wait until every host's dockerd and sshd answer", self.wait_hosts, hint),
            impacting("record the hosts' SSH host keys", self.record_host_keys, hint),
            *_when(
                acme,
                impacting(
                    f"start (or reuse) the ACME server {self.acme_name} with its HTTPS certificate",
                    self.start_acme_server,
                    hint,
                ),
                impacting(
                    "wait until the ACME directory answers and the domains lead to host 1",
                    self.wait_acme,
                    hint,
                ),
                impacting(
                    f"fetch pebble's issuing root into {files.relative(files.acme_roots)}",
                    self.fetch_roots,
                    hint,
                ),
            ),
            *_when(
                registry,
                impacting(
                    f"start (or reuse) the registry {self.registry_name} with its certificate "
                    f"and htpasswd (credentials in {files.relative(files.secrets)})",
                    self.start_registry_server,
                    hint,
                ),
                impacting(
                    "wait until the registry answers over TLS and refuses anonymous requests",
                    self.wait_registry_answers,
                    hint,
                ),
                impacting(
                    f"trust the registry's CA on every host (/{CERTS_D}/<address>:"
                    f"{REGISTRY_PORT}/ca.crt)",
                    self.trust_registry_on_hosts,
                    hint,
                ),
            ),
            impacting(
                f"write {files.environment.name} and {files.secrets.name}",
                self.write_environment,
                hint,
            ),
            impacting(
                "log in over SSH as deploy: docker and compose on every host", self.verify, hint
            ),
        ]


def _when(wanted: bool, *steps: Step) -> list[Step]:
    """The steps of a server this run asks for (none when it does not)."""
    return list(steps) if wanted else []


def _build_failed(flag: str) -> str:
    return f"no host was touched; fix the build and run `{up_command(flag)}` again"


def up(
    name: str = DEFAULT_NAME,
    hosts: int = 1,
    listings_env: str = "",
    timeout: float = 120.0,
    dry_run: bool = False,
    runner: Runner | None = None,
    tls: str = DEFAULT_TLS,
    registry: bool = False,
) -> Report:
    """Start (or reuse) `hosts` sandbox hosts and write the environment `name` that targets them.

    tls `acme` also starts (or reuses) the sandbox's ACME server and writes a tls: acme
    environment for app.<name>.test and www.<name>.test. `registry` also starts (or reuses) the
    sandbox's registry, makes every host trust it and writes its `registry:` addresses."""
    op = SandboxUp(name, hosts, listings_env, timeout, tls, registry)
    report = op.run(dry_run=dry_run, runner=runner)
    if dry_run:
        print("dry run: stopped before the impacting steps, nothing was changed")
    else:
        print_access(op.files, op.ports, op.tls, op.listings_env, op.acme, op.registry)
    return report
