"""gunicorn settings for `listings api` (read with `-c python:listings.gunicorn_conf`)."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import multiprocess

from listings.logs import JsonFormatter
from listings.settings import load_settings

_settings = load_settings()

bind = "0.0.0.0:8000"
workers = _settings.web_concurrency
worker_class = "uvicorn_worker.UvicornWorker"
# On SIGTERM gunicorn stops accepting and gives in-flight requests this long to finish.
graceful_timeout = _settings.graceful_timeout
timeout = 120
# Longer than nginx's upstream keepalive so nginx, not gunicorn, closes idle connections.
keepalive = 75
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
proc_name = "listings-api"
# No gunicornc control socket: the container is managed through signals, and the socket would
# want a writable $HOME, which the read-only, non-root container does not have.
control_socket_disable = True
forwarded_allow_ips = "*"

logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonFormatter, "service": "api"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"handlers": ["stdout"], "level": _settings.log_level},
    "loggers": {
        "gunicorn.error": {"handlers": [], "propagate": True},
        "gunicorn.access": {"handlers": [], "propagate": False},
    },
}


def child_exit(server: Any, worker: Any) -> None:
    # Drop the dead worker's live gauges (in-flight, pool) from the aggregated metrics.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
