"""Replacement of the API replicas behind nginx, with compose on one host.

Two slots of replicas, blue and green (compose/remote.yaml names each replica api-<slot> on the
backend network); nginx sends every request to the slot its flag file names, read per request
(nginx/entrypoint, NGINX_UPSTREAM_SLOTS). A rollout starts the target release's replicas in the
slot not serving, `batch` at a time with `compose up --no-recreate --scale`; each must answer
/ready from inside its container. Then one flag file created or removed moves all new requests to
them at once: nothing reloads, no client connection closes, clients never see versions
alternate. Requests in flight on the old replicas finish there; `docker stop` lets gunicorn
drain them, `batch` at a time. Containers carry the labels org.slipway.release and
org.slipway.slot, so a rollout knows which replicas belong to which release and slot whatever
happened before (a half-finished rollout too).

An nginx of a release from before the slots reads an upstream file instead and must be
reloaded: the rollout keeps that file in step and reloads such an nginx (a rollback to such a
release).

`Containers` holds the facts about a host's containers that every step needs (listing them,
probing their health now, their logs for a failure); `Rollout` is the algorithm.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ops.deploy import checks
from ops.deploy.commands import docker, host, nginx, standby
from ops.deploy.hostcompose import RemoteCompose
from ops.errors import OpsError
from ops.executor import Executor, change, write_file

PROBE_INTERVAL = 1.0
NGINX_DRAIN_TIMEOUT = 60.0
# docker stop's grace before SIGKILL: gunicorn's graceful timeout (30 s) plus margin, as in
# compose.yaml's stop_grace_period for api.
API_STOP_TIMEOUT = 45
# A new replica takes traffic only once its /ready answers (database, Redis, schema at head).
READY_CHECK = ("listings", "healthcheck", "ready")
SERVICE_WAIT = 180.0
# What a standby replica is assumed to need when the API has no memory limit.
DEFAULT_REPLICA_MEMORY = 512 * 1024 * 1024


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
    slot: str = ""  # none on replicas from before the slots


class Containers:
    """The compose project's containers on one host: listed, probed, diagnosed."""

    def __init__(self, remote: Executor, project: str) -> None:
        self.remote = remote
        self.project = project

    def of(self, service: str = "api") -> list[Container]:
        return self.parse(self.remote.run(docker.containers(self.project, service)).stdout)

    @staticmethod
    def parse(out: str) -> list[Container]:
        """The containers in docker.containers()' output, by name."""
        found = []
        for line in out.splitlines():
            # The slot is empty on containers from before the slots and on a swarm, and an
            # output's trailing whitespace may be gone: 3 fields are as good.
            parts = line.split("\t")
            if len(parts) in (3, 4):
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

    def probe_all(
        self, names: Sequence[str], command: Sequence[str]
    ) -> dict[str, tuple[bool, str]]:
        """`command` in every container of `names` at once (one command on the host): each
        name's verdict and why, as `probe` gives them."""
        out = self.remote.run(docker.probe_all(names, command), check=False).stdout
        found: dict[str, tuple[bool, str]] = {}
        for line in out.splitlines():
            name, _, rest = line.partition(" ")
            code, _, said = rest.partition(" ")
            if code.startswith("state:"):
                found[name] = (False, f"container is {code.removeprefix('state:')}")
            elif code.isdigit():
                found[name] = (code == "0", said.strip() or f"exit {code}")
        return {n: found.get(n, (False, "no answer from the probe")) for n in names}

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


def wait_passing(
    containers: Containers,
    names: Sequence[str],
    command: Sequence[str],
    timeout: float,
    what: str,
    settle: float = 0.0,
) -> None:
    """Every container of `names` passes `command` (run in all of them at once, every
    PROBE_INTERVAL) within `timeout`; one that exits fails at once, but in the first `settle`
    seconds (a `docker start` of it may still be on its way). RolloutError naming them
    (`what`: "new replica"), with their logs and state."""
    began = time.monotonic()
    deadline = began + timeout
    pending = list(names)
    last: dict[str, str] = {}
    while pending:
        for name, (ok, why) in containers.probe_all(pending, command).items():
            last[name] = why
            if ok:
                pending.remove(name)
            elif why.startswith(("container is exited", "container is dead")) and (
                time.monotonic() >= began + settle or "exited" not in why
            ):
                raise RolloutError(
                    f"{what} {name} exited while starting", containers.diagnose(name)
                )
        if not pending:
            return
        if time.monotonic() >= deadline:
            detail = "\n".join(containers.diagnose(n) for n in pending)
            why = "; ".join(f"{n}: {last.get(n, '?')}" for n in pending)
            raise RolloutError(f"{what}(s) not ready after {timeout:.0f}s ({why})", detail)
        time.sleep(PROBE_INTERVAL)


def memory_bytes(meminfo_kib: str) -> int:
    """MemAvailable as printed by standby.memory_available() (KiB), in bytes; 0 if unread."""
    answer = meminfo_kib.strip()
    return int(answer) * 1024 if answer.isdigit() else 0


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
        standby: int = 0,
        replica_memory: int = 0,
        checks: Sequence[str] = (),
        check_latency: float = 5.0,
    ) -> None:
        """`standby`: seconds the replicas the switch took the traffic from stay running out of
        traffic (0: stopped at once); `replica_memory`: what one replica may use (bytes, its
        limit; 0: unknown), so a standby is kept only when the host has the room."""
        self.compose = compose
        self.remote = compose.remote
        self.containers = Containers(compose.remote, compose.project)
        self.replicas = replicas
        self.batch = max(0, batch)  # 0: as many as the host's memory allows (surge)
        self.health_timeout = health_timeout
        self._log = log
        self._began = time.monotonic()
        self.flags_dir = f"{compose.root}/nginx"
        self.upstream_path = f"{self.flags_dir}/upstream.conf"
        self.standby = max(0, standby)
        self.kept: list[str] = []  # the replicas kept on standby by the last run
        self.replica_memory = replica_memory or DEFAULT_REPLICA_MEMORY
        self.checks = tuple(checks)
        self.check_latency = check_latency
        self._nginx: str | None = None  # "" once asked: not running
        self._slots: dict[str, str] = {}  # replica -> slot, as the rollout began
        self.switched_at: float | None = None  # when the traffic moved (None: it did not)
        self.kept_release = ""  # the release of the replicas kept on standby ("": none)

    def log(self, message: str) -> None:
        """Progress lines carry the seconds since the rollout began."""
        self._log(f"{message} [+{time.monotonic() - self._began:.1f}s]")

    # ------------------------------------------------------------------ nginx

    def set_live(self, slot: str, names: Sequence[str]) -> None:
        """The traffic to `slot`, whose replicas are `names`: the flag file nginx reads per
        request. The upstream file of releases from before the slots follows, and an nginx of
        such a release is reloaded (gracefully) and waited for until its previous workers
        finished their requests. Replicas of such a release carry no slot name: an nginx of
        the slots is recreated as that release runs it (a brief interruption, once)."""
        if not names:
            raise OpsError("refusing to send the traffic to a slot without any API replica")
        container = self.nginx()
        # Which nginx, and how it finds the API, asked before the flip: the flip and the
        # upstream file then go in one round trip, and nothing waits between them.
        from_file = container is not None and (
            self.remote.run(nginx.reads_upstream_file(container)).stdout.strip() == "file"
        )
        text = nginx.upstream_text(names)
        flip = nginx.set_live_slot(self.flags_dir, slot)
        write = write_file(self.upstream_path, 0o644, len(text.encode()))
        self.remote.run(
            change(f"{flip.line} && {{ {write.line}; }}", flip.what, shown=flip.display),
            stdin=text,
        )
        if container is None:
            return
        if from_file:
            reload_nginx(self.remote, container)
            self.wait_nginx_drained(container)
        elif self.from_before_slots(names):
            self.log("    its replicas predate the slots: nginx recreated as the release runs it")
            self.compose.up("nginx", what="recreate nginx as this release runs it (upstream file)")
            self.containers.wait_healthy(("nginx",), timeout=60.0)
            self._nginx = None

    def nginx(self) -> str | None:
        """The running nginx container, asked once per rollout (None: not running yet)."""
        if self._nginx is None:
            self._nginx = self.containers.running_nginx() or ""
        return self._nginx or None

    def from_before_slots(self, names: Sequence[str]) -> bool:
        """Whether a replica of `names` carries no slot (a release from before the slots).
        Read from the listings the rollout made (as it began, after each start)."""
        return any(not self._slots.get(name) for name in names)

    def wait_nginx_drained(self, container: str) -> None:
        deadline = time.monotonic() + NGINX_DRAIN_TIMEOUT
        while time.monotonic() < deadline:
            out = self.remote.run(nginx.draining(container), check=False).stdout.strip()
            if out in ("", "0"):
                return
            time.sleep(0.5)
        self.log(f"    nginx workers still draining after {NGINX_DRAIN_TIMEOUT:.0f}s; going on")

    def upstream_file(self) -> list[str]:
        """The replicas of the upstream file (what an nginx from before the slots serves)."""
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
        wait_passing(self.containers, names, READY_CHECK, self.health_timeout, "new replica")

    def failed(self, names: Sequence[str], paths: Sequence[str]) -> dict[str, list[str]]:
        """`paths` requested in every replica of `names` at once (ops/deploy/checks.py): the
        failed lines per replica (empty when all passed)."""
        command = checks.in_replicas(names, paths, self.check_latency)
        return checks.failures(self.remote.run(command, check=False).stdout, names)

    def check(self, names: Sequence[str]) -> None:
        """The environment's checks (real requests) in each replica, before any traffic."""
        if not self.checks or not names:
            return
        if failed := self.failed(names, self.checks):
            raise RolloutError(
                f"new replica(s) failed the checks (deploy.checks) before taking any traffic: "
                f"{checks.summary(failed)}",
                "\n".join(self.containers.diagnose(n) for n in failed),
            )
        self.log(f"    {len(self.checks)} check(s) passed in {', '.join(names)}")

    def reusable(self, names: Sequence[str]) -> list[str]:
        """Replicas of the target still running out of traffic (a standby), if they answer
        /ready and the checks now: one request round in all of them at once, no waiting. When
        one does not, they are all replaced by new ones (as if there were no standby)."""
        if not names:
            return []
        self.log(f"    reusing {', '.join(names)} (still running); checking /ready and the checks")
        if failed := self.failed(names, ("/ready", *self.checks)):
            self.log(f"    not reused ({checks.summary(failed)}): replaced by new replicas")
            self.remove(names, graceful=False)
            return []
        self.log(f"    {', '.join(names)}: /ready and {len(self.checks)} check(s) passed")
        return list(names)

    def remove(self, names: Sequence[str], graceful: bool = True) -> None:
        if not names:
            return
        if graceful:
            self.remote.run(docker.stop(names, API_STOP_TIMEOUT))
        self.remote.run(docker.remove(names))

    def scale_up(self, slot: str, count: int) -> list[str]:
        """Start replicas of the target release in `slot` until `count` api containers
        exist."""
        before = {c.name for c in self.containers.of()}
        self.compose.in_slot(slot).up(
            "api",
            flags=("--no-recreate", "--scale", f"api={count}"),
            what=f"start new API replicas ({slot})",
        )
        after = self.containers.of()
        self._slots.update((c.name, c.slot) for c in after)
        return sorted(c.name for c in after if c.name not in before)

    def start_new(self, slot: str, others: int, new: list[str]) -> list[str]:
        """New replicas in `slot` next to the `others` running, `batch` at a time, each ready
        before the next batch; none takes traffic yet. Returns every replica of the target
        release in that slot."""
        batch = self.surge(self.replicas - len(new))
        while len(new) < self.replicas:
            count = min(batch, self.replicas - len(new))
            started = self.scale_up(slot, others + len(new) + count)
            if not started:
                raise RolloutError(
                    f"compose started no new API replica (asked for {count} more); see its "
                    "output above"
                )
            self.log(f"    started {', '.join(started)}; waiting for /ready")
            try:
                self.wait_ready(started)
                self.check(started)
            except RolloutError:
                self.remove(started, graceful=False)
                raise
            new = [*new, *started]
        return new

    def switch(
        self,
        slot: str,
        new: list[str],
        back: tuple[str, list[str]],
        verify: Callable[[], None] | None,
    ) -> None:
        """The traffic to `slot` (replicas `new`) at once: clients never see the versions
        alternate; requests in flight on the old replicas finish there. A failed check through
        nginx switches straight back to `back` (slot, replicas) while its replicas still run."""
        self.set_live(slot, new)
        self.switched_at = time.time()
        self.log(f"    traffic now on the {slot} replicas: {', '.join(sorted(new))}")
        # nginx does not run yet on a first deploy: the deploy's own smoke step checks later.
        if verify is None or self.nginx() is None:
            return
        try:
            verify()
        except OpsError as exc:
            previous, serving = back
            if serving:
                self.set_live(previous, serving)
                self.log("    check through nginx failed: traffic switched back")
            raise RolloutError(f"after the switch: {exc}") from exc

    # ------------------------------------------------------------------ the rollout

    def run(self, verify: Callable[[], None] | None = None) -> str:
        """Start the target release's replicas in the slot not serving (or reuse its replicas
        there: a standby), switch nginx to them at once; the replicas that served become the
        standby or are drained, and the rest go."""
        target = self.compose.release_id
        self._began = time.monotonic()
        # The replicas, the live slot and nginx: one round trip.
        replicas, flag, proxies = self.remote.run_all(
            [
                docker.containers(self.compose.project, "api"),
                nginx.live_slot(self.flags_dir),
                docker.containers(self.compose.project, "nginx"),
            ]
        )
        everything = Containers.parse(replicas.stdout)
        proxy = [c.name for c in Containers.parse(proxies.stdout) if c.state == "running"]
        self._nginx = proxy[0] if proxy else ""
        self._slots = {c.name: c.slot for c in everything}
        # Dead containers of any release are clutter that would count towards --scale.
        self.remove([c.name for c in everything if c.state != "running"], graceful=False)
        running = [c for c in everything if c.state == "running"]
        live = flag.stdout.strip() or "blue"
        serving = [c for c in running if c.slot == live]
        if not serving:  # replicas from before the slots, served through the upstream file
            listed = set(self.upstream_file())
            serving = [c for c in running if not c.slot and c.name in listed]
        kept: list[str] = []
        if serving and all(c.release == target for c in serving) and len(serving) >= self.replicas:
            # Already serving (a deploy run twice, a switch back): no switch.
            slot, new = live, sorted(c.name for c in serving)[: self.replicas]
        else:
            slot = nginx.other_slot(live)
            # The other slot takes no traffic: its replicas of the target are reused (a standby
            # going back into traffic), the rest go first (nothing is in flight there).
            idle = [c for c in running if c.slot == slot]
            stale = [c.name for c in idle if c.release != target]
            self.remove(stale)
            running = [c for c in running if c.name not in stale]
            reused = self.reusable(sorted(c.name for c in idle if c.release == target))
            running = [c for c in running if c.slot != slot or c.name in reused]
            new = self.start_new(slot, len(running) - len(reused), reused)[: self.replicas]
            self.switch(slot, new, (live, [c.name for c in serving]), verify)
            kept = self.kept = self.keep_standby(live, serving)
        # Every other replica leaves, `batch` at a time (all at once with the surge: they
        # take no traffic any more): gunicorn finishes their requests first.
        leaving = sorted(c.name for c in running if c.name not in new and c.name not in kept)
        step = self.batch or max(1, len(leaving))
        for index in range(0, len(leaving), step):
            chunk = leaving[index : index + step]
            self.remove(chunk)
            self.log(f"    drained and stopped {', '.join(chunk)}")
        if not kept:
            self.remote.run(standby.clear(self.compose.root))
        note = f", {len(kept)} on standby for {self.standby}s" if kept else ""
        return f"{len(new)} replica(s) of {target} serving ({slot}), {len(leaving)} stopped{note}"

    def memory_available(self) -> int:
        """The host's available memory in bytes (0 when it cannot be read)."""
        return memory_bytes(self.remote.run(standby.memory_available(), check=False).stdout)

    def surge(self, missing: int) -> int:
        """How many new replicas start at once: `batch`, or with batch 0 as many of the
        `missing` as the host's available memory holds (at least one)."""
        if self.batch or missing <= 1:
            return self.batch or 1
        available = self.memory_available()
        size = max(1, min(missing, available // self.replica_memory))
        self.log(
            f"    surge: {size} of {missing} new replica(s) at once "
            f"({available // 1024**2} MiB available, {self.replica_memory // 1024**2} MiB each)"
        )
        return size

    def keep_standby(self, slot: str, serving: Sequence[Container]) -> list[str]:
        """The replicas that served until the switch, kept running out of traffic for
        `standby` seconds when the host has the memory; their names (none when not kept)."""
        names = sorted(c.name for c in serving)
        releases = {c.release for c in serving}
        if not self.standby or not names or len(releases) != 1 or any(not c.slot for c in serving):
            return []
        # The memory and the host's clock in one round trip.
        memory, clock = self.remote.run_all([standby.memory_available(), host.clock()], check=False)
        available = memory_bytes(memory.stdout)
        needed = len(names) * self.replica_memory
        if available < needed:
            self.log(
                f"    no standby: {available // 1024**2} MiB available, "
                f"{needed // 1024**2} MiB needed for {len(names)} replica(s)"
            )
            return []
        release = releases.pop()
        self.kept_release = release
        if not clock.ok:
            raise self.remote.failure(host.clock(), clock)
        now = int(clock.stdout.strip() or 0)
        record = json.dumps({"release": release, "slot": slot, "until": now + self.standby})
        self.remote.put_text(f"{self.compose.root}/{standby.RECORD}", record + "\n", mode=0o644)
        self.remote.run(
            standby.schedule_stop(
                self.compose.project,
                self.compose.root,
                slot,
                release,
                now + self.standby,
                API_STOP_TIMEOUT,
            )
        )
        self.log(f"    {', '.join(names)} on standby ({slot}) for {self.standby}s")
        return names
