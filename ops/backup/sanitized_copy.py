"""`invoke restore --env=<env> --from=<source> --sanitize`: the source's newest backup, restored
and stripped of personal data in a scratch container on the source's stack (backup-export),
loaded into env's database in place of its own (backup-import). Production is never the one
overwritten.
"""

from __future__ import annotations

from ops import config, secrets
from ops.backup import commands, targets
from ops.backup.inplace import InPlace, confirm
from ops.backup.repository import last_lines, last_message, require_ok
from ops.backup.targets import Target
from ops.errors import OpsError
from ops.steps import Report, Runner, Step, impacting, preflight

# The listings_env of the one environment never overwritten with another's data.
PRODUCTION = "production"
BEGIN_DUMP = "-----BEGIN SLIPWAY SANITIZED DUMP-----"
END_DUMP = "-----END SLIPWAY SANITIZED DUMP-----"


def dump_text(output: str) -> str:
    """The marked dump in backup-export's output (other lines, such as logs, around it)."""
    begin, end = output.find(BEGIN_DUMP), output.find(END_DUMP)
    if begin < 0 or end < begin:
        tail = "\n".join(f"  {line}" for line in last_lines(output))
        raise OpsError(
            "the export produced no complete dump: nothing was changed"
            + (f"; its last lines:\n{tail}" if tail else "")
        )
    return output[begin : end + len(END_DUMP)] + "\n"


class SanitizedCopy(InPlace):
    """The copy into `target` (env's stack) from `source_target` (the source's), confirmed,
    under env's deploy lock. `args`: backup-export's own (--repo)."""

    def __init__(
        self,
        env: config.Environment,
        source: config.Environment,
        source_target: Target,
        target: Target,
        args: list[str],
    ) -> None:
        super().__init__(target)
        self.env = env
        self.source = source
        self.source_target = source_target
        self.args = args
        self.dump = ""
        self.title = f"invoke restore --env {env.name} --from={source.name} --sanitize"

    def export(self) -> str:
        out = self.source_target.oneoff(commands.export(self.source.name, self.args))
        require_ok(out, f"the export of {self.source.name}", "nothing was changed")
        self.dump = dump_text(out)
        return f"{len(self.dump) // 1024} KiB (gzip, base64), personal data replaced"

    def load(self) -> str:
        out = self.target.exec(commands.import_dump(self.env.name), stdin=self.dump)
        require_ok(
            out,
            f"loading the dump into {self.env.name}",
            f"{self.env.name}'s database is as it was",
        )
        return last_message(out, "replaced") or "loaded"

    def steps(self) -> list[Step]:
        env, source = self.env.name, self.source.name
        hint = (
            f"{env} is stopped; fix the cause and run the same command again, or restore "
            f"its own backups: `invoke restore --env={env}`"
        )
        return [
            preflight(f"export {source} (scratch container, personal data replaced)", self.export),
            impacting("maintenance mode on", self.maintenance_on, hint),
            impacting("stop the API, the worker and the backups", self.stop_writers, hint),
            impacting(f"load {source}'s data", self.load, hint),
            impacting("check the schema (migrate to head)", self.migrate, hint),
            impacting("start the backups, the API and the worker", self.start_writers, hint),
            impacting("maintenance mode off", self.maintenance_off),
        ]


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
    args = commands.repo_args(source, repo)
    with targets.open_target(source) as src, targets.open_target(env) as dst:
        confirm(
            env,
            f"Replacing the database of {dst.label} with the newest backup of {source.name} "
            f"({src.label}), personal data replaced, loses every change made in {env.name}. The "
            "API and worker stop meanwhile.",
            yes,
        )
        with dst.locked("restore from another environment"):
            return SanitizedCopy(env, source, src, dst, args).run(runner=runner)
