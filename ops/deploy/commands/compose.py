"""`docker compose` of one release on a host: the release directory's files, its variables
(secrets.env, release.env) and the project name, then the arguments."""

from __future__ import annotations

from dataclasses import dataclass

from ops.executor import Command, join, quote

# The overlay of a host with Compose (compose/remote.yaml), which gives API replicas a slot.
REMOTE_OVERLAY = "remote.yaml"
# The slot serving, from nginx's flag file (relative to the environment's directory, as every
# compose line runs there): ops/deploy/commands/nginx.py writes it.
LIVE_SLOT = "$(test -e nginx/slot-green && echo green || echo blue)"

# One-off containers are run with these: no dependency started, no TTY (output is captured).
ONEOFF = ("run", "--rm", "--no-deps", "-T")


@dataclass(frozen=True)
class ReleaseCompose:
    """How compose is invoked for one release of one environment on its host."""

    project: str
    root: str  # the environment's directory on the host (deploy.remote_dir)
    release_id: str
    overlays: tuple[str, ...] = (REMOTE_OVERLAY,)  # compose files after compose.yaml
    # The slot of API replicas compose creates (compose/remote.yaml): the rolling deploy names
    # the one not serving; every other command gets the live one, read from nginx's flag file on
    # the host, so a container compose compares against its file is never seen as changed (and
    # recreated out of the traffic) merely because the traffic moved.
    slot: str = ""

    def line(self, *args: str) -> str:
        rel = f"releases/{self.release_id}"
        words = [
            "docker", "compose", "-p", self.project,
            "--env-file", f"{rel}/secrets.env", "--env-file", f"{rel}/release.env",
            "-f", f"{rel}/compose.yaml",
            *[word for name in self.overlays for word in ("-f", f"{rel}/{name}")],
            *args,
        ]  # fmt: skip
        if REMOTE_OVERLAY not in self.overlays:  # a swarm's one-off containers: no slots
            return f"cd {quote(self.root)} && {join(words)}"
        slot = quote(self.slot) if self.slot else LIVE_SLOT
        return f"cd {quote(self.root)} && SLIPWAY_API_SLOT={slot} {join(words)}"

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
