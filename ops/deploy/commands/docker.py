"""The host's Docker engine: containers, images and volumes of a stack."""

from __future__ import annotations

from collections.abc import Sequence

from ops.executor import Command, change, join, query, quote

RELEASE_LABEL = "org.slipway.release"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
STACK_LABEL = "com.docker.stack.namespace"
SWARM_SERVICE_LABEL = "com.docker.swarm.service.name"
# Tab-separated name, state and release label of a container (ops/deploy/rollout.py reads it).
SLOT_LABEL = "org.slipway.slot"
# The digest of the configuration a container was created from (ops/deploy/parts.py).
CONFIG_LABEL = "org.slipway.config"
CONTAINER_FORMAT = (
    '{{.Names}}\t{{.State}}\t{{.Label "' + RELEASE_LABEL + '"}}\t{{.Label "' + SLOT_LABEL + '"}}'
)


def containers(project: str, service: str) -> Command:
    """The compose project's containers of `service` (one-offs excluded), any state."""
    return query(
        "docker ps -a "
        f"--filter label={PROJECT_LABEL}={quote(project)} "
        "--filter label=com.docker.compose.oneoff=False "
        f"--filter label={SERVICE_LABEL}={quote(service)} "
        f"--format {quote(CONTAINER_FORMAT)}",
        f"list {service} containers",
    )


def state_and_healthcheck(name: str) -> Command:
    return query(
        "docker inspect -f '{{.State.Status}}\t{{json .Config.Healthcheck}}' " + quote(name),
        f"inspect {name}",
    )


def probe(name: str, argv: Sequence[str]) -> Command:
    """A health probe run inside a container now (it reads; it changes nothing)."""
    return query(f"docker exec {quote(name)} {join(argv)}", f"probe {name}")


def probe_all(names: Sequence[str], argv: Sequence[str]) -> Command:
    """`argv` run in each running container of `names` at once: one line per container,
    `<name> <exit code> <last output>`, or `<name> state:<state>` when it is not running."""
    each = (
        "( s=$(docker inspect -f '{{.State.Status}}' \"$n\" 2>/dev/null); "
        'if [ "$s" != running ]; then echo "$n state:${s:-gone}"; else '
        f'out=$(docker exec "$n" {join(argv)} 2>&1); code=$?; '
        'echo "$n $code $(printf %s "$out" | tail -c 300 | tr "\\n" " ")"; fi ) &'
    )
    return query(f"for n in {join(names)}; do {each} done; wait", "probe containers")


def recent_logs(name: str, lines: int = 60) -> Command:
    return query(f"docker logs --tail {lines} {quote(name)} 2>&1", f"logs of {name}")


def state(name: str) -> Command:
    return query(f"docker inspect -f '{{{{json .State}}}}' {quote(name)}", f"state of {name}")


def stop(names: Sequence[str], timeout: int) -> Command:
    """Stop gracefully: SIGTERM, then SIGKILL after `timeout` seconds."""
    return change(f"docker stop -t {timeout} {join(names)} >/dev/null", "stop replicas")


def start(names: Sequence[str]) -> Command:
    return change(f"docker start {join(names)} >/dev/null", "start stopped containers")


PARK_LABEL = "org.slipway.worker.park"


def send_signal(names: Sequence[str], signal: str, what: str) -> Command:
    """`docker kill -s <signal>`: the processes decide what it means (a worker parks on USR1
    and resumes on USR2)."""
    return change(f"docker kill -s {quote(signal)} {join(names)} >/dev/null", what)


def parkable(names: Sequence[str]) -> Command:
    """`<name> <label>` per container: the label is 1 when its image's worker parks on SIGUSR1
    (an older image's would die of it)."""
    return query(
        "docker inspect -f '{{.Name}} {{index .Config.Labels \""
        + PARK_LABEL
        + "\"}}' "
        + join(names),
        "which workers can park",
    )


def start_later(names: Sequence[str]) -> Command:
    """Start stopped containers in the background on the host (nothing here waits for it)."""
    script = f"docker start {join(names)}"
    return change(
        f"nohup sh -c {quote(script)} </dev/null >/dev/null 2>&1 &",
        "start stopped containers in the background",
        shown=f"in the background on the host: {script}",
    )


def stop_later(names: Sequence[str], timeout: int, remove: bool) -> Command:
    """Stop gracefully in the background on the host (nothing here waits for it), then remove
    them unless they are kept stopped."""
    then = f"; docker rm -f {join(names)}" if remove else ""
    script = f"docker stop -t {timeout} {join(names)}{then}"
    return change(
        f"nohup sh -c {quote(script)} </dev/null >/dev/null 2>&1 &",
        "stop containers in the background",
        shown=f"in the background on the host: {script}",
    )


def remove(names: Sequence[str]) -> Command:
    return change(f"docker rm -f {join(names)} >/dev/null", "remove containers")


def image_id(image: str) -> Command:
    """The id of an image (a reference or an id); empty output when the host has none."""
    return query(f"docker image inspect -f '{{{{.Id}}}}' {quote(image)} 2>/dev/null", "image id")


def image_ids(images: Sequence[str]) -> Command:
    """Each image (a reference or an id) and its id on the host, tab-separated, one per line
    (an empty id when the host has no such image): one command for all of them. One `docker
    image inspect` answers when the host has them all (its lines in the order asked); when one
    is missing, each is inspected on its own, all at once (a line is one short write: lines
    never interleave)."""
    return query(
        f"set -- {join(images)}; if ids=$(docker image inspect -f '{{{{.Id}}}}' \"$@\" "
        "2>/dev/null); then printf '%s\\n' \"$ids\" | while read -r id; do "
        'printf \'%s\\t%s\\n\' "$1" "$id"; shift; done; else for i; do '
        "( id=$(docker image inspect -f '{{.Id}}' \"$i\" 2>/dev/null); "
        'printf \'%s\\t%s\\n\' "$i" "$id" ) & done; wait; fi',
        "image ids",
    )


def tags(pairs: Sequence[tuple[str, str]]) -> Command:
    """`docker tag <image> <ref>` for each pair, in one command."""
    line = " && ".join(f"docker tag {quote(image)} {quote(ref)}" for image, ref in pairs)
    return change(line, f"tag {', '.join(ref for _, ref in pairs)}")


def tag(image: str, ref: str) -> Command:
    return change(f"docker tag {quote(image)} {quote(ref)}", f"tag {ref}")


def load(ref: str) -> Command:
    """`docker load` of an image tar on standard input."""
    return change("docker load -q", f"ship {ref}", shown=f"docker load -q   # {ref}, from here")


def image_refs(repository: str) -> Command:
    return query(
        f"docker images {quote(repository)} --format '{{{{.Repository}}}}:{{{{.Tag}}}}'",
        f"images of {repository}",
    )


def remove_images(refs: Sequence[str]) -> Command:
    """Remove images; those a container still uses stay (docker refuses, and that is fine)."""
    return change(f"docker image rm {join(refs)} >/dev/null 2>&1; true", "remove unused images")


def create_volume(name: str, label: str = "") -> Command:
    labelled = f"--label {quote(label)} " if label else ""
    return change(f"docker volume create {labelled}{quote(name)} >/dev/null", f"volume {name}")


def compose_namespaces(project: str) -> Command:
    """Per container of the compose project: its stack namespace followed by `-` (a bare `-`
    is a container Compose started, not Swarm)."""
    return query(
        f"docker ps -a --filter label={PROJECT_LABEL}={quote(project)} "
        "--format '{{.Label \"" + STACK_LABEL + "\"}}-'",
        "compose containers",
    )


def running_services(project: str) -> Command:
    """The services the project runs here, by Compose or (an environment that had several
    hosts) by Swarm."""
    return query(
        f"docker ps --filter label={PROJECT_LABEL}={quote(project)} "
        "--format '{{.Label \"" + SERVICE_LABEL + "\"}}'; "
        f"docker ps --filter label={STACK_LABEL}={quote(project)} "
        "--format '{{.Label \"" + SWARM_SERVICE_LABEL + "\"}}'",
        "services running",
    )


def log_drivers(project: str) -> Command:
    return query(
        f"docker ps -q --filter label={PROJECT_LABEL}={quote(project)} | xargs -r "
        "docker inspect -f '{{.HostConfig.LogConfig.Type}}'",
        "log drivers",
    )


def remove_services(project: str, services: Sequence[str]) -> Command:
    """Remove every container of these compose services (their volumes stay)."""
    names = " ".join(quote(n) for n in services)
    return change(
        f"for s in {names}; do docker ps -aq --filter label={PROJECT_LABEL}="
        f"{quote(project)} --filter label={SERVICE_LABEL}=$s; done | "
        "xargs -r docker rm -f >/dev/null",
        "remove the containers of " + ", ".join(services),
    )


def swarm_task(stack: str, service: str) -> Command:
    """The running task containers of a stack's service on this host."""
    label = f"label={SWARM_SERVICE_LABEL}={stack}_{service}"
    return query(f"docker ps -q --filter {quote(label)}", f"find the {service} task")


def exec_in(
    container: str, argv: Sequence[str], what: str, timeout: float | None = None
) -> Command:
    """A command in a running container, its output and errors on one stream."""
    return change(f"docker exec {quote(container)} {join(argv)} 2>&1", what, timeout)


# What configuration each container of a compose project was created from: service, state,
# status (with its health) and the configuration label.
CONFIG_FORMAT = (
    '{{.Label "' + SERVICE_LABEL + '"}}\t{{.State}}\t{{.Status}}\t{{.Label "' + CONFIG_LABEL + '"}}'
)


def configs(project: str) -> Command:
    """Every container of the compose project (one-offs excluded) with its configuration
    label."""
    return query(
        f"docker ps -a --filter label={PROJECT_LABEL}={quote(project)} "
        "--filter label=com.docker.compose.oneoff=False "
        f"--format {quote(CONFIG_FORMAT)}",
        "what the containers run",
    )


SCHEMA_REVISION = "SELECT version_num FROM alembic_version"


def schema_revision(container: str) -> Command:
    """The revision the database's schema is at (alembic's table), read over PostgreSQL's
    local socket in its container: the output is the revision, or psql's error."""
    argv = ["docker", "exec", container, "psql", "-X", "-q", "-A", "-t", "-d", "listings"]
    return query(f"{join([*argv, '-c', SCHEMA_REVISION])} 2>&1", "read the schema revision")
