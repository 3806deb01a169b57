"""Compose of one release on a host: the commands of ops/deploy/commands/compose.py, run by
the host's executor. What a deploy, a rollback and the operating commands (ops/stack/host.py)
use to start services and one-off containers of a recorded release."""

from __future__ import annotations

from dataclasses import replace

from ops.deploy.commands.compose import ReleaseCompose
from ops.executor import Executor


class RemoteCompose:
    """`docker compose` for one release of one environment, run on its host."""

    def __init__(
        self,
        remote: Executor,
        project: str,
        remote_dir: str,
        release_id: str,
        overlays: tuple[str, ...] = ("remote.yaml",),
    ) -> None:
        self.remote = remote
        self.spec = ReleaseCompose(project, remote_dir.rstrip("/"), release_id, overlays)

    @property
    def project(self) -> str:
        return self.spec.project

    @property
    def root(self) -> str:
        return self.spec.root

    @property
    def release_id(self) -> str:
        return self.spec.release_id

    def in_slot(self, slot: str) -> RemoteCompose:
        """The same compose, creating API replicas in `slot` (the live one otherwise)."""
        twin = RemoteCompose(self.remote, self.project, self.root, self.release_id)
        twin.spec = replace(self.spec, slot=slot)
        return twin

    def command(self, *args: str) -> str:
        """The shell line of `docker compose <args>` for this release."""
        return self.spec.line(*args)

    def run(
        self,
        *args: str,
        what: str = "",
        timeout: float | None = None,
        stdin: str | None = None,
        changes: bool = True,
        check: bool = True,
    ) -> str:
        """Output (stderr merged) of `docker compose <args>` on the host; stdin: text fed to
        it. changes=False for a command that only reads (`ps`, `config`); check=False when
        the output, not the exit code, says what happened."""
        command = self.spec.command(*args, what=what, changes=changes, timeout=timeout)
        return self.remote.run(command, stdin=stdin, check=check).stdout

    def up(self, *services: str, what: str, flags: tuple[str, ...] = ()) -> str:
        """Start or update services (their dependencies untouched)."""
        return self.remote.run(self.spec.up(*services, what=what, flags=flags)).stdout

    def oneoff(self, service: str, *args: str, what: str, timeout: float | None = None) -> str:
        """Output of a one-off container of `service` (removed when it ends)."""
        return self.remote.run(self.spec.oneoff(service, *args, what=what, timeout=timeout)).stdout

    def exec(
        self, service: str, *args: str, what: str, timeout: float | None = None, check: bool = True
    ) -> str:
        """Output of a command in the running container of `service`."""
        command = self.spec.exec(service, *args, what=what, timeout=timeout)
        return self.remote.run(command, check=check).stdout
