"""What replacing an environment's live database takes, whichever data replaces it (restore.py:
its own backups; sanitized_copy.py: another environment's): the operator's confirmation, and
the steps around the replacement (maintenance mode, the writers stopped, the schema brought to
the release's head, the writers started again), shared by both operations.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ops import config
from ops.backup import commands
from ops.backup.repository import BACKUP_SERVICE
from ops.backup.targets import Target
from ops.errors import OpsError
from ops.steps import Operation

# Stopped during an in-place restore: everything that writes to (or reads from) PostgreSQL.
WRITERS = ("api", "worker", BACKUP_SERVICE)


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


class InPlace(Operation):
    """An operation that replaces the database of `target` while its writers are stopped: the
    step methods before and after the replacement (the subclass's steps() lists them)."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def maintenance_on(self) -> str:
        return self.target.maintenance(True)

    def stop_writers(self) -> str:
        self.target.stop(*WRITERS, what="stop the API, the worker and the backup service")
        return ", ".join(WRITERS) + " stopped"

    def migrate(self) -> str:
        out = self.target.oneoff(commands.migrate())
        done = [line for line in out.splitlines() if "database schema at" in line]
        if not done:
            raise OpsError(f"the migration did not finish: {out.strip()[-600:]}")
        return done[-1].strip()[-100:]

    def start_writers(self) -> str:
        self.target.start(
            *WRITERS, what="start the backup service, the API and the worker", timeout=300
        )
        return "healthy"

    def maintenance_off(self) -> str:
        return self.target.maintenance(False)
