"""A sandbox environment for e2e tests: `invoke sandbox.up` in a temporary environments
directory, the invoke tasks run as a user would, shell commands inside the sandbox hosts, and the
public URL reached as the environment says (its CA file, its connect_to). Removed afterwards
unless SLIPWAY_E2E_KEEP=1."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from ops import config, health
from ops.perf.traffic import Traffic

ROOT = Path(__file__).resolve().parents[2]
LOAD_RATE = 24.0  # requests/s of mixed reads through nginx during each operation


class SandboxEnv:
    """One environment written by `invoke sandbox.up --name <name>`."""

    def __init__(self, name: str, envdir: Path, environ: dict[str, str]) -> None:
        self.name = name
        self.envdir = envdir
        self.environ = environ

    @property
    def environment(self) -> config.Environment:
        os.environ["SLIPWAY_ENVIRONMENTS_DIR"] = str(self.envdir)
        try:
            return config.load(self.name)
        finally:
            del os.environ["SLIPWAY_ENVIRONMENTS_DIR"]

    def invoke(
        self, *args: str, check: bool = True, version: str = ""
    ) -> subprocess.CompletedProcess[str]:
        environ = dict(self.environ)
        if version:
            environ["SLIPWAY_VERSION"] = version
        result = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=1500,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n--- stdout\n"
                f"{result.stdout[-8000:]}\n--- stderr\n{result.stderr[-4000:]}"
            )
        return result

    def container(self, index: int = 1) -> str:
        return f"slipway-sandbox-{self.name}-{index}"

    def on_host(self, command: str, index: int = 1, check: bool = True) -> str:
        """A shell command inside sandbox host `index` (as root: it is our container)."""
        result = subprocess.run(
            ["docker", "exec", self.container(index), "sh", "-c", command],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        return result.stdout

    def address(self, index: int = 1) -> str:
        """Host `index`'s address on the sandbox network."""
        return subprocess.run(
            [
                "docker",
                "inspect",
                "-f",
                '{{(index .NetworkSettings.Networks "slipway-sandbox").IPAddress}}',
                self.container(index),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def verify(self) -> ssl.SSLContext:
        env = self.environment
        ca = env.verify
        assert isinstance(ca, Path), f"{self.name} has no CA file to verify with"
        return health.tls_context(ca)

    def get(self, path: str) -> httpx.Response:
        env = self.environment
        with httpx.Client(verify=self.verify(), timeout=10) as client:
            return health.public_get(client, env.https_url, path, env.connect_to)

    def version(self) -> str:
        return str(self.get("/api/v1/version").json()["version"])

    def traffic(self) -> Traffic:
        env = self.environment
        return Traffic(env.https_url, self.verify(), rate=LOAD_RATE, connect_to=env.connect_to)

    def edit(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Change the environment file sandbox.up wrote (kept as the sandbox's own file)."""
        path = self.envdir / f"{self.name}.yaml"
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(
            "# Written by `invoke sandbox.up`, then edited by an e2e test\n"
            + yaml.safe_dump(data, sort_keys=False)
        )


@contextmanager
def sandbox(name: str, *up_args: str, version: str = "") -> Iterator[SandboxEnv]:
    """`invoke sandbox.up --name <name> <up_args>`; everything removed afterwards."""
    envdir = Path(tempfile.mkdtemp(prefix=f"slipway-{name}-envs-"))
    environ = {**os.environ, "SLIPWAY_ENVIRONMENTS_DIR": str(envdir)}
    environ.pop("SLIPWAY_VERSION", None)
    if version:
        environ["SLIPWAY_VERSION"] = version
    made = SandboxEnv(name, envdir, environ)
    try:
        made.invoke("sandbox.up", f"--name={name}", *up_args)
        yield made
    finally:
        if os.environ.get("SLIPWAY_E2E_KEEP") != "1":
            made.invoke("sandbox.down", f"--name={name}", "--yes", check=False)
            shutil.rmtree(envdir, ignore_errors=True)
            shutil.rmtree(ROOT / ".slipway" / name, ignore_errors=True)


def derived_image(base: str, tag: str, entrypoint: list[str], files: dict[str, str]) -> None:
    """slipway/listings:<tag> made from `base` with another entrypoint and extra files."""
    name = f"slipway-derive-{tag}"
    subprocess.run(["docker", "create", "--name", name, base], check=True, capture_output=True)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for target, text in files.items():
                local = Path(scratch) / Path(target).name
                local.write_text(text)
                subprocess.run(
                    ["docker", "cp", str(local), f"{name}:{target}"],
                    check=True,
                    capture_output=True,
                )
        subprocess.run(
            [
                "docker",
                "commit",
                "--change",
                f"ENTRYPOINT {json.dumps(entrypoint)}",
                name,
                f"slipway/listings:{tag}",
            ],
            check=True,
            capture_output=True,
        )
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def remove_images(pattern: str) -> None:
    """Remove this machine's images whose repository:tag contains `pattern`."""
    subprocess.run(
        f"docker images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' | grep -F -- {pattern!r} "
        "| xargs -r docker rmi -f",
        shell=True,
        check=False,
        capture_output=True,
    )


def wait_until(what: str, check: Callable[[], object], timeout: float) -> object:
    """check()'s first truthy result, tried every 3 s; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(3)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {str(last)[-1500:]})")
