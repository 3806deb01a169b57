"""`invoke restore`: an environment's database replaced in place by its own backups (to a time,
to the end of a backup, or everything archived), or, with --from and --sanitize, by another
environment's (sanitized_copy.py).

First, with nothing changed yet: every committed change archived, the repository read, the
target checked against the restorable window (plan_restore), the loss said and confirmed.
Then, under the deploy lock, the steps of `Restore`. docs/disaster-recovery.md is the guide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ops import config, secrets
from ops.backup import commands, targets
from ops.backup.backups import archive_now, read_repository
from ops.backup.inplace import InPlace, confirm
from ops.backup.repository import Repository, iso, last_message, require_ok
from ops.backup.sanitized_copy import PRODUCTION, copy_from
from ops.backup.targets import Target
from ops.errors import OpsError
from ops.steps import Report, Runner, Step, impacting


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
            (f"--backup={label}", *extra), f"the end of backup {label} ({iso(stop)})", stop
        )
    if at:
        return _point_in_time(repo, at, now, extra)
    return RestorePlan(extra, f"everything archived (up to about {iso(repo.latest)})", repo.latest)


def _point_in_time(repo: Repository, at: str, now: datetime, extra: tuple[str, ...]) -> RestorePlan:
    """The plan for --at: inside the window, not in the future."""
    text = commands.normalize_time(at)
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S+00").replace(tzinfo=UTC)
    earliest, latest = repo.earliest, repo.latest
    if earliest and moment < earliest:
        raise OpsError(
            f"--at={at} is before the recovery window ({iso(earliest)} .. {iso(latest)}): "
            "no backup ends before it. Fix: pick a time inside the window "
            "(`invoke backup.list`). Nothing was changed"
        )
    if moment > now + timedelta(seconds=5):
        raise OpsError(
            f"--at={at} is in the future. Fix: pick a time inside the window. Nothing was changed"
        )
    # With PostgreSQL down the newest archived WAL is unknown here: the repository may hold
    # WAL past the newest backup, and PostgreSQL itself says when a target is out of reach.
    if repo.latest_archived and latest and moment > latest:
        raise OpsError(
            f"--at={at} is after the newest archived WAL ({iso(latest)}): PostgreSQL could "
            "not reach it. Fix: pick an earlier time, or omit --at for everything archived. "
            "Nothing was changed"
        )
    return RestorePlan((f"--at={text}", *extra), f"{iso(moment)} (point in time)", moment)


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
        f"every change written after {iso(plan.lost_since)}"
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


class Restore(InPlace):
    """The in-place restore of a planned and confirmed target, under the deploy lock. `live`:
    PostgreSQL was running (and archiving) when the restore was planned."""

    def __init__(
        self, env: config.Environment, target: Target, plan: RestorePlan, live: bool = True
    ) -> None:
        super().__init__(target)
        self.env = env
        self.plan = plan
        self.live = live
        self.title = f"invoke restore --env {env.name} ({target.label})"

    def archive_last(self) -> str:
        if not self.live:
            return "skipped: PostgreSQL is not running"
        out = self.target.exec(
            commands.archive_now("archive the last writes before PostgreSQL stops")
        )
        try:
            require_ok(
                out, "archiving the last writes", "nothing was restored; the service is stopped"
            )
        except OpsError:
            # PostgreSQL ran when the restore began and no longer does (a crash loop, a lost
            # volume): nothing more can be archived, as when it was not running at all.
            if commands.ALIVE not in self.target.exec(commands.alive()):
                return "skipped: PostgreSQL stopped answering since the restore began"
            raise  # it answers, and archiving fails: that needs fixing first
        return last_message(out, "archived") or "archived"

    def stop_postgres(self) -> str:
        self.target.stop(commands.POSTGRES_SERVICE, what="stop PostgreSQL (clean shutdown)")
        return "stopped"

    def run_restore(self) -> str:
        out = self.target.oneoff(commands.restore(self.plan.args), stream=True)
        require_ok(out, "pgbackrest restore", "PostgreSQL is stopped and must not be started")
        return self.plan.target_text

    def start_postgres(self) -> str:
        self.target.start(
            commands.POSTGRES_SERVICE,
            what="start PostgreSQL: replay WAL to the target, promote",
            timeout=3600,
        )
        promoted = self.target.exec(commands.in_recovery()).strip()
        if not promoted.endswith("f"):
            raise OpsError(
                f"PostgreSQL did not come back promoted ({promoted[-300:]!r}): "
                "`invoke logs --service=postgres` says why"
            )
        return "recovered, promoted and healthy"

    def steps(self) -> list[Step]:
        hint = (
            f"the service is stopped. Fix the cause, then run the same `invoke restore` again "
            f"(it is safe to repeat), or `invoke status --env={self.env.name}`"
        )
        return [
            impacting("maintenance mode on", self.maintenance_on, hint),
            impacting("stop the API, the worker and the backups", self.stop_writers, hint),
            impacting("archive the last writes", self.archive_last, hint),
            impacting("stop PostgreSQL", self.stop_postgres, hint),
            impacting("restore the data volume (pgbackrest)", self.run_restore, hint),
            impacting("start PostgreSQL (WAL replay, promotion)", self.start_postgres, hint),
            impacting("check the schema (migrate to head)", self.migrate, hint),
            impacting("start the backups, the API and the worker", self.start_writers, hint),
            impacting("maintenance mode off", self.maintenance_off),
        ]


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
    return _in_place(env, at, label, yes, runner, repo)


def _in_place(
    env: config.Environment, at: str, label: str, yes: bool, runner: Runner | None, repo: int
) -> Report:
    """Archive, read, plan and confirm with nothing changed; then Restore under the lock."""
    if not env.is_local:
        secrets.require(env)
    extra = tuple(commands.repo_args(env, repo))
    if at:
        commands.normalize_time(at)  # a malformed time stops here, before anything runs
    with targets.open_target(env) as target:
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
            return Restore(env, target, plan, archived).run(runner=runner)
