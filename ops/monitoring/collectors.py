"""Where the central logs' collectors run, and searching them there.

`LocalCollector` is the collector of a stack on this machine's engine (`docker exec`
subprocesses); `RemoteCollector` the one of a host (`docker exec` over SSH, its commands echoed
because an operator may want to run them by hand). Several hosts (Docker Swarm) run a collector
each, holding the lines of the containers on that host: `print_hosts_search` searches every one
and merges their matches in time order. The search itself is ops/monitoring/logsearch.py.
"""

from __future__ import annotations

import shlex
import subprocess  # nosec B404: fixed docker argv, no shell
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass

import docker

from ops import proc
from ops.errors import OpsError
from ops.executor import Executor, query
from ops.monitoring.logsearch import (
    COLLECTOR_SERVICE,
    READER,
    Collector,
    LogFile,
    Query,
    merged,
    newest_entries,
    parse_listing,
    prefilters,
    print_all,
    search_entries,
    select_files,
)


def reader_list() -> list[str]:
    """The words of the command, in the container, that lists the files."""
    return [READER, "list"]


def reader_cat(names: Sequence[str], fixed: Sequence[str]) -> list[str]:
    """The words of the command, in the container, that prints the files' lines in order
    (only those holding every `fixed` string)."""
    words = [READER, "cat"]
    for value in fixed:
        words += ["--fixed", value]
    return words + list(names)


def find_collector(engine: docker.DockerClient, project: str) -> str:
    """Name of the running `logs` container of the compose project."""
    labels = [
        f"com.docker.compose.project={project}",
        f"com.docker.compose.service={COLLECTOR_SERVICE}",
    ]
    found = engine.containers.list(filters={"label": labels, "status": "running"})
    if not found:
        raise OpsError(
            f"the log collector of {project} (service {COLLECTOR_SERVICE}) is not running. "
            "Fix: start the stack with `invoke up`; `invoke status` shows what runs"
        )
    return str(found[0].name)


def _echo(argv: Sequence[str]) -> None:
    # On stderr: stdout carries only the lines found, for pipes.
    print(f"$ {shlex.join(argv)}", file=sys.stderr, flush=True)


def list_files(container: str) -> list[LogFile]:
    """The collector's files, oldest first (a container of this machine's engine)."""
    argv = ["docker", "exec", container, *reader_list()]
    _echo(argv)
    result = proc.run(argv, capture=True, check=False, quiet=True, what="list the central logs")
    if result.returncode != 0:
        raise OpsError(
            f"listing the central logs failed (exit {result.returncode}): "
            f"{result.stderr.strip()[-1000:]}. Fix: check `docker logs {container}`"
        )
    return parse_listing(result.stdout)


@contextmanager
def read_lines(
    container: str, names: Sequence[str], fixed: Sequence[str]
) -> Iterator[Iterator[str]]:
    """The raw lines of the named files (prefiltered by `fixed`), streamed from the container
    (of this machine's engine).

    Stops the reader when the caller leaves early (a closed pipe, an interrupt).
    """
    argv = ["docker", "exec", container, *reader_cat(names, fixed)]
    _echo(argv)
    process = subprocess.Popen(  # noqa: S603  # nosec B603: argv list, no shell
        argv,
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    if process.stdout is None:  # never: stdout=PIPE
        raise OpsError("internal: docker exec has no output pipe")
    finished = False
    try:
        yield iter(process.stdout)
        finished = True
    finally:
        if not finished:
            process.kill()
        process.stdout.close()
        code = process.wait()
    if finished and code != 0:
        raise OpsError(
            f"reading the central logs failed (exit {code}). Fix: check `docker logs {container}`"
        )


@dataclass(frozen=True)
class LocalCollector:
    """The collector of a stack on this machine's engine: `docker exec` subprocesses."""

    container: str

    @classmethod
    def find(cls, engine: docker.DockerClient, project: str) -> LocalCollector:
        return cls(find_collector(engine, project))

    def list_files(self) -> list[LogFile]:
        return list_files(self.container)

    def read_lines(
        self, names: Sequence[str], fixed: Sequence[str]
    ) -> AbstractContextManager[Iterator[str]]:
        return read_lines(self.container, names, fixed)


class RemoteCollector:
    """The collector of a one-host environment: `docker exec` on the host, over SSH."""

    def __init__(self, remote: Executor, container: str, env_name: str) -> None:
        self.remote = remote
        self.container = container
        self.env_name = env_name

    @classmethod
    def find(
        cls, remote: Executor, project: str, env_name: str, swarm: bool = False
    ) -> RemoteCollector:
        """The running `logs` container of the compose project on the host; with `swarm`, the
        host's task of the stack's global service `<project>_logs`."""
        if swarm:
            service = f"{project}_{COLLECTOR_SERVICE}"
            labels = ["--filter", f"label=com.docker.swarm.service.name={service}"]
        else:
            service = COLLECTOR_SERVICE
            labels = [
                *_label_filters(project),
                "--filter",
                f"label=com.docker.compose.service={COLLECTOR_SERVICE}",
                "--filter",
                "label=com.docker.compose.oneoff=False",
            ]
        command = shlex.join(("docker", "ps", "-q", *labels, "--filter", "status=running"))
        result = remote.run(query(command, "find the log collector"), echo=True)
        found = result.stdout.split()
        if not found:
            raise OpsError(
                f"the log collector of {project} (service {service}) is not running on "
                f"{remote.label}. Fix: `invoke deploy --env={env_name}` starts it (with "
                f"monitoring.enabled); `invoke status --env={env_name}` shows what runs, and "
                f"`invoke logs --env={env_name} --follow` shows the containers' own logs meanwhile"
            )
        return cls(remote, found[0], env_name)

    def _fix(self) -> str:
        return (
            f"Fix: see the collector's own messages with `invoke logs --env={self.env_name} "
            f"--service {COLLECTOR_SERVICE}`"
        )

    def list_files(self) -> list[LogFile]:
        command = shlex.join(("docker", "exec", self.container, *reader_list()))
        result = self.remote.run(query(command, "list the central logs"), check=False, echo=True)
        if not result.ok:
            raise OpsError(
                f"listing the central logs on {self.remote.label} failed (exit "
                f"{result.code}): {result.stderr.strip()[-1000:]}. {self._fix()}"
            )
        return parse_listing(result.stdout)

    @contextmanager
    def read_lines(self, names: Sequence[str], fixed: Sequence[str]) -> Iterator[Iterator[str]]:
        command = shlex.join(("docker", "exec", self.container, *reader_cat(names, fixed)))
        finished = False
        try:
            with self.remote.lines(query(command, "read the central logs"), echo=True) as lines:
                yield lines
                finished = True
        except OpsError as exc:
            if not finished:
                raise
            # The reader ran to its end and failed (its stderr is in the message).
            raise OpsError(f"{exc}. {self._fix()}") from exc


def services_on_host(remote: Executor, project: str) -> list[str]:
    """The compose services of the project's containers on the host, running or not (one
    `docker ps`, much cheaper than the release's `docker compose config`)."""
    command = shlex.join(
        (
            "docker",
            "ps",
            "-a",
            *_label_filters(project),
            "--format",
            '{{.Label "com.docker.compose.service"}}',
        )
    )
    result = remote.run(query(command, "list the services"), echo=True)
    return sorted({name for name in result.stdout.split() if name})


def swarm_services(remote: Executor, stack: str) -> list[str]:
    """The services of the swarm stack, without the `<stack>_` prefix (one `docker service ls`
    on the manager)."""
    command = shlex.join(
        (
            "docker",
            "service",
            "ls",
            "--filter",
            f"label=com.docker.stack.namespace={stack}",
            "--format",
            "{{.Name}}",
        )
    )
    result = remote.run(query(command, "list the services"), echo=True)
    prefix = f"{stack}_"
    return sorted(
        {name.removeprefix(prefix) for name in result.stdout.split() if name.startswith(prefix)}
    )


def _label_filters(project: str) -> list[str]:
    return ["--filter", f"label=com.docker.compose.project={project}"]


@dataclass(frozen=True)
class HostsSearch:
    """What print_hosts_search did: lines printed, and the hosts it could not search, each
    with the reason (their lines are missing from the result)."""

    printed: int
    skipped: list[str]


def print_hosts_search(
    remotes: Sequence[Executor], stack: str, env_name: str, query: Query
) -> HostsSearch:
    """Search the collector of every host of a swarm and print the matches of all of them on
    stdout, merged in time order (`query.tail`: the newest of them all).

    A host whose collector cannot be found or listed (the host is down, the collector is not
    running) is skipped with a warning on stderr naming it and the fix, so that the others'
    lines are still shown; the caller reports the skipped hosts again after the lines.
    """
    found: list[tuple[Collector, list[str]]] = []
    skipped = []
    for remote in remotes:
        try:
            collector = RemoteCollector.find(remote, stack, env_name, swarm=True)
            names = select_files(collector.list_files(), query.since)
        except OpsError as exc:
            print(
                f"warning: the central logs of {remote.label} are NOT searched, its lines "
                f"are missing below: {exc}",
                file=sys.stderr,
                flush=True,
            )
            skipped.append(f"{remote.label}: {exc}")
            continue
        if names:
            found.append((collector, names))
    if query.tail > 0:
        # Each host's newest `tail` holds every line of the newest `tail` of them all.
        newest_of_each = [newest_entries(collector, names, query) for collector, names in found]
        return HostsSearch(print_all(merged(newest_of_each, query.tail)), skipped)
    with ExitStack() as readers:
        streams = [
            search_entries(
                readers.enter_context(collector.read_lines(names, prefilters(query))), query
            )
            for collector, names in found
        ]
        return HostsSearch(print_all(merged(streams)), skipped)
