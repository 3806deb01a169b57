"""The whole stack, started the way a user starts it: `invoke up`, then tested through nginx.

The stack runs as its own environment (`e2e`, compose project slipway-e2e, free loopback ports)
described by a YAML file written to a temporary environments directory, so it never touches a
developer's `local` stack. `invoke down --volumes --yes` removes it at the end unless
SLIPWAY_E2E_KEEP=1.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENV_NAME = "e2e"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Stack:
    env: dict[str, str]
    http_port: int
    https_port: int
    ca_path: Path
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://localhost:{self.http_port}"

    def invoke(
        self, *args: str, check: bool = True, timeout: int = 1800
    ) -> subprocess.CompletedProcess[str]:
        """Run an invoke task exactly as a user would, against the e2e environment."""
        argv = [sys.executable, "-m", "invoke", *args]
        result = subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n--- stdout\n{result.stdout[-6000:]}"
                f"\n--- stderr\n{result.stderr[-4000:]}"
            )
        return result

    def client(self, **kwargs: object) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        return httpx.Client(base_url=self.base_url, verify=ctx, timeout=30, **kwargs)  # type: ignore[arg-type]

    def compose_ps(self) -> dict[str, str]:
        """Container name -> container id + creation time of every container of the stack."""
        out = subprocess.run(
            [
                "docker",
                "ps",
                "-a",
                "--filter",
                "label=com.docker.compose.project=slipway-e2e",
                "--format",
                "{{.Names}} {{.ID}} {{.CreatedAt}}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return {line.split()[0]: line for line in out.splitlines() if line}


def _write_environment(directory: Path, http_port: int, https_port: int) -> None:
    local = yaml.safe_load((ROOT / "environments" / "local.yaml").read_text())
    local["name"] = ENV_NAME
    local["ports"] = {**local.get("ports", {}), "http": http_port, "https": https_port}
    local["overlay"] = "local"
    (directory / f"{ENV_NAME}.yaml").write_text(yaml.safe_dump(local, sort_keys=False))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env_dir = tmp_path_factory.mktemp("environments")
    http_port, https_port = _free_port(), _free_port()
    _write_environment(env_dir, http_port, https_port)
    env = dict(os.environ, SLIPWAY_ENVIRONMENTS_DIR=str(env_dir))
    handle = Stack(
        env=env,
        http_port=http_port,
        https_port=https_port,
        ca_path=ROOT / ".slipway" / ENV_NAME / "ca.crt",
    )
    up = handle.invoke("up", f"--env={ENV_NAME}")
    handle.outputs["up"] = up.stdout + up.stderr
    try:
        yield handle
    finally:
        if os.environ.get("SLIPWAY_E2E_KEEP") != "1":
            handle.invoke("down", f"--env={ENV_NAME}", "--volumes", "--yes")
            left = handle.compose_ps()
            assert not left, f"`invoke down --volumes --yes` left containers behind: {left}"


@pytest.fixture(scope="session")
def api_key(stack: Stack) -> str:
    name = f"e2e-{secrets.token_hex(4)}"
    result = stack.invoke("apikey.create", f"--env={ENV_NAME}", f"--name={name}")
    match = re.search(r"^\s*(?:key:\s*)?(\S{32,})\s*$", result.stdout, re.MULTILINE)
    assert match, f"no key found in apikey.create output:\n{result.stdout}"
    return match.group(1)
