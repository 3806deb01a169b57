"""Backups, restores and restore drills with pgBackRest (docs/disaster-recovery.md).

The work happens in the stack's own containers (services/postgres: backup-run, backup-drill,
backup-restore), reached through compose: on this machine for local stacks, over SSH on the
host of a one-host environment. This module decides what to run and in which order, checks
what can be checked before anything changes, and asks before anything is lost.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import yaml

from ops import config, proc, secrets
from ops.deploy import locks as locks
from ops.deploy.releases import ReleaseStore
from ops.errors import OpsError
from ops.remote import quote
from ops.stack import host as hostops
from ops.stack import local as stack
from ops.steps import Report, Runner, Step

BACKUP_TYPES = ("full", "diff", "incr")
BACKUP_SERVICE = "backup"
DRILL_SERVICE = "backup-drill"
RESTORE_SERVICE = "backup-restore"
EXPORT_SERVICE = "backup-export"
# Stopped during an in-place restore: everything that writes to (or reads from) PostgreSQL.
WRITERS = ("api", "worker", BACKUP_SERVICE)
PRODUCTION = "production"
# How long stopping services may take on a swarm (PostgreSQL's grace period is 60 s).
STOP_WAIT = 300.0


class Target(Protocol):
    """One environment's running stack, through what a backup operation needs of it."""

    label: str

    def exec(
        self, service: str, *command: str, what: str, stream: bool = False, stdin: str | None = None
    ) -> str:
        """`command` in the service's running container; its output (stream: printed too, as it
        comes where the transport allows; stdin: text fed to it). Raises OpsError naming `what`
        when it cannot run at all; a container's own failure needs require_ok (see OK_LINE)."""
        ...

    def oneoff(self, service: str, *command: str, what: str, stream: bool = False) -> str:
        """A one-off container of the service (the `tools` profile's, the migration), removed
        after; like exec() otherwise."""
        ...

    def stop(self, *services: str, what: str) -> None:
        """The services stopped (cleanly: their stop signal and grace period), returning when
        they are."""
        ...

    def start(self, *services: str, what: str, timeout: int) -> None:
        """The services started as the current release runs them, returning when healthy."""
        ...

    def maintenance(self, on: bool) -> str:
        """Maintenance mode on or off (nginx answers 503); a note for the step summary."""
        ...

    def locked(self, operation: str) -> AbstractContextManager[None]:
        """The environment's deploy lock held meanwhile (hosts), so no deploy runs during it."""
        ...


class ComposeTarget:
    """A Target whose stack is a compose project: every operation is a `docker compose` line."""

    label = ""

    def compose(self, *args: str, what: str, stream: bool = False, stdin: str | None = None) -> str:
        """`docker compose <args>` and its output; raises OpsError naming `what` when compose
        itself fails."""
        raise NotImplementedError

    def exec(
        self, service: str, *command: str, what: str, stream: bool = False, stdin: str | None = None
    ) -> str:
        return self.compose("exec", "-T", service, *command, what=what, stream=stream, stdin=stdin)

    def oneoff(self, service: str, *command: str, what: str, stream: bool = False) -> str:
        return self.compose(
            "run", "--rm", "--no-deps", "-T", service, *command, what=what, stream=stream
        )

    def stop(self, *services: str, what: str) -> None:
        self.compose("stop", *services, what=what)

    def start(self, *services: str, what: str, timeout: int) -> None:
        self.compose(
            "up", "-d", "--no-deps", "--wait", "--wait-timeout", str(timeout), *services,
            what=what,
        )  # fmt: skip


class LocalTarget(ComposeTarget):
    """The local stack on this machine's engine."""

    def __init__(self, env: config.Environment) -> None:
        self.stack = stack.open_stack(env.name)
        self.label = f"{env.project_name} (this machine)"

    def compose(self, *args: str, what: str, stream: bool = False, stdin: str | None = None) -> str:
        if stream:
            inv = self.stack.compose().invocation(*args)
            code, output = proc.tee(inv.argv, inv.env, self.stack.compose().root, stdin, what)
            if code != 0:
                raise OpsError(f"{what} failed (exit {code}): the lines above say why")
            return output
        result = self.stack.compose().run(*args, capture=True, what=what, stdin=stdin)
        if result.stderr:
            print(result.stderr.rstrip(), flush=True)
        return result.stdout

    def maintenance(self, on: bool) -> str:
        return "local stacks have no maintenance page: nginx answers 502 meanwhile"

    @contextmanager
    def locked(self, operation: str) -> Iterator[None]:
        yield  # one engine, one operator: `invoke up` and a restore are not run together


class HostTarget(ComposeTarget):
    """The current release on the host of a one-host environment."""

    def __init__(self, host: hostops.Host) -> None:
        self.host = host
        self.env = host.env
        self.label = f"{host.env.project_name} on {host.remote.host.label}"

    def compose(self, *args: str, what: str, stream: bool = False, stdin: str | None = None) -> str:
        output = self.host.compose().run(*args, what=what, stdin=stdin)
        if stream:
            print(output.rstrip(), flush=True)
        return output

    def maintenance(self, on: bool) -> str:
        return hostops.maintenance(self.env, on)

    @contextmanager
    def locked(self, operation: str) -> Iterator[None]:
        lock = locks.DeployLock(self.host.remote, self.host.root, self.env.deploy.lock_ttl)
        lock.acquire(
            self.host.current(), wait=float(self.env.deploy.lock_wait), operation=operation
        )
        heartbeat = locks.Heartbeat(lock).start()
        store = ReleaseStore(self.host.remote, self.host.root)
        try:
            store.audit({"event": f"{operation} started", "who": locks.default_owner()})
            yield
        finally:
            heartbeat.stop()
            lock.release()
            store.audit({"event": f"{operation} ended", "who": locks.default_owner()})


class SwarmTarget(HostTarget):
    """The current release of a Docker Swarm environment. PostgreSQL and the backup task run
    on the first host, which manages the swarm: commands run in their task containers there,
    one-off containers there too (compose with the release's swarm-oneoff overlay: the stack's
    volumes and networks), and services stop and start by their replica counts."""

    def __init__(self, host: hostops.Host) -> None:
        super().__init__(host)
        self.stack = host.env.project_name
        self.label = f"{self.stack} (Docker Swarm) on {host.remote.host.label}"

    def container(self, service: str) -> str:
        """The running task container of the service on the first host; OpsError if none."""
        found = hostops.swarm_task(self.host.remote, self.stack, service)
        if found is None:
            raise OpsError(
                f"no container of {service} is running on {self.host.remote.host.label} "
                f"(`docker service ps {self.stack}_{service}` there says why)"
            )
        return found

    def exec(
        self, service: str, *command: str, what: str, stream: bool = False, stdin: str | None = None
    ) -> str:
        line = (
            f"docker exec {'-i ' if stdin is not None else ''}{quote(self.container(service))} "
            + " ".join(quote(word) for word in command)
            + " 2>&1"
        )
        output = self.host.remote.run(line, what=what, stdin=stdin).stdout
        if stream:
            print(output.rstrip(), flush=True)
        return output

    def replicas(self) -> dict[str, int]:
        """Replicas of each service as the current release's stack file sets them."""
        path = f"{self.host.root}/releases/{self.host.current()}/{hostops.SWARM_STACK_FILE}"
        text = self.host.remote.read_text(path)
        if text is None:
            raise OpsError(
                f"{path} is missing on {self.host.remote.host.label}: the release is incomplete. "
                f"Fix: `invoke deploy --env={self.env.name}` writes it again"
            )
        services = (yaml.safe_load(text) or {}).get("services") or {}
        return {
            name: int((spec.get("deploy") or {}).get("replicas", 1))
            for name, spec in services.items()
        }

    def scale(self, counts: dict[str, int], what: str, timeout: int) -> None:
        """`docker service scale`: scaling up returns once the new tasks run (and are healthy:
        Swarm reports a task with a healthcheck running once it passes); scaling down returns
        before the old containers have stopped (see stop())."""
        pairs = " ".join(quote(f"{self.stack}_{name}={n}") for name, n in counts.items())
        self.host.remote.run(
            f"docker service scale {pairs} 2>&1", what=what, timeout=float(timeout)
        )

    def running(self, services: tuple[str, ...]) -> int:
        """How many tasks of the services still run, on any host (the manager knows)."""
        names = " ".join(quote(f"{self.stack}_{name}") for name in services)
        out = self.host.remote.run(
            f"docker service ps {names} --format '{{{{.CurrentState}}}}'",
            what="list the services' tasks",
        ).stdout
        return sum(1 for line in out.splitlines() if line.startswith("Running"))

    def stop(self, *services: str, what: str, timeout: float = STOP_WAIT) -> None:
        """Scaled to 0, then waited for until no task runs any more: PostgreSQL's clean
        shutdown (its checkpoint) may take most of its grace period, and nothing may touch its
        data volume before it is over."""
        self.scale({name: 0 for name in services}, what, timeout=int(timeout))
        deadline = time.monotonic() + timeout
        while (left := self.running(services)) > 0:
            if time.monotonic() > deadline:
                raise OpsError(
                    f"{what}: {left} task(s) of {', '.join(services)} still run after "
                    f"{timeout:.0f} s (`docker service ps {self.stack}_{services[0]}` on "
                    f"{self.host.remote.host.label} says why). Nothing was restored"
                )
            time.sleep(1.0)

    def start(self, *services: str, what: str, timeout: int) -> None:
        wanted = self.replicas()
        self.scale({name: wanted.get(name, 1) for name in services}, what, timeout)


@contextmanager
def open_target(env: config.Environment) -> Iterator[Target]:
    """The stack of `env`: local, the current release on its one host, or its swarm."""
    if env.is_local:
        yield LocalTarget(env)
        return
    with hostops.Host(env) as host:
        yield SwarmTarget(host) if env.is_swarm else HostTarget(host)


# The last line of every image script ops drives through compose when it succeeded
# (services/postgres/backup-lib): compose does not pass a container's exit code through on
# every engine.
OK_LINE = "[slipway-ok]"


def require_ok(output: str, what: str, hint: str = "") -> str:
    """`output` when it ends with OK_LINE; else OpsError saying `what` failed."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if lines and lines[-1] == OK_LINE:
        return output
    raise OpsError(f"{what} failed (its lines above say why)" + (f". {hint}" if hint else ""))


# ------------------------------------------------------------------------------ repository info


@dataclass(frozen=True)
class BackupSet:
    """One backup in the repository (a row of `pgbackrest info`)."""

    label: str
    type: str
    start: datetime
    stop: datetime
    size: int  # database size
    repo_size: int  # what this backup added to the repository (compressed, encrypted)
    repo: int

    @property
    def seconds(self) -> float:
        return (self.stop - self.start).total_seconds()


@dataclass(frozen=True)
class Repository:
    """What the repository holds and the window it can restore."""

    status: str  # "ok" or pgBackRest's message
    backups: tuple[BackupSet, ...]
    latest_archived: datetime | None  # the newest WAL PostgreSQL archived (None: none yet)

    @property
    def earliest(self) -> datetime | None:
        """The earliest restorable time: the end of the oldest backup."""
        return min((b.stop for b in self.backups), default=None)

    @property
    def latest(self) -> datetime | None:
        """The latest restorable time: the newest archived WAL, or the newest backup's end."""
        newest = max((b.stop for b in self.backups), default=None)
        if newest is None:
            return None
        return max(newest, self.latest_archived) if self.latest_archived else newest


def _when(epoch: Any) -> datetime:
    return datetime.fromtimestamp(int(epoch), tz=UTC)


def info_json(output: str) -> Any:
    """The document of `pgbackrest info --output=json` in output that may carry compose's own
    lines around it (a host merges stderr: pull notes, "Found orphan containers ([...])"). Raw
    control characters in its strings are accepted: pgBackRest quotes the first bytes of a file
    it cannot decrypt, line breaks included."""
    decoder = json.JSONDecoder(strict=False)
    starts = [0] + [i + 1 for i, c in enumerate(output) if c == "\n"]
    for start in reversed(starts):
        if output.startswith("[{", start):
            try:
                return decoder.raw_decode(output, start)[0]
            except ValueError:
                continue
    raise ValueError("no JSON document")


def parse_info(text: str) -> tuple[str, tuple[BackupSet, ...]]:
    """Status and backups from `pgbackrest info --output=json` (one stanza)."""
    try:
        stanza = info_json(text)[0]
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise OpsError(f"`pgbackrest info` did not answer JSON: {text.strip()[-500:]}") from exc
    status = stanza.get("status", {})
    code = int(status.get("code", 0))
    # 0 ok; 1 no stanza yet; 2 stanza without backups: all readable, just empty. With several
    # repositories the stanza's own status says only "different across repos" (4) when they
    # differ (one empty, one not): each repository's status decides then.
    repos = stanza.get("repo", [])
    readable = (0, 1, 2)
    message = "ok"
    if repos:
        for repo in repos:
            repo_code = int(repo.get("status", {}).get("code", 0))
            if repo_code not in readable:
                text = repo.get("status", {}).get("message", f"status {repo_code}")
                message = f"repo{repo.get('key')}: {text}"
                break
    elif code not in readable:
        message = str(status.get("message", f"status {code}"))
    backups = tuple(
        BackupSet(
            label=b["label"],
            type=b["type"],
            start=_when(b["timestamp"]["start"]),
            stop=_when(b["timestamp"]["stop"]),
            size=int(b.get("info", {}).get("size", 0)),
            repo_size=int(b.get("info", {}).get("repository", {}).get("delta", 0)),
            repo=int(b.get("database", {}).get("repo-key", 1)),
        )
        for b in stanza.get("backup", [])
    )
    return message, backups


def advice(output: str) -> str:
    """What to do about a pgBackRest failure (empty when nothing specific applies)."""
    if any(
        mark in output
        for mark in (
            "CryptoError",
            "key/value found outside of section",
            "is or was the repo encrypted",
        )
    ):
        return (
            "the repository cannot be decrypted with this BACKUP_PASSPHRASE. Fix: set the "
            "passphrase the repository was created with (docs/disaster-recovery.md, "
            '"Rotating the passphrase"); nothing was changed'
        )
    return ""


def read_repository(target: Target) -> Repository:
    """The repository's backups and restorable window, read with the environment's current
    secrets in a one-off container that needs neither the backup service nor PostgreSQL (a
    lost volume, a passphrase changed since the stack started)."""
    text = target.oneoff(
        RESTORE_SERVICE, "pgbackrest", "info", "--output=json",
        what="read the backup repository (pgbackrest info)",
    )  # fmt: skip
    status, backups = parse_info(text)
    if status != "ok":
        hint = advice(status)
        raise OpsError(
            f"the backup repository of {target.label} cannot be read: {status.strip()[:400]}"
            + (f". {hint}" if hint else ". Nothing was changed")
        )
    return Repository(status, backups, last_archived(target))


def last_archived(target: Target) -> datetime | None:
    """When PostgreSQL last archived a WAL segment (None when it is down or archived none)."""
    try:
        archived = target.exec(
            "postgres", "psql", "-X", "-At", "-d", "postgres", "-c",
            "SELECT coalesce(extract(epoch FROM last_archived_time)::bigint::text, '') "
            "FROM pg_stat_archiver",
            what="ask PostgreSQL for the last archived WAL",
        ).strip()  # fmt: skip
    except OpsError:
        return None
    # The last line: a host merges compose's own lines (warnings) into the output.
    lines = archived.splitlines()
    return _when(lines[-1]) if lines and lines[-1].strip().isdigit() else None


def archive_now(target: Target) -> bool:
    """Every committed change into the repository now (backup-archive-now in the postgres
    container: a commit record, a WAL switch, waited for until archived). False when
    PostgreSQL is not running or archiving does not work."""
    try:
        out = target.exec(
            "postgres", "backup-archive-now",
            what="archive the current WAL",
        )  # fmt: skip
        require_ok(out, "archiving the current WAL")
    except OpsError:
        return False
    return True


def _not_running_hint(message: str, target: Target) -> str:
    if "not running" in message or "no container" in message.lower():
        return (
            f"the backup service of {target.label} is not running. Fix: `invoke up` (local) or "
            f"`invoke deploy` starts it; `invoke status` shows what runs. ({message})"
        )
    hint = advice(message)
    return f"{message}. {hint}" if hint else message


def _iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GB"


def format_listing(repo: Repository, label: str) -> list[str]:
    """The `invoke backup.list` table: one line per backup, then the restorable window."""
    lines = [
        f"{'label':<34} {'type':<5} {'start':<20} {'stop':<20} {'secs':>6} "
        f"{'db size':>9} {'stored':>9} repo"
    ]
    for b in repo.backups:
        lines.append(
            f"{b.label:<34} {b.type:<5} {_iso(b.start):<20} {_iso(b.stop):<20} "
            f"{b.seconds:>6.0f} {_size(b.size):>9} {_size(b.repo_size):>9} repo{b.repo}"
        )
    if not repo.backups:
        lines.append(f"no backups in the repository of {label} yet")
        return lines
    lines.append(
        f"recovery window: {_iso(repo.earliest)} .. {_iso(repo.latest)} "
        "(earliest: end of the oldest backup; latest: the newest archived WAL)"
    )
    return lines


# ------------------------------------------------------------------------------------ commands


def backup(env_name: str, kind: str = "diff") -> None:
    """`invoke backup`: one backup now, in the stack's backup container."""
    if kind not in BACKUP_TYPES:
        raise OpsError(f"--type={kind} is not a backup type: use full, diff or incr")
    env = config.load(env_name)
    with open_target(env) as target:
        print(f"==> backup ({kind}) of {target.label}", flush=True)
        try:
            out = target.exec(
                BACKUP_SERVICE, "backup-run", f"--type={kind}",
                what=f"{kind} backup", stream=True,
            )  # fmt: skip
        except OpsError as exc:
            raise OpsError(_not_running_hint(str(exc), target)) from exc
        require_ok(
            out,
            f"the {kind} backup of {target.label}",
            "`invoke backup.list` shows what the repository has; docs/runbook.md#backupfailed",
        )


def list_backups(env_name: str) -> list[str]:
    """`invoke backup.list`: the repository's backups and its recovery window."""
    env = config.load(env_name)
    with open_target(env) as target:
        return format_listing(read_repository(target), target.label)


def drill(env_name: str, at: str = "", repo: int = 0) -> None:
    """`invoke backup.drill`: restore into a scratch container and verify against live data."""
    env = config.load(env_name)
    args = [f"--at={normalize_time(at)}"] if at else []
    args += repo_args(env, repo)
    with open_target(env) as target:
        print(f"==> restore drill of {target.label}", flush=True)
        failed = (
            f"the restore drill of {target.label} FAILED (its lines above say where). "
            "Runbook: docs/runbook.md#backupdrillfailing"
        )
        try:
            out = target.oneoff(
                DRILL_SERVICE, "backup-drill", *args,
                what="restore drill", stream=True,
            )  # fmt: skip
        except OpsError as exc:
            raise OpsError(failed) from exc
        try:
            require_ok(out, "the restore drill")
        except OpsError as exc:
            raise OpsError(failed) from exc


def repo_args(env: config.Environment, repo: int) -> list[str]:
    """--repo for the scripts (0: pgBackRest picks: the local repository first)."""
    if repo == 0:
        return []
    if repo == 1 or (repo == 2 and env.backup.s3 is not None):
        return [f"--repo={repo}"]
    if repo == 2:
        raise OpsError(
            f"--repo=2 is the off-site repository, but {env.name} has none. Fix: set backup.s3 "
            f"in {env.source.name} (docs/disaster-recovery.md), or use --repo=1"
        )
    raise OpsError(f"--repo={repo}: use 1 (the local repository) or 2 (the off-site one)")


def normalize_time(text: str) -> str:
    """An ISO 8601 time with an offset, as pgBackRest and `date -d` read it (UTC, seconds)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise OpsError(
            f"--at={text} is not an ISO 8601 time. Fix: write e.g. 2026-11-30T12:00:00+00:00"
        ) from exc
    if moment.tzinfo is None:
        raise OpsError(
            f"--at={text} has no UTC offset, so it is ambiguous. Fix: add one, e.g. "
            f"{text}+00:00 or {text}Z"
        )
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")


@dataclass(frozen=True)
class RestorePlan:
    """What an in-place restore will do, decided before anything changes."""

    args: tuple[str, ...]  # for backup-restore
    target_text: str  # "2026-... (point in time)" or "the end of backup X"
    lost_since: datetime | None  # writes after this are lost from the live database


def plan_restore(
    repo: Repository,
    at: str = "",
    label: str = "",
    now: datetime | None = None,
    only: int = 0,
    extra: tuple[str, ...] = (),
) -> RestorePlan:
    """Check the target against the repository (only: one of its repositories); explain what
    it will cost. `extra` arguments go to backup-restore as they are (--repo)."""
    if at and label:
        raise OpsError(
            "--at and --backup both given: choose one restore target. Nothing was changed"
        )
    now = now or datetime.now(UTC)
    if only:
        kept = tuple(b for b in repo.backups if b.repo == only)
        repo = Repository(repo.status, kept, repo.latest_archived)
    if not repo.backups:
        raise OpsError(
            "the repository has no backup to restore from. Fix: `invoke backup` first; "
            "`invoke backup.list` shows what it holds. Nothing was changed"
        )
    if label:
        chosen = [b for b in repo.backups if b.label == label]
        if not chosen:
            known = ", ".join(b.label for b in repo.backups)
            raise OpsError(
                f"--backup={label} is not in the repository (it holds: {known}). Nothing was "
                "changed"
            )
        stop = chosen[0].stop
        return RestorePlan(
            (f"--backup={label}", *extra), f"the end of backup {label} ({_iso(stop)})", stop
        )
    if at:
        text = normalize_time(at)
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S+00").replace(tzinfo=UTC)
        earliest, latest = repo.earliest, repo.latest
        if earliest and moment < earliest:
            raise OpsError(
                f"--at={at} is before the recovery window ({_iso(earliest)} .. {_iso(latest)}): "
                "no backup ends before it. Fix: pick a time inside the window "
                "(`invoke backup.list`). Nothing was changed"
            )
        if moment > now + timedelta(seconds=5):
            raise OpsError(
                f"--at={at} is in the future. Fix: pick a time inside the window. Nothing was "
                "changed"
            )
        # With PostgreSQL down the newest archived WAL is unknown here: the repository may hold
        # WAL past the newest backup, and PostgreSQL itself says when a target is out of reach.
        if repo.latest_archived and latest and moment > latest:
            raise OpsError(
                f"--at={at} is after the newest archived WAL ({_iso(latest)}): PostgreSQL could "
                "not reach it. Fix: pick an earlier time, or omit --at for everything archived. "
                "Nothing was changed"
            )
        return RestorePlan((f"--at={text}", *extra), f"{_iso(moment)} (point in time)", moment)
    return RestorePlan(extra, f"everything archived (up to about {_iso(repo.latest)})", repo.latest)


def confirm(
    env: config.Environment,
    message: str,
    yes: bool,
    interactive: bool | None = None,
    ask: Callable[[str], str] = input,
) -> None:
    """Print what is lost; go on only with --yes or the environment's name typed."""
    print(message, flush=True)
    if yes:
        return
    interactive = sys.stdin.isatty() if interactive is None else interactive
    if not interactive:
        raise OpsError(
            f"refusing to replace the database of {env.name} without confirmation. Fix: add "
            "--yes if you really mean it (nothing was changed)"
        )
    answer = ask(f"Type the environment's name ({env.name}) to go on: ").strip()
    if answer != env.name:
        raise OpsError(f"not confirmed: {env.name} left as it was")


def confirm_restore(
    env: config.Environment,
    plan: RestorePlan,
    label: str,
    yes: bool,
    interactive: bool | None = None,
    ask: Callable[[str], str] = input,
) -> None:
    """Say exactly what is lost; go on only with --yes or the environment's name typed."""
    lost = (
        f"every change written after {_iso(plan.lost_since)}"
        if plan.lost_since
        else "every change not yet archived"
    )
    confirm(
        env,
        f"Restoring {label} in place to {plan.target_text} loses {lost}: the live database is "
        "replaced. The API and worker stop meanwhile. The WAL written since stays in the "
        "repository for the retention period.",
        yes,
        interactive,
        ask,
    )


def restore(
    env_name: str,
    at: str = "",
    label: str = "",
    source: str = "",
    yes: bool = False,
    runner: Runner | None = None,
    repo: int = 0,
    sanitize: bool = False,
) -> Report:
    """`invoke restore`: the environment's own backups, in place, the service stopped meanwhile;
    with `source` (and `sanitize`) another environment's newest backup, personal data replaced."""
    env = config.load(env_name)
    if source and source != env.name and env.listings_env == PRODUCTION:
        raise OpsError(
            f"--from={source} into {env.name}: production is never overwritten with another "
            "environment's data (the other direction, production into staging with personal "
            "data replaced, is the supported one). Nothing was changed"
        )
    if source and source != env.name:
        if not sanitize:
            raise OpsError(
                f"--from={source} needs --sanitize: the agents' names, e-mails and phone numbers "
                "and the API keys of another environment must not be copied as they are. "
                "Nothing was changed"
            )
        if at or label:
            raise OpsError(
                "--from copies the newest backup of the other environment: --at and --backup "
                "are for an environment's own backups. Nothing was changed"
            )
        return copy_from(env, config.load(source), sanitize, yes, runner, repo)
    if sanitize:
        raise OpsError(
            "--sanitize goes with --from=<another environment>: an environment's own backups "
            "are restored as they are. Nothing was changed"
        )
    if not env.is_local:
        secrets.require(env)
    extra = tuple(repo_args(env, repo))
    if at:
        normalize_time(at)  # a malformed time stops here, before anything runs
    with open_target(env) as target:
        # Everything committed so far into the repository (again once the writers are stopped):
        # the window then reaches now, and the live pg_wal is about to be replaced.
        archived = archive_now(target)
        stored = read_repository(target)
        if not archived:
            print(
                "PostgreSQL is not running (or cannot archive): restoring what the repository "
                "holds; the newest archived WAL is the latest point",
                flush=True,
            )
        plan = plan_restore(stored, at, label, only=repo, extra=extra)
        confirm_restore(env, plan, target.label, yes)
        with target.locked("restore"):
            return _restore_steps(env, target, plan, runner, archived)


def _stop(target: Target) -> str:
    target.stop(*WRITERS, what="stop the API, the worker and the backup service")
    return ", ".join(WRITERS) + " stopped"


def _migrate(target: Target) -> str:
    out = target.oneoff(stack.MIGRATE_SERVICE, what="bring the schema to the release's head")
    done = [line for line in out.splitlines() if "database schema at" in line]
    if not done:
        raise OpsError(f"the migration did not finish: {out.strip()[-600:]}")
    return done[-1].strip()[-100:]


def _start(target: Target) -> str:
    target.start(*WRITERS, what="start the backup service, the API and the worker", timeout=300)
    return "healthy"


def _restore_steps(
    env: config.Environment,
    target: Target,
    plan: RestorePlan,
    runner: Runner | None,
    live: bool = True,
) -> Report:
    def stop_writers() -> str:
        return _stop(target)

    def archive_last() -> str:
        if not live:
            return "skipped: PostgreSQL is not running"
        out = target.exec(
            "postgres", "backup-archive-now",
            what="archive the last writes before PostgreSQL stops",
        )  # fmt: skip
        require_ok(out, "archiving the last writes", "nothing was restored; the service is stopped")
        return _last_message(out, "archived") or "archived"

    def stop_postgres() -> str:
        target.stop("postgres", what="stop PostgreSQL (clean shutdown)")
        return "stopped"

    def run_restore() -> str:
        out = target.oneoff(
            RESTORE_SERVICE, "backup-restore", *plan.args,
            what="pgbackrest restore", stream=True,
        )  # fmt: skip
        require_ok(out, "pgbackrest restore", "PostgreSQL is stopped and must not be started")
        return plan.target_text

    def start_postgres() -> str:
        target.start(
            "postgres", what="start PostgreSQL: replay WAL to the target, promote", timeout=3600
        )
        promoted = target.exec(
            "postgres", "psql", "-X", "-At", "-d", "postgres", "-c",
            "SELECT pg_is_in_recovery()", what="check PostgreSQL is promoted",
        ).strip()  # fmt: skip
        if not promoted.endswith("f"):
            raise OpsError(
                f"PostgreSQL did not come back promoted ({promoted[-300:]!r}): "
                "`invoke logs --service=postgres` says why"
            )
        return "recovered, promoted and healthy"

    def migrate() -> str:
        return _migrate(target)

    def start_writers() -> str:
        return _start(target)

    hint = (
        f"the service is stopped. Fix the cause, then run the same `invoke restore` again "
        f"(it is safe to repeat), or `invoke status --env={env.name}`"
    )
    steps = [
        Step("maintenance mode on", lambda: target.maintenance(True), True, hint),
        Step("stop the API, the worker and the backups", stop_writers, True, hint),
        Step("archive the last writes", archive_last, True, hint),
        Step("stop PostgreSQL", stop_postgres, impacting=True, on_failure=hint),
        Step("restore the data volume (pgbackrest)", run_restore, True, hint),
        Step("start PostgreSQL (WAL replay, promotion)", start_postgres, True, hint),
        Step("check the schema (migrate to head)", migrate, True, hint),
        Step("start the backups, the API and the worker", start_writers, True, hint),
        Step("maintenance mode off", lambda: target.maintenance(False), impacting=True),
    ]
    runner = runner or Runner(f"invoke restore --env {env.name} ({target.label})")
    return runner.run(steps)


def _last_message(output: str, word: str) -> str:
    """The message of the last JSON log line of the image's scripts containing `word`."""
    for line in reversed(output.splitlines()):
        start = line.find("{")
        if start < 0 or word not in line:
            continue
        try:
            return str(json.loads(line[start:])["message"])
        except (ValueError, KeyError, TypeError):
            continue
    return ""


BEGIN_DUMP = "-----BEGIN SLIPWAY SANITIZED DUMP-----"
END_DUMP = "-----END SLIPWAY SANITIZED DUMP-----"


def dump_text(output: str) -> str:
    """The marked dump in backup-export's output (other lines, such as logs, around it)."""
    begin, end = output.find(BEGIN_DUMP), output.find(END_DUMP)
    if begin < 0 or end < begin:
        raise OpsError(
            "the export produced no complete dump (its lines above say why): nothing was changed"
        )
    return output[begin : end + len(END_DUMP)] + "\n"


def copy_from(
    env: config.Environment,
    source: config.Environment,
    sanitize: bool,
    yes: bool,
    runner: Runner | None,
    repo: int = 0,
) -> Report:
    """`invoke restore --env=<env> --from=<source> --sanitize`: the source's newest backup,
    restored and stripped of personal data in a scratch container on the source's host, loaded
    into env's database in place of its own."""
    if env.listings_env == PRODUCTION:
        raise OpsError(
            f"{env.name} runs production: it is never overwritten from another one. Nothing was "
            "changed"
        )
    if not sanitize:
        raise OpsError(f"--from={source.name} needs --sanitize. Nothing was changed")
    for each in (env, source):
        if not each.is_local:
            secrets.require(each)
    args = repo_args(source, repo)
    with open_target(source) as src, open_target(env) as dst:
        confirm(
            env,
            f"Replacing the database of {dst.label} with the newest backup of {source.name} "
            f"({src.label}), personal data replaced, loses every change made in {env.name}. The "
            "API and worker stop meanwhile.",
            yes,
        )
        dump: list[str] = []

        def export() -> str:
            out = src.oneoff(
                EXPORT_SERVICE, "backup-export", "--sanitize",
                *args, what=f"export {source.name}'s newest backup, sanitized",
            )  # fmt: skip
            require_ok(out, f"the export of {source.name}", "nothing was changed")
            text = dump_text(out)
            dump.append(text)
            return f"{len(text) // 1024} KiB (gzip, base64), personal data replaced"

        def load() -> str:
            out = dst.exec(
                "postgres", "backup-import",
                what=f"load the dump into {env.name}", stdin=dump[0],
            )  # fmt: skip
            require_ok(
                out, f"loading the dump into {env.name}", f"{env.name}'s database is as it was"
            )
            return _last_message(out, "replaced") or "loaded"

        hint = (
            f"{env.name} is stopped; fix the cause and run the same command again, or restore "
            f"its own backups: `invoke restore --env={env.name}`"
        )
        steps = [
            Step(f"export {source.name} (scratch container, personal data replaced)", export),
            Step("maintenance mode on", lambda: dst.maintenance(True), True, hint),
            Step(
                "stop the API, the worker and the backups",
                lambda: _stop(dst),
                impacting=True,
                on_failure=hint,
            ),
            Step(f"load {source.name}'s data", load, True, hint),
            Step("check the schema (migrate to head)", lambda: _migrate(dst), True, hint),
            Step("start the backups, the API and the worker", lambda: _start(dst), True, hint),
            Step("maintenance mode off", lambda: dst.maintenance(False), impacting=True),
        ]
        runner = runner or Runner(
            f"invoke restore --env {env.name} --from={source.name} --sanitize"
        )
        with dst.locked("restore from another environment"):
            return runner.run(steps)
