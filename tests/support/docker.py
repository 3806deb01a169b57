"""The `docker` command line for tests that drive containers by hand.

    docker("run", "-d", "--name", name, image)          # fails the test if docker fails
    result = docker("run", "--rm", image, "check", check=False)
    assert result.returncode == 2
    image = output("inspect", "-f", "{{.Config.Image}}", name)

Every call has a timeout: a hung engine fails the test instead of blocking the whole run.
"""

from __future__ import annotations

import os
import subprocess

# Long enough for a `docker run` that pulls nothing; builds and restores pass their own.
TIMEOUT = 120.0
# How much of a failed command's output the failure shows.
SHOWN = 4000
# The words of a failed command the failure names: enough to know it, not the -e VAR=secret
# options that may follow.
NAMED = 6


def docker(
    *args: str,
    check: bool = True,
    capture: bool = True,
    timeout: float = TIMEOUT,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`docker ARGS`. With `check`, a non-zero exit fails the test naming the command, its exit
    status and its output. `capture=False` lets the output through (pytest shows it on a
    failure). `env`: variables added to this process's environment for the command."""
    result = subprocess.run(
        ["docker", *args],
        capture_output=capture,
        text=True,
        timeout=timeout,
        input=input,
        env=None if env is None else {**os.environ, **env},
        check=False,
    )
    if check and result.returncode != 0:
        named = " ".join(args[:NAMED]) + (" ..." if len(args) > NAMED else "")
        raise AssertionError(
            f"docker {named} exited {result.returncode}:\n"
            f"{(result.stdout or '')[-SHOWN:]}\n{(result.stderr or '')[-SHOWN:]}"
        )
    return result


def output(*args: str, timeout: float = TIMEOUT) -> str:
    """The stdout of `docker ARGS` (which must succeed), without surrounding blank space."""
    return docker(*args, timeout=timeout).stdout.strip()


def logs(container: str, tail: int | None = None) -> str:
    """A container's output, stdout then stderr ('' for a container that does not exist)."""
    args = ["logs", *(["--tail", str(tail)] if tail is not None else []), container]
    result = docker(*args, check=False, timeout=60)
    return result.stdout + result.stderr


def inspect(target: str, template: str) -> str:
    """One field of `docker inspect` ('' when there is no such object)."""
    return docker("inspect", "-f", template, target, check=False).stdout.strip()


def remove(*containers: str) -> None:
    """Remove containers and their anonymous volumes, running or not, existing or not."""
    if containers:
        docker("rm", "-f", "-v", *containers, check=False)
