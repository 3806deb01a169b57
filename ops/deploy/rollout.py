"""Replacement of the API replicas behind nginx, with compose on the host.

`compose up --no-recreate --scale api=<n+batch>` starts new replicas of the target release next
to the old ones, `batch` at a time; each must answer /ready from inside its container. Then one
rewrite of nginx's upstream file and one graceful reload move all new requests to the new
replicas at once (clients never see versions alternate); nginx's old workers finish their
requests; then `docker stop` lets gunicorn drain the old replicas, `batch` at a time. Containers
carry the label org.slipway.release, so a rollout knows which replicas belong to another release
whatever happened before (a half-finished rollout too).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ops.errors import OpsError
from ops.remote import Remote, quote

RELEASE_LABEL = "org.slipway.release"
API_PORT = 8000
PROBE_INTERVAL = 1.0
NGINX_DRAIN_TIMEOUT = 60.0
# docker stop's grace before SIGKILL: gunicorn's graceful timeout (30 s) plus margin, as in
# compose.yaml's stop_grace_period for api.
API_STOP_TIMEOUT = 45
# A new replica takes traffic only once its /ready answers (database, Redis, schema at head).
READY_CHECK = ("listings", "healthcheck", "ready")


class RolloutError(OpsError):
    """A replica did not become ready; `details` holds its logs and health output."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class Container:
    name: str
    state: str
    release: str


class RemoteCompose:
    """`docker compose` for one release of one environment, run on the host."""

    def __init__(
        self,
        remote: Remote,
        project: str,
        remote_dir: str,
        release_id: str,
        overlays: tuple[str, ...] = ("remote.yaml",),
    ) -> None:
        self.remote = remote
        self.project = project
        self.root = remote_dir.rstrip("/")
        self.release_id = release_id
        self.overlays = overlays  # compose files of the release after compose.yaml

    def command(self, *args: str) -> str:
        rel = f"releases/{self.release_id}"
        words = [
            "docker",
            "compose",
            "-p",
            self.project,
            "--env-file",
            f"{rel}/secrets.env",
            "--env-file",
            f"{rel}/release.env",
            "-f",
            f"{rel}/compose.yaml",
            *[word for name in self.overlays for word in ("-f", f"{rel}/{name}")],
            *args,
        ]
        return f"cd {quote(self.root)} && " + " ".join(quote(w) for w in words)

    def run(
        self, *args: str, what: str = "", timeout: float | None = None, stdin: str | None = None
    ) -> str:
        """Output (stderr merged) of `docker compose <args>` on the host; stdin: text fed to it."""
        result = self.remote.run(
            self.command(*args) + " 2>&1",
            what=what or f"compose {args[0]}",
            timeout=timeout,
            stdin=stdin,
        )
        return result.stdout


class Rollout:
    """Replace the API replicas with those of `compose.release_id`, `batch` at a time."""

    def __init__(
        self,
        compose: RemoteCompose,
        replicas: int,
        batch: int,
        health_timeout: float,
        log: Callable[[str], None] = print,
    ) -> None:
        self.compose = compose
        self.remote = compose.remote
        self.replicas = replicas
        self.batch = max(1, batch)
        self.health_timeout = health_timeout
        self._log = log
        self._began = time.monotonic()
        self.upstream_path = f"{compose.root}/nginx/upstream.conf"

    def log(self, message: str) -> None:
        """Progress lines carry the seconds since the rollout began."""
        self._log(f"{message} [+{time.monotonic() - self._began:.1f}s]")

    # ------------------------------------------------------------------ facts on the host

    def containers(self, service: str = "api") -> list[Container]:
        fmt = '{{.Names}}\t{{.State}}\t{{.Label "' + RELEASE_LABEL + '"}}'
        out = self.remote.run(
            "docker ps -a "
            f"--filter label=com.docker.compose.project={quote(self.compose.project)} "
            "--filter label=com.docker.compose.oneoff=False "
            f"--filter label=com.docker.compose.service={quote(service)} "
            f"--format {quote(fmt)}",
            what=f"list {service} containers",
        ).stdout
        found = []
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                found.append(Container(*parts))
        return sorted(found, key=lambda c: c.name)

    def nginx_container(self) -> str | None:
        running = [c for c in self.containers("nginx") if c.state == "running"]
        return running[0].name if running else None

    # ------------------------------------------------------------------ nginx

    @staticmethod
    def upstream_text(names: Sequence[str]) -> str:
        lines = [
            "# Written by the rolling deploy (ops/rollout.py): the API replicas nginx proxies to.\n"
        ]
        lines += [f"server {n}:{API_PORT} max_fails=1 fail_timeout=3s;\n" for n in sorted(names)]
        return "".join(lines)

    def set_upstream(self, names: Sequence[str]) -> None:
        """Write the upstream file, then reload nginx gracefully (when it runs)."""
        if not names:
            raise OpsError("refusing to write an nginx upstream without any API replica")
        self.remote.put_text(self.upstream_path, self.upstream_text(names), mode=0o644)
        nginx = self.reload_nginx()
        if nginx is not None:
            self.wait_nginx_drained(nginx)

    def reload_nginx(self) -> str | None:
        """`nginx -t` then a graceful reload; returns the container (None when not running)."""
        nginx = self.nginx_container()
        if nginx is None:
            return None
        self.remote.run(
            f"docker exec {quote(nginx)} nginx -t -q && docker exec {quote(nginx)} nginx -s reload",
            what="check and reload nginx",
        )
        return nginx

    def wait_nginx_drained(self, nginx: str) -> None:
        """Wait until nginx workers of the previous configuration have finished their requests."""
        script = f"docker exec {quote(nginx)} sh -c " + quote(
            "grep -l '[s]hutting down' /proc/[0-9]*/cmdline 2>/dev/null | wc -l"
        )
        deadline = time.monotonic() + NGINX_DRAIN_TIMEOUT
        while time.monotonic() < deadline:
            out = self.remote.run(script, check=False).stdout.strip()
            if out in ("", "0"):
                return
            time.sleep(0.5)
        self.log(f"    nginx workers still draining after {NGINX_DRAIN_TIMEOUT:.0f}s; going on")

    def current_upstream(self) -> list[str]:
        text = self.remote.read_text(self.upstream_path) or ""
        names = []
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "server":
                names.append(words[1].rsplit(":", 1)[0])
        return names

    # ------------------------------------------------------------------ replicas

    def wait_ready(self, names: Sequence[str]) -> None:
        """Each container answers /ready from inside (same command as the deploy gate)."""
        deadline = time.monotonic() + self.health_timeout
        pending = list(names)
        last: dict[str, str] = {}
        while pending:
            for name in list(pending):
                ok, why = self.probe(name, READY_CHECK)
                last[name] = why
                if ok:
                    pending.remove(name)
                elif why.startswith("container is exited") or why.startswith("container is dead"):
                    raise RolloutError(
                        f"new replica {name} exited while starting", self.diagnose(name)
                    )
            if not pending:
                return
            if time.monotonic() >= deadline:
                detail = "\n".join(self.diagnose(n) for n in pending)
                why = "; ".join(f"{n}: {last.get(n, '?')}" for n in pending)
                raise RolloutError(
                    f"new replica(s) not ready after {self.health_timeout:.0f}s ({why})", detail
                )
            time.sleep(PROBE_INTERVAL)

    def probe(self, name: str, command: Sequence[str] = ()) -> tuple[bool, str]:
        """Run the container's own healthcheck (or `command`) inside it now.

        Docker runs healthchecks every `interval` (10 s here): waiting for its verdict would add
        that much to every step of a deploy. A container without a healthcheck passes while it
        runs.
        """
        inspected = self.remote.run(
            "docker inspect -f '{{.State.Status}}\t{{json .Config.Healthcheck}}' " + quote(name),
            check=False,
        )
        status, _, check_json = inspected.stdout.strip().partition("\t")
        if status != "running":
            return False, f"container is {status or 'gone'}"
        argv = list(command)
        if not argv:
            try:
                test = json.loads(check_json or "null") or {}
            except json.JSONDecodeError:
                test = {}
            words = test.get("Test") or [] if isinstance(test, dict) else []
            if not words or words[0] == "NONE":
                return True, "running (no healthcheck)"
            argv = ["sh", "-c", words[1]] if words[0] == "CMD-SHELL" else list(words[1:])
        result = self.remote.run(
            f"docker exec {quote(name)} " + " ".join(quote(w) for w in argv), check=False
        )
        output = (result.stdout.strip() or result.stderr.strip())[-300:]
        return result.ok, output or f"exit {result.code}"

    def diagnose(self, name: str) -> str:
        """The failing container's last log lines and health output, for the operator."""
        logs = self.remote.run(f"docker logs --tail 60 {quote(name)} 2>&1", check=False).stdout
        health = self.remote.run(
            f"docker inspect -f '{{{{json .State}}}}' {quote(name)}", check=False
        ).stdout
        return f"--- logs of {name} (last 60 lines) ---\n{logs}\n--- state ---\n{health}"

    def remove(self, names: Sequence[str], graceful: bool = True) -> None:
        if not names:
            return
        quoted = " ".join(quote(n) for n in names)
        if graceful:
            self.remote.run(
                f"docker stop -t {API_STOP_TIMEOUT} {quoted} >/dev/null", what="stop replicas"
            )
        self.remote.run(f"docker rm -f {quoted} >/dev/null", what="remove replicas")

    def scale_up(self, count: int) -> list[str]:
        """Start replicas of the target release until `count` api containers exist."""
        before = {c.name for c in self.containers()}
        self.compose.run(
            "up",
            "-d",
            "--no-deps",
            "--no-recreate",
            "--scale",
            f"api={count}",
            "api",
            what="start new API replicas",
        )
        return sorted(c.name for c in self.containers() if c.name not in before)

    # ------------------------------------------------------------------ the rollout

    def run(self, verify: Callable[[], None] | None = None) -> str:
        """Start the target release's replicas, switch nginx to them at once, drain the rest."""
        target = self.compose.release_id
        self._began = time.monotonic()
        everything = self.containers()
        # Dead containers of any release are clutter that would count towards --scale.
        self.remove([c.name for c in everything if c.state != "running"], graceful=False)
        running = [c for c in everything if c.state == "running"]
        old = [c.name for c in running if c.release != target]
        new = [c.name for c in running if c.release == target]
        serving = [n for n in self.current_upstream() if n in {c.name for c in running}]
        # 1. New replicas next to the old ones, `batch` at a time; none takes traffic yet.
        while len(new) < self.replicas:
            count = min(self.batch, self.replicas - len(new))
            started = self.scale_up(len(old) + len(new) + count)
            if not started:
                raise RolloutError(
                    f"compose started no new API replica (asked for {count} more); see its "
                    "output above"
                )
            self.log(f"    started {', '.join(started) or 'nothing'}; waiting for /ready")
            try:
                self.wait_ready(started)
            except RolloutError:
                self.remove(started, graceful=False)
                raise
            new += started
        extra, new = new[self.replicas :], new[: self.replicas]
        # 2. One reload moves every new request to the new release: clients never see the
        #    versions alternate. Requests in flight on the old replicas finish there.
        if sorted(serving) != sorted(new):
            self.set_upstream(new)
            self.log(f"    nginx now sends traffic to {', '.join(sorted(new))}; old workers done")
            # nginx does not run yet on a first deploy: the deploy's own smoke step checks later.
            if verify is not None and self.nginx_container() is not None:
                try:
                    verify()
                except OpsError as exc:
                    if serving:  # the old replicas still run: one reload puts them back
                        self.set_upstream(serving)
                        self.log("    check through nginx failed: traffic switched back")
                    raise RolloutError(f"after the switch: {exc}") from exc
        # 3. Old replicas leave, `batch` at a time: gunicorn finishes their requests first.
        leaving = [n for n in [*old, *extra] if n not in new]
        for index in range(0, len(leaving), self.batch):
            chunk = leaving[index : index + self.batch]
            self.remove(chunk)
            self.log(f"    drained and stopped {', '.join(chunk)}")
        return f"{len(new)} replica(s) of {target} serving, {len(leaving)} stopped"
