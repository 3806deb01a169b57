"""`listings healthcheck api|worker`: the container HEALTHCHECK, exit 0 healthy, 1 not."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from listings.settings import Settings

API_HEALTH_URL = "http://127.0.0.1:8000/health"


def check_api(timeout: float = 3.0) -> tuple[bool, str]:
    try:
        # A constant http:// URL on loopback, never user input.
        with urllib.request.urlopen(API_HEALTH_URL, timeout=timeout) as response:  # nosec B310
            return response.status == 200, f"/health answered {response.status}"
    except OSError as exc:
        return False, f"/health unreachable: {exc}"


def check_worker(settings: Settings) -> tuple[bool, str]:
    path = Path(settings.worker_heartbeat_file)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False, f"no heartbeat file at {path}"
    if age > settings.worker_heartbeat_max_age_s:
        return False, f"heartbeat is {age:.0f}s old (limit {settings.worker_heartbeat_max_age_s}s)"
    return True, f"heartbeat {age:.1f}s old"
