"""Running external commands: every command is echoed before it runs, values of env never are."""

from __future__ import annotations

import shlex
import subprocess  # nosec B404: commands are argv lists built by ops, never a shell string
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from ops.errors import OpsError


def echo(argv: Sequence[str]) -> None:
    """Print a command the way a person would type it."""
    print(f"$ {shlex.join(argv)}", flush=True)


def _not_installed(argv: Sequence[str], what: str) -> OpsError:
    return OpsError(f"{argv[0]} is not installed or not on PATH ({what or 'needed here'})")


def run(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    capture: bool = False,
    check: bool = True,
    quiet: bool = False,
    what: str = "",
    stdin: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv (stdin: text fed to it); on failure raise OpsError naming the command (and its
    stderr when captured). timeout: seconds before the command is killed and OpsError raised
    (whatever `check` says: a command cut short has no result to look at)."""
    if not quiet:
        echo(argv)
    sys.stdout.flush()
    try:
        result = subprocess.run(  # noqa: S603  # nosec B603: argv list, no shell
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            text=True,
            # A tool may print bytes that are not UTF-8 (pgBackRest quotes an undecryptable
            # file's first line): replaced, never a traceback.
            errors="replace",
            capture_output=capture,
            check=False,
            input=stdin,
            timeout=timeout,
        )
    except FileNotFoundError as exc:
        raise _not_installed(argv, what) from exc
    except subprocess.TimeoutExpired as exc:
        raise OpsError(
            f"{what or 'command'} did not finish within {timeout:g}s and was stopped: "
            f"{shlex.join(argv)}"
        ) from exc
    if check and result.returncode != 0:
        detail = f": {result.stderr.strip()[-2000:]}" if capture and result.stderr else ""
        raise OpsError(
            f"{what or 'command'} failed (exit {result.returncode}): {shlex.join(argv)}{detail}"
        )
    return result


def tee(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
    what: str = "",
) -> tuple[int, str]:
    """Run argv, printing its output (stdout and stderr merged) as it comes, and return the exit
    code with everything it printed."""
    echo(argv)
    sys.stdout.flush()
    try:
        process = subprocess.Popen(  # noqa: S603  # nosec B603: argv list, no shell
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except FileNotFoundError as exc:
        raise _not_installed(argv, what) from exc
    if stdin is not None and process.stdin is not None:
        feed = process.stdin

        def write() -> None:  # in its own thread: a full output pipe never blocks the input
            with feed:
                feed.write(stdin)

        threading.Thread(target=write, daemon=True).start()
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    return process.wait(), "".join(lines)
