"""`listings healthcheck api|ready|worker`: exit 0 healthy, 1 not.

`api` and `worker` are the container HEALTHCHECKs. `ready` asks the local API's /ready (database,
Redis, schema at head): the rolling deploy's gate before a new replica takes traffic.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

from listings.settings import Settings

API_HEALTH_URL = "http://127.0.0.1:8000/health"
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


def check_worker(settings: Settings) -> tuple[bool, str]:
    path = Path(settings.worker_heartbeat_file)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False, f"no heartbeat file at {path}"
    if age > settings.worker_heartbeat_max_age_s:
        return False, f"heartbeat is {age:.0f}s old (limit {settings.worker_heartbeat_max_age_s}s)"
    return True, f"heartbeat {age:.1f}s old"
