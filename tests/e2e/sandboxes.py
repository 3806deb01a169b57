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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from support.docker import docker, output, remove
from support.waiting import wait_for

from ops import config, health
from ops.perf.traffic import Traffic

ROOT = Path(__file__).resolve().parents[2]
LOAD_RATE = 24.0  # requests/s of mixed reads through nginx during each operation
# Requests served before and after an operation under load (about two seconds of it).
SERVED = 50


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
        result = docker("exec", self.container(index), "sh", "-c", command, check=False)
        if check:
            assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        return result.stdout

    def address(self, index: int = 1) -> str:
        """Host `index`'s address on the sandbox network."""
        return output(
            "inspect",
            "-f",
            '{{(index .NetworkSettings.Networks "slipway-sandbox").IPAddress}}',
            self.container(index),
        )

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

    def traffic(self, retry: bool = True) -> Traffic:
        """Reads at LOAD_RATE, half kept-alive; `retry=False`: a kept-alive client never
        re-sends a request its connection lost."""
        env = self.environment
        return Traffic(
            env.https_url, self.verify(), rate=LOAD_RATE, connect_to=env.connect_to, retry=retry
        )

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


def derived_image(
    base: str,
    tag: str,
    entrypoint: list[str],
    files: dict[str, str],
    env: dict[str, str] | None = None,
) -> None:
    """slipway/listings:<tag> made from `base` with another entrypoint, extra files and
    environment variables."""
    name = f"slipway-derive-{tag}"
    docker("create", "--name", name, base)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for target, text in files.items():
                local = Path(scratch) / Path(target).name
                local.write_text(text)
                docker("cp", str(local), f"{name}:{target}")
        docker(
            "commit",
            "--change",
            f"ENTRYPOINT {json.dumps(entrypoint)}",
            *[arg for k, v in (env or {}).items() for arg in ("--change", f"ENV {k}={v}")],
            name,
            f"slipway/listings:{tag}",
        )
    finally:
        remove(name)


def remove_images(pattern: str) -> None:
    """Remove this machine's images whose repository:tag contains `pattern`."""
    found = output("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    matching = [image for image in found if pattern in image]
    if matching:
        docker("rmi", "-f", *matching, check=False)


def served(traffic: Traffic, requests: int = SERVED) -> None:
    """Until the traffic has had `requests` more answers (or failures) than now: the load
    before and after an operation is a number of requests, whatever the machine's speed."""
    until = traffic.tally.requests + requests
    wait_for(
        lambda: traffic.tally.requests >= until,
        what=f"{requests} more requests of the traffic",
        interval=0.1,
    )
