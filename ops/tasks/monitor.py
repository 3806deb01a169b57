"""`invoke monitor`: Prometheus and Alertmanager of an environment."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from ops import config, monitor
from ops.tasks._common import DEFAULT_ENV, ENV_HELP, exits


@task(name="monitor", help={"env": ENV_HELP})
def show(c: Context, env: str = DEFAULT_ENV) -> None:
    """Print where Prometheus and Alertmanager answer, the firing alerts and targets down."""
    with exits():
        result = monitor.view(config.load(env))
    print("\n".join(result.lines()))
