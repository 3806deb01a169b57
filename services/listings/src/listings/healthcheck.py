"""`listings healthcheck api|ready|worker`: exit 0 healthy, 1 not.

`api` and `worker` are the container HEALTHCHECKs. `ready` asks the local API's /ready (database,
Redis, schema at head): the rolling deploy's gate before a new replica takes traffic.

A probe runs every few seconds in every container, and the deploy polls new replicas with it
while they boot: it never loads the settings (pydantic and the validation of every secret cost
about three times the probe itself). The worker's two settings are read from the environment
here, with the defaults Settings takes from this module.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

API_HEALTH_URL = "http://127.0.0.1:8000/health"
# Settings' defaults (listings.settings takes them from here).
HEARTBEAT_FILE = "/tmp/listings-worker.heartbeat"  # noqa: S108  # nosec B108 - per-container tmpfs
HEARTBEAT_MAX_AGE_S = 30
API_READY_URL = "http://127.0.0.1:8000/ready"


def _get(url: str, timeout: float) -> tuple[bool, str]:
    path = url.rsplit(":8000", 1)[-1]
    try:
        # Constant http:// URLs on loopback, never user input.
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310  # nosec B310
            return response.status == 200, f"{path} answered {response.status}"
    except urllib.error.HTTPError as exc:
        body = exc.read(500).decode(errors="replace")
        return False, f"{path} answered {exc.code}: {body}"
    except OSError as exc:
        return False, f"{path} unreachable: {exc}"


def check_api(timeout: float = 3.0) -> tuple[bool, str]:
    return _get(API_HEALTH_URL, timeout)


def check_ready(timeout: float = 5.0) -> tuple[bool, str]:
    return _get(API_READY_URL, timeout)


def check_worker(heartbeat_file: str, max_age_s: float) -> tuple[bool, str]:
    path = Path(heartbeat_file)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False, f"no heartbeat file at {path}"
    if age > max_age_s:
        return False, f"heartbeat is {age:.0f}s old (limit {max_age_s:g}s)"
    return True, f"heartbeat {age:.1f}s old"


def worker_settings(environ: Mapping[str, str]) -> tuple[str, float]:
    """The worker's heartbeat file and its age limit, as Settings reads them (LISTINGS_...,
    any case); the container started only with valid settings."""
    found = {key.upper(): value for key, value in environ.items()}
    path = found.get("LISTINGS_WORKER_HEARTBEAT_FILE") or HEARTBEAT_FILE
    try:
        limit = float(found.get("LISTINGS_WORKER_HEARTBEAT_MAX_AGE_S") or HEARTBEAT_MAX_AGE_S)
    except ValueError:
        limit = HEARTBEAT_MAX_AGE_S
    return path, limit


def run(target: str, environ: Mapping[str, str] = os.environ) -> int:
    """`listings healthcheck <target>`: prints what it found; 0 healthy, 1 not."""
    if target == "api":
        ok, message = check_api()
    elif target == "ready":
        ok, message = check_ready()
    else:
        ok, message = check_worker(*worker_settings(environ))
    print(message)
    return 0 if ok else 1
