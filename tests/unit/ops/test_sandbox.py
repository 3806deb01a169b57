"""Sandbox hosts without Docker: naming, host plans, ports, the files sandbox.up writes."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml
from docker.errors import APIError, ImageNotFound

from ops import compose, config, docker_engine, sandbox
from ops.errors import OpsError
from ops.sandbox import Existing, HostPlan, HostPorts, SandboxFiles

pytestmark = pytest.mark.unit


def _files(envdir: Path, name: str = "sbx") -> SandboxFiles:
    return SandboxFiles.of(name)


# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize("name", ["sandbox", "sbx-2", "a", "it-sbx-1f2e3d"])
def test_environment_names_are_sandbox_names(name: str) -> None:
    sandbox.check_name(name)


@pytest.mark.parametrize("name", ["", "2sbx", "Sbx", "sbx_1", "sbx.1", "a" * 32, "../x"])
def test_names_that_are_not_environment_names_are_refused(name: str) -> None:
    with pytest.raises(OpsError, match="invalid sandbox name"):
        sandbox.check_name(name)


@pytest.mark.parametrize("count", [0, -1, sandbox.MAX_HOSTS + 1])
def test_host_counts_outside_one_to_max_are_refused(count: int) -> None:
    with pytest.raises(OpsError, match=f"between 1 and {sandbox.MAX_HOSTS}"):
        sandbox.check_count(count)


def test_containers_and_hostnames_are_named_after_the_sandbox_and_index() -> None:
    assert sandbox.container_name("sbx", 2) == "slipway-sandbox-sbx-2"
    assert sandbox.hostname("sbx", 2) == "sbx-2"


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
    assert sandbox.listings_env_for(name, requested) == expected


def test_an_unknown_service_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(OpsError, match="local, test, staging, production"):
        sandbox.listings_env_for("sbx", "prod")


# ------------------------------------------------------------------------------ host plans


def _host(index: int, running: bool = True, key: bool = True, name: str = "") -> Existing:
    return Existing(name or sandbox.container_name("sbx", index), index, running, key)


def test_a_new_sandbox_starts_every_host() -> None:
    assert sandbox.plan_hosts(2, []) == HostPlan(keep=(), create=(1, 2))


def test_running_hosts_with_the_current_key_are_kept() -> None:
    assert sandbox.plan_hosts(2, [_host(2), _host(1)]) == HostPlan(keep=(1, 2), create=())


def test_more_hosts_adds_the_missing_indexes_only() -> None:
    assert sandbox.plan_hosts(3, [_host(1), _host(2)]) == HostPlan(keep=(1, 2), create=(3,))


def test_fewer_hosts_removes_the_highest_indexes() -> None:
    plan = sandbox.plan_hosts(1, [_host(1), _host(2), _host(3)])
    assert plan.keep == (1,)
    assert plan.create == ()
    assert plan.remove == (
        ("slipway-sandbox-sbx-2", "not wanted"),
        ("slipway-sandbox-sbx-3", "not wanted"),
    )


def test_stopped_hosts_and_hosts_with_an_old_key_are_replaced() -> None:
    plan = sandbox.plan_hosts(2, [_host(1, running=False), _host(2, key=False)])
    assert plan.keep == ()
    assert plan.create == (1, 2)
    assert plan.remove == (
        ("slipway-sandbox-sbx-1", "not running: replaced"),
        ("slipway-sandbox-sbx-2", "login key changed: replaced"),
    )


def test_a_container_without_an_index_label_is_removed() -> None:
    plan = sandbox.plan_hosts(1, [_host(0, name="slipway-sandbox-sbx-x")])
    assert plan == HostPlan(keep=(), create=(1,), remove=(("slipway-sandbox-sbx-x", "not wanted"),))


class FakeContainer:
    def __init__(self, name: str, labels: dict[str, str], status: str = "running") -> None:
        self.name = name
        self.labels = labels
        self.status = status


def test_existing_hosts_are_read_from_labels_and_status() -> None:
    fingerprint = sandbox.key_fingerprint("ssh-ed25519 AAAA me\n")
    containers: list[Any] = [
        FakeContainer("a", {sandbox.INDEX_LABEL: "1", sandbox.KEY_LABEL: fingerprint}),
        FakeContainer("b", {sandbox.INDEX_LABEL: "2", sandbox.KEY_LABEL: "old"}, "exited"),
        FakeContainer("c", {}),
    ]
    assert sandbox.existing_hosts(containers, fingerprint) == [
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
    assert sandbox.published_ports("c", _bindings()) == HostPorts(40022, 40080, 40443)


def test_a_port_not_published_on_loopback_is_an_error_naming_the_fix() -> None:
    attrs = _bindings()
    attrs["NetworkSettings"]["Ports"]["443/tcp"] = [{"HostIp": "0.0.0.0", "HostPort": "443"}]
    with pytest.raises(OpsError, match=r"c does not publish port 443 on 127.0.0.1.*sandbox.down"):
        sandbox.published_ports("c", attrs)


class Created:
    def __init__(self, fail: Exception | None) -> None:
        self.fail = fail
        self.removed = False

    def start(self) -> None:
        if self.fail is not None:
            raise self.fail

    def remove(self, force: bool = False) -> None:
        self.removed = True


class CreatingContainers:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls: list[dict[str, Any]] = []
        self.made: list[Created] = []

    def create(self, image: str, **kwargs: Any) -> Created:
        self.calls.append({"image": image, **kwargs})
        self.made.append(Created(self.failures.pop(0) if self.failures else None))
        return self.made[-1]


def _creating(failures: list[Exception]) -> Any:
    class Engine:
        containers = CreatingContainers(failures)

    return Engine()


def test_a_host_runs_with_the_dind_flags_and_loopback_ports_the_engine_picks() -> None:
    engine = _creating([])
    sandbox.start_host(engine, "sbx", 2, "slipway/sandbox-host:c.1", "ssh-ed25519 AAAA k\n")
    (call,) = engine.containers.calls
    assert call["image"] == "slipway/sandbox-host:c.1"
    assert call["name"] == "slipway-sandbox-sbx-2"
    assert call["hostname"] == "sbx-2"
    assert call["labels"][sandbox.LABEL] == "sbx"
    assert call["labels"][sandbox.INDEX_LABEL] == "2"
    assert call["environment"] == {
        "SANDBOX_AUTHORIZED_KEY": "ssh-ed25519 AAAA k",
        "SANDBOX_CGROUP_PARENT": "/slipway-sandbox-sbx-2",
    }
    assert call["cap_add"] == ["ALL"]
    assert call["cap_drop"] == ["SYS_RESOURCE"]
    assert call["security_opt"] == ["seccomp=unconfined", "apparmor=unconfined"]
    assert call["cgroupns"] == "host"
    assert call["volumes"] == {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}}
    assert call["tmpfs"] == {"/var/lib/docker": "exec"}
    assert "privileged" not in call
    assert call["network"] == "slipway-sandbox"
    assert call["ports"] == {
        "22/tcp": ("127.0.0.1", None),
        "80/tcp": ("127.0.0.1", None),
        "443/tcp": ("127.0.0.1", None),
    }


def test_a_port_taken_between_pick_and_bind_is_retried_with_a_new_container() -> None:
    taken = APIError("driver failed: Bind for 127.0.0.1:40022 failed: port is already allocated")
    engine = _creating([taken])
    sandbox.start_host(engine, "sbx", 1, "img", "key")
    assert len(engine.containers.calls) == 2
    assert [c.removed for c in engine.containers.made] == [True, False]


def test_any_other_start_failure_removes_the_container_and_stops() -> None:
    engine = _creating([APIError("OCI runtime create failed")])
    with pytest.raises(OpsError, match="cannot start slipway-sandbox-sbx-1"):
        sandbox.start_host(engine, "sbx", 1, "img", "key")
    assert [c.removed for c in engine.containers.made] == [True]


# ------------------------------------------------------------------------------ files


def test_known_hosts_lines_name_the_loopback_port_of_each_key() -> None:
    keys = "ssh-ed25519 AAAAC3 root@sbx-1\necdsa-sha2-nistp256 AAAAE2 root@sbx-1\n\n"
    assert sandbox.known_hosts_lines(40022, keys) == [
        "[127.0.0.1]:40022 ssh-ed25519 AAAAC3",
        "[127.0.0.1]:40022 ecdsa-sha2-nistp256 AAAAE2",
    ]
    with pytest.raises(OpsError, match="no SSH host key"):
        sandbox.known_hosts_lines(40022, "cat: no such file\n")


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
    text = sandbox.environment_yaml(_files(envdir), _two_hosts(), "staging", 2)
    assert text == EXPECTED_YAML
    data = yaml.safe_load(text)
    assert data["hosts"][1]["ssh"] == "deploy@127.0.0.1:41022"
    assert data["ports"] == {"http": 80, "https": 443}


def test_the_environment_file_loads_as_an_ssh_environment(envdir: Path) -> None:
    files = _files(envdir)
    sandbox.write_file(
        files.environment, sandbox.environment_yaml(files, _two_hosts(), "staging", 2), 0o644
    )
    env = config.load("sbx")
    assert env.target == "ssh"
    assert env.listings_env == "staging"
    assert env.bind == "0.0.0.0"


def test_only_files_with_the_marker_count_as_written_by_sandbox_up(envdir: Path) -> None:
    files = _files(envdir)
    assert not sandbox.written_by_sandbox(files.environment)
    files.environment.write_text("name: sbx\ntarget: ssh\n", encoding="utf-8")
    assert not sandbox.written_by_sandbox(files.environment)
    files.environment.write_text(EXPECTED_YAML, encoding="utf-8")
    assert sandbox.written_by_sandbox(files.environment)


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
    assert sandbox.ensure_key(files) is True
    assert _mode(files.key_dir) == 0o700
    assert _mode(files.private_key) == 0o600
    assert files.public_key.read_text(encoding="utf-8").startswith("ssh-ed25519 ")
    key = paramiko.Ed25519Key.from_private_key_file(str(files.private_key))
    public = files.public_key.read_text(encoding="utf-8").split()
    assert key.get_base64() == public[1]
    before = files.private_key.read_bytes()
    assert sandbox.ensure_key(files) is False
    assert files.private_key.read_bytes() == before


def test_write_file_replaces_atomically_with_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f"
    sandbox.write_file(path, "one\n", 0o600)
    sandbox.write_file(path, "two\n", 0o600)
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
    first = sandbox.image_tag(tmp_path)
    assert first.startswith("c.")
    assert len(first) == 14
    assert sandbox.image_tag(tmp_path) == first
    (tmp_path / "services" / "sandbox-host" / "README.md").write_text("# x\n", encoding="utf-8")
    assert sandbox.image_tag(tmp_path) == first
    (tmp_path / "services" / "sandbox-host" / "entrypoint").chmod(0o755)
    assert sandbox.image_tag(tmp_path) != first
    second = sandbox.image_tag(tmp_path)
    (tmp_path / "compose" / "sandbox.yaml").write_text("services: {a: {}}\n", encoding="utf-8")
    assert sandbox.image_tag(tmp_path) != second


def test_the_build_goes_through_compose_with_the_ca_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPOSE_FILE", "elsewhere.yaml")
    build = compose.Build("v1", "abc123", tmp_path / "ca.pem")
    inv = sandbox.build_invocation(tmp_path, "c.0123456789ab", build)
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
    sandbox.check_local_engine({"DOCKER_HOST": host} if host else {})


@pytest.mark.parametrize("host", ["ssh://me@build-box", "tcp://10.0.0.5:2376"])
def test_a_remote_engine_is_refused_because_loopback_would_be_its_own(host: str) -> None:
    with pytest.raises(OpsError, match="unset DOCKER_HOST"):
        sandbox.check_local_engine({"DOCKER_HOST": host})


def test_leftover_cgroups_of_a_host_are_removed_and_nothing_else(tmp_path: Path) -> None:
    name = "slipway-sandbox-sbx-1"
    for hierarchy in ("memory", "pids"):
        (tmp_path / hierarchy / name / "0123abcd").mkdir(parents=True)
    (tmp_path / "memory" / "docker" / "other").mkdir(parents=True)
    (tmp_path / "memory" / "slipway-sandbox-sbx-10").mkdir()
    assert sandbox.remove_cgroups(tmp_path, name) == 4
    assert not (tmp_path / "memory" / name).exists()
    assert not (tmp_path / "pids" / name).exists()
    assert (tmp_path / "memory" / "docker" / "other").is_dir()
    assert (tmp_path / "memory" / "slipway-sandbox-sbx-10").is_dir()
    assert sandbox.remove_cgroups(tmp_path / "missing", name) == 0


def test_a_missing_build_input_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OpsError, match="sandbox-host is missing"):
        sandbox.image_tag(tmp_path)


# ------------------------------------------------------------------------------ up and down


class FakeImages:
    def get(self, name: str) -> object:
        raise ImageNotFound(name)


class FakeContainers:
    def __init__(self, found: list[Any]) -> None:
        self.found = found

    def list(self, **kwargs: object) -> list[Any]:
        return self.found


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
        sandbox.up("staging")
    assert (envdir / "staging.yaml").read_text(encoding="utf-8") == "name: staging\ntarget: ssh\n"


def test_up_refuses_to_build_without_the_base_image(envdir: Path, engine: FakeEngine) -> None:
    _context(envdir.parent)
    with pytest.raises(OpsError, match=r"Fix: run `invoke images\.base`"):
        sandbox.up("sbx")


def test_down_of_a_sandbox_that_does_not_exist_says_so(
    envdir: Path, engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.down("sbx", yes=False)
    assert "sandbox sbx does not exist" in capsys.readouterr().out


def test_down_asks_before_deleting_and_keeps_everything_without_yes(
    envdir: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _files(envdir)
    files.environment.write_text(EXPECTED_YAML, encoding="utf-8")
    files.secrets.write_text("POSTGRES_PASSWORD=x\n", encoding="utf-8")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(OpsError, match=r"refusing to delete sandbox sbx.*--yes"):
        sandbox.down("sbx")
    assert files.environment.exists()
    assert files.secrets.exists()


def test_down_deletes_the_sandbox_files_but_not_someone_elses(
    envdir: Path, engine: FakeEngine
) -> None:
    files = _files(envdir)
    files.environment.write_text("name: sbx\ntarget: ssh\n", encoding="utf-8")
    files.secrets.write_text("POSTGRES_PASSWORD=x\n", encoding="utf-8")
    sandbox.ensure_key(files)
    sandbox.down("sbx", yes=True)
    assert not files.key_dir.exists()
    assert files.environment.exists()
    assert files.secrets.exists()
    files.environment.write_text(EXPECTED_YAML, encoding="utf-8")
    sandbox.down("sbx", yes=True)
    assert not files.environment.exists()
    assert not files.secrets.exists()
