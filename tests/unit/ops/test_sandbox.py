"""Sandbox hosts without Docker: naming, host plans, ports, the files sandbox.up writes."""

from __future__ import annotations

import io
import ssl
import stat
import tarfile
import urllib.error
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml
from cryptography import x509
from docker.errors import APIError, ImageNotFound, NotFound

from ops import certs, compose, config, docker_engine, secrets
from ops.errors import OpsError
from ops.sandbox import sandbox as sandbox
from ops.sandbox.sandbox import AcmeServer, Existing, HostPlan, HostPorts, SandboxFiles

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


# ------------------------------------------------------------------------------ ACME server


def test_the_acme_server_validates_for_real_against_host_1_on_loopback_ports() -> None:
    options = sandbox.acme_options("sbx", "slipway/sandbox-acme:c.1", "172.18.0.2")
    assert options["image"] == "slipway/sandbox-acme:c.1"
    assert options["name"] == "sbx-acme"
    assert options["labels"] == {sandbox.LABEL: "sbx", sandbox.ROLE_LABEL: "acme"}
    assert options["network"] == "slipway-sandbox"
    assert options["ports"] == {
        "14000/tcp": ("127.0.0.1", None),
        "15000/tcp": ("127.0.0.1", None),
    }
    assert options["extra_hosts"] == {
        "app.sbx.test": "172.18.0.2",
        "www.sbx.test": "172.18.0.2",
        "new.sbx.test": "172.18.0.2",  # the spare name, to rehearse adding a domain
    }
    assert options["environment"]["PEBBLE_VA_NOSLEEP"] == "1"
    assert options["environment"]["PEBBLE_WFE_NONCEREJECT"] == "0"
    assert "PEBBLE_VA_ALWAYS_VALID" not in options["environment"]
    assert not {"privileged", "cap_add", "volumes"} & set(options)


def test_the_acme_server_is_started_with_those_options_and_retried_on_a_taken_port() -> None:
    taken = APIError("Bind for 127.0.0.1:41400 failed: port is already allocated")
    engine = _creating([taken])
    sandbox.start_acme(engine, "sbx", "img", "172.18.0.2")
    calls = engine.containers.calls
    assert len(calls) == 2
    assert calls[1]["image"] == "img"
    assert calls[1]["name"] == "sbx-acme"
    assert [c.removed for c in engine.containers.made] == [True, False]


def _acme_attrs(
    status: str = "running",
    image: str = "slipway/sandbox-acme:c.1",
    extra: list[str] | None = None,
    address: str = "172.18.0.3",
) -> dict[str, Any]:
    def on(port: int) -> list[dict[str, str]]:
        return [{"HostIp": "127.0.0.1", "HostPort": str(port)}]

    return {
        "State": {"Status": status},
        "Config": {"Image": image},
        "HostConfig": {
            "ExtraHosts": extra
            if extra is not None
            else ["www.sbx.test:172.18.0.2", "app.sbx.test:172.18.0.2", "new.sbx.test:172.18.0.2"]
        },
        "NetworkSettings": {
            "Ports": {"14000/tcp": on(41400), "15000/tcp": on(41500)},
            "Networks": {"slipway-sandbox": {"IPAddress": address}},
        },
    }


def test_a_running_acme_server_of_the_image_for_host_1_is_reused() -> None:
    wanted = sandbox.acme_extra_hosts("sbx", "172.18.0.2")
    assert sandbox.acme_reuse_problem(_acme_attrs(), "slipway/sandbox-acme:c.1", wanted) == ""


@pytest.mark.parametrize(
    ("attrs", "problem"),
    [
        (_acme_attrs(status="exited"), "not running (exited)"),
        (_acme_attrs(image="slipway/sandbox-acme:c.0"), "runs another image"),
        (_acme_attrs(extra=["app.sbx.test:172.18.0.9"]), "another host 1"),
    ],
)
def test_a_stopped_outdated_or_misdirected_acme_server_is_replaced(
    attrs: dict[str, Any], problem: str
) -> None:
    wanted = sandbox.acme_extra_hosts("sbx", "172.18.0.2")
    assert problem in sandbox.acme_reuse_problem(attrs, "slipway/sandbox-acme:c.1", wanted)


def test_the_acme_server_is_read_from_docker_inspect() -> None:
    assert sandbox.acme_server("sbx-acme", _acme_attrs()) == PEBBLE


def test_a_container_off_the_sandbox_network_is_an_error_naming_the_fix() -> None:
    attrs = _acme_attrs()
    attrs["NetworkSettings"]["Networks"] = {"bridge": {"IPAddress": "172.17.0.2"}}
    with pytest.raises(OpsError, match=r"no address on the network slipway-sandbox.*sandbox\.up"):
        sandbox.acme_server("sbx-acme", attrs)


def test_an_acme_directory_needs_nonce_account_and_order_urls() -> None:
    directory = {"newNonce": "n", "newAccount": "a", "newOrder": "https://x/order", "meta": {}}
    assert sandbox.check_directory(directory) == "https://x/order"
    with pytest.raises(OpsError, match="no newNonce, newOrder"):
        sandbox.check_directory({"newAccount": "a"})
    with pytest.raises(OpsError, match="not an ACME directory"):
        sandbox.check_directory(["newNonce"])


def test_the_root_must_be_a_ca_certificate(tmp_path: Path) -> None:
    made = certs.ensure(tmp_path, "t", ["10.0.0.1"])
    root = sandbox.check_root(made.paths.ca_crt.read_bytes())
    assert root.subject.rfc4514_string().endswith("O=Slipway local CA")
    with pytest.raises(OpsError, match="CA false"):
        sandbox.check_root(made.paths.tls_crt.read_bytes())
    with pytest.raises(OpsError, match="not a CA certificate"):
        sandbox.check_root(b"<html>not found</html>")


def test_the_certificate_archive_ends_with_ready_and_belongs_to_pebble() -> None:
    data = sandbox.certificate_archive(b"CERT", b"KEY")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == ["cert.pem", "key.pem", "ready"]
        assert [m.mode for m in members] == [0o644, 0o600, 0o644]
        assert {(m.uid, m.gid) for m in members} == {(sandbox.ACME_UID, sandbox.ACME_UID)}
        handle = archive.extractfile("key.pem")
        assert handle is not None
        assert handle.read() == b"KEY"


def test_the_uid_of_the_certificate_is_the_image_user() -> None:
    dockerfile = Path(__file__).parents[3] / "services" / "sandbox-acme" / "Dockerfile"
    text = dockerfile.read_text(encoding="utf-8")
    assert f"--uid {sandbox.ACME_UID}" in text
    assert f"USER {sandbox.ACME_UID}:{sandbox.ACME_UID}" in text
    assert sandbox.ACME_TLS_DIR in text


def test_the_acme_server_certificate_names_its_address_and_keeps_its_ca(envdir: Path) -> None:
    files = _files(envdir)
    sandbox.ensure_key(files)
    first = sandbox.ensure_acme_certificate(files, "172.18.0.3")
    assert first.ca_created
    leaf = x509.load_pem_x509_certificate(first.paths.tls_crt.read_bytes())
    assert {"172.18.0.3", "127.0.0.1", "sbx-acme"} <= certs.san_names(leaf)
    assert files.acme_server_ca.read_bytes() == first.paths.ca_crt.read_bytes()
    assert _mode(first.paths.ca_key) == 0o600
    assert _mode(first.paths.tls_key) == 0o600
    assert _mode(files.key_dir) == 0o700
    again = sandbox.ensure_acme_certificate(files, "172.18.0.3")
    assert not again.changed
    moved = sandbox.ensure_acme_certificate(files, "172.18.0.7")
    assert moved.leaf_created
    assert not moved.ca_created
    leaf = x509.load_pem_x509_certificate(moved.paths.tls_crt.read_bytes())
    assert "172.18.0.7" in certs.san_names(leaf)
    assert files.acme_server_ca.read_bytes() == first.paths.ca_crt.read_bytes()


class FakeAcmeContainer:
    name = "sbx-acme"

    def __init__(self, status: str = "running") -> None:
        self.status = status
        self.labels = {sandbox.LABEL: "sbx", sandbox.ROLE_LABEL: "acme"}

    def reload(self) -> None:
        pass

    def logs(self, tail: int) -> bytes:
        return b"[sandbox-acme] waiting up to 120s for /etc/pebble/tls/cert.pem\n"


def _answers(monkeypatch: pytest.MonkeyPatch, answers: list[Any]) -> list[str]:
    """https_get answers in turn: bytes are returned, exceptions raised; the URLs asked."""
    asked: list[str] = []

    def fake(url: str, ca_file: Path, timeout: float = 5.0) -> bytes:
        asked.append(url)
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, bytes)
        return answer

    monkeypatch.setattr(sandbox, "https_get", fake)
    monkeypatch.setattr(sandbox.time, "sleep", lambda seconds: None)
    return asked


DIRECTORY = b'{"newNonce": "n", "newAccount": "a", "newOrder": "o"}'


def test_the_directory_is_awaited_through_refusals_until_it_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    refused = urllib.error.URLError(ConnectionRefusedError(111, "refused"))
    asked = _answers(monkeypatch, [refused, ConnectionResetError(104, "reset"), DIRECTORY])
    note = sandbox.wait_acme_directory(FakeAcmeContainer(), PEBBLE, tmp_path / "ca.pem", 30)
    assert note.startswith("directory answers after")
    assert asked == ["https://127.0.0.1:41400/dir"] * 3


def test_a_directory_certificate_that_does_not_verify_fails_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = ssl.SSLCertVerificationError(1, "certificate verify failed")
    bad.verify_message = "IP address mismatch"
    _answers(monkeypatch, [urllib.error.URLError(bad)])
    with pytest.raises(
        OpsError, match=r"ca\.pem does not verify \(IP address mismatch\).*sandbox\.down --name sbx"
    ):
        sandbox.wait_acme_directory(FakeAcmeContainer(), PEBBLE, tmp_path / "ca.pem", 30)
    assert "sbx-acme: container log" in capsys.readouterr().out


def test_a_stopped_acme_server_is_reported_with_its_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _answers(monkeypatch, [ConnectionRefusedError(111, "refused")])
    with pytest.raises(OpsError, match=r"sbx-acme stopped \(exited\); its log is above"):
        sandbox.wait_acme_directory(FakeAcmeContainer("exited"), PEBBLE, tmp_path / "c", 30)
    assert "waiting up to 120s" in capsys.readouterr().out


def test_a_directory_that_never_answers_fails_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _answers(monkeypatch, [ConnectionRefusedError(111, "refused")] * 2)
    clock = iter([0.0, 0.0, 1.0, 100.0])
    monkeypatch.setattr(sandbox.time, "monotonic", lambda: next(clock))
    with pytest.raises(OpsError, match=r"did not answer within 30s \(ConnectionRefusedError"):
        sandbox.wait_acme_directory(FakeAcmeContainer(), PEBBLE, tmp_path / "c", 30)


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


def test_several_hosts_get_their_swarm_addresses_and_load_as_a_swarm(envdir: Path) -> None:
    files = _files(envdir)
    text = sandbox.environment_yaml(
        files, _two_hosts(), "staging", 2, swarm_addresses=("172.31.0.4", "172.31.0.5")
    )
    sandbox.write_file(files.environment, text, 0o644)
    env = config.load("sbx")
    assert [h.advertise for h in env.hosts] == ["172.31.0.4", "172.31.0.5"]
    one = sandbox.environment_yaml(files, _two_hosts()[:1], "staging", 1, swarm_addresses=("x",))
    assert "swarm_address" not in one  # one host: Compose, no swarm


def test_the_environment_file_loads_as_an_ssh_environment(envdir: Path) -> None:
    files = _files(envdir)
    sandbox.write_file(
        files.environment, sandbox.environment_yaml(files, _two_hosts(), "staging", 2), 0o644
    )
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


def test_the_acme_environment_file_names_pebble_its_cas_and_host_1(envdir: Path) -> None:
    files = _files(envdir)
    text = sandbox.environment_yaml(files, _two_hosts()[:1], "staging", 1, PEBBLE.directory)
    assert text == EXPECTED_ACME_YAML
    files.environment.write_text(text, encoding="utf-8")
    assert sandbox.written_by_sandbox(files.environment)


def test_the_acme_environment_file_loads_as_tls_acme(envdir: Path) -> None:
    files = _files(envdir)
    text = sandbox.environment_yaml(files, _two_hosts(), "staging", 2, PEBBLE.directory)
    sandbox.write_file(files.environment, text, 0o644)
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


def test_the_acme_server_urls_use_its_network_address_and_the_loopback_ports() -> None:
    assert PEBBLE.directory == "https://172.18.0.3:14000/dir"
    assert PEBBLE.local_directory == "https://127.0.0.1:41400/dir"
    assert PEBBLE.local_roots == "https://127.0.0.1:41500/roots/0"
    assert AcmeServer("x", "fd00::3", 1, 2).directory == "https://[fd00::3]:14000/dir"


def test_the_acme_files_live_in_the_private_key_directory(envdir: Path) -> None:
    files = _files(envdir)
    assert files.acme_server_ca == files.key_dir / "acme-server-ca.pem"
    assert files.acme_roots == files.key_dir / "acme-roots.pem"
    assert files.acme_server_dir.parent == files.key_dir


@pytest.mark.parametrize("tls", ["local-ca", "acme"])
def test_the_sandbox_tls_modes_are_accepted(tls: str) -> None:
    sandbox.check_tls(tls)


def test_an_unknown_tls_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(OpsError, match="use one of local-ca, acme"):
        sandbox.check_tls("letsencrypt")


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


def _acme_context(root: Path) -> None:
    (root / "services" / "sandbox-acme").mkdir(parents=True)
    (root / "services" / "sandbox-acme" / "Dockerfile").write_text("FROM y\n", encoding="utf-8")


def test_the_acme_image_has_a_tag_of_its_own(tmp_path: Path) -> None:
    _context(tmp_path)
    _acme_context(tmp_path)
    host = sandbox.image_tag(tmp_path)
    acme = sandbox.image_tag(tmp_path, sandbox.ACME_BUILD_INPUTS)
    assert acme.startswith("c.")
    assert acme != host
    (tmp_path / "services" / "sandbox-acme" / "README.md").write_text("# x\n", encoding="utf-8")
    assert sandbox.image_tag(tmp_path, sandbox.ACME_BUILD_INPUTS) == acme
    (tmp_path / "services" / "sandbox-acme" / "entrypoint").write_text("#!\n", encoding="utf-8")
    assert sandbox.image_tag(tmp_path, sandbox.ACME_BUILD_INPUTS) != acme
    # Editing the ACME server never changes the hosts' image (running hosts stay current).
    assert sandbox.image_tag(tmp_path) == host


def test_the_acme_image_is_built_by_its_own_compose_service(tmp_path: Path) -> None:
    build = compose.Build("v1", "abc123", tmp_path / "ca.pem")
    inv = sandbox.build_invocation(tmp_path, "c.0123456789ab", build, sandbox.ACME_SERVICE)
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


def test_up_with_acme_refuses_to_replace_a_container_that_is_not_its_acme_server(
    envdir: Path, engine: FakeEngine
) -> None:
    _context(envdir.parent)
    _acme_context(envdir.parent)
    engine.containers.found.append(FakeContainer("sbx-acme", {}))
    with pytest.raises(OpsError, match=r"sbx-acme exists and is not the ACME server.*docker rm"):
        sandbox.up("sbx", tls="acme")


def test_up_with_acme_needs_the_base_image_for_the_acme_image_too(
    envdir: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _context(envdir.parent)
    _acme_context(envdir.parent)
    monkeypatch.setattr(
        sandbox.images, "has_image", lambda engine, name: name.startswith(sandbox.IMAGE)
    )
    with pytest.raises(
        OpsError, match=r"slipway/sandbox-acme:c\.\w+ must be built.*run `invoke images\.base`"
    ):
        sandbox.up("sbx", tls="acme")


def test_the_acme_server_is_not_a_host_and_is_removed_with_local_ca(
    envdir: Path,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    labels = {sandbox.LABEL: "sbx", sandbox.ROLE_LABEL: "acme"}
    server = FakeContainer("sbx-acme", labels)
    assert sandbox.is_acme(server)
    assert not sandbox.is_acme(FakeContainer("slipway-sandbox-sbx-1", {sandbox.LABEL: "sbx"}))
    _context(envdir.parent)
    engine.containers.found.append(server)
    # Every image present: the dry run reaches the end of the plan.
    monkeypatch.setattr(sandbox.images, "has_image", lambda engine, name: True)
    report = sandbox.up("sbx", dry_run=True)
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
    monkeypatch.setattr(sandbox.images, "has_image", lambda engine, name: True)
    report = sandbox.up("sbx", tls="acme", dry_run=True)
    planned = [o.step.name for o in report.outcomes if o.status == "planned"]
    assert "build the slipway/sandbox-acme image" in planned
    assert any("ACME server sbx-acme" in name for name in planned)
    assert any("acme-roots.pem" in name for name in planned)
    out = capsys.readouterr().out
    assert "plan: ACME server sbx-acme" in out
    assert not (envdir / "sbx.yaml").exists()
    assert not _files(envdir).key_dir.exists()


# ------------------------------------------------------------------------------ registry


def _registry_attrs(
    status: str = "running",
    image: str = "slipway/sandbox-registry:c.1",
    address: str = "172.18.0.4",
) -> dict[str, Any]:
    return {
        "State": {"Status": status},
        "Config": {"Image": image},
        "NetworkSettings": {
            "Ports": {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32790"}]},
            "Networks": {"slipway-sandbox": {"IPAddress": address}},
        },
    }


REGISTRY = sandbox.RegistryServer("sbx-registry", "172.18.0.4", 32790)
CREDENTIALS = secrets.RegistryCredentials("sbx-1a2b3c4d", "pw-" + "x" * 40)


def test_the_registry_runs_on_the_network_with_loopback_ports_and_no_privileges() -> None:
    options = sandbox.registry_options("sbx", "slipway/sandbox-registry:c.1")
    assert options["image"] == "slipway/sandbox-registry:c.1"
    assert options["name"] == "sbx-registry"
    assert options["labels"] == {sandbox.LABEL: "sbx", sandbox.ROLE_LABEL: "registry"}
    assert options["network"] == "slipway-sandbox"
    assert options["ports"] == {"5000/tcp": ("127.0.0.1", None)}
    assert not {"privileged", "cap_add", "volumes", "extra_hosts"} & set(options)


def test_the_registry_is_started_with_those_options_and_retried_on_a_taken_port() -> None:
    taken = APIError("Bind for 127.0.0.1:32790 failed: port is already allocated")
    engine = _creating([taken])
    sandbox.start_registry(engine, "sbx", "img")
    calls = engine.containers.calls
    assert [c["name"] for c in calls] == ["sbx-registry", "sbx-registry"]
    assert [c.removed for c in engine.containers.made] == [True, False]


def test_the_registry_is_read_from_docker_inspect() -> None:
    assert sandbox.registry_server("sbx-registry", _registry_attrs()) == REGISTRY


def test_the_registry_addresses_are_loopback_here_and_the_network_there() -> None:
    assert REGISTRY.push == "127.0.0.1:32790/slipway"
    assert REGISTRY.pull == "172.18.0.4:5000/slipway"
    assert REGISTRY.host_port == "172.18.0.4:5000"
    assert REGISTRY.local_url == "https://127.0.0.1:32790/v2/"
    assert REGISTRY.addresses == config.Registry(
        push="127.0.0.1:32790/slipway", pull="172.18.0.4:5000/slipway"
    )


@pytest.mark.parametrize(
    ("attrs", "problem"),
    [
        (_registry_attrs(), ""),
        (_registry_attrs(status="exited"), "not running (exited)"),
        (_registry_attrs(image="slipway/sandbox-registry:c.0"), "runs another image"),
    ],
)
def test_a_stopped_or_outdated_registry_is_replaced(attrs: dict[str, Any], problem: str) -> None:
    assert sandbox.reuse_problem(attrs, "slipway/sandbox-registry:c.1") == problem


def test_the_registry_archive_holds_the_htpasswd_before_ready_for_its_user() -> None:
    data = sandbox.certificate_archive(
        b"CERT", b"KEY", sandbox.REGISTRY_UID, {"htpasswd": b"u:$2b$08$x\n"}
    )
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == ["cert.pem", "key.pem", "htpasswd", "ready"]
        assert [m.mode for m in members] == [0o644, 0o600, 0o600, 0o644]
        assert {m.uid for m in members} == {sandbox.REGISTRY_UID}


def test_the_registry_image_user_dirs_and_config_match_ops() -> None:
    service = Path(__file__).parents[3] / "services" / "sandbox-registry"
    dockerfile = (service / "Dockerfile").read_text(encoding="utf-8")
    assert f"--uid {sandbox.REGISTRY_UID}" in dockerfile
    assert f"USER {sandbox.REGISTRY_UID}:{sandbox.REGISTRY_UID}" in dockerfile
    assert sandbox.REGISTRY_TLS_DIR in dockerfile
    settings = yaml.safe_load((service / "config.yml").read_text(encoding="utf-8"))
    assert settings["http"]["addr"] == f":{sandbox.REGISTRY_PORT}"
    assert settings["http"]["tls"] == {
        "certificate": f"{sandbox.REGISTRY_TLS_DIR}/cert.pem",
        "key": f"{sandbox.REGISTRY_TLS_DIR}/key.pem",
    }
    assert settings["auth"]["htpasswd"]["path"] == f"{sandbox.REGISTRY_TLS_DIR}/htpasswd"
    entrypoint = (service / "entrypoint").read_text(encoding="utf-8")
    assert f"TLS_DIR={sandbox.REGISTRY_TLS_DIR}" in entrypoint


def test_the_certs_d_archive_trusts_the_registry_at_its_address_and_port() -> None:
    data = sandbox.certs_d_archive("172.18.0.4:5000", b"CA PEM")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == [
            "etc",
            "etc/docker",
            "etc/docker/certs.d",
            "etc/docker/certs.d/172.18.0.4:5000",
            "etc/docker/certs.d/172.18.0.4:5000/ca.crt",
        ]
        assert [m.isdir() for m in members] == [True, True, True, True, False]
        assert {m.mode for m in members[:-1]} == {0o755}
        assert members[-1].mode == 0o644
        assert {(m.uid, m.gid) for m in members} == {(0, 0)}
        handle = archive.extractfile(members[-1])
        assert handle is not None
        assert handle.read() == b"CA PEM"


class Receiving:
    def __init__(self, name: str) -> None:
        self.name = name
        self.put: list[tuple[str, bytes]] = []

    def put_archive(self, path: str, data: bytes) -> bool:
        self.put.append((path, data))
        return True


def test_every_host_gets_the_registry_ca_extracted_at_root() -> None:
    hosts = [Receiving("slipway-sandbox-sbx-1"), Receiving("slipway-sandbox-sbx-2")]
    sandbox.trust_registry(hosts, REGISTRY, b"CA PEM")
    for host in hosts:
        ((path, data),) = host.put
        assert path == "/"
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            assert "etc/docker/certs.d/172.18.0.4:5000/ca.crt" in archive.getnames()


def test_the_htpasswd_entry_is_bcrypt_and_accepts_only_its_credentials() -> None:
    line = sandbox.htpasswd_line("sbx-1a2b", "right-password", rounds=4)
    user, _, digest = line.strip().partition(":")
    assert user == "sbx-1a2b"
    assert digest.startswith("$2b$04$")
    assert sandbox.htpasswd_accepts(line, "sbx-1a2b", "right-password")
    assert not sandbox.htpasswd_accepts(line, "sbx-1a2b", "wrong-password")
    assert not sandbox.htpasswd_accepts(line, "other", "right-password")
    assert not sandbox.htpasswd_accepts("sbx-1a2b:not-a-hash\n", "sbx-1a2b", "right-password")
    assert not sandbox.htpasswd_accepts("", "sbx-1a2b", "right-password")


def test_the_registry_certificate_names_its_address_and_keeps_its_ca(envdir: Path) -> None:
    files = _files(envdir)
    sandbox.ensure_key(files)
    first = sandbox.ensure_registry_certificate(files, "172.18.0.4")
    assert first.paths.ca_crt == files.registry_ca
    assert files.registry_dir.parent == files.key_dir
    leaf = x509.load_pem_x509_certificate(first.paths.tls_crt.read_bytes())
    assert {"172.18.0.4", "127.0.0.1", "sbx-registry"} <= certs.san_names(leaf)
    assert _mode(first.paths.ca_key) == 0o600
    assert _mode(first.paths.tls_key) == 0o600
    assert not sandbox.ensure_registry_certificate(files, "172.18.0.4").changed
    moved = sandbox.ensure_registry_certificate(files, "172.18.0.9")
    assert moved.leaf_created and not moved.ca_created


def test_registry_credentials_are_generated_once_next_to_the_other_secrets(
    envdir: Path,
) -> None:
    files = _files(envdir)
    files.secrets.write_text("# mine\nPOSTGRES_PASSWORD=keep-me\n", encoding="utf-8")
    made, how = sandbox.ensure_registry_credentials(files)
    assert how == "generated"
    assert made.user.startswith("sbx-")
    assert len(made.password) >= 40
    values = secrets.read_file(files.secrets)
    assert values["POSTGRES_PASSWORD"] == "keep-me"
    assert (values[secrets.REGISTRY_USER], values[secrets.REGISTRY_PASSWORD]) == (
        made.user,
        made.password,
    )
    assert _mode(files.secrets) == 0o600
    again, how = sandbox.ensure_registry_credentials(files)
    assert how == "present"
    assert (again.user, again.password) == (made.user, made.password)
    # Half a pair is no pair: both are made again.
    text = files.secrets.read_text(encoding="utf-8").replace(made.password, "")
    files.secrets.write_text(text, encoding="utf-8")
    fresh, how = sandbox.ensure_registry_credentials(files)
    assert how == "generated"
    assert fresh.password != made.password


def _status_answers(monkeypatch: pytest.MonkeyPatch, answers: list[Any]) -> list[bool]:
    """https_status answers in turn (ints returned, exceptions raised); whether auth was sent."""
    sent: list[bool] = []

    def fake(
        url: str, ca_file: Path, auth: secrets.RegistryCredentials | None = None, timeout: float = 5
    ) -> int:
        assert url == "https://127.0.0.1:32790/v2/"
        sent.append(auth is not None)
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, int)
        return answer

    monkeypatch.setattr(sandbox, "https_status", fake)
    monkeypatch.setattr(sandbox.time, "sleep", lambda seconds: None)
    return sent


class FakeRegistryContainer(FakeAcmeContainer):
    name = "sbx-registry"

    def __init__(self, status: str = "running") -> None:
        super().__init__(status)
        self.labels = {sandbox.LABEL: "sbx", sandbox.ROLE_LABEL: "registry"}


def test_the_registry_is_awaited_until_it_refuses_anonymous_and_accepts_the_login(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    refused = urllib.error.URLError(ConnectionRefusedError(111, "refused"))
    sent = _status_answers(monkeypatch, [refused, 503, 401, 200])
    note = sandbox.wait_registry(
        FakeRegistryContainer(), REGISTRY, tmp_path / "ca", CREDENTIALS, 30
    )
    assert note.startswith("TLS verified, 401 without credentials, 200 with them after")
    assert sent == [False, False, False, True]


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        ([200], "answers without credentials: auth is off"),
        ([401, 401], "answers HTTP 401 with SLIPWAY_REGISTRY_USER and SLIPWAY_REGISTRY_PASSWORD"),
    ],
)
def test_a_registry_without_auth_or_refusing_its_credentials_fails_with_its_log(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    answers: list[int],
    problem: str,
) -> None:
    _status_answers(monkeypatch, answers)
    with pytest.raises(OpsError, match=problem) as err:
        sandbox.wait_registry(FakeRegistryContainer(), REGISTRY, tmp_path / "ca", CREDENTIALS, 30)
    assert "then `invoke sandbox.up --registry` again" in str(err.value)
    assert CREDENTIALS.password not in str(err.value)
    assert "sbx-registry: container log" in capsys.readouterr().out


def test_a_registry_certificate_that_does_not_verify_fails_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = ssl.SSLCertVerificationError(1, "certificate verify failed")
    bad.verify_message = "unable to get local issuer certificate"
    _status_answers(monkeypatch, [urllib.error.URLError(bad)])
    with pytest.raises(OpsError, match=r"ca\.crt does not verify \(unable to get local issuer"):
        sandbox.wait_registry(
            FakeRegistryContainer(), REGISTRY, tmp_path / "ca.crt", CREDENTIALS, 30
        )


class Found:
    def __init__(self, name: str) -> None:
        self.name = name


class Finding:
    def __init__(self, found: list[Any]) -> None:
        self.containers = FakeContainers(found)


def test_start_or_reuse_keeps_a_fitting_container_and_replaces_another(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    removed: list[str] = []
    monkeypatch.setattr(sandbox, "_remove_container", lambda engine, cname: removed.append(cname))
    engine: Any = Finding([Found("sbx-registry")])
    new = Found("new")
    kept, reused = sandbox.start_or_reuse(engine, "sbx-registry", lambda c: "", lambda: new)
    assert (kept.name, reused, removed) == ("sbx-registry", True, [])
    made, reused = sandbox.start_or_reuse(engine, "sbx-registry", lambda c: "old", lambda: new)
    assert (made, reused, removed) == (new, False, ["sbx-registry"])
    assert "replacing sbx-registry: old" in capsys.readouterr().out
    made, reused = sandbox.start_or_reuse(Finding([]), "sbx-registry", lambda c: "x", lambda: new)
    assert (made, reused) == (new, False)


EXPECTED_REGISTRY_YAML = EXPECTED_ACME_YAML.replace(
    "--hosts 1 --tls acme`", "--hosts 1 --tls acme --registry`"
).replace(
    "listings_env: staging\n",
    "registry: {push: 127.0.0.1:32790/slipway, pull: 172.18.0.4:5000/slipway}\n"
    "listings_env: staging\n",
)


def test_the_registry_environment_file_names_push_and_pull(envdir: Path) -> None:
    files = _files(envdir)
    text = sandbox.environment_yaml(
        files, _two_hosts()[:1], "staging", 1, PEBBLE.directory, REGISTRY.addresses
    )
    assert text == EXPECTED_REGISTRY_YAML
    local = sandbox.environment_yaml(files, _two_hosts(), "staging", 2, "", REGISTRY.addresses)
    assert (
        local.splitlines()[0] == "# Written by `invoke sandbox.up --name sbx --hosts 2 --registry`."
    )
    sandbox.write_file(files.environment, local, 0o644)
    assert sandbox.written_by_sandbox(files.environment)
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
    host = sandbox.image_tag(tmp_path)
    acme = sandbox.image_tag(tmp_path, sandbox.ACME_BUILD_INPUTS)
    tag = sandbox.image_tag(tmp_path, sandbox.REGISTRY_BUILD_INPUTS)
    assert len({host, acme, tag}) == 3
    (tmp_path / "services" / "sandbox-registry" / "config.yml").write_text("x\n", encoding="utf-8")
    assert sandbox.image_tag(tmp_path, sandbox.REGISTRY_BUILD_INPUTS) != tag
    assert sandbox.image_tag(tmp_path) == host
    assert sandbox.image_tag(tmp_path, sandbox.ACME_BUILD_INPUTS) == acme


def test_the_registry_image_is_built_by_its_own_compose_service(tmp_path: Path) -> None:
    build = compose.Build("v1", "abc123", tmp_path / "ca.pem")
    inv = sandbox.build_invocation(tmp_path, "c.0123456789ab", build, sandbox.REGISTRY_SERVICE)
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
    engine.containers.found.append(FakeContainer("sbx-registry", {sandbox.LABEL: "sbx"}))
    with pytest.raises(OpsError, match=r"sbx-registry exists and is not the registry.*docker rm"):
        sandbox.up("sbx", registry=True)


def test_up_with_registry_needs_the_base_image_for_the_registry_image_too(
    envdir: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _context(envdir.parent)
    _registry_context(envdir.parent)
    monkeypatch.setattr(
        sandbox.images, "has_image", lambda engine, name: name.startswith(sandbox.IMAGE)
    )
    with pytest.raises(
        OpsError, match=r"slipway/sandbox-registry:c\.\w+ must be built.*`invoke images\.base`"
    ):
        sandbox.up("sbx", registry=True)


def test_a_dry_run_with_registry_and_acme_plans_both_and_changes_nothing(
    envdir: Path,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _context(envdir.parent)
    _acme_context(envdir.parent)
    _registry_context(envdir.parent)
    monkeypatch.setattr(sandbox.images, "has_image", lambda engine, name: True)
    report = sandbox.up("sbx", hosts=2, tls="acme", registry=True, dry_run=True)
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
    server = FakeContainer("sbx-registry", {sandbox.LABEL: "sbx", sandbox.ROLE_LABEL: "registry"})
    assert sandbox.is_registry(server) and not sandbox.is_acme(server)
    assert sandbox.role_of(FakeContainer("slipway-sandbox-sbx-1", {sandbox.LABEL: "sbx"})) == ""
    _context(envdir.parent)
    engine.containers.found.append(server)
    monkeypatch.setattr(sandbox.images, "has_image", lambda engine, name: True)
    sandbox.up("sbx", dry_run=True)
    out = capsys.readouterr().out
    assert "plan: start: sbx-1" in out
    assert "plan: remove: sbx-registry (registry: not used without --registry)" in out


def test_down_names_the_registry_among_what_it_deletes(
    envdir: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.containers.found += [
        FakeContainer("slipway-sandbox-sbx-1", {sandbox.LABEL: "sbx", sandbox.INDEX_LABEL: "1"}),
        FakeContainer("sbx-registry", {sandbox.LABEL: "sbx", sandbox.ROLE_LABEL: "registry"}),
    ]
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(OpsError, match=r"sandbox sbx: 1 host\(s\) .*, its registry sbx-registry"):
        sandbox.down("sbx")
