"""Sandbox hosts for real: `invoke sandbox.up --hosts=2`, then OpenSSH into each, then down.

The sandbox has a name of its own (it-sbx-<random>) and writes its environment file to a
temporary SLIPWAY_ENVIRONMENTS_DIR; its .env and key directory are removed with it. The module
fixture always runs `invoke sandbox.down --yes` at the end (and removes any container left with
its label), whatever happened.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sandbox_harness import Sandbox, running_sandbox
from support.docker import docker, output

from ops import config
from ops.sandbox import names

pytestmark = pytest.mark.integration

NAME = f"it-sbx-{secrets.token_hex(3)}"
HOSTS = 2


class HostsSandbox(Sandbox):
    """The module's sandbox, its containers and OpenSSH into its hosts."""

    def containers(self) -> dict[str, dict[str, object]]:
        """Container name -> id and published ports, for every container with our label."""
        ids = output("ps", "-aq", "--filter", f"label={names.LABEL}={self.name}").split()
        if not ids:
            return {}
        inspected = json.loads(docker("inspect", *ids).stdout)
        return {
            c["Name"].lstrip("/"): {"id": c["Id"], "ports": c["NetworkSettings"]["Ports"]}
            for c in inspected
        }

    def ssh_ports(self) -> list[int]:
        """The SSH ports of the hosts, in host order, from the environment file."""
        env = config.parse(_load_yaml(self.files.environment), self.files.environment, self.name)
        return [host.port for host in env.hosts]

    def ssh(
        self, port: int, command: str, user: str = "deploy", stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """OpenSSH with the sandbox key; the host key must be in the sandbox's known_hosts."""
        argv = [
            "ssh",
            "-i",
            str(self.files.private_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.files.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=15",
            "-p",
            str(port),
            f"{user}@127.0.0.1",
            command,
        ]
        return subprocess.run(argv, input=stdin, capture_output=True, timeout=300)


def _load_yaml(path: Path) -> object:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _out(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout.decode().strip()


@pytest.fixture(scope="module")
def sbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostsSandbox]:
    # The test logs in with the OpenSSH client itself (not only paramiko): it must be there.
    assert shutil.which("ssh"), "the OpenSSH client is missing: apt-get install openssh-client"
    with running_sandbox(HostsSandbox, NAME, tmp_path_factory, f"--hosts={HOSTS}") as handle:
        yield handle


def test_up_writes_an_ssh_environment_and_private_files(
    sbx: HostsSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIPWAY_ENVIRONMENTS_DIR", str(sbx.envdir))
    env = config.load(NAME)
    assert env.target == "ssh"
    assert len(env.hosts) == HOSTS
    assert {h.address for h in env.hosts} == {"127.0.0.1"}
    assert env.listings_env == "staging"
    assert (sbx.files.secrets.stat().st_mode & 0o777) == 0o600
    assert (sbx.files.private_key.stat().st_mode & 0o777) == 0o600
    assert (sbx.files.key_dir.stat().st_mode & 0o777) == 0o700
    containers = sbx.containers()
    assert sorted(containers) == [names.container_name(NAME, i) for i in (1, 2)]
    for info in containers.values():
        ports = info["ports"]
        assert isinstance(ports, dict)
        for bindings in ports.values():
            assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}


def test_each_host_is_its_own_engine_with_compose_v2_for_deploy(sbx: HostsSandbox) -> None:
    engine_ids = set()
    for port in sbx.ssh_ports():
        engine_ids.add(_out(sbx.ssh(port, "docker info -f '{{.ID}}'")))
        assert _out(sbx.ssh(port, "docker compose version --short")).startswith("2.")
        assert "docker" in _out(sbx.ssh(port, "id -nG")).split()
        assert _out(sbx.ssh(port, "stat -c %U /srv/slipway")) == "deploy"
    assert len(engine_ids) == HOSTS


def test_an_image_loaded_over_ssh_runs_on_the_nested_engine(sbx: HostsSandbox) -> None:
    saved = subprocess.run(
        ["docker", "save", "debian:bookworm-slim"], capture_output=True, check=True
    ).stdout
    for port in sbx.ssh_ports():
        assert "Loaded image" in _out(sbx.ssh(port, "docker load", stdin=saved))
        assert _out(sbx.ssh(port, "docker run --rm debian:bookworm-slim echo nested")) == "nested"


def test_only_deploy_logs_in_and_only_with_the_key(sbx: HostsSandbox) -> None:
    port = sbx.ssh_ports()[0]
    assert sbx.ssh(port, "true", user="root").returncode == 255
    by_password = subprocess.run(
        [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={sbx.files.known_hosts}",
            "-p",
            str(port),
            "deploy@127.0.0.1",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert by_password.returncode == 255
    assert "Permission denied (publickey)" in by_password.stderr


def test_a_second_up_reuses_the_hosts_and_rewrites_the_same_file(sbx: HostsSandbox) -> None:
    before = sbx.containers()
    text = sbx.files.environment.read_text(encoding="utf-8")
    result = sbx.up()
    assert f"keep {HOSTS}, start 0" in result.stdout
    assert sbx.containers() == before
    assert sbx.files.environment.read_text(encoding="utf-8") == text


def test_down_removes_the_hosts_and_every_file(sbx: HostsSandbox) -> None:
    result = sbx.down()
    assert f"sandbox {NAME} is gone" in result.stdout
    assert sbx.containers() == {}
    assert not sbx.files.environment.exists()
    assert not sbx.files.secrets.exists()
    assert not sbx.files.key_dir.exists()
    again = sbx.down()
    assert f"sandbox {NAME} does not exist" in again.stdout
