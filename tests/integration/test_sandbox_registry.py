"""The sandbox's registry for real: `invoke sandbox.up --registry`, a push here, a pull there, down.

One host and its registry (<name>-registry). A small real image of this machine's engine
(debian:bookworm-slim under a tag of this module's own) goes through ops.registry: pushed to the
registry's loopback port with the credentials sbx.up wrote to .env.<name>, then pulled by host
1's own dockerd over real SSH from the registry's address on the sandbox network (TLS verified
through the CA sandbox.up put into the host's certs.d). The environment file goes to a temporary
SLIPWAY_ENVIRONMENTS_DIR; the module fixture always runs `invoke sandbox.down --yes` at the end
(and removes any container left with the sandbox's label, its files and the module's tag).
"""

from __future__ import annotations

import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace

import docker
import pytest
import yaml
from sandbox_harness import Sandbox, assert_down_removes, exec_in, inspect, running_sandbox

from ops import config
from ops import secrets as ops_secrets
from ops.deploy import registry
from ops.errors import OpsError
from ops.executor import query
from ops.remote import Remote
from ops.sandbox import names, servers
from ops.sandbox.registry_server import REGISTRY_UID, RegistryServer, registry_server

pytestmark = pytest.mark.integration

SUFFIX = secrets.token_hex(3)
NAME = f"it-reg-{SUFFIX}"
REGISTRY = names.registry_container_name(NAME)
HOST = names.container_name(NAME, 1)
# This module's own tag of the base image: the only image name it creates here.
IMAGE = f"slipway/it-{SUFFIX}:v1"
FIX = "Fix: check SLIPWAY_REGISTRY_USER/SLIPWAY_REGISTRY_PASSWORD"


class RegistrySandbox(Sandbox):
    """The module's sandbox, and the registry it wrote."""

    def registry(self) -> registry.Registry:
        """The environment's registry with the credentials of .env.<name> (never the process's)."""
        env = self.load()
        return registry.Registry.from_env(env, ops_secrets.registry_credentials(env, environ={}))


def _server() -> RegistryServer:
    return registry_server(REGISTRY, inspect(REGISTRY))


def _on_host(remote: Remote, command: str) -> str:
    return remote.run(query(command, command)).stdout.strip()


def _host_state(remote: Remote) -> dict[str, str]:
    """What a pull may leave on the host: images, temporary directories, deploy's docker config."""
    return {
        "images": _on_host(remote, "docker images --format '{{.Repository}}:{{.Tag}}' | sort"),
        "tmp": _on_host(remote, "find /tmp -mindepth 1 -maxdepth 1 | sort"),
        "config": _on_host(remote, "cat ~/.docker/config.json 2>/dev/null || true"),
    }


@pytest.fixture(scope="module")
def sbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistrySandbox]:
    with running_sandbox(
        RegistrySandbox,
        NAME,
        tmp_path_factory,
        "--hosts=1",
        "--registry",
        leftovers=[REGISTRY],
        unset=ops_secrets.REGISTRY_NAMES,
    ) as handle:
        yield handle


@pytest.fixture(scope="module")
def image(sbx: RegistrySandbox) -> Iterator[tuple[str, str]]:
    """(reference, id): this module's tag of the base image on this machine's engine."""
    engine = docker.from_env()
    base = engine.images.get("debian:bookworm-slim")
    repository, tag = IMAGE.rsplit(":", 1)
    assert base.tag(repository, tag)
    try:
        yield IMAGE, str(base.id)
    finally:
        subprocess.run(["docker", "rmi", IMAGE], capture_output=True, check=False)
        engine.close()


@pytest.fixture
def remote(sbx: RegistrySandbox) -> Iterator[Remote]:
    with Remote(sbx.load().hosts[0]) as connection:
        yield connection


def test_up_writes_the_registry_addresses_and_credentials(sbx: RegistrySandbox) -> None:
    env = sbx.load()
    server = _server()
    assert env.registry == config.Registry(
        push=f"127.0.0.1:{server.port}/slipway", pull=f"{server.address}:5000/slipway"
    )
    data = yaml.safe_load(sbx.files.environment.read_text(encoding="utf-8"))
    assert data["registry"] == {"push": server.push, "pull": server.pull}
    credentials = ops_secrets.registry_credentials(env, environ={})
    assert credentials is not None
    assert credentials.user.startswith(f"{NAME}-")
    assert len(credentials.password) >= 32
    assert credentials.password not in repr(credentials)
    # The other secrets are there too, and the file is private.
    values = ops_secrets.read_file(sbx.files.secrets)
    assert set(ops_secrets.REQUIRED) <= set(values)
    assert (sbx.files.secrets.stat().st_mode & 0o777) == 0o600
    assert (sbx.files.key_dir.stat().st_mode & 0o777) == 0o700
    assert ((sbx.files.registry_dir / "ca.key").stat().st_mode & 0o777) == 0o600
    assert ((sbx.files.registry_dir / "tls.key").stat().st_mode & 0o777) == 0o600
    assert sorted(sbx.labelled()) == sorted([HOST, REGISTRY])
    attrs = inspect(REGISTRY)
    assert attrs["Config"]["Labels"][names.ROLE_LABEL] == "registry"
    assert attrs["Config"]["User"] == f"{REGISTRY_UID}:{REGISTRY_UID}"
    ports = attrs["NetworkSettings"]["Ports"]
    assert set(ports) == {"5000/tcp"}
    assert {b["HostIp"] for b in ports["5000/tcp"]} == {"127.0.0.1"}


def test_every_host_trusts_the_registry_ca_through_certs_d(sbx: RegistrySandbox) -> None:
    server = _server()
    inside = exec_in(HOST, "cat", f"/etc/docker/certs.d/{server.address}:5000/ca.crt")
    assert inside == sbx.files.registry_ca.read_text(encoding="ascii").strip()


def test_the_registry_refuses_anonymous_requests_and_accepts_the_credentials(
    sbx: RegistrySandbox,
) -> None:
    server = _server()
    credentials = sbx.registry().credentials
    assert credentials is not None
    ca = sbx.files.registry_ca
    assert servers.https_status(server.local_url, ca) == 401
    assert servers.https_status(server.local_url, ca, credentials) == 200
    wrong = replace(credentials, password="not-" + credentials.password)
    assert servers.https_status(server.local_url, ca, wrong) == 401
    # Only the sandbox's registry CA vouches for it: the system's roots do not.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(server.local_url, timeout=10)


def test_push_here_and_pull_on_the_host_keep_the_id_and_only_the_canonical_name(
    sbx: RegistrySandbox, image: tuple[str, str], remote: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, image_id = image
    reg = sbx.registry()
    before = _host_state(remote)
    assert ref not in before["images"].split()

    (pushed,) = reg.push(docker.from_env(), [ref])
    assert pushed.registry_ref == f"{reg.push_to}/it-{SUFFIX}:v1"
    # Here: the registry's tag is gone again, the canonical one stays.
    tags = docker.from_env().images.get(ref).tags
    assert ref in tags
    assert not [t for t in tags if t.startswith(registry.registry_host(reg.push_to))]

    (pulled,) = reg.pull_on_host(remote, [ref], {ref: image_id})
    assert pulled.registry_ref == f"{reg.pull_from}/it-{SUFFIX}:v1"
    out = capsys.readouterr().out
    assert f"{ref}: pushed to {pushed.registry_ref}" in out
    assert f"{ref}: pulled from {pulled.registry_ref}" in out

    # There: the same image id under the canonical name, and nothing of the registry left.
    assert _on_host(remote, f"docker image inspect -f '{{{{.Id}}}}' {ref}") == image_id
    after = _host_state(remote)
    assert ref in after["images"].split()
    assert registry.registry_host(reg.pull_from) not in after["images"]
    assert after["tmp"] == before["tmp"]
    assert after["config"] == before["config"]
    assert registry.registry_host(reg.pull_from) not in after["config"]
    assert reg.credentials is not None
    assert reg.credentials.password not in out


def test_a_wrong_password_fails_naming_the_fix(
    sbx: RegistrySandbox, image: tuple[str, str], remote: Remote
) -> None:
    ref, image_id = image
    reg = sbx.registry()
    assert reg.credentials is not None
    wrong = replace(reg, credentials=replace(reg.credentials, password="wrong-" + SUFFIX))
    with pytest.raises(OpsError, match=f"push of {ref} .*unauthorized.*{FIX}") as pushing:
        wrong.push(docker.from_env(), [ref])
    assert reg.credentials.password not in str(pushing.value)
    tags = docker.from_env().images.get(ref).tags
    assert not [t for t in tags if t.startswith(registry.registry_host(reg.push_to))]

    before = _host_state(remote)
    with pytest.raises(OpsError, match=rf"pull of {ref} .*\(docker login\).*401.*{FIX}"):
        wrong.pull_on_host(remote, [ref], {ref: image_id})
    assert _host_state(remote) == before


def test_pulling_without_credentials_is_refused_by_the_registry(
    sbx: RegistrySandbox, image: tuple[str, str], remote: Remote
) -> None:
    ref, image_id = image
    anonymous = replace(sbx.registry(), credentials=None)
    before = _host_state(remote)
    with pytest.raises(OpsError, match=rf"\(docker pull\).*no basic auth credentials.*{FIX}"):
        anonymous.pull_on_host(remote, [ref], {ref: image_id})
    assert _host_state(remote) == before


def test_a_pulled_image_with_another_id_is_refused_and_removed(
    sbx: RegistrySandbox, image: tuple[str, str], remote: Remote
) -> None:
    ref, _ = image
    reg = sbx.registry()
    before = _host_state(remote)
    with pytest.raises(OpsError, match=r"\(image id check\).*not the image built here"):
        reg.pull_on_host(remote, [ref], {ref: "sha256:" + "0" * 64})
    assert _host_state(remote) == before


def test_a_second_up_reuses_the_registry_and_its_credentials(sbx: RegistrySandbox) -> None:
    before = inspect(REGISTRY)["Id"]
    text = sbx.files.environment.read_text(encoding="utf-8")
    secrets_text = sbx.files.secrets.read_text(encoding="utf-8")
    result = sbx.up()
    assert f"reused {REGISTRY}" in result.stdout
    assert inspect(REGISTRY)["Id"] == before
    assert sbx.files.environment.read_text(encoding="utf-8") == text
    assert sbx.files.secrets.read_text(encoding="utf-8") == secrets_text


def test_down_removes_the_registry_and_its_files(sbx: RegistrySandbox) -> None:
    files = sbx.files
    assert_down_removes(
        sbx, REGISTRY, files.environment, files.secrets, files.registry_dir, files.key_dir
    )
