"""The swarm of an environment's hosts, through its manager (the first host): forming it,
deploying stack files, and waiting until the services converged (or failing with what Swarm
says went wrong)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ops import config
from ops.deploy.commands import swarm as commands
from ops.deploy.rollout import RolloutError
from ops.deploy.swarm.stackfile import NODE_LABELS
from ops.errors import OpsError
from ops.executor import Executor

CONVERGE_TIMEOUT = 600.0
# Tasks of one service failing (or rejected) this often during a deploy: it will not converge.
FAILED_TASKS = 3


def converged(services: Mapping[str, Mapping[str, Any]]) -> tuple[bool, str]:
    """(done, problem) from `docker service inspect` of the stack's services.

    Done when every service runs its desired replicas and no update is in progress; a problem
    (never done) when Swarm paused an update or rolled it back.
    """
    waiting = []
    for name, info in sorted(services.items()):
        state = info.get("update_state") or ""
        if state in ("rollback_started", "rollback_completed", "rollback_paused", "paused"):
            message = info.get("update_message") or ""
            if state == "paused":
                raise OpsError(f"Swarm paused the update of {name}: {message}")
            raise OpsError(
                f"Swarm rolled back the update of {name} ({state.replace('_', ' ')}): {message}. "
                "The service runs its previous version"
            )
        running, desired = info.get("running", 0), info.get("desired", 0)
        if running != desired and info.get("failed", 0) >= FAILED_TASKS:
            raise OpsError(
                f"{name}: {info['failed']} of its tasks failed since the deploy began, the last "
                f"with: {info.get('error') or 'no error message'}"
            )
        if state == "updating" or running != desired:
            waiting.append(f"{name} {running}/{desired}" + (" updating" if state else ""))
    return (not waiting), ", ".join(waiting)


def task_age(state: str) -> float:
    """Seconds since a task's state began, from `docker stack ps`'s "Rejected 4 seconds ago"
    (infinity when the text says nothing usable)."""
    if "less than a second" in state:
        return 0.0
    words = state.split()
    units = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
    for number, unit in itertools.pairwise(words):
        base = unit.rstrip("s")
        if base not in units:
            continue
        if number.lower() in ("a", "an", "about"):
            return float(units[base])
        try:
            return float(number) * units[base]
        except ValueError:
            continue
    return float("inf")


class Swarm:
    """The swarm as its manager sees it; `hosts` are every host with its executor, the
    manager first."""

    def __init__(
        self,
        stack: str,
        hosts: Sequence[tuple[config.Host, Executor]],
        refresh: Callable[[], None] = lambda: None,
    ) -> None:
        self.stack = stack
        self.hosts = list(hosts)
        self.manager = self.hosts[0][1]
        # Called while waiting: stops the wait once the deploy lock is lost.
        self.refresh = refresh

    # ------------------------------------------------------------------ forming it

    def plan(self) -> str:
        """What forming the swarm needs; a host already in another swarm stops the deploy."""
        states: list[tuple[config.Host, str, str]] = []
        for host, remote in self.hosts:
            words = remote.run(commands.node_state()).stdout.split()
            states.append(
                (host, words[0] if words else "inactive", words[1] if len(words) > 1 else "")
            )
        members: set[str] = set()
        if states[0][1] == "active":
            members = set(self.manager.run(commands.node_ids()).stdout.split())
        for host, state, node in states[1:]:
            if state == "active" and node[:12] not in {m[:12] for m in members}:
                raise OpsError(
                    f"{host.label} is in a swarm that {self.hosts[0][0].label} does not manage. "
                    "Fix: `docker swarm leave --force` on that host if it runs nothing else"
                )
        todo = [h.label for h, s, _ in states if s != "active"]
        return "form with " + ", ".join(todo) if todo else "formed"

    def form(self) -> str:
        """Init on the manager, join the others (with a token rotated right after), label the
        manager: it runs the data stores and nginx."""
        first = self.hosts[0][0]
        done = []
        if self.manager.run(commands.node_state()).stdout.split()[:1] != ["active"]:
            self.manager.run(commands.init(first.advertise))
            done.append(f"initialised on {first.label}")
        joining = [
            (host, remote)
            for host, remote in self.hosts[1:]
            if remote.run(commands.node_state()).stdout.split()[:1] != ["active"]
        ]
        if joining:
            token = self.manager.run(commands.worker_token()).stdout.strip()
            try:
                for host, remote in joining:
                    remote.run(commands.join(host.advertise, token, first.advertise, host.label))
                    done.append(f"{host.label} joined")
            finally:
                # Even after a failed join: the token was on the hosts' command lines.
                self.manager.run(commands.rotate_token())
        node = self.manager.run(commands.node_state()).stdout.split()[-1]
        self.manager.run(commands.label_node(node, NODE_LABELS))
        count = self.manager.run(commands.node_count()).stdout.strip()
        return ", ".join(done) or f"formed ({count} nodes)"

    # ------------------------------------------------------------------ its services

    def service_states(self, within: float = 0.0) -> dict[str, dict[str, Any]]:
        """Per service: update state and message, desired and running replicas, and the tasks
        that failed or were rejected in the last `within` seconds (with the latest error)."""
        ids = self.manager.run(commands.service_ids(self.stack)).stdout.split()
        if not ids:
            return {}
        inspected = self.manager.run(commands.inspect_services(ids)).stdout
        nodes = 0
        if "\tglobal" in inspected:
            # A global service runs one task per node that can take one (Ready and Active).
            listed = self.manager.run(commands.ready_nodes()).stdout
            nodes = listed.split("\n").count("Ready Active")
        result: dict[str, dict[str, Any]] = {}
        for line in inspected.splitlines():
            name, state, message, desired = ([*line.split("\t"), "", "", "", ""])[:4]
            wanted = nodes if desired == "global" else int(desired or 0)
            result[name.removeprefix(f"{self.stack}_")] = {
                "update_state": state,
                "update_message": message,
                "desired": wanted,
                "running": 0,
                "failed": 0,
                "error": "",
            }
        self._count_tasks(result, within)
        return result

    def _count_tasks(self, result: dict[str, dict[str, Any]], within: float) -> None:
        for line in self.manager.run(commands.tasks(self.stack)).stdout.splitlines():
            name, desired_state, state, error = [*line.split("\t"), "", "", ""][:4]
            service = name.strip(" \\_").removeprefix(f"{self.stack}_").split(".", 1)[0]
            if service not in result:
                continue
            if desired_state == "Running" and state.startswith("Running"):
                result[service]["running"] += 1
            elif state.startswith(("Rejected", "Failed")) and task_age(state) < within:
                result[service]["failed"] += 1
                result[service]["error"] = result[service]["error"] or error

    def wait_converged(self, only: Iterable[str] = (), timeout: float = CONVERGE_TIMEOUT) -> str:
        wanted = set(only)
        began = time.monotonic()
        deadline = began + timeout
        last = ""
        while True:
            self.refresh()
            states = {
                k: v
                for k, v in self.service_states(time.monotonic() - began).items()
                if not wanted or k in wanted
            }
            done, waiting = converged(states)
            if done and states:
                return f"{len(states)} service(s) converged"
            if waiting != last:
                print(f"    waiting: {waiting} [+{time.monotonic() - began:.0f}s]", flush=True)
                last = waiting
            if time.monotonic() > deadline:
                raise RolloutError(
                    f"the stack did not converge within {timeout:.0f}s: {waiting}",
                    self.manager.run(commands.task_errors(self.stack), check=False).stdout,
                )
            time.sleep(2.0)

    def running(self, service: str) -> bool:
        return bool(self.service_states().get(service, {}).get("running", 0))
