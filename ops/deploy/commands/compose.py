"""`docker compose` of one release on a host: the release directory's files, its variables
(secrets.env, release.env) and the project name, then the arguments."""

from __future__ import annotations

from dataclasses import dataclass

from ops.executor import Command, join, quote

# One-off containers are run with these: no dependency started, no TTY (output is captured).
ONEOFF = ("run", "--rm", "--no-deps", "-T")


@dataclass(frozen=True)
class ReleaseCompose:
    """How compose is invoked for one release of one environment on its host."""

    project: str
    root: str  # the environment's directory on the host (deploy.remote_dir)
    release_id: str
    overlays: tuple[str, ...] = ("remote.yaml",)  # compose files after compose.yaml

    def line(self, *args: str) -> str:
        rel = f"releases/{self.release_id}"
        words = [
            "docker", "compose", "-p", self.project,
            "--env-file", f"{rel}/secrets.env", "--env-file", f"{rel}/release.env",
            "-f", f"{rel}/compose.yaml",
            *[word for name in self.overlays for word in ("-f", f"{rel}/{name}")],
            *args,
        ]  # fmt: skip
        return f"cd {quote(self.root)} && {join(words)}"

    def command(
        self, *args: str, what: str = "", changes: bool = True, timeout: float | None = None
    ) -> Command:
        """The compose command with its output and errors on one stream (2>&1)."""
        return Command(self.line(*args) + " 2>&1", what or f"compose {args[0]}", changes, timeout)

    def up(self, *services: str, what: str = "", flags: tuple[str, ...] = ()) -> Command:
        """Start or update services without touching their dependencies."""
        return self.command("up", "-d", "--no-deps", *flags, *services, what=what)

    def oneoff(
        self, service: str, *args: str, what: str = "", timeout: float | None = None
    ) -> Command:
        """A one-off container of `service` (removed when it ends)."""
        return self.command(*ONEOFF, service, *args, what=what, timeout=timeout)

    def exec(
        self, service: str, *args: str, what: str = "", timeout: float | None = None
    ) -> Command:
        """A command in the running container of `service`."""
        return self.command("exec", "-T", service, *args, what=what, timeout=timeout)
