"""Sandbox hosts without Docker: naming, host plans, ports, the files sandbox.up writes, the
images, and up and down against a fake engine."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml
from docker.errors import ImageNotFound, NotFound

from ops import compose, config, docker_engine, images
from ops.errors import OpsError
from ops.sandbox.acme_server import AcmeServer
from ops.sandbox.build import (
    ACME_SERVER_BUILD_INPUTS,
    ACME_SERVER_SERVICE,
    IMAGE,
    REGISTRY_BUILD_INPUTS,
    REGISTRY_SERVICE,
    build_invocation,
    image_tag,
)
from ops.sandbox.down import down
from ops.sandbox.engine import check_local_engine, remove_cgroups
from ops.sandbox.files import (
    SandboxFiles,
    ensure_key,
    environment_yaml,
    known_hosts_lines,
    write_file,
    written_by_sandbox,
)
from ops.sandbox.names import (
    INDEX_LABEL,
    KEY_LABEL,
    LABEL,
    MAX_HOSTS,
    ROLE_LABEL,
    check_count,
    check_name,
    check_tls,
    container_name,
    hostname,
    is_acme,
    is_registry,
    listings_env_for,
    role_of,
)
from ops.sandbox.plan import (
    Existing,
    HostPlan,
    HostPorts,
    existing_hosts,
    key_fingerprint,
    plan_hosts,
    published_ports,
)
from ops.sandbox.registry_server import RegistryServer
from ops.sandbox.up import up

pytestmark = pytest.mark.unit


def _files(envdir: Path, name: str = "sbx") -> SandboxFiles:
    return SandboxFiles.of(name)


# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize("name", ["sandbox", "sbx-2", "a", "it-sbx-1f2e3d"])
def test_environment_names_are_sandbox_names(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize("name", ["", "2sbx", "Sbx", "sbx_1", "sbx.1", "a" * 32, "../x"])
def test_names_that_are_not_environment_names_are_refused(name: str) -> None:
    with pytest.raises(OpsError, match="invalid sandbox name"):
        check_name(name)


@pytest.mark.parametrize("count", [0, -1, MAX_HOSTS + 1])
def test_host_counts_outside_one_to_max_are_refused(count: int) -> None:
    with pytest.raises(OpsError, match=f"between 1 and {MAX_HOSTS}"):
        check_count(count)


def test_containers_and_hostnames_are_named_after_the_sandbox_and_index() -> None:
    assert container_name("sbx", 2) == "slipway-sandbox-sbx-2"
    assert hostname("sbx", 2) == "sbx-2"


@pytest.mark.parametrize(
    ("name", "requested", "expected"),
    [
        ("sandbox", "", "staging"),
        ("staging", "", "staging"),
        ("production", "", "production"),
        ("local", "", "staging"),
        ("sandbox", "production", "production"),
        ("production", "local", "local"),
    ],
)
def test_the_service_mode_is_requested_else_the_name_of_a_server_env_else_staging(
    name: str, requested: str, expected: str
) -> None:
    assert listings_env_for(name, requested) == expected


def test_an_unknown_service_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(OpsError, match="local, test, staging, production"):
        listings_env_for("sbx", "prod")


# ------------------------------------------------------------------------------ host plans


def _host(index: int, running: bool = True, key: bool = True, name: str = "") -> Existing:
    return Existing(name or container_name("sbx", index), index, running, key)


def test_a_new_sandbox_starts_every_host() -> None:
    assert plan_hosts(2, []) == HostPlan(keep=(), create=(1, 2))


def test_running_hosts_with_the_current_key_are_kept() -> None:
    assert plan_hosts(2, [_host(2), _host(1)]) == HostPlan(keep=(1, 2), create=())


def test_more_hosts_adds_the_missing_indexes_only() -> None:
    assert plan_hosts(3, [_host(1), _host(2)]) == HostPlan(keep=(1, 2), create=(3,))


def test_fewer_hosts_removes_the_highest_indexes() -> None:
    plan = plan_hosts(1, [_host(1), _host(2), _host(3)])
    assert plan.keep == (1,)
    assert plan.create == ()
    assert plan.remove == (
        ("slipway-sandbox-sbx-2", "not wanted"),
        ("slipway-sandbox-sbx-3", "not wanted"),
    )


def test_stopped_hosts_and_hosts_with_an_old_key_are_replaced() -> None:
    plan = plan_hosts(2, [_host(1, running=False), _host(2, key=False)])
    assert plan.keep == ()
    assert plan.create == (1, 2)
    assert plan.remove == (
        ("slipway-sandbox-sbx-1", "not running: replaced"),
        ("slipway-sandbox-sbx-2", "login key changed: replaced"),
    )


def test_a_container_without_an_index_label_is_removed() -> None:
    plan = plan_hosts(1, [_host(0, name="slipway-sandbox-sbx-x")])
    assert plan == HostPlan(keep=(), create=(1,), remove=(("slipway-sandbox-sbx-x", "not wanted"),))


class FakeContainer:
    def __init__(self, name: str, labels: dict[str, str], status: str = "running") -> None:
        self.name = name
        self.labels = labels
        self.status = status


def test_existing_hosts_are_read_from_labels_and_status() -> None:
    fingerprint = key_fingerprint("ssh-ed25519 AAAA me\n")
    containers: list[Any] = [
        FakeContainer("a", {INDEX_LABEL: "1", KEY_LABEL: fingerprint}),
        FakeContainer("b", {INDEX_LABEL: "2", KEY_LABEL: "old"}, "exited"),
        FakeContainer("c", {}),
    ]
    assert existing_hosts(containers, fingerprint) == [
        Existing("a", 1, True, True),
        Existing("b", 2, False, False),
        Existing("c", 0, True, False),
    ]


# ------------------------------------------------------------------------------ ports


def _bindings(ssh: int = 40022, http: int = 40080, https: int = 40443) -> dict[str, Any]:
    def on(port: int) -> list[dict[str, str]]:
        return [{"HostIp": "127.0.0.1", "HostPort": str(port)}]

    return {
        "NetworkSettings": {"Ports": {"22/tcp": on(ssh), "80/tcp": on(http), "443/tcp": on(https)}}
    }


def test_published_ports_are_read_from_the_loopback_bindings() -> None:
    assert published_ports("c", _bindings()) == HostPorts(40022, 40080, 40443)


def test_a_port_not_published_on_loopback_is_an_error_naming_the_fix() -> None:
    attrs = _bindings()
    attrs["NetworkSettings"]["Ports"]["443/tcp"] = [{"HostIp": "0.0.0.0", "HostPort": "443"}]
    with pytest.raises(OpsError, match=r"c does not publish port 443 on 127.0.0.1.*sandbox.down"):
        published_ports("c", attrs)


# ------------------------------------------------------------------------------ files


def test_known_hosts_lines_name_the_loopback_port_of_each_key() -> None:
    keys = "ssh-ed25519 AAAAC3 root@sbx-1\necdsa-sha2-nistp256 AAAAE2 root@sbx-1\n\n"
    assert known_hosts_lines(40022, keys) == [
        "[127.0.0.1]:40022 ssh-ed25519 AAAAC3",
        "[127.0.0.1]:40022 ecdsa-sha2-nistp256 AAAAE2",
    ]
    with pytest.raises(OpsError, match="no SSH host key"):
        known_hosts_lines(40022, "cat: no such file\n")


EXPECTED_YAML = """\
# Written by `invoke sandbox.up --name sbx --hosts 2`.
# Disposable hosts on this machine; `invoke sandbox.down --name sbx` deletes them
# and this file. Edits are lost: every sandbox.up writes it again.
name: sbx
target: ssh
hosts:
  - ssh: deploy@127.0.0.1:40022
    identity: .slipway/sandbox-sbx/id_ed25519
    known_hosts: .slipway/sandbox-sbx/known_hosts
  - ssh: deploy@127.0.0.1:41022
    identity: .slipway/sandbox-sbx/id_ed25519
    known_hosts: .slipway/sandbox-sbx/known_hosts
domains: [localhost]
tls: local-ca
bind: 0.0.0.0
ports: {http: 80, https: 443}
public_url: https://localhost:40443
listings_env: staging
replicas: {api: 2, worker: 1}
deploy:
  remote_dir: /srv/slipway/sbx
"""


def _two_hosts() -> list[HostPorts]:
    return [HostPorts(40022, 40080, 40443), HostPorts(41022, 41080, 41443)]


def test_the_environment_file_is_the_documented_ssh_target(envdir: Path) -> None:
    text = environment_yaml(_files(envdir), _two_hosts(), "staging", 2)
    assert text == EXPECTED_YAML
    data = yaml.safe_load(text)
    assert data["hosts"][1]["ssh"] == "deploy@127.0.0.1:41022"
    assert data["ports"] == {"http": 80, "https": 443}


def test_several_hosts_get_their_swarm_addresses_and_load_as_a_swarm(envdir: Path) -> None:
    files = _files(envdir)
    text = environment_yaml(
        files, _two_hosts(), "staging", 2, swarm_addresses=("172.31.0.4", "172.31.0.5")
    )
    write_file(files.environment, text, 0o644)
    env = config.load("sbx")
    assert [h.advertise for h in env.hosts] == ["172.31.0.4", "172.31.0.5"]
    one = environment_yaml(files, _two_hosts()[:1], "staging", 1, swarm_addresses=("x",))
    assert "swarm_address" not in one  # one host: Compose, no swarm


def test_the_environment_file_loads_as_an_ssh_environment(envdir: Path) -> None:
    files = _files(envdir)
    write_file(files.environment, environment_yaml(files, _two_hosts(), "staging", 2), 0o644)
    env = config.load("sbx")
    assert env.target == "ssh"
    assert env.listings_env == "staging"
    assert env.bind == "0.0.0.0"


EXPECTED_ACME_YAML = """\
# Written by `invoke sandbox.up --name sbx --hosts 1 --tls acme`.
# Disposable hosts on this machine; `invoke sandbox.down --name sbx` deletes them
# and this file. Edits are lost: every sandbox.up writes it again.
name: sbx
target: ssh
hosts:
  - ssh: deploy@127.0.0.1:40022
    identity: .slipway/sandbox-sbx/id_ed25519
    known_hosts: .slipway/sandbox-sbx/known_hosts
domains: [app.sbx.test, www.sbx.test]
tls: acme
acme:
  email: ops@sbx.test
  directory: https://172.18.0.3:14000/dir
  server_ca: .slipway/sandbox-sbx/acme-server-ca.pem
ca_file: .slipway/sandbox-sbx/acme-roots.pem
bind: 0.0.0.0
ports: {http: 80, https: 443}
public_url: https://app.sbx.test
connect_to: 127.0.0.1:40443
listings_env: staging
replicas: {api: 2, worker: 1}
deploy:
  remote_dir: /srv/slipway/sbx
"""

PEBBLE = AcmeServer("sbx-acme", "172.18.0.3", 41400, 41500)
REGISTRY = RegistryServer("sbx-registry", "172.18.0.4", 32790)


def test_the_acme_environment_file_names_pebble_its_cas_and_host_1(envdir: Path) -> None:
    files = _files(envdir)
    text = environment_yaml(files, _two_hosts()[:1], "staging", 1, PEBBLE.directory)
    assert text == EXPECTED_ACME_YAML
    files.environment.write_text(text, encoding="utf-8")
    assert written_by_sandbox(files.environment)


def test_the_acme_environment_file_loads_as_tls_acme(envdir: Path) -> None:
    files = _files(envdir)
    text = environment_yaml(files, _two_hosts(), "staging", 2, PEBBLE.directory)
    write_file(files.environment, text, 0o644)
    env = config.load("sbx")
    assert env.tls == "acme"
    assert env.domains == ("app.sbx.test", "www.sbx.test")
    assert env.acme is not None
    assert env.acme.email == "ops@sbx.test"
    assert env.acme.directory == "https://172.18.0.3:14000/dir"
    assert env.acme.server_ca == files.acme_server_ca
    assert env.ca_file == files.acme_roots
    assert env.public_url == "https://app.sbx.test"
    assert env.connect_to == "127.0.0.1:40443"
    assert env.ports.https == 443
    assert env.bind == "0.0.0.0"
    assert len(env.hosts) == 2


def test_the_acme_files_live_in_the_private_key_directory(envdir: Path) -> None:
    files = _files(envdir)
    assert files.acme_server_ca == files.key_dir / "acme-server-ca.pem"
    assert files.acme_roots == files.key_dir / "acme-roots.pem"
    assert files.acme_server_dir.parent == files.key_dir


@pytest.mark.parametrize("tls", ["local-ca", "acme"])
def test_the_sandbox_tls_modes_are_accepted(tls: str) -> None:
    check_tls(tls)


def test_an_unknown_tls_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(OpsError, match="use one of local-ca, acme"):
        check_tls("letsencrypt")


def test_only_files_with_the_marker_count_as_written_by_sandbox_up(envdir: Path) -> None:
    files = _files(envdir)
    assert not written_by_sandbox(files.environment)
    files.environment.write_text("name: sbx\ntarget: ssh\n", encoding="utf-8")
    assert not written_by_sandbox(files.environment)
    files.environment.write_text(EXPECTED_YAML, encoding="utf-8")
    assert written_by_sandbox(files.environment)


def test_files_live_under_the_repository_and_the_environments_directory(envdir: Path) -> None:
    files = _files(envdir)
    root = envdir.parent
    assert files.environment == envdir / "sbx.yaml"
    assert files.private_key == root / ".slipway" / "sandbox-sbx" / "id_ed25519"
    assert files.known_hosts == root / ".slipway" / "sandbox-sbx" / "known_hosts"
    assert files.secrets == root / ".env.sbx"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_login_key_is_private_loadable_and_kept(envdir: Path) -> None:
    files = _files(envdir)
    assert ensure_key(files) is True
    assert _mode(files.key_dir) == 0o700
    assert _mode(files.private_key) == 0o600
    assert files.public_key.read_text(encoding="utf-8").startswith("ssh-ed25519 ")
    key = paramiko.Ed25519Key.from_private_key_file(str(files.private_key))
    public = files.public_key.read_text(encoding="utf-8").split()
    assert key.get_base64() == public[1]
    before = files.private_key.read_bytes()
    assert ensure_key(files) is False
    assert files.private_key.read_bytes() == before


def test_write_file_replaces_atomically_with_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f"
    write_file(path, "one\n", 0o600)
    write_file(path, "two\n", 0o600)
    assert path.read_text(encoding="utf-8") == "two\n"
    assert _mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["f"]


# ------------------------------------------------------------------------------ image, engine


def _context(root: Path) -> None:
    (root / "services" / "sandbox-host").mkdir(parents=True)
    (root / "compose").mkdir()
    (root / "services" / "sandbox-host" / "Dockerfile").write_text("FROM x\n", encoding="utf-8")
    (root / "services" / "sandbox-host" / "entrypoint").write_text("#!/bin/sh\n", encoding="utf-8")
    (root / "compose" / "sandbox.yaml").write_text("services: {}\n", encoding="utf-8")


def test_the_image_tag_is_a_digest_of_the_build_inputs(tmp_path: Path) -> None:
    _context(tmp_path)
    first = image_tag(tmp_path)
    assert first.startswith("c.")
    assert len(first) == 14
    assert image_tag(tmp_path) == first
    (tmp_path / "services" / "sandbox-host" / "README.md").write_text("# x\n", encoding="utf-8")
    assert image_tag(tmp_path) == first
    (tmp_path / "services" / "sandbox-host" / "entrypoint").chmod(0o755)
    assert image_tag(tmp_path) != first
    second = image_tag(tmp_path)
    (tmp_path / "compose" / "sandbox.yaml").write_text("services: {a: {}}\n", encoding="utf-8")
    assert image_tag(tmp_path) != second


def _acme_context(root: Path) -> None:
    (root / "services" / "sandbox-acme").mkdir(parents=True)
    (root / "services" / "sandbox-acme" / "Dockerfile").write_text("FROM y\n", encoding="utf-8")


def test_the_acme_image_has_a_tag_of_its_own(tmp_path: Path) -> None:
    _context(tmp_path)
    _acme_context(tmp_path)
    host = image_tag(tmp_path)
    acme = image_tag(tmp_path, ACME_SERVER_BUILD_INPUTS)
    assert acme.startswith("c.")
    assert acme != host
    (tmp_path / "services" / "sandbox-acme" / "README.md").write_text("# x\n", encoding="utf-8")
    assert image_tag(tmp_path, ACME_SERVER_BUILD_INPUTS) == acme
    (tmp_path / "services" / "sandbox-acme" / "entrypoint").write_text("#!\n", encoding="utf-8")
    assert image_tag(tmp_path, ACME_SERVER_BUILD_INPUTS) != acme
    # Editing the ACME server never changes the hosts' image (running hosts stay current).
    assert image_tag(tmp_path) == host


def test_the_acme_image_is_built_by_its_own_compose_service(tmp_path: Path) -> None:
    build = compose.Build("v1", "abc123", tmp_path / "ca.pem")
    inv = build_invocation(tmp_path, "c.0123456789ab", build, ACME_SERVER_SERVICE)
    assert inv.argv[-2:] == ["build", "sandbox-acme"]
    assert inv.env["SLIPWAY_SANDBOX_ACME_TAG"] == "c.0123456789ab"
    assert inv.env["SLIPWAY_BUILD_CA"] == str(tmp_path / "ca.pem")


def test_the_compose_file_builds_both_images_with_their_tags() -> None:
    path = Path(__file__).parents[3] / "compose" / "sandbox.yaml"
    services = yaml.safe_load(path.read_text(encoding="utf-8"))["services"]
    assert (
        services["sandbox-acme"]["image"] == "slipway/sandbox-acme:${SLIPWAY_SANDBOX_ACME_TAG:-dev}"
    )
    assert services["sandbox-acme"]["build"]["context"] == "../services/sandbox-acme"
    assert services["sandbox-host"]["image"] == "slipway/sandbox-host:${SLIPWAY_SANDBOX_TAG:-dev}"


def test_the_build_goes_through_compose_with_the_ca_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPOSE_FILE", "elsewhere.yaml")
    build = compose.Build("v1", "abc123", tmp_path / "ca.pem")
    inv = build_invocation(tmp_path, "c.0123456789ab", build)
    assert inv.argv == [
        "docker",
        "compose",
        "-p",
        "slipway-sandbox",
        "-f",
        str(tmp_path / "compose" / "sandbox.yaml"),
        "build",
        "sandbox-host",
    ]
    assert inv.env["SLIPWAY_SANDBOX_TAG"] == "c.0123456789ab"
    assert inv.env["SLIPWAY_BUILD_CA"] == str(tmp_path / "ca.pem")
    assert inv.env["SLIPWAY_GIT_SHA"] == "abc123"
    assert "COMPOSE_FILE" not in inv.env


@pytest.mark.parametrize("host", ["", "unix:///var/run/docker.sock", "tcp://127.0.0.1:2375"])
def test_a_local_engine_is_accepted(host: str) -> None:
    check_local_engine({"DOCKER_HOST": host} if host else {})


@pytest.mark.parametrize("host", ["ssh://me@build-box", "tcp://10.0.0.5:2376"])
def test_a_remote_engine_is_refused_because_loopback_would_be_its_own(host: str) -> None:
    with pytest.raises(OpsError, match="unset DOCKER_HOST"):
        check_local_engine({"DOCKER_HOST": host})


def test_leftover_cgroups_of_a_host_are_removed_and_nothing_else(tmp_path: Path) -> None:
    name = "slipway-sandbox-sbx-1"
    for hierarchy in ("memory", "pids"):
        (tmp_path / hierarchy / name / "0123abcd").mkdir(parents=True)
    (tmp_path / "memory" / "docker" / "other").mkdir(parents=True)
    (tmp_path / "memory" / "slipway-sandbox-sbx-10").mkdir()
    assert remove_cgroups(tmp_path, name) == 4
    assert not (tmp_path / "memory" / name).exists()
    assert not (tmp_path / "pids" / name).exists()
    assert (tmp_path / "memory" / "docker" / "other").is_dir()
    assert (tmp_path / "memory" / "slipway-sandbox-sbx-10").is_dir()
    assert remove_cgroups(tmp_path / "missing", name) == 0


def test_a_missing_build_input_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OpsError, match="sandbox-host is missing"):
        image_tag(tmp_path)


# ------------------------------------------------------------------------------ up and down


class FakeImages:
    def get(self, name: str) -> object:
        raise ImageNotFound(name)


class FakeContainers:
    def __init__(self, found: list[Any]) -> None:
        self.found = found

    def list(self, **kwargs: object) -> list[Any]:
        return self.found

    def get(self, name: str) -> Any:
        for container in self.found:
            if container.name == name:
                return container
        raise NotFound(name)


class FakeNetworks:
    def list(self, **kwargs: object) -> list[Any]:
        return []


class FakeEngine:
    def __init__(self) -> None:
        self.images = FakeImages()
        self.containers = FakeContainers([])
        self.networks = FakeNetworks()


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    monkeypatch.setattr(docker_engine, "client", lambda: fake)
    monkeypatch.setattr(docker_engine, "check", lambda: "fake engine")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    return fake


def test_up_refuses_to_replace_an_environment_file_it_did_not_write(
    envdir: Path, engine: FakeEngine
) -> None:
    (envdir / "staging.yaml").write_text("name: staging\ntarget: ssh\n", encoding="utf-8")
    with pytest.raises(OpsError, match=r"was not written by `invoke sandbox\.up`"):
        up("staging")
    assert (envdir / "staging.yaml").read_text(encoding="utf-8") == "name: staging\ntarget: ssh\n"


def test_up_refuses_to_build_without_the_base_image(envdir: Path, engine: FakeEngine) -> None:
    _context(envdir.parent)
    with pytest.raises(OpsError, match=r"Fix: run `invoke images\.base`"):
        up("sbx")


def test_down_of_a_sandbox_that_does_not_exist_says_so(
    envdir: Path, engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    down("sbx", yes=False)
    assert "sandbox sbx does not exist" in capsys.readouterr().out


def test_down_asks_before_deleting_and_keeps_everything_without_yes(
    envdir: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _files(envdir)
    files.environment.write_text(EXPECTED_YAML, encoding="utf-8")
    files.secrets.write_text("POSTGRES_PASSWORD=x\n", encoding="utf-8")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(OpsError, match=r"refusing to delete sandbox sbx.*--yes"):
        down("sbx")
    assert files.environment.exists()
    assert files.secrets.exists()


def test_down_deletes_the_sandbox_files_but_not_someone_elses(
    envdir: Path, engine: FakeEngine
) -> None:
    files = _files(envdir)
    files.environment.write_text("name: sbx\ntarget: ssh\n", encoding="utf-8")
    files.secrets.write_text("POSTGRES_PASSWORD=x\n", encoding="utf-8")
    files.deploy_state.mkdir(parents=True)
    (files.deploy_state / "ca.crt").write_text("a deploy's local CA", encoding="utf-8")
    ensure_key(files)
    down("sbx", yes=True)
    assert not files.key_dir.exists()
    assert files.environment.exists()
    assert files.secrets.exists()
    assert files.deploy_state.exists()
    files.environment.write_text(EXPECTED_YAML, encoding="utf-8")
    down("sbx", yes=True)
    assert not files.environment.exists()
    assert not files.secrets.exists()
    assert not files.deploy_state.exists()  # what the deploys kept here goes too


def test_up_with_acme_refuses_to_replace_a_container_that_is_not_its_acme_server(
    envdir: Path, engine: FakeEngine
) -> None:
    _context(envdir.parent)
    _acme_context(envdir.parent)
    engine.containers.found.append(FakeContainer("sbx-acme", {}))
    with pytest.raises(OpsError, match=r"sbx-acme exists and is not the ACME server.*docker rm"):
        up("sbx", tls="acme")


def test_up_with_acme_needs_the_base_image_for_the_acme_image_too(
    envdir: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _context(envdir.parent)
    _acme_context(envdir.parent)
    monkeypatch.setattr(images, "has_image", lambda engine, name: name.startswith(IMAGE))
    with pytest.raises(
        OpsError, match=r"slipway/sandbox-acme:c\.\w+ must be built.*run `invoke images\.base`"
    ):
        up("sbx", tls="acme")


def test_the_acme_server_is_not_a_host_and_is_removed_with_local_ca(
    envdir: Path,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    labels = {LABEL: "sbx", ROLE_LABEL: "acme"}
    server = FakeContainer("sbx-acme", labels)
    assert is_acme(server)
    assert not is_acme(FakeContainer("slipway-sandbox-sbx-1", {LABEL: "sbx"}))
    _context(envdir.parent)
    engine.containers.found.append(server)
    # Every image present: the dry run reaches the end of the plan.
    monkeypatch.setattr(images, "has_image", lambda engine, name: True)
    report = up("sbx", dry_run=True)
    assert [o.status for o in report.outcomes[:3]] == ["ok", "ok", "ok"]
    assert {o.status for o in report.outcomes[3:]} == {"planned"}
    assert not any("ACME" in o.step.name for o in report.outcomes)
    out = capsys.readouterr().out
    assert "plan: keep: none" in out
    assert "plan: start: sbx-1" in out
    assert "plan: remove: sbx-acme (ACME server: not used with --tls local-ca)" in out


def test_a_dry_run_with_acme_plans_the_acme_steps_and_changes_nothing(
    envdir: Path,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _context(envdir.parent)
    _acme_context(envdir.parent)
    monkeypatch.setattr(images, "has_image", lambda engine, name: True)
    report = up("sbx", tls="acme", dry_run=True)
    planned = [o.step.name for o in report.outcomes if o.status == "planned"]
    assert "build the slipway/sandbox-acme image" in planned
    assert any("ACME server sbx-acme" in name for name in planned)
    assert any("acme-roots.pem" in name for name in planned)
    out = capsys.readouterr().out
    assert "plan: ACME server sbx-acme" in out
    assert not (envdir / "sbx.yaml").exists()
    assert not _files(envdir).key_dir.exists()


EXPECTED_REGISTRY_YAML = EXPECTED_ACME_YAML.replace(
    "--hosts 1 --tls acme`", "--hosts 1 --tls acme --registry`"
).replace(
    "listings_env: staging\n",
    "registry: {push: 127.0.0.1:32790/slipway, pull: 172.18.0.4:5000/slipway}\n"
    "listings_env: staging\n",
)


def test_the_registry_environment_file_names_push_and_pull(envdir: Path) -> None:
    files = _files(envdir)
    text = environment_yaml(
        files, _two_hosts()[:1], "staging", 1, PEBBLE.directory, REGISTRY.addresses
    )
    assert text == EXPECTED_REGISTRY_YAML
    local = environment_yaml(files, _two_hosts(), "staging", 2, "", REGISTRY.addresses)
    assert (
        local.splitlines()[0] == "# Written by `invoke sandbox.up --name sbx --hosts 2 --registry`."
    )
    write_file(files.environment, local, 0o644)
    assert written_by_sandbox(files.environment)
    env = config.load("sbx")
    assert env.registry == config.Registry(
        push="127.0.0.1:32790/slipway", pull="172.18.0.4:5000/slipway"
    )
    assert env.tls == "local-ca"


def test_the_registry_files_live_in_the_private_key_directory(envdir: Path) -> None:
    files = _files(envdir)
    assert files.registry_dir == files.key_dir / "registry"
    assert files.registry_ca == files.key_dir / "registry" / "ca.crt"


def _registry_context(root: Path) -> None:
    (root / "services" / "sandbox-registry").mkdir(parents=True)
    (root / "services" / "sandbox-registry" / "Dockerfile").write_text("FROM z\n", encoding="utf-8")


def test_the_registry_image_has_a_tag_of_its_own(tmp_path: Path) -> None:
    _context(tmp_path)
    _acme_context(tmp_path)
    _registry_context(tmp_path)
    host = image_tag(tmp_path)
    acme = image_tag(tmp_path, ACME_SERVER_BUILD_INPUTS)
    tag = image_tag(tmp_path, REGISTRY_BUILD_INPUTS)
    assert len({host, acme, tag}) == 3
    (tmp_path / "services" / "sandbox-registry" / "config.yml").write_text("x\n", encoding="utf-8")
    assert image_tag(tmp_path, REGISTRY_BUILD_INPUTS) != tag
    assert image_tag(tmp_path) == host
    assert image_tag(tmp_path, ACME_SERVER_BUILD_INPUTS) == acme


def test_the_registry_image_is_built_by_its_own_compose_service(tmp_path: Path) -> None:
    build = compose.Build("v1", "abc123", tmp_path / "ca.pem")
    inv = build_invocation(tmp_path, "c.0123456789ab", build, REGISTRY_SERVICE)
    assert inv.argv[-2:] == ["build", "sandbox-registry"]
    assert inv.env["SLIPWAY_SANDBOX_REGISTRY_TAG"] == "c.0123456789ab"
    path = Path(__file__).parents[3] / "compose" / "sandbox.yaml"
    service = yaml.safe_load(path.read_text(encoding="utf-8"))["services"]["sandbox-registry"]
    assert service["image"] == "slipway/sandbox-registry:${SLIPWAY_SANDBOX_REGISTRY_TAG:-dev}"
    assert service["build"]["context"] == "../services/sandbox-registry"
    assert "secrets" not in service["build"]


def test_up_with_registry_refuses_to_replace_a_container_that_is_not_its_registry(
    envdir: Path, engine: FakeEngine
) -> None:
    _context(envdir.parent)
    _registry_context(envdir.parent)
    engine.containers.found.append(FakeContainer("sbx-registry", {LABEL: "sbx"}))
    with pytest.raises(OpsError, match=r"sbx-registry exists and is not the registry.*docker rm"):
        up("sbx", registry=True)


def test_up_with_registry_needs_the_base_image_for_the_registry_image_too(
    envdir: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _context(envdir.parent)
    _registry_context(envdir.parent)
    monkeypatch.setattr(images, "has_image", lambda engine, name: name.startswith(IMAGE))
    with pytest.raises(
        OpsError, match=r"slipway/sandbox-registry:c\.\w+ must be built.*`invoke images\.base`"
    ):
        up("sbx", registry=True)


def test_a_dry_run_with_registry_and_acme_plans_both_and_changes_nothing(
    envdir: Path,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _context(envdir.parent)
    _acme_context(envdir.parent)
    _registry_context(envdir.parent)
    monkeypatch.setattr(images, "has_image", lambda engine, name: True)
    report = up("sbx", hosts=2, tls="acme", registry=True, dry_run=True)
    assert report.title == "invoke sandbox.up --name sbx --hosts 2 --tls acme --registry"
    planned = [o.step.name for o in report.outcomes if o.status == "planned"]
    assert "build the slipway/sandbox-registry image" in planned
    assert "build the slipway/sandbox-acme image" in planned
    assert any("registry sbx-registry" in name for name in planned)
    assert any("trust the registry's CA on every host" in name for name in planned)
    out = capsys.readouterr().out
    assert "plan: registry sbx-registry (image slipway/sandbox-registry:c." in out
    assert "plan: ACME server sbx-acme" in out
    assert not (envdir / "sbx.yaml").exists()
    assert not _files(envdir).key_dir.exists()
    assert not _files(envdir).secrets.exists()


def test_the_registry_is_not_a_host_and_is_removed_without_registry(
    envdir: Path,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = FakeContainer("sbx-registry", {LABEL: "sbx", ROLE_LABEL: "registry"})
    assert is_registry(server) and not is_acme(server)
    assert role_of(FakeContainer("slipway-sandbox-sbx-1", {LABEL: "sbx"})) == ""
    _context(envdir.parent)
    engine.containers.found.append(server)
    monkeypatch.setattr(images, "has_image", lambda engine, name: True)
    up("sbx", dry_run=True)
    out = capsys.readouterr().out
    assert "plan: start: sbx-1" in out
    assert "plan: remove: sbx-registry (registry: not used without --registry)" in out


def test_down_names_the_registry_among_what_it_deletes(
    envdir: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.containers.found += [
        FakeContainer("slipway-sandbox-sbx-1", {LABEL: "sbx", INDEX_LABEL: "1"}),
        FakeContainer("sbx-registry", {LABEL: "sbx", ROLE_LABEL: "registry"}),
    ]
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(OpsError, match=r"sandbox sbx: 1 host\(s\) .*, its registry sbx-registry"):
        down("sbx")
