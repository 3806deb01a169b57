"""Checks through the public URL, as a client sees the release: /ready answers 200 and
/api/v1/version reports the version that was deployed."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import httpx

from ops import config, health
from ops.errors import OpsError

SMOKE_TIMEOUT = 60.0


def smoke_check(env: config.Environment, version: str, timeout: float = SMOKE_TIMEOUT) -> str:
    """/ready answers 200 and /api/v1/version reports `version`, through the public URL."""
    base = env.https_url
    deadline = time.monotonic() + timeout
    problem = ""
    with httpx.Client(verify=verify_context(env), timeout=10.0) as client:
        while time.monotonic() < deadline:
            try:
                ready = health.public_get(client, base, "/ready", env.connect_to)
                seen = health.public_get(client, base, "/api/v1/version", env.connect_to)
                reported = seen.json().get("version") if seen.status_code == 200 else None
                if ready.status_code == 200 and reported == version:
                    return f"{base}: ready, version {version}"
                problem = f"/ready {ready.status_code}, version {reported!r} (want {version!r})"
            except (httpx.HTTPError, ValueError) as exc:
                problem = str(exc)
            time.sleep(1.0)
    raise OpsError(f"smoke check through {base} failed: {problem}")


def verify_context(env: config.Environment) -> ssl.SSLContext | bool:
    """An SSL context trusting the environment's CA file, or True for the system CAs."""
    verify = env.verify
    if isinstance(verify, Path):
        if not verify.is_file():
            raise OpsError(
                f"CA file {verify} to verify {env.https_url} is missing. Fix: set `ca_file:` in "
                f"{env.source}, or run the deploy from the machine that holds .slipway/{env.name}/"
            )
        return health.tls_context(verify)
    return True
