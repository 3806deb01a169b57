"""`invoke bench.deploy`: deploy and rollback durations under steady read traffic.

Runs in a sandbox of its own (never an existing environment): deploys v1, then warms up v2 (so
its images are on the host, as for a rollback and for "images already present"), then measures,
each under traffic, with the commands a user types: a deploy of v2, a rollback to v1 within the
standby (v1's replicas still running), and, after a deploy of v2 whose standby has ended, a
rollback that starts v1's replicas again.

The traffic: RATE req/s of mixed reads over HTTPS, half on kept-alive HTTP/1.1 connections that
never retry, half on a new connection per request, and next to them H2_THREADS curl loops of
kept-alive HTTP/2 connections that never retry (H2_RATE req/s each, /api/v1/version). The
sandbox's per-IP rate limits are raised for it (all of it comes from this one address), its
standby shortened to STANDBY seconds so the last case fits, and the deploy's watch after the
switch to WATCH seconds. A deploy's duration is judged without its watch, which is a fixed
observation window (deploy.watch), not work: the line says how long it watched and the total.
Prints the durations, the requests, failures and p99 per client kind, and PASS/MISS against the
targets.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ops import config, paths, proc
from ops.errors import OpsError
from ops.perf.h2client import Http2Traffic
from ops.perf.traffic import Traffic

DEPLOY_TARGET_S = 30.0
ROLLBACK_IN_STANDBY_TARGET_S = 5.0
ROLLBACK_TARGET_S = 20.0
RATE = 150.0
THREADS = 24
# Next to them, curl's kept-alive HTTP/2 connections that never retry (ops/perf/h2client.py).
H2_THREADS = 2
H2_RATE = 10
STANDBY = 60
WATCH = 20
WATCH_STEP = "watch the error ratio (Prometheus)"
# The sandbox's limits per client IP, raised: the bench's clients all share one address.
LIMITS = {
    "rate_limit": 2000,
    "rate_burst": 4000,
    "viewer_rate_limit": 500,
    "viewer_rate_burst": 1000,
}


@dataclass(frozen=True)
class Measured:
    what: str
    seconds: float
    requests: int
    failures: int
    per_kind: str
    rate: float
    versions: str
    steps: tuple[str, ...] = ()  # the run's step table: where the time went

    @property
    def watched(self) -> float:
        """Seconds the deploy's watch step took (its line in the step table; 0: none)."""
        for line in self.steps:
            if line.startswith(WATCH_STEP):
                found = re.search(r"\s(\d+(?:\.\d+)?)s\s", line[len(WATCH_STEP) :])
                return float(found.group(1)) if found else 0.0
        return 0.0

    def line(self, target: float) -> str:
        live = self.seconds - self.watched
        verdict = "PASS" if live < target and self.failures == 0 else "MISS"
        watch = (
            f", then watched {self.watched:.1f}s: {self.seconds:.1f}s in all"
            if self.watched
            else ""
        )
        return (
            f"{self.what:<22} {live:>7.1f}s (target < {target:.0f}s{watch})  "
            f"{self.requests:>6} requests at {self.rate:>5.1f}/s, {self.failures} failed "
            f"({self.per_kind})  versions {self.versions}  {verdict}"
        )


def _invoke(env: dict[str, str], *args: str) -> str:
    started = time.monotonic()
    result = proc.run(
        [sys.executable, "-m", "invoke", *args],
        env=env,
        cwd=paths.repo_root(),
        capture=True,
        check=False,
        quiet=True,
    )
    if result.returncode != 0:
        raise OpsError(
            f"`invoke {' '.join(args)}` failed after {time.monotonic() - started:.0f}s:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
        )
    return result.stdout


def step_table(output: str) -> list[str]:
    """The summary table of the last step table in a run's output (header to total)."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("step ") and "phase" in line]
    if not starts:
        return []
    table = []
    for line in lines[starts[-1] :]:
        table.append(line)
        if line.startswith("total "):
            break
    return table


def _measured(
    what: str, env: dict[str, str], args: Sequence[str], url: str, ca: Path, connect_to: str = ""
) -> Measured:
    # Kept-alive clients never re-send a request their connection lost: it counts as failed.
    traffic = Traffic(
        url, ssl.create_default_context(cafile=str(ca)), rate=RATE, threads=THREADS, retry=False
    )
    h2 = Http2Traffic(url, ca, connect_to, threads=H2_THREADS, rate=H2_RATE)
    with traffic, h2:
        time.sleep(2)
        began = time.monotonic()
        output = _invoke(env, *args)
        seconds = time.monotonic() - began
        time.sleep(2)
    tally = traffic.tally
    h2_failed = len(h2.tally.failures)
    return Measured(
        what,
        seconds,
        tally.requests + h2.tally.requests,
        len(tally.failures) + h2_failed,
        f"{tally.per_kind()}, HTTP/2 kept-alive {h2.tally.requests} requests {h2_failed} failed",
        traffic.rate,
        " -> ".join(tally.version_changes()),
        tuple(step_table(output)),
    )


def _edit(path: Path) -> None:
    """The sandbox's environment file with the bench's limits, standby and watch. Its first
    comment lines stay: they say sandbox.up wrote it, so sandbox.down removes it with the
    sandbox's secrets and state."""
    text = path.read_text()
    header = "".join(line for line in text.splitlines(keepends=True)[:3] if line.startswith("#"))
    data = yaml.safe_load(text)
    data.setdefault("nginx", {}).update(LIMITS)
    data.setdefault("deploy", {}).update({"standby": STANDBY, "watch": WATCH})
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))


def run(keep: bool = False) -> list[str]:
    """Set up a sandbox, measure deploy and rollback, print and return the report lines."""
    name = f"bench-{secrets.token_hex(3)}"
    envdir = Path(tempfile.mkdtemp(prefix="slipway-bench-envs-"))
    base = {**os.environ, "SLIPWAY_ENVIRONMENTS_DIR": str(envdir)}
    base.pop("SLIPWAY_VERSION", None)
    v1, v2 = f"{name}-v1", f"{name}-v2"
    lines: list[str] = []
    try:
        print(f"==> sandbox {name}, versions {v1} and {v2}", flush=True)
        _invoke(base, "sandbox.up", f"--name={name}")
        _edit(envdir / f"{name}.yaml")
        print(
            f"    the sandbox's per-IP limits raised for the load ({LIMITS}); standby "
            f"{STANDBY}s, watch after the switch {WATCH}s",
            flush=True,
        )
        for version in (v1, v2, v1):  # v1 live, v2's images on the host too, back on v1
            print(f"    setup: deploy {version}", flush=True)
            _invoke({**base, "SLIPWAY_VERSION": version}, "deploy", f"--env={name}")
        os.environ["SLIPWAY_ENVIRONMENTS_DIR"] = str(envdir)
        try:
            env = config.load(name)
        finally:
            del os.environ["SLIPWAY_ENVIRONMENTS_DIR"]
        ca = Path(env.verify) if not isinstance(env.verify, bool) else Path("/nonexistent")
        print("==> measuring under traffic", flush=True)
        deploy_v2 = ({**base, "SLIPWAY_VERSION": v2}, ["deploy", f"--env={name}"])
        rollback = (base, ["rollback", f"--env={name}"])
        url, connect_to = env.https_url, env.connect_to
        deployed = _measured("deploy", *deploy_v2, url, ca, connect_to)
        in_standby = _measured("rollback in the standby", *rollback, url, ca, connect_to)
        print(f"    deploy {v2} again, then {STANDBY + 15}s for its standby to end", flush=True)
        _invoke(deploy_v2[0], *deploy_v2[1])
        time.sleep(STANDBY + 15)
        after = _measured("rollback after it", *rollback, url, ca, connect_to)
        lines = [
            f"bench.deploy: {env.replicas.api} API replicas, images already on the host, "
            f"{RATE:.0f} req/s of mixed reads through nginx over HTTPS ({THREADS} clients: half "
            "on kept-alive HTTP/1.1 connections that never retry, half on a new connection "
            f"per request) and {H2_THREADS * H2_RATE} req/s over kept-alive HTTP/2 connections "
            "that never retry (curl), the sandbox's per-IP limits raised",
            deployed.line(DEPLOY_TARGET_S),
            in_standby.line(ROLLBACK_IN_STANDBY_TARGET_S),
            after.line(ROLLBACK_TARGET_S),
        ]
        for line in lines:
            print(line, flush=True)
        for measured in (deployed, in_standby, after):
            print(f"\n{measured.what}: where the time went", flush=True)
            for line in measured.steps:
                print(f"    {line}", flush=True)
        return lines
    finally:
        if not keep:
            _invoke(base, "sandbox.down", f"--name={name}", "--yes")
            shutil.rmtree(envdir, ignore_errors=True)
            shutil.rmtree(paths.env_state_dir(name), ignore_errors=True)
            proc.run(
                ["docker", "rmi", f"slipway/listings:{v1}", f"slipway/listings:{v2}"],
                capture=True,
                check=False,
                quiet=True,
            )
