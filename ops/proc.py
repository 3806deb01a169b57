"""Running external commands: every command is echoed before it runs, values of env never are."""

from __future__ import annotations

import shlex
import subprocess  # nosec B404: commands are argv lists built by ops, never a shell string
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ops.errors import OpsError


def echo(argv: Sequence[str]) -> None:
    """Print a command the way a person would type it."""
    print(f"$ {shlex.join(argv)}", flush=True)


def run(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    capture: bool = False,
    check: bool = True,
    quiet: bool = False,
    what: str = "",
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv (stdin: text fed to it); on failure raise OpsError naming the command (and its
    stderr when captured)."""
    if not quiet:
        echo(argv)
    sys.stdout.flush()
    try:
        result = subprocess.run(  # noqa: S603  # nosec B603: argv list, no shell
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            text=True,
            capture_output=capture,
            check=False,
            input=stdin,
        )
    except FileNotFoundError as exc:
        raise OpsError(
            f"{argv[0]} is not installed or not on PATH ({what or 'needed here'})"
        ) from exc
    if check and result.returncode != 0:
        detail = f": {result.stderr.strip()[-2000:]}" if capture and result.stderr else ""
        raise OpsError(
            f"{what or 'command'} failed (exit {result.returncode}): {shlex.join(argv)}{detail}"
        )
    return result
