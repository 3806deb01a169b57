"""The harness shared by the sandbox integration tests (plain helpers, not fixtures).

conftest.py registers this module for pytest's assertion rewriting, so its asserts explain
themselves like those of the tests.

`running_sandbox` runs `invoke sandbox.up` for a sandbox of the module's own name, with its
environment file in a temporary SLIPWAY_ENVIRONMENTS_DIR, and always takes it down again: it runs
`invoke sandbox.down --yes`, then removes any container left with the sandbox's label (and the
named leftovers), its key directory and its .env file, whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from support.docker import docker, output, remove

from ops import config
from ops.sandbox import names
from ops.sandbox.files import SandboxFiles

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Sandbox:
    """Handle on the sandbox of one test module."""

    name: str
    env: dict[str, str]
    envdir: Path
    up_args: tuple[str, ...] = ()

    @property
    def files(self) -> SandboxFiles:
        return SandboxFiles(self.name, ROOT, self.envdir / f"{self.name}.yaml")

    def invoke(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """An invoke task, run the way a user runs it."""
        argv = [sys.executable, "-m", "invoke", *args]
        result = subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=900
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n--- stdout\n"
                f"{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-4000:]}"
            )
        return result

    def up(self) -> subprocess.CompletedProcess[str]:
        """`invoke sandbox.up --name <name>` with the module's options."""
        return self.invoke("sandbox.up", f"--name={self.name}", *self.up_args)

    def down(self, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.invoke("sandbox.down", f"--name={self.name}", "--yes", check=check)

    def labelled(self) -> list[str]:
        """Names of every container carrying this sandbox's label."""
        return output(
            "ps", "-a", "--filter", f"label={names.LABEL}={self.name}", "--format", "{{.Names}}"
        ).split()

    def load(self) -> config.Environment:
        os.environ["SLIPWAY_ENVIRONMENTS_DIR"] = str(self.envdir)
        try:
            return config.load(self.name)
        finally:
            del os.environ["SLIPWAY_ENVIRONMENTS_DIR"]


S = TypeVar("S", bound=Sandbox)


@contextmanager
def running_sandbox(
    kind: type[S],
    name: str,
    tmp_path_factory: pytest.TempPathFactory,
    *up_args: str,
    leftovers: Iterable[str] = (),
    unset: Iterable[str] = (),
) -> Iterator[S]:
    """A sandbox that is up inside the block and gone after it, even when the block failed.

    `leftovers` are container names removed at the end besides the labelled ones; `unset` are
    variables of this process that the invoke tasks must not see.
    """
    from ops.images import engine, ensure_base

    ensure_base(engine())
    envdir = tmp_path_factory.mktemp("environments")
    env = dict(os.environ, SLIPWAY_ENVIRONMENTS_DIR=str(envdir))
    for variable in unset:
        env.pop(variable, None)
    handle = kind(name, env, envdir, up_args)
    try:
        handle.up()
        yield handle
    finally:
        handle.down(check=False)
        # Belt and braces: nothing of this sandbox survives the session.
        remove(*{*handle.labelled(), *leftovers})
        shutil.rmtree(handle.files.key_dir, ignore_errors=True)
        handle.files.secrets.unlink(missing_ok=True)


def assert_down_removes(sbx: Sandbox, server: str, *paths: Path) -> None:
    """`invoke sandbox.down` removes the server container, every labelled one and the files."""
    result = sbx.down()
    assert f"removing {server}" in result.stdout
    assert f"sandbox {sbx.name} is gone" in result.stdout
    assert sbx.labelled() == []
    assert docker("inspect", server, check=False).returncode != 0
    for path in paths:
        assert not path.exists(), path


def inspect(container: str) -> dict[str, Any]:
    """`docker inspect` of one container."""
    data: dict[str, Any] = json.loads(docker("inspect", container).stdout)[0]
    return data


def exec_in(container: str, *argv: str, stdin: bytes | None = None) -> str:
    """A command inside a container of this machine's engine; it must succeed."""
    interactive = ["-i"] if stdin is not None else []
    result = subprocess.run(
        ["docker", "exec", *interactive, container, *argv],
        input=stdin,
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, (argv, result.stderr.decode(errors="replace"))
    return result.stdout.decode(errors="replace").strip()
