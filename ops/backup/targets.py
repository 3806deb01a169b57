"""How the backup operations reach an environment's running stack: its Target.

The work happens in the stack's own containers (services/postgres: backup-run, backup-drill,
backup-restore, ...), reached through compose on this machine for a local stack
(LocalTarget), through the current release's compose over SSH on the host of a one-host
environment (HostTarget), and through `docker exec` and `docker service scale` on the first
host of a Docker Swarm (SwarmTarget). What runs is built in commands.py; the SSH commands go
through the host's `ops.remote.Remote`, which echoes those that change something.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import yaml

from ops import config, proc
from ops.backup import commands
from ops.backup.commands import InContainer
from ops.deploy import locks
from ops.deploy.commands import standby
from ops.deploy.releases import ReleaseStore
from ops.deploy.swarm import stackfile
from ops.errors import OpsError
from ops.stack import host as hostops
from ops.stack import local as stack

# How long stopping services may take on a swarm (PostgreSQL's grace period is 60 s).
STOP_WAIT = 300.0


class Target(Protocol):
    """One environment's running stack, through what a backup operation needs of it."""

    label: str

    def exec(self, command: InContainer, stream: bool = False, stdin: str | None = None) -> str:
        """The command in the service's running container; its output (stream: printed too, as
        it comes where the transport allows; stdin: text fed to it). Raises OpsError naming
        what it does when it cannot run at all; a container's own failure needs
        repository.require_ok (see OK_LINE)."""
        ...

    def oneoff(self, command: InContainer, stream: bool = False) -> str:
        """The command in a one-off container of the service (the `tools` profile's, the
        migration), removed after; like exec() otherwise."""
        ...

    def stop(self, *services: str, what: str) -> None:
        """The services stopped (cleanly: their stop signal and grace period), returning when
        they are."""
        ...

    def start(self, *services: str, what: str, timeout: int) -> None:
        """The services started as the current release runs them, returning when healthy."""
        ...

    def maintenance(self, on: bool) -> str:
        """Maintenance mode on or off (nginx answers 503); a note for the step summary."""
        ...

    def locked(self, operation: str) -> AbstractContextManager[None]:
        """The environment's deploy lock held meanwhile (hosts), so no deploy runs during it."""
        ...


class ComposeTarget:
    """A Target whose stack is a compose project: every operation is a `docker compose` line."""

    label = ""

    def compose(
        self,
        *args: str,
        what: str,
        changes: bool = True,
        stream: bool = False,
        stdin: str | None = None,
    ) -> str:
        """`docker compose <args>` and its output; raises OpsError naming `what` when compose
        itself fails. changes=False: it only reads."""
        raise NotImplementedError

    def exec(self, command: InContainer, stream: bool = False, stdin: str | None = None) -> str:
        return self.compose(
            *commands.compose_exec(command),
            what=command.what,
            changes=command.changes,
            stream=stream,
            stdin=stdin,
        )

    def oneoff(self, command: InContainer, stream: bool = False) -> str:
        return self.compose(
            *commands.compose_oneoff(command),
            what=command.what,
            changes=command.changes,
            stream=stream,
        )

    def stop(self, *services: str, what: str) -> None:
        self.compose(*commands.compose_stop(services), what=what)

    def start(self, *services: str, what: str, timeout: int) -> None:
        self.compose(*commands.compose_start(services, timeout), what=what)


class LocalTarget(ComposeTarget):
    """The local stack on this machine's engine. Every compose command is echoed here, reads
    too (ops.proc), as every local command is."""

    def __init__(self, env: config.Environment) -> None:
        self.stack = stack.open_stack(env.name)
        self.label = f"{env.project_name} (this machine)"

    def compose(
        self,
        *args: str,
        what: str,
        changes: bool = True,
        stream: bool = False,
        stdin: str | None = None,
    ) -> str:
        if stream:
            inv = self.stack.compose().invocation(*args)
            code, output = proc.tee(inv.argv, inv.env, self.stack.compose().root, stdin, what)
            if code != 0:
                raise OpsError(f"{what} failed (exit {code}): the lines above say why")
            return output
        result = self.stack.compose().run(*args, capture=True, what=what, stdin=stdin)
        if result.stderr:
            print(result.stderr.rstrip(), flush=True)
        return result.stdout

    def maintenance(self, on: bool) -> str:
        return "local stacks have no maintenance page: nginx answers 502 meanwhile"

    @contextmanager
    def locked(self, operation: str) -> Iterator[None]:
        yield  # one engine, one operator: `invoke up` and a restore are not run together


class HostTarget(ComposeTarget):
    """The current release on the host of a one-host environment."""

    def __init__(self, host: hostops.Host) -> None:
        self.host = host
        self.env = host.env
        self.label = f"{host.env.project_name} on {host.remote.host.label}"

    def compose(
        self,
        *args: str,
        what: str,
        changes: bool = True,
        stream: bool = False,
        stdin: str | None = None,
    ) -> str:
        line = self.host.compose().command(*args)
        output = self.host.remote.run(commands.on_host(line, what, changes), stdin=stdin).stdout
        if stream:
            print(output.rstrip(), flush=True)
        return output

    def stop(self, *services: str, what: str) -> None:
        if "api" in services:
            # The standby (API replicas out of traffic, ops/deploy/rollout.py) goes first: a
            # `compose up api` afterwards would otherwise recreate it into the live slot.
            self.host.remote.run(standby.discard(self.env.project_name, self.host.root))
        super().stop(*services, what=what)

    def maintenance(self, on: bool) -> str:
        return hostops.maintenance(self.env, on)

    @contextmanager
    def locked(self, operation: str) -> Iterator[None]:
        lock = locks.DeployLock(self.host.remote, self.host.root, self.env.deploy.lock_ttl)
        lock.acquire(
            self.host.current(), wait=float(self.env.deploy.lock_wait), operation=operation
        )
        heartbeat = locks.Heartbeat(lock).start()
        store = ReleaseStore(self.host.remote, self.host.root)
        try:
            store.audit({"event": f"{operation} started", "who": locks.default_owner()})
            yield
        finally:
            heartbeat.stop()
            lock.release()
            store.audit({"event": f"{operation} ended", "who": locks.default_owner()})


class SwarmTarget(HostTarget):
    """The current release of a Docker Swarm environment. PostgreSQL and the backup task run
    on the first host, which manages the swarm: commands run in their task containers there,
    one-off containers there too (compose with the release's swarm-oneoff overlay: the stack's
    volumes and networks), and services stop and start by their replica counts."""

    def __init__(self, host: hostops.Host) -> None:
        super().__init__(host)
        self.stack = host.env.project_name
        self.label = f"{self.stack} (Docker Swarm) on {host.remote.host.label}"

    def container(self, service: str) -> str:
        """The running task container of the service on the first host; OpsError if none."""
        found = hostops.swarm_task(self.host.remote, self.stack, service)
        if found is None:
            raise OpsError(
                f"no container of {service} is running on {self.host.remote.host.label} "
                f"(`docker service ps {self.stack}_{service}` there says why)"
            )
        return found

    def exec(self, command: InContainer, stream: bool = False, stdin: str | None = None) -> str:
        line = commands.swarm_exec(self.container(command.service), command, stdin is not None)
        output = self.host.remote.run(line, stdin=stdin).stdout
        if stream:
            print(output.rstrip(), flush=True)
        return output

    def replicas(self) -> dict[str, int]:
        """Replicas of each service as the current release's stack file sets them."""
        path = f"{self.host.root}/releases/{self.host.current()}/{stackfile.STACK_FILE}"
        text = self.host.remote.read_text(path)
        if text is None:
            raise OpsError(
                f"{path} is missing on {self.host.remote.host.label}: the release is incomplete. "
                f"Fix: `invoke deploy --env={self.env.name}` writes it again"
            )
        services = (yaml.safe_load(text) or {}).get("services") or {}
        return {
            name: int((spec.get("deploy") or {}).get("replicas", 1))
            for name, spec in services.items()
        }

    def scale(self, counts: dict[str, int], what: str, timeout: int) -> None:
        """`docker service scale`: scaling up returns once the new tasks run (and are healthy:
        Swarm reports a task with a healthcheck running once it passes); scaling down returns
        before the old containers have stopped (see stop())."""
        self.host.remote.run(commands.service_scale(self.stack, counts, what, timeout))

    def running(self, services: tuple[str, ...]) -> int:
        """How many tasks of the services still run, on any host (the manager knows)."""
        out = self.host.remote.run(commands.service_states(self.stack, services)).stdout
        return sum(1 for line in out.splitlines() if line.startswith("Running"))

    def stop(self, *services: str, what: str, timeout: float = STOP_WAIT) -> None:
        """Scaled to 0, then waited for until no task runs any more: PostgreSQL's clean
        shutdown (its checkpoint) may take most of its grace period, and nothing may touch its
        data volume before it is over."""
        self.scale({name: 0 for name in services}, what, timeout=int(timeout))
        deadline = time.monotonic() + timeout
        while (left := self.running(services)) > 0:
            if time.monotonic() > deadline:
                raise OpsError(
                    f"{what}: {left} task(s) of {', '.join(services)} still run after "
                    f"{timeout:.0f} s (`docker service ps {self.stack}_{services[0]}` on "
                    f"{self.host.remote.host.label} says why). Nothing was restored"
                )
            time.sleep(1.0)

    def start(self, *services: str, what: str, timeout: int) -> None:
        wanted = self.replicas()
        self.scale({name: wanted.get(name, 1) for name in services}, what, timeout)


@contextmanager
def open_target(env: config.Environment) -> Iterator[Target]:
    """The stack of `env`: local, the current release on its one host, or its swarm."""
    if env.is_local:
        yield LocalTarget(env)
        return
    with hostops.Host(env) as host:
        yield SwarmTarget(host) if env.is_swarm else HostTarget(host)
