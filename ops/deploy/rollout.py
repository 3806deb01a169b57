"""Replacement of the API replicas behind nginx, with compose on one host.

`compose up --no-recreate --scale api=<n+batch>` starts new replicas of the target release next
to the old ones, `batch` at a time; each must answer /ready from inside its container. Then one
rewrite of nginx's upstream file and one graceful reload move all new requests to the new
replicas at once (clients never see versions alternate); nginx's old workers finish their
requests; then `docker stop` lets gunicorn drain the old replicas, `batch` at a time. Containers
carry the label org.slipway.release, so a rollout knows which replicas belong to another release
whatever happened before (a half-finished rollout too).

`Containers` holds the facts about a host's containers that every step needs (listing them,
probing their health now, their logs for a failure); `Rollout` is the algorithm.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ops.deploy.commands import docker, nginx
from ops.deploy.hostcompose import RemoteCompose
from ops.errors import OpsError
from ops.executor import Executor

PROBE_INTERVAL = 1.0
NGINX_DRAIN_TIMEOUT = 60.0
# docker stop's grace before SIGKILL: gunicorn's graceful timeout (30 s) plus margin, as in
# compose.yaml's stop_grace_period for api.
API_STOP_TIMEOUT = 45
# A new replica takes traffic only once its /ready answers (database, Redis, schema at head).
READY_CHECK = ("listings", "healthcheck", "ready")
SERVICE_WAIT = 180.0


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


class Containers:
    """The compose project's containers on one host: listed, probed, diagnosed."""

    def __init__(self, remote: Executor, project: str) -> None:
        self.remote = remote
        self.project = project

    def of(self, service: str = "api") -> list[Container]:
        out = self.remote.run(docker.containers(self.project, service)).stdout
        found = []
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                found.append(Container(*parts))
        return sorted(found, key=lambda c: c.name)

    def running_nginx(self) -> str | None:
        running = [c for c in self.of("nginx") if c.state == "running"]
        return running[0].name if running else None

    def probe(self, name: str, command: Sequence[str] = ()) -> tuple[bool, str]:
        """Run the container's own healthcheck (or `command`) inside it now.

        Docker runs healthchecks every `interval` (10 s here): waiting for its verdict would add
        that much to every step of a deploy. A container without a healthcheck passes while it
        runs.
        """
        inspected = self.remote.run(docker.state_and_healthcheck(name), check=False)
        status, _, check_json = inspected.stdout.strip().partition("\t")
        if status != "running":
            return False, f"container is {status or 'gone'}"
        argv = list(command) or healthcheck_argv(check_json)
        if not argv:
            return True, "running (no healthcheck)"
        result = self.remote.run(docker.probe(name, argv), check=False)
        output = (result.stdout.strip() or result.stderr.strip())[-300:]
        return result.ok, output or f"exit {result.code}"

    def diagnose(self, name: str) -> str:
        """The failing container's last log lines and health output, for the operator."""
        logs = self.remote.run(docker.recent_logs(name), check=False).stdout
        state = self.remote.run(docker.state(name), check=False).stdout
        return f"--- logs of {name} (last 60 lines) ---\n{logs}\n--- state ---\n{state}"

    def wait_healthy(self, services: Sequence[str], timeout: float = SERVICE_WAIT) -> None:
        """Every container of `services` passes its healthcheck (run now, not at Docker's
        pace)."""
        deadline = time.monotonic() + timeout
        while True:
            names = [c.name for service in services for c in self.of(service)]
            bad = {}
            for name in names:
                ok, why = self.probe(name)
                if not ok:
                    bad[name] = why
            if names and not bad:
                return
            if time.monotonic() > deadline:
                detail = "\n".join(self.diagnose(n) for n in bad)
                what = "; ".join(f"{n}: {w}" for n, w in bad.items()) or "no containers"
                raise RolloutError(
                    f"{', '.join(services)} not healthy after {timeout:.0f}s: {what}", detail
                )
            time.sleep(PROBE_INTERVAL)


def healthcheck_argv(check_json: str) -> list[str]:
    """The argv of a container's HEALTHCHECK from `docker inspect`'s JSON ([] when none)."""
    try:
        test = json.loads(check_json or "null") or {}
    except json.JSONDecodeError:
        test = {}
    words = test.get("Test") or [] if isinstance(test, dict) else []
    if not words or words[0] == "NONE":
        return []
    return ["sh", "-c", words[1]] if words[0] == "CMD-SHELL" else list(words[1:])


def reload_nginx(remote: Executor, container: str) -> None:
    """`nginx -t`, then a graceful reload of that container."""
    remote.run(nginx.test_and_reload(container))


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
        self.containers = Containers(compose.remote, compose.project)
        self.replicas = replicas
        self.batch = max(1, batch)
        self.health_timeout = health_timeout
        self._log = log
        self._began = time.monotonic()
        self.upstream_path = f"{compose.root}/nginx/upstream.conf"

    def log(self, message: str) -> None:
        """Progress lines carry the seconds since the rollout began."""
        self._log(f"{message} [+{time.monotonic() - self._began:.1f}s]")

    # ------------------------------------------------------------------ nginx

    def set_upstream(self, names: Sequence[str]) -> None:
        """Write the upstream file, then reload nginx gracefully (when it runs) and wait until
        its previous workers finished their requests."""
        if not names:
            raise OpsError("refusing to write an nginx upstream without any API replica")
        self.remote.put_text(self.upstream_path, nginx.upstream_text(names), mode=0o644)
        container = self.containers.running_nginx()
        if container is not None:
            reload_nginx(self.remote, container)
            self.wait_nginx_drained(container)

    def wait_nginx_drained(self, container: str) -> None:
        deadline = time.monotonic() + NGINX_DRAIN_TIMEOUT
        while time.monotonic() < deadline:
            out = self.remote.run(nginx.draining(container), check=False).stdout.strip()
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
                ok, why = self.containers.probe(name, READY_CHECK)
                last[name] = why
                if ok:
                    pending.remove(name)
                elif why.startswith(("container is exited", "container is dead")):
                    raise RolloutError(
                        f"new replica {name} exited while starting", self.containers.diagnose(name)
                    )
            if not pending:
                return
            if time.monotonic() >= deadline:
                detail = "\n".join(self.containers.diagnose(n) for n in pending)
                why = "; ".join(f"{n}: {last.get(n, '?')}" for n in pending)
                raise RolloutError(
                    f"new replica(s) not ready after {self.health_timeout:.0f}s ({why})", detail
                )
            time.sleep(PROBE_INTERVAL)

    def remove(self, names: Sequence[str], graceful: bool = True) -> None:
        if not names:
            return
        if graceful:
            self.remote.run(docker.stop(names, API_STOP_TIMEOUT))
        self.remote.run(docker.remove(names))

    def scale_up(self, count: int) -> list[str]:
        """Start replicas of the target release until `count` api containers exist."""
        before = {c.name for c in self.containers.of()}
        self.compose.up(
            "api", flags=("--no-recreate", "--scale", f"api={count}"), what="start new API replicas"
        )
        return sorted(c.name for c in self.containers.of() if c.name not in before)

    def start_new(self, old: list[str], new: list[str]) -> list[str]:
        """New replicas next to the old ones, `batch` at a time, each ready before the next
        batch; none takes traffic yet. Returns every replica of the target release."""
        while len(new) < self.replicas:
            count = min(self.batch, self.replicas - len(new))
            started = self.scale_up(len(old) + len(new) + count)
            if not started:
                raise RolloutError(
                    f"compose started no new API replica (asked for {count} more); see its "
                    "output above"
                )
            self.log(f"    started {', '.join(started)}; waiting for /ready")
            try:
                self.wait_ready(started)
            except RolloutError:
                self.remove(started, graceful=False)
                raise
            new = [*new, *started]
        return new

    def switch(self, new: list[str], serving: list[str], verify: Callable[[], None] | None) -> None:
        """One reload moves every new request to `new`: clients never see the versions
        alternate; requests in flight on the old replicas finish there. A failed check through
        nginx switches straight back while the old replicas still run."""
        self.set_upstream(new)
        self.log(f"    nginx now sends traffic to {', '.join(sorted(new))}; old workers done")
        # nginx does not run yet on a first deploy: the deploy's own smoke step checks later.
        if verify is None or self.containers.running_nginx() is None:
            return
        try:
            verify()
        except OpsError as exc:
            if serving:
                self.set_upstream(serving)
                self.log("    check through nginx failed: traffic switched back")
            raise RolloutError(f"after the switch: {exc}") from exc

    # ------------------------------------------------------------------ the rollout

    def run(self, verify: Callable[[], None] | None = None) -> str:
        """Start the target release's replicas, switch nginx to them at once, drain the rest."""
        target = self.compose.release_id
        self._began = time.monotonic()
        everything = self.containers.of()
        # Dead containers of any release are clutter that would count towards --scale.
        self.remove([c.name for c in everything if c.state != "running"], graceful=False)
        running = [c for c in everything if c.state == "running"]
        old = [c.name for c in running if c.release != target]
        new = [c.name for c in running if c.release == target]
        serving = [n for n in self.current_upstream() if n in {c.name for c in running}]
        new = self.start_new(old, new)
        extra, new = new[self.replicas :], new[: self.replicas]
        if sorted(serving) != sorted(new):
            self.switch(new, serving, verify)
        # Old replicas leave, `batch` at a time: gunicorn finishes their requests first.
        leaving = [n for n in [*old, *extra] if n not in new]
        for index in range(0, len(leaving), self.batch):
            chunk = leaving[index : index + self.batch]
            self.remove(chunk)
            self.log(f"    drained and stopped {', '.join(chunk)}")
        return f"{len(new)} replica(s) of {target} serving, {len(leaving)} stopped"
