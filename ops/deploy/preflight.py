"""Pre-flight checks of a deploy or rollback: everything that can be known before the host is
touched. Each reads (queries on the hosts, files and images here) and changes nothing; a
problem raises OpsError naming the fix while nothing has changed yet."""

from __future__ import annotations

from ops import compose, config, ports, secrets
from ops.compose import Build
from ops.deploy.commands import docker
from ops.deploy.commands import host as host_commands
from ops.deploy.commands import swarm as swarm_commands
from ops.deploy.images import LocalEngine, image_refs
from ops.errors import OpsError
from ops.executor import Executor


def check_target(env: config.Environment) -> None:
    if env.target != "ssh":
        raise OpsError(
            f"environment {env.name!r} has target: {env.target}; `invoke deploy` "
            "is for hosts reached over SSH (target: ssh). Fix: use `invoke up` for local"
        )


def check_alert_receivers_set(env: config.Environment, values: secrets.Secrets) -> None:
    """Production with monitoring never deploys alerts that reach nobody."""
    receivers = [n for n in secrets.ALERT_RECEIVERS if values.values.get(n)]
    if env.listings_env == "production" and not receivers:
        raise OpsError(
            f"{env.name} runs in production mode with monitoring, but no alert receiver "
            f"is set: its alerts would reach nobody. Fix: set {secrets.ALERT_RECEIVERS[0]} "
            f"(or ALERT_SLACK_URL, or ALERT_EMAIL_TO with ALERT_SMTP_HOST and "
            f"ALERT_SMTP_FROM) in {secrets.env_file(env).name} or the CI secrets "
            '(docs/environments.md, "Secrets")'
        )


def given_alert_receivers(values: secrets.Secrets) -> dict[str, str]:
    """The alert receivers' settings that are set (what Alertmanager renders)."""
    return {
        n: values.values[n]
        for n in secrets.OPTIONAL
        if n.startswith("ALERT_") and values.values.get(n)
    }


def parse_size_kib(text: str) -> int:
    return int(text.strip().split()[-1]) if text.strip() else 0


def check_host(
    env: config.Environment, host: config.Host, remote: Executor, first: bool, monitoring: bool
) -> str:
    """Docker (and on the first host, which runs compose, the compose plugin) usable by the
    user; remote_dir writable (created later, by the first impacting step that writes it);
    room on Docker's data root and there; the stack's ports free."""
    root = env.deploy.remote_dir.rstrip("/")
    asks = {"docker": host_commands.engine_version(), "root": host_commands.docker_root()}
    if first:
        asks["compose"] = host_commands.compose_version()
        asks["place"] = host_commands.writable_place(root)
    if first or monitoring:  # every swarm host runs a log collector
        asks["sockets"] = host_commands.socket_tables()
        asks["ours"] = docker.running_services(env.project_name)
    # One round trip: every question at once.
    answers = dict(zip(asks, remote.run_all(list(asks.values()), check=False), strict=True))
    info = [
        answers[name].stdout.strip() if answers[name].ok else ""
        for name in ("docker", "compose")
        if name in answers
    ]
    if not all(info):
        raise OpsError(
            f"{host.label}: docker{' or the compose v2 plugin' if first else ''} is missing "
            "or not usable by this user. Fix: install Docker Engine (with the compose plugin) "
            "and add the user to the docker group"
        )
    for name in ("root", "sockets", "ours"):
        if name in answers and not answers[name].ok:
            raise remote.failure(asks[name], answers[name])
    places: list[str] = []
    if first:
        found = answers["place"]
        if not found.ok:
            raise OpsError(
                f"{host.label}: {root} (deploy.remote_dir) cannot be created or written by "
                f"{host.user}: {found.stdout.strip() or 'no such place'} is not writable. "
                "Fix: create it for that user, or choose another remote_dir"
            )
        places.append(found.stdout.strip())
    # Images land in Docker's data root (unknown: where the releases go, or /).
    docker_root = answers["root"].stdout.strip()
    room = check_disk(env, host, remote, [*places, docker_root or (places[0] if places else "/")])
    versions = f"docker {info[0]}" + (f", compose {info[1]}" if first else "")
    if first or monitoring:
        tables = (answers["sockets"].stdout, answers["ours"].stdout)
        room += "; " + check_host_ports(env, host, remote, first, monitoring, tables)
    return (f"{versions}, " if first else f"{host.label}: {versions}, ") + room


def check_disk(
    env: config.Environment, host: config.Host, remote: Executor, places: list[str]
) -> str:
    """Images land in Docker's data root, releases under remote_dir: both need room."""
    want = env.deploy.min_free_disk_bytes // 1024
    wheres = list(dict.fromkeys(places))
    answers = remote.run_all([host_commands.free_kib(where) for where in wheres])
    free = {where: parse_size_kib(a.stdout) for where, a in zip(wheres, answers, strict=True)}
    for where in wheres:
        if free[where] < want:
            raise OpsError(
                f"{host.label}: only {free[where] // 1024} MiB free under {where}, "
                f"below deploy.min_free_disk ({want // 1024} MiB). Fix: free space (old "
                "images: `docker image prune`) or lower min_free_disk"
            )
    return ", ".join(f"{kib // 1024} MiB free in {where}" for where, kib in free.items())


def check_host_ports(
    env: config.Environment,
    host: config.Host,
    remote: Executor,
    first: bool,
    monitoring: bool,
    found: tuple[str, str] | None = None,
) -> str:
    """The ports the stack takes on the host are free, or held by the stack itself (two
    environments on one host must not share one: a clash found now changes nothing). The
    first host: nginx's, and on one host Prometheus' and Alertmanager's loopback ports
    (a swarm publishes neither); with monitoring every host: the log collector's."""
    mon = env.monitoring
    wanted = []
    if first:
        wanted += [
            ("tcp", env.ports.http, "nginx", "ports.http"),
            ("tcp", env.ports.https, "nginx", "ports.https"),
        ]
    if monitoring and first and not env.is_swarm:
        wanted += [
            ("tcp", mon.prometheus_port, "prometheus", "monitoring.prometheus_port"),
            ("tcp", mon.alertmanager_port, "alertmanager", "monitoring.alertmanager_port"),
        ]
    if monitoring:
        wanted.append(("udp", mon.log_port, compose.LOG_SERVICE, "monitoring.log_port"))
    if found is None:
        asks = [host_commands.socket_tables(), docker.running_services(env.project_name)]
        tables, services = (answer.stdout for answer in remote.run_all(asks))
    else:
        tables, services = found
    held = ports.listening(tables)
    ours = [name.removeprefix(f"{env.project_name}_") for name in services.split()]
    clashes = ports.host_conflicts(held, wanted, ours)
    if clashes:
        raise OpsError(
            f"{host.label}: {'; '.join(clashes)}. Fix: stop what holds it, or choose other "
            f"ports in {env.source} (another environment on this host needs its own)"
        )
    return f"{len(wanted)} ports free or already this stack's"


def check_not_a_stack(env: config.Environment, remote: Executor) -> None:
    """Compose on one host never starts next to a Swarm stack of the same environment (same
    volumes, same ports): switching is a procedure (docs/runbook.md, "Several hosts")."""
    # check=False: an engine in no swarm refuses `docker service ls`, which means no stack.
    if remote.run(swarm_commands.service_ids(env.project_name), check=False).stdout.split():
        raise OpsError(
            f"{env.hosts[0].label} runs {env.project_name} as a Docker Swarm stack (the "
            f"environment had several hosts), and {env.source} now lists one. Fix: "
            'switch on purpose (docs/runbook.md, "Several hosts"): `docker stack rm '
            f"{env.project_name}` on that host (volumes stay), then deploy again"
        )


def check_not_compose(env: config.Environment, remote: Executor) -> None:
    """The stack never starts next to the Compose project of one host (same volumes, same
    ports). The stack's own containers carry the compose labels of their images (compose
    built them): only those without the stack's namespace are Compose's."""
    namespaces = remote.run(docker.compose_namespaces(env.project_name), check=False)
    if "-" in namespaces.stdout.split():
        raise OpsError(
            f"{env.hosts[0].label} runs {env.project_name} with Compose (the environment had "
            f"one host), and {env.source} now lists {len(env.hosts)}. Fix: switch on "
            'purpose (docs/runbook.md, "Several hosts"): `docker compose -p '
            f"{env.project_name} down` in the current release's directory on that host "
            "(volumes stay, the stack takes them over), then deploy again"
        )


def check_alert_receivers(
    env: config.Environment,
    values: secrets.Secrets,
    build: Build,
    to_build: list[str],
    local: LocalEngine,
) -> str:
    """Alertmanager's own entrypoint renders the receivers here (no network, nothing kept):
    a malformed URL or address stops the deploy before the hosts, not on them."""
    given = given_alert_receivers(values)
    if not given:
        return "alert receivers: none (alerts are dropped)"
    ref = next(r for r in image_refs(build, monitoring=True) if "/alertmanager:" in r)
    if ref in to_build:
        return "alert receivers: checked once Alertmanager's image is built"
    try:
        local.render_alert_receivers(ref, given)
    except OpsError as exc:
        raise OpsError(f"the alert receivers of {env.name} are not usable: {exc}") from exc
    return "alert receivers: " + ", ".join(sorted(given))
