"""Operating commands on a `target: ssh` environment's host, through its current release:
status, logs, migrations, API keys, maintenance mode, certificates. The local stack has its own
versions in ops/stack/local.py; the tasks pick one by the environment's target.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx

from ops import config, health
from ops.deploy import locks, rollback
from ops.deploy.certificates import CERTBOT_SERVICE, ensure_certificates
from ops.deploy.commands import docker, nginx, standby
from ops.deploy.commands import host as host_commands
from ops.deploy.hostcompose import RemoteCompose
from ops.deploy.releases import ReleaseStore
from ops.deploy.smoke import verify_context
from ops.deploy.swarm.stackfile import ONEOFF_FILE as SWARM_ONEOFF_FILE
from ops.errors import OpsError
from ops.executor import Executor, query, quote
from ops.remote import Remote

MAINTENANCE_FILE = "nginx/maintenance"
# The services of a swarm's stack whose logs `invoke logs` gathers without the collector.
SWARM_SERVICES = ("api", "worker", "nginx", "postgres", "redis")


def swarm_task(remote: Executor, stack: str, service: str) -> str | None:
    """The id of a running task container of the stack's service on this host (the first host
    runs PostgreSQL and the backup task), or None."""
    ids = remote.run(docker.swarm_task(stack, service)).stdout.split()
    return ids[0] if ids else None


class Host:
    """The host of one environment, with its current release."""

    def __init__(self, env: config.Environment) -> None:
        if env.target != "ssh":
            raise OpsError(f"environment {env.name!r} is not on a host (target: {env.target})")
        self.env = env
        self.remote = Remote(env.hosts[0])
        self.root = env.deploy.remote_dir.rstrip("/")

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remote.close()

    def current(self) -> str:
        release = ReleaseStore(self.remote, self.root).current_id()
        if release is None:
            raise OpsError(
                f"nothing is deployed to {self.remote.host.label} yet. Fix: "
                f"`invoke deploy --env={self.env.name}`"
            )
        return release

    def compose(self) -> RemoteCompose:
        """Compose of the current release: one-off containers (and, on one host, the stack)."""
        current = self.current()
        # The files that release was deployed with (central logs or not).
        overlays = tuple(ReleaseStore(self.remote, self.root).get(current).overlays)
        if self.env.is_swarm and SWARM_ONEOFF_FILE not in overlays:
            overlays = (SWARM_ONEOFF_FILE,)  # a swarm release recorded before overlays were
        return RemoteCompose(
            self.remote, self.env.project_name, self.root, current, overlays=overlays
        )


def list_releases(env: config.Environment) -> list[str]:
    """One line per release on the host, newest last: `*` marks the current one, `<` the one a
    plain `invoke rollback` would put back."""
    with Host(env) as host:
        store = ReleaseStore(host.remote, host.root)
        current = store.current_id()
        history = store.history()
        back = rollback.marked(history, current, host.remote.label, env.name)
        lines = [f"{'':2}{'release':<40} {'outcome':<12} {'when':<26} {'secs':>6}  who"]
        for r in history:
            mark = "* " if r.id == current else "< " if r.id == back else "  "
            lines.append(
                f"{mark}{r.id:<40} {r.outcome:<12} {r.started:<26} {r.seconds:>6.1f}  {r.who}"
            )
        if back:
            lines.append("  (* current; < what `invoke rollback` puts back without --to)")
        if len(lines) == 1:
            lines.append(f"  no releases on {host.remote.host.label} yet")
        return lines


def lock_status(env: config.Environment) -> str:
    with Host(env) as host:
        holder, now = locks.DeployLock(host.remote, host.root, env.deploy.lock_ttl).status()
        return f"{host.remote.host.label}: " + (holder.describe(now) if holder else "not locked")


def lock_release(env: config.Environment) -> str:
    """Remove whatever deploy lock is there (after the operator confirmed), audited."""
    with Host(env) as host:
        holder = locks.DeployLock(host.remote, host.root, env.deploy.lock_ttl).force_release()
        if holder is None:
            return f"{host.remote.host.label}: not locked, nothing to release"
        ReleaseStore(host.remote, host.root).audit(
            {"event": "lock released by hand", "holder": holder.owner}
        )
        return f"{host.remote.host.label}: released the lock of {holder.owner} ({holder.version})"


def status(env: config.Environment) -> bool:
    """Release, containers and their health, lock, and /ready through the public URL."""
    with Host(env) as host:
        store = ReleaseStore(host.remote, host.root)
        current = store.current_id()
        release = store.get(current) if current else None
        print(f"environment {env.name}: {host.remote.host.label}, {host.root}")
        if release is None:
            print("  release: none (never deployed)")
        else:
            print(f"  release: {release.id} (version {release.version}, {release.outcome})")
        held = {} if env.is_swarm else _standby(host)
        if env.is_swarm:
            healthy = _swarm_services(host, env)
        else:
            healthy = _containers(host, env, current, str(held.get("release", "")))
        holder, now = locks.DeployLock(host.remote, host.root, env.deploy.lock_ttl).status()
        print("  lock: " + (holder.describe(now) if holder else "free"))
        flag = host_commands.exists(f"{host.root}/{MAINTENANCE_FILE}")
        maintenance = host.remote.run(flag, check=False).ok
        print(f"  maintenance: {'ON' if maintenance else 'off'}")
        if not env.is_swarm:
            live = host.remote.run(nginx.live_slot(f"{host.root}/nginx")).stdout.strip()
            print(f"  traffic: the {live} API replicas")
            print("  standby: " + _describe_standby(held, host))
    try:
        with httpx.Client(verify=verify_context(env), timeout=10) as client:
            ready = health.public_get(client, env.https_url, "/ready", env.connect_to)
        print(f"  {env.https_url}/ready: {ready.status_code}")
        healthy = healthy and ready.status_code == 200
    except httpx.HTTPError as exc:
        print(f"  {env.https_url}/ready: unreachable ({exc})")
        healthy = False
    print(f"  overall: {'ready' if healthy else 'NOT ready'}")
    return healthy


def _standby(host: Host) -> dict[str, object]:
    """The standby's record (ops/deploy/commands/standby.py); {} when there is none."""
    text = host.remote.run(standby.read(host.root)).stdout.strip()
    try:
        record = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


def _describe_standby(record: dict[str, object], host: Host) -> str:
    until = record.get("until")
    if not isinstance(until, int):
        return "none (a rollback starts the previous release's replicas)"
    left = until - int(host.remote.run(host_commands.clock()).stdout.strip() or 0)
    at = datetime.fromtimestamp(until, UTC).strftime("%H:%M:%S UTC")
    return (
        f"{record.get('release')} (the {record.get('slot')} replicas) until {at}, "
        f"{max(0, left)}s left: `invoke rollback` before then only moves the traffic"
    )


def _containers(host: Host, env: config.Environment, current: str | None, held: str) -> bool:
    """One line per container of the environment's compose project; False if one is not up.
    `held`: the release of the standby, whose replicas are expected."""
    fmt = (
        '{{.Names}}\t{{.Status}}\t{{.Image}}\t{{.Label "org.slipway.release"}}'
        '\t{{.Label "org.slipway.slot"}}'
    )
    out = host.remote.run(
        query(
            f"docker ps -a --filter label=com.docker.compose.project={quote(env.project_name)} "
            f"--format {quote(fmt)}",
            "list containers",
        )
    ).stdout
    rows = sorted(line.split("\t") for line in out.splitlines() if line.strip())
    healthy = True
    for row in rows:
        name, state, image, label, slot = [*row, "", "", "", "", ""][:5]
        # One-off containers (migrate) are expected to have exited, and the standby's workers
        # are kept parked or stopped (ops/deploy/workers.py).
        kept = label == held and "-worker-" in name
        bad = "(unhealthy)" in state or not state.startswith("Up")
        if bad and "-migrate-" not in name and not (kept and state.startswith("Exited")):
            healthy = False
        if label == held and (slot or kept):
            mark = "  (standby)"
        else:
            mark = "" if not label or label == current else "  (other release!)"
        slot_mark = f"  [{slot}]" if slot else ""
        print(f"  {name:<40} {state:<32} {image}{slot_mark}{mark}")
    return healthy


def _swarm_services(host: Host, env: config.Environment) -> bool:
    """Each service of the stack with its running/desired replicas and where its tasks run."""
    stack = env.project_name
    out = host.remote.run(
        query(
            f"docker stack services {quote(stack)} --format '{{{{.Name}}}}\t{{{{.Replicas}}}}\t"
            "{{.Image}}'",
            "stack services",
        )
    ).stdout
    tasks = host.remote.run(
        query(
            f"docker stack ps {quote(stack)} --filter desired-state=running "
            "--format '{{.Name}}\t{{.Node}}:{{.CurrentState}}'",
            "stack tasks",
        ),
        check=False,
    ).stdout
    places: dict[str, list[str]] = {}
    for task in tasks.splitlines():
        task_name, _, place = task.partition("\t")
        places.setdefault(task_name.split(".", 1)[0], []).append(place.split(" ")[0])
    healthy = bool(out.strip())
    for line in sorted(out.splitlines()):
        name, replicas, image = [*line.split("\t"), "", ""][:3]
        running, _, rest = replicas.partition("/")  # "2/2", "1/1 (max 1 per node)"
        healthy = healthy and running == (rest.split() or [""])[0]
        where = ", ".join(places.get(name, []))
        print(f"  {name:<40} {replicas:<10} {image:<44} {where}")
    return healthy


def logs(
    env: config.Environment,
    service: str = "",
    follow: bool = False,
    since: str = "",
    tail: int = 200,
) -> None:
    """`docker compose logs` of the current release on the host, streamed here."""
    with Host(env) as host:
        # 0: every line (as locally); docker's own --tail 0 would print none.
        args = ["logs", "--no-color", "--tail", str(tail) if tail > 0 else "all"]
        if follow:
            args.append("--follow")
        if since:
            args += ["--since", since]
        if env.is_swarm:
            # A stack has no `logs`: each service's, from every host its tasks ran on.
            names = [service] if service else list(SWARM_SERVICES)
            options = " ".join(quote(a) for a in args[1:] if a != "--no-color")
            each = [
                f"docker service logs --no-task-ids {options} "
                f"{quote(env.project_name + '_' + name)} 2>&1"
                for name in names
            ]
            # --follow never ends: every service's stream at once, not one after the other.
            script = " & ".join(each) + " & wait" if follow else " ; ".join(each)
            host.remote.stream(query(script, "service logs"))
            return
        if service:
            args.append(service)
        host.remote.stream(query(host.compose().command(*args), "compose logs"))


def migrate(env: config.Environment) -> str:
    """`alembic upgrade head` in a one-off container of the current release."""
    with Host(env) as host:
        return host.compose().oneoff("migrate", what="migrate")


def apikey(env: config.Environment, action: str, name: str) -> str:
    """`listings apikey <action> --name <name>` in a one-off container on the host."""
    if action not in ("create", "revoke"):
        raise OpsError(f"unknown apikey action {action!r}: use create or revoke")
    with Host(env) as host:
        return host.compose().oneoff(
            "migrate", "apikey", action, "--name", name, what=f"apikey {action}"
        )


def maintenance(env: config.Environment, on: bool) -> str:
    """Turn maintenance mode on (nginx answers 503 with Retry-After) or off. No reload needed:
    nginx checks the flag file on every request."""
    with Host(env) as host:
        path = f"{host.root}/{MAINTENANCE_FILE}"
        if on:
            host.remote.put_text(path, json.dumps({"by": locks.default_owner()}) + "\n")
        else:
            host.remote.run(host_commands.remove_file(path, "leave maintenance mode"))
        ReleaseStore(host.remote, host.root).audit(
            {"event": f"maintenance {'on' if on else 'off'}", "who": locks.default_owner()}
        )
    return f"maintenance mode {'ON: every request gets 503' if on else 'off'} on {env.name}"


def _require_acme(env: config.Environment) -> None:
    if env.tls != "acme":
        raise OpsError(
            f"{env.source}: tls is {env.tls}, not acme: its certificate comes with each deploy "
            f"(`invoke deploy --env={env.name}` renews it when fewer than 30 days are left)"
        )


def certs_renew(env: config.Environment, force: bool = False) -> str:
    """`slipway-acme ensure [--force]` on the host under the deploy lock; nginx reloads when a
    certificate changed (gracefully: open connections finish)."""
    _require_acme(env)
    with Host(env) as host:
        current = host.current()
        lock = locks.DeployLock(host.remote, host.root, env.deploy.lock_ttl)
        lock.acquire(current, wait=float(env.deploy.lock_wait), operation="certs.renew")
        # A renewal can take minutes (the CA's validation): keep the lock fresh meanwhile.
        heartbeat = locks.Heartbeat(lock).start()
        try:
            result = ensure_certificates(host.compose(), force=force)
        finally:
            heartbeat.stop()
            lock.release()
        ReleaseStore(host.remote, host.root).audit(
            {"event": "certificates renewed" + (" (forced)" if force else ""), "result": result}
        )
        return result


def certs_status(env: config.Environment) -> str:
    """Per domain: from the CA or a placeholder, expiry and days left (`slipway-acme status`)."""
    _require_acme(env)
    with Host(env) as host:
        return host.compose().oneoff(CERTBOT_SERVICE, "status", what="certificate status")
