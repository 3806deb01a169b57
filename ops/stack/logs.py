"""`invoke logs`: show, follow or search the logs of one service or of all.

Where the environment runs the central log collector (compose.runs_monitoring), its history is
searched (ops/monitoring/logsearch.py) in time order: a local stack's, one host's, or every
host's of a swarm (one collector per host, merged). --follow, the collector's own messages and
environments without it use `docker compose logs` (`docker service logs` on a swarm; over SSH
for hosts). Bad input fails before Docker or SSH is touched.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ops import compose, config
from ops.deploy.certificates import CERTBOT_SERVICE
from ops.errors import OpsError
from ops.monitoring import collectors, logsearch
from ops.remote import Remote
from ops.stack import host as hostops
from ops.stack.local import ONE_OFF_SERVICES, open_stack, service_names


@dataclass(frozen=True)
class Request:
    """What was asked, checked: the query for the history and how to stream instead."""

    env: config.Environment
    query: logsearch.Query
    service: str
    follow: bool
    since: str
    tail: int
    now: datetime

    @property
    def streams(self) -> bool:
        """Streamed by Docker rather than searched in the central history."""
        central = compose.runs_monitoring(self.env)
        return self.follow or not central or self.service == logsearch.COLLECTOR_SERVICE


def logs(
    env_name: str,
    service: str = "",
    follow: bool = False,
    since: str = "",
    tail: int = -1,
    grep: str = "",
    request_id: str = "",
) -> None:
    """tail < 0: the default (200 lines, or every match of a search with --since, --grep or
    --request-id); 0: no limit."""
    env = config.load(env_name)
    asked = request(env, service, follow, since, tail, grep, request_id)
    if env.target != "ssh":
        local(asked)
    elif asked.streams:
        hostops.logs(
            env,
            service=service,
            follow=follow,
            since=logsearch.docker_since(since, asked.now) if since else "",
            tail=tail if tail >= 0 else logsearch.DEFAULT_TAIL,
        )
    elif env.is_swarm:
        on_swarm(asked)
    else:
        on_host(asked)


def request(
    env: config.Environment,
    service: str,
    follow: bool,
    since: str,
    tail: int,
    grep: str,
    request_id: str,
) -> Request:
    """The request checked (a bad --since, --grep or --request-id, a search without the
    collector or with --follow is refused naming the fix)."""
    now = datetime.now(UTC)
    searching = bool(grep or request_id)
    pattern = logsearch.compile_grep(grep) if grep else None
    wanted_id = logsearch.check_request_id(request_id) if request_id else ""
    since_at = logsearch.parse_since(since, now) if since else None
    if searching and not compose.runs_monitoring(env):
        raise OpsError(no_history(env))
    if searching and follow:
        raise OpsError(
            "--follow streams new lines as they come and does not search. Fix: drop --follow "
            "to search the history, or follow one service with --service"
        )
    query = logsearch.Query(service=service, since=since_at, grep=pattern, request_id=wanted_id)
    query = replace(query, tail=logsearch.tail_for(tail, query))
    return Request(env, query, service, follow, since, tail, now)


def no_history(env: config.Environment) -> str:
    first = (
        f"{env.name} does not run the central log collector (monitoring.enabled is false in "
        f"{env.source}), so there is no history to search. Fix: enable monitoring and "
    )
    if env.target == "ssh":
        piped = f"`invoke logs --env={env.name} --since=1h --tail=0 | grep <text>`"
        return first + f"`invoke deploy --env={env.name}`, or {piped}"
    return first + f"`invoke up --env={env.name}`, or pipe `invoke logs --env={env.name}` into grep"


def say_none_matched(project: str) -> None:
    print(f"no line of {project}'s central logs matches", file=sys.stderr)


def local(asked: Request) -> None:
    """A stack on this machine: its collector's history, or `docker compose logs`."""
    env = asked.env
    stack = open_stack(env.name, follow_running=False)
    if asked.service:
        logsearch.check_service(asked.service, service_names(stack.compose().config()))
    if asked.streams:
        tail = asked.tail
        args = [
            "logs",
            "--tail",
            "all" if tail == 0 else str(tail if tail > 0 else logsearch.DEFAULT_TAIL),
        ]
        if asked.follow:
            args.append("--follow")
        if asked.since:
            args += ["--since", logsearch.docker_since(asked.since, asked.now)]
        if asked.service:
            args.append(asked.service)
        stack.compose().run(*args, what="docker compose logs")
        return
    collector = collectors.LocalCollector.find(stack.docker(), env.project_name)
    if logsearch.print_search(collector, asked.query) == 0:
        say_none_matched(env.project_name)


def on_host(asked: Request) -> None:
    """One host: the collector there, searched over SSH."""
    env = asked.env
    with Remote(env.hosts[0]) as remote:
        collector = collectors.RemoteCollector.find(remote, env.project_name, env.name)
        if asked.service:
            # One-off containers (migrate, certbot) are removed once done; their lines stay in
            # the history.
            known = collectors.services_on_host(remote, env.project_name)
            logsearch.check_service(asked.service, {*known, *ONE_OFF_SERVICES, CERTBOT_SERVICE})
        printed = logsearch.print_search(collector, asked.query)
    if printed == 0:
        say_none_matched(env.project_name)


def on_swarm(asked: Request) -> None:
    """Several hosts: every host's collector over its own connection, merged in time order. A
    host that cannot be searched is named, and the command fails after the other hosts' lines:
    a partial search is never taken for a complete one."""
    env = asked.env
    with ExitStack() as connections:
        remotes = [connections.enter_context(Remote(host)) for host in env.hosts]
        if asked.service:
            # The manager knows the stack's services, wherever their tasks run.
            known = collectors.swarm_services(remotes[0], env.project_name)
            logsearch.check_service(asked.service, {*known, *ONE_OFF_SERVICES, CERTBOT_SERVICE})
        found = collectors.print_hosts_search(remotes, env.project_name, env.name, asked.query)
    if found.printed == 0 and len(found.skipped) < len(env.hosts):
        say_none_matched(env.project_name)
    if found.skipped:
        # After the lines, so that it is the last thing seen; and an exit status that tells a
        # script the search is incomplete.
        raise OpsError(
            f"the central logs of {len(found.skipped)} of {len(env.hosts)} hosts were "
            "not searched, so lines of the containers that ran there are missing"
            + (" (the lines above are the other hosts')" if found.printed else "")
            + ": "
            + "; ".join(found.skipped)
        )
