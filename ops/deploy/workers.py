"""The ingest workers of a release on one host with Compose, replaced start-first around the
API's switch.

`start()` runs before the API's rolling update: the target release's workers start next to the
running ones (its stopped workers, kept from the standby, are started again) and nobody waits
for them, so they boot while the new API replicas do. `finish()` runs after the switch: the
target's workers pass their healthcheck, then the others are stopped in the background on the
host (SIGTERM: each commits its batch and puts its job back, within compose's 60 s grace); when
the API keeps a standby they stay there stopped, so a rollback within it starts them again
instead of creating them (the standby's scheduled stop removes them), otherwise they are
removed once stopped. Workers of two releases consume the stream side by side for those
seconds, as the consumer group allows. A failure anywhere puts the previous release's workers
back the same way (the automatic rollback runs both halves).
"""

from __future__ import annotations

from collections.abc import Callable

from ops.deploy.commands import docker
from ops.deploy.hostcompose import RemoteCompose
from ops.deploy.rollout import Containers, RolloutError, wait_passing
from ops.executor import Executor

SERVICE = "worker"
# docker stop's grace for a worker: compose.yaml's stop_grace_period.
WORKER_STOP_TIMEOUT = 60
# The worker's healthcheck (compose.yaml): its heartbeat file is fresh.
WORKER_CHECK = ("listings", "healthcheck", "worker")
# Seconds a worker found exited is still given to start (its `docker start` in the background).
START_SETTLE = 15.0


class WorkerRollout:
    """The workers of `compose.release_id`, `replicas` of them, in place of any other's."""

    def __init__(
        self,
        compose: RemoteCompose,
        replicas: int,
        health_timeout: float,
        log: Callable[[str], None] = print,
    ) -> None:
        self.compose = compose
        self.remote: Executor = compose.remote
        self.containers = Containers(compose.remote, compose.project)
        self.replicas = max(0, replicas)
        self.health_timeout = health_timeout
        self.log = log

    @property
    def target(self) -> str:
        return self.compose.release_id

    def start(self) -> str:
        """The target's workers running next to the others (not waited for)."""
        everything = self.containers.of(SERVICE)
        # Stopped workers of other releases: a standby that no longer applies.
        stale = [c.name for c in everything if c.release != self.target and c.state != "running"]
        mine = sorted(
            (c for c in everything if c.release == self.target),
            key=lambda c: (c.state != "running", c.name),
        )
        extra = [c.name for c in mine[self.replicas :]]
        if stale or extra:
            self.remote.run(docker.remove([*stale, *extra]))
        mine = mine[: self.replicas]
        # Kept parked by a standby (running, reading nothing): resumed at once. An active one
        # ignores the signal; an image that cannot park is never sent it.
        parked = self.parkable([c.name for c in mine if c.state == "running"])
        if parked:
            self.remote.run(docker.send_signal(parked, "USR2", "resume parked workers"))
            self.log(f"    resumed {', '.join(parked)} (parked since the switch)")
        reused = [c.name for c in mine if c.state != "running"]
        if reused:
            # In the background: they boot while the API switches; finish() waits for them.
            self.remote.run(docker.start_later(reused))
            self.log(f"    starting {', '.join(reused)} again (kept stopped since the switch)")
        missing = self.replicas - len(mine)
        if missing > 0:
            others = [c for c in everything if c.release != self.target and c.state == "running"]
            self.compose.up(
                SERVICE,
                flags=("--no-recreate", "--scale", f"{SERVICE}={len(others) + self.replicas}"),
                what="start the release's workers next to the running ones",
            )
        if not self.replicas:
            return "no worker (replicas.worker is 0)"
        running = len(mine) - len(reused)
        return (
            f"{self.replicas} worker(s) of {self.target}: {missing} new, {len(reused)} started "
            f"again, {running} already running; the others stop once these are healthy"
        )

    def finish(self, keep: str = "") -> str:
        """The target's workers healthy, then the others stopped in the background, but those
        of release `keep` (the API's standby): parked when their image can, else kept
        stopped."""
        everything = self.containers.of(SERVICE)
        mine = [c.name for c in everything if c.release == self.target]
        if len(mine) < self.replicas:
            raise RolloutError(
                f"{len(mine)} of {self.replicas} worker(s) of {self.target} exist; see the "
                "output of the step that started them"
            )
        # A worker kept stopped by a standby is started in the background by start(): it
        # may not run yet.
        wait_passing(
            self.containers, mine, WORKER_CHECK, self.health_timeout, "worker", START_SETTLE
        )
        others = [c for c in everything if c.release != self.target]
        kept = [c for c in others if keep and c.release == keep]
        # Any other release's workers (an older standby's included) go.
        gone = [c.name for c in others if c not in kept and c.state != "running"]
        if gone:
            self.remote.run(docker.remove(gone))
        leaving = [c.name for c in others if c not in kept and c.state == "running"]
        if leaving:
            self.remote.run(docker.stop_later(leaving, WORKER_STOP_TIMEOUT, remove=True))
        # The standby's: those that can park stay running, idle (a rollback resumes them).
        running = [c.name for c in kept if c.state == "running"]
        parking = self.parkable(running)
        if parking:
            self.remote.run(docker.send_signal(parking, "USR1", "park the other workers"))
        stopping = [name for name in running if name not in parking]
        if stopping:
            self.remote.run(docker.stop_later(stopping, WORKER_STOP_TIMEOUT, remove=False))
        notes = [f"{len(parking)} other(s) parked for the standby"] if parking else []
        notes += [f"{len(stopping)} other(s) stopping, kept for the standby"] if stopping else []
        notes += [f"{len(leaving)} other(s) stopping, then removed"] if leaving else []
        return f"{len(mine)} worker(s) of {self.target} healthy" + "".join(
            f"; {note}" for note in notes
        )

    def parkable(self, names: list[str]) -> list[str]:
        """Those of `names` whose image's worker parks on SIGUSR1 (its image's label)."""
        if not names:
            return []
        out = self.remote.run(docker.parkable(names), check=False).stdout
        able = {
            words[0].lstrip("/")
            for words in (line.split() for line in out.splitlines())
            if len(words) == 2 and words[1] == "1"
        }
        return [name for name in names if name in able]
