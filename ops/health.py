"""Waiting for a stack: every container healthy, then /ready through nginx over verified TLS.

On timeout the failing containers' last log lines and health-check output are printed, the way
Kamal does, so the reason is on screen without a second command.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.errors import DockerException

from ops.errors import OpsError

LOG_LINES = 40


@dataclass(frozen=True)
class ContainerState:
    """What one container of the project is doing."""

    name: str
    service: str
    status: str  # running | exited | restarting | created | ...
    health: str  # healthy | unhealthy | starting | none
    exit_code: int
    restart_policy: str
    number: str = "1"

    @property
    def short(self) -> str:
        """service-N, the way compose numbers replicas."""
        return f"{self.service}-{self.number}"

    @property
    def ready(self) -> bool:
        """Healthy, running without a healthcheck, or a one-off that completed successfully."""
        if self.status == "exited":
            return self.exit_code == 0 and self.restart_policy in ("", "no")
        if self.status != "running":
            return False
        return self.health in ("healthy", "none")

    @property
    def label(self) -> str:
        if self.status == "exited":
            return f"exited({self.exit_code})"
        return self.health if self.status == "running" and self.health != "none" else self.status


def _state(container: Any) -> ContainerState:
    attrs = container.attrs
    state = attrs.get("State", {})
    labels = attrs.get("Config", {}).get("Labels", {}) or {}
    return ContainerState(
        name=container.name,
        service=labels.get("com.docker.compose.service", "?"),
        status=state.get("Status", "?"),
        health=(state.get("Health") or {}).get("Status", "none"),
        exit_code=int(state.get("ExitCode", 0)),
        restart_policy=(attrs.get("HostConfig", {}).get("RestartPolicy") or {}).get("Name", ""),
        number=labels.get("com.docker.compose.container-number", "1"),
    )


def project_containers(engine: docker.DockerClient, project: str) -> list[Any]:
    """Containers of a compose project (one-off `run` containers excluded)."""
    containers = engine.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"}
    )
    return [
        c
        for c in containers
        if (c.labels or {}).get("com.docker.compose.oneoff", "False") != "True"
    ]


def states(engine: docker.DockerClient, project: str) -> list[ContainerState]:
    """Current state of every container of the project, sorted by name."""
    try:
        return sorted(
            (_state(c) for c in project_containers(engine, project)), key=lambda s: s.name
        )
    except DockerException as exc:
        raise OpsError(f"cannot list containers of {project}: {exc}") from exc


def summarize(current: Iterable[ContainerState], expected: Iterable[str]) -> tuple[bool, str]:
    """(all ready?, one line "api-1 healthy, nginx-1 starting, worker: no container")."""
    current = list(current)
    parts = [f"{s.short} {s.label}" for s in current]
    present = {s.service for s in current}
    missing = sorted(set(expected) - present)
    parts += [f"{service}: no container" for service in missing]
    ok = bool(current) and not missing and all(s.ready for s in current)
    return ok, ", ".join(parts)


def failure_details(engine: docker.DockerClient, project: str) -> str:
    """Last logs and health-check output of every container that is not ready."""
    chunks: list[str] = []
    for container in project_containers(engine, project):
        state = _state(container)
        if state.ready:
            continue
        chunks.append(f"----- {state.name}: {state.label} -----")
        error = str(container.attrs.get("State", {}).get("Error", "")).strip()
        if error:
            chunks.append(f"  engine error: {error}")
        health = (container.attrs.get("State", {}).get("Health") or {}).get("Log") or []
        for entry in health[-3:]:
            output = str(entry.get("Output", "")).strip().replace("\n", " | ")
            chunks.append(f"  health check exit {entry.get('ExitCode')}: {output[:300]}")
        try:
            logs = container.logs(tail=LOG_LINES).decode("utf-8", "replace").rstrip()
        except DockerException as exc:
            logs = f"(logs unavailable: {exc})"
        chunks.append(f"  last {LOG_LINES} log lines:")
        chunks.extend(f"  | {line}" for line in logs.splitlines())
    return "\n".join(chunks)


def wait_healthy(
    engine: docker.DockerClient,
    project: str,
    expected_services: Iterable[str],
    timeout: float = 180.0,
    interval: float = 2.0,
    report_every: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Block until every container of the project is ready; OpsError with logs on timeout."""
    expected = list(expected_services)
    deadline = clock() + timeout
    last_report = float("-inf")
    last_line = ""
    while True:
        ok, line = summarize(states(engine, project), expected)
        now = clock()
        if ok:
            print(f"    all ready: {line}", flush=True)
            return f"{len(line.split(', '))} containers ready"
        if line != last_line or now - last_report >= report_every:
            remaining = max(0.0, deadline - now)
            print(f"    waiting ({remaining:.0f}s left): {line}", flush=True)
            last_report, last_line = now, line
        if now >= deadline:
            details = failure_details(engine, project)
            print(details, flush=True)
            raise OpsError(
                f"{project}: not every service became healthy within {timeout:.0f}s ({line}). "
                f"Logs and health output above; inspect with `invoke logs --service <name>`"
            )
        sleep(interval)


def check_started(engine: docker.DockerClient, project: str, services: Iterable[str]) -> None:
    """Fail now (not at the health deadline) when a container of `services` never started.

    `docker compose up` can exit 0 after the engine refused to start a container (a port
    already taken, a missing image), leaving it in state "created" or without a container.
    """
    wanted = set(services)
    current = [s for s in states(engine, project) if s.service in wanted]
    present = {s.service for s in current}
    broken = [s for s in current if s.status in ("created", "dead")]
    missing = sorted(wanted - present)
    if not broken and not missing:
        return
    print(failure_details(engine, project), flush=True)
    problems = [f"{s.short} {s.status}" for s in broken] + [f"{m}: no container" for m in missing]
    raise OpsError(
        f"{project}: container(s) did not start ({', '.join(problems)}); engine errors above. "
        "Fix the cause (e.g. a published port already in use: change `ports:` in the "
        "environment file), then run the command again"
    )


def public_get(
    client: httpx.Client, base_url: str, path: str, connect_to: str = ""
) -> httpx.Response:
    """GET base_url + path; with `connect_to` (host:port, an environment's `connect_to`) the
    connection goes there while the URL's name is kept for SNI, the Host header and the
    certificate check, like `curl --connect-to`."""
    return public_request(client, "GET", base_url, path, connect_to)


def public_request(
    client: httpx.Client,
    method: str,
    base_url: str,
    path: str,
    connect_to: str = "",
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    """`method` base_url + path (with `content`), reaching `connect_to` as public_get does."""
    url = httpx.URL(base_url.rstrip("/") + path)
    if not connect_to:
        return client.request(method, url, headers=headers, content=content)
    host, _, port = connect_to.rpartition(":")
    target = url.copy_with(host=host.strip("[]"), port=int(port))
    return client.request(
        method,
        target,
        headers={**(headers or {}), "Host": url.netloc.decode("ascii")},
        content=content,
        extensions={"sni_hostname": url.host},
    )


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """A client context trusting only the environment's CA."""
    return ssl.create_default_context(cafile=str(ca_file))


def wait_ready(
    url: str,
    ca_file: Path,
    timeout: float = 60.0,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll `url` (e.g. https://localhost:8443/ready) until it answers 200, TLS verified."""
    deadline = clock() + timeout
    last = ""
    context = tls_context(ca_file)
    with httpx.Client(verify=context, timeout=5.0) as client:
        while True:
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return f"{url} answered 200"
                current = f"HTTP {response.status_code}: {response.text[:300]}"
            except httpx.HTTPError as exc:
                current = f"{type(exc).__name__}: {exc}"
            if current != last:
                print(f"    {url}: {current}", flush=True)
                last = current
            if clock() >= deadline:
                raise OpsError(
                    f"{url} did not answer 200 within {timeout:.0f}s (last: {current}). "
                    "Fix: check `invoke status` and `invoke logs --service nginx`/`api`"
                )
            sleep(interval)
