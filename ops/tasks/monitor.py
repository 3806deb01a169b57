"""`invoke monitor`: Prometheus and Alertmanager of an environment."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from ops import config
from ops.monitoring import monitor
from ops.tasks._common import DEFAULT_ENV, ENV_HELP, exits


@task(
    name="monitor",
    help={
        "env": ENV_HELP,
        "once": "on a host: print, then close the SSH tunnel at once instead of keeping it "
        "open until Ctrl-C (local stacks have no tunnel: no effect)",
    },
)
def show(c: Context, env: str = DEFAULT_ENV, once: bool = False) -> None:
    """Print where Prometheus and Alertmanager answer (hosts: an SSH tunnel), alerts, targets."""
    with exits():
        environment = config.load(env)
        with monitor.reachable(environment) as at:
            print("\n".join(monitor.read(environment, at).lines()), flush=True)
            if at.remote is None or once:
                return
            print(
                "The SSH tunnel stays open for the URLs above. Close it with Ctrl-C (or SIGTERM).",
                flush=True,
            )
            monitor.hold_open(environment, at)
        print("tunnel closed", flush=True)
