"""The sandbox's containers without Docker: starting hosts, the ACME server, the registry."""

from __future__ import annotations

import io
import ssl
import stat
import tarfile
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from docker.errors import APIError, NotFound

from ops import certs, config, secrets
from ops.errors import OpsError
from ops.sandbox.acme_server import (
    ACME_TLS_DIR,
    ACME_UID,
    AcmeServer,
    acme_extra_hosts,
    acme_options,
    acme_reuse_problem,
    acme_server,
    check_directory,
    check_root,
    ensure_acme_certificate,
    start_acme,
    wait_acme_directory,
)
from ops.sandbox.files import SandboxFiles, ensure_key
from ops.sandbox.hosts import start_host
from ops.sandbox.names import INDEX_LABEL, LABEL, ROLE_LABEL
from ops.sandbox.registry_server import (
    REGISTRY_PORT,
    REGISTRY_TLS_DIR,
    REGISTRY_UID,
    RegistryServer,
    certs_d_archive,
    ensure_registry_certificate,
    ensure_registry_credentials,
    htpasswd_accepts,
    htpasswd_line,
    registry_options,
    registry_server,
    start_registry,
    trust_registry,
    wait_registry,
)
from ops.sandbox.servers import certificate_archive, reuse_problem, start_or_reuse

pytestmark = pytest.mark.unit

PEBBLE = AcmeServer("sbx-acme", "172.18.0.3", 41400, 41500)


def _files(envdir: Path, name: str = "sbx") -> SandboxFiles:
    return SandboxFiles.of(name)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------------ hosts


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
    start_host(engine, "sbx", 2, "slipway/sandbox-host:c.1", "ssh-ed25519 AAAA k\n")
    (call,) = engine.containers.calls
    assert call["image"] == "slipway/sandbox-host:c.1"
    assert call["name"] == "slipway-sandbox-sbx-2"
    assert call["hostname"] == "sbx-2"
    assert call["labels"][LABEL] == "sbx"
    assert call["labels"][INDEX_LABEL] == "2"
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
    start_host(engine, "sbx", 1, "img", "key")
    assert len(engine.containers.calls) == 2
    assert [c.removed for c in engine.containers.made] == [True, False]


def test_any_other_start_failure_removes_the_container_and_stops() -> None:
    engine = _creating([APIError("OCI runtime create failed")])
    with pytest.raises(OpsError, match="cannot start slipway-sandbox-sbx-1"):
        start_host(engine, "sbx", 1, "img", "key")
    assert [c.removed for c in engine.containers.made] == [True]


# ------------------------------------------------------------------------------ ACME server


def test_the_acme_server_validates_for_real_against_host_1_on_loopback_ports() -> None:
    options = acme_options("sbx", "slipway/sandbox-acme:c.1", "172.18.0.2")
    assert options["image"] == "slipway/sandbox-acme:c.1"
    assert options["name"] == "sbx-acme"
    assert options["labels"] == {LABEL: "sbx", ROLE_LABEL: "acme"}
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
    start_acme(engine, "sbx", "img", "172.18.0.2")
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
    wanted = acme_extra_hosts("sbx", "172.18.0.2")
    assert acme_reuse_problem(_acme_attrs(), "slipway/sandbox-acme:c.1", wanted) == ""


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
    wanted = acme_extra_hosts("sbx", "172.18.0.2")
    assert problem in acme_reuse_problem(attrs, "slipway/sandbox-acme:c.1", wanted)


def test_the_acme_server_is_read_from_docker_inspect() -> None:
    assert acme_server("sbx-acme", _acme_attrs()) == PEBBLE


def test_a_container_off_the_sandbox_network_is_an_error_naming_the_fix() -> None:
    attrs = _acme_attrs()
    attrs["NetworkSettings"]["Networks"] = {"bridge": {"IPAddress": "172.17.0.2"}}
    with pytest.raises(OpsError, match=r"no address on the network slipway-sandbox.*sandbox\.up"):
        acme_server("sbx-acme", attrs)


def test_an_acme_directory_needs_nonce_account_and_order_urls() -> None:
    directory = {"newNonce": "n", "newAccount": "a", "newOrder": "https://x/order", "meta": {}}
    assert check_directory(directory) == "https://x/order"
    with pytest.raises(OpsError, match="no newNonce, newOrder"):
        check_directory({"newAccount": "a"})
    with pytest.raises(OpsError, match="not an ACME directory"):
        check_directory(["newNonce"])


def test_the_root_must_be_a_ca_certificate(tmp_path: Path) -> None:
    made = certs.ensure(tmp_path, "t", ["10.0.0.1"])
    root = check_root(made.paths.ca_crt.read_bytes())
    assert root.subject.rfc4514_string().endswith("O=Slipway local CA")
    with pytest.raises(OpsError, match="CA false"):
        check_root(made.paths.tls_crt.read_bytes())
    with pytest.raises(OpsError, match="not a CA certificate"):
        check_root(b"<html>not found</html>")


def test_the_certificate_archive_ends_with_ready_and_belongs_to_pebble() -> None:
    data = certificate_archive(b"CERT", b"KEY", ACME_UID)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == ["cert.pem", "key.pem", "ready"]
        assert [m.mode for m in members] == [0o644, 0o600, 0o644]
        assert {(m.uid, m.gid) for m in members} == {(ACME_UID, ACME_UID)}
        handle = archive.extractfile("key.pem")
        assert handle is not None
        assert handle.read() == b"KEY"


def test_the_uid_of_the_certificate_is_the_image_user() -> None:
    dockerfile = Path(__file__).parents[3] / "services" / "sandbox-acme" / "Dockerfile"
    text = dockerfile.read_text(encoding="utf-8")
    assert f"--uid {ACME_UID}" in text
    assert f"USER {ACME_UID}:{ACME_UID}" in text
    assert ACME_TLS_DIR in text


def test_the_acme_server_certificate_names_its_address_and_keeps_its_ca(envdir: Path) -> None:
    files = _files(envdir)
    ensure_key(files)
    first = ensure_acme_certificate(files, "172.18.0.3")
    assert first.ca_created
    leaf = x509.load_pem_x509_certificate(first.paths.tls_crt.read_bytes())
    assert {"172.18.0.3", "127.0.0.1", "sbx-acme"} <= certs.san_names(leaf)
    assert files.acme_server_ca.read_bytes() == first.paths.ca_crt.read_bytes()
    assert _mode(first.paths.ca_key) == 0o600
    assert _mode(first.paths.tls_key) == 0o600
    assert _mode(files.key_dir) == 0o700
    again = ensure_acme_certificate(files, "172.18.0.3")
    assert not again.changed
    moved = ensure_acme_certificate(files, "172.18.0.7")
    assert moved.leaf_created
    assert not moved.ca_created
    leaf = x509.load_pem_x509_certificate(moved.paths.tls_crt.read_bytes())
    assert "172.18.0.7" in certs.san_names(leaf)
    assert files.acme_server_ca.read_bytes() == first.paths.ca_crt.read_bytes()


class FakeAcmeContainer:
    name = "sbx-acme"

    def __init__(self, status: str = "running") -> None:
        self.status = status
        self.labels = {LABEL: "sbx", ROLE_LABEL: "acme"}

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

    monkeypatch.setattr("ops.sandbox.acme_server.https_get", fake)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    return asked


DIRECTORY = b'{"newNonce": "n", "newAccount": "a", "newOrder": "o"}'


def test_the_directory_is_awaited_through_refusals_until_it_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    refused = urllib.error.URLError(ConnectionRefusedError(111, "refused"))
    asked = _answers(monkeypatch, [refused, ConnectionResetError(104, "reset"), DIRECTORY])
    note = wait_acme_directory(FakeAcmeContainer(), PEBBLE, tmp_path / "ca.pem", 30)
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
        wait_acme_directory(FakeAcmeContainer(), PEBBLE, tmp_path / "ca.pem", 30)
    assert "sbx-acme: container log" in capsys.readouterr().out


def test_a_stopped_acme_server_is_reported_with_its_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _answers(monkeypatch, [ConnectionRefusedError(111, "refused")])
    with pytest.raises(OpsError, match=r"sbx-acme stopped \(exited\); its log is above"):
        wait_acme_directory(FakeAcmeContainer("exited"), PEBBLE, tmp_path / "c", 30)
    assert "waiting up to 120s" in capsys.readouterr().out


def test_a_directory_that_never_answers_fails_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _answers(monkeypatch, [ConnectionRefusedError(111, "refused")] * 2)
    clock = iter([0.0, 0.0, 1.0, 100.0])
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    with pytest.raises(OpsError, match=r"did not answer within 30s \(ConnectionRefusedError"):
        wait_acme_directory(FakeAcmeContainer(), PEBBLE, tmp_path / "c", 30)


def test_the_acme_server_urls_use_its_network_address_and_the_loopback_ports() -> None:
    assert PEBBLE.directory == "https://172.18.0.3:14000/dir"
    assert PEBBLE.local_directory == "https://127.0.0.1:41400/dir"
    assert PEBBLE.local_roots == "https://127.0.0.1:41500/roots/0"
    assert AcmeServer("x", "fd00::3", 1, 2).directory == "https://[fd00::3]:14000/dir"


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


REGISTRY = RegistryServer("sbx-registry", "172.18.0.4", 32790)


CREDENTIALS = secrets.RegistryCredentials("sbx-1a2b3c4d", "pw-" + "x" * 40)


def test_the_registry_runs_on_the_network_with_loopback_ports_and_no_privileges() -> None:
    options = registry_options("sbx", "slipway/sandbox-registry:c.1")
    assert options["image"] == "slipway/sandbox-registry:c.1"
    assert options["name"] == "sbx-registry"
    assert options["labels"] == {LABEL: "sbx", ROLE_LABEL: "registry"}
    assert options["network"] == "slipway-sandbox"
    assert options["ports"] == {"5000/tcp": ("127.0.0.1", None)}
    assert not {"privileged", "cap_add", "volumes", "extra_hosts"} & set(options)


def test_the_registry_is_started_with_those_options_and_retried_on_a_taken_port() -> None:
    taken = APIError("Bind for 127.0.0.1:32790 failed: port is already allocated")
    engine = _creating([taken])
    start_registry(engine, "sbx", "img")
    calls = engine.containers.calls
    assert [c["name"] for c in calls] == ["sbx-registry", "sbx-registry"]
    assert [c.removed for c in engine.containers.made] == [True, False]


def test_the_registry_is_read_from_docker_inspect() -> None:
    assert registry_server("sbx-registry", _registry_attrs()) == REGISTRY


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
    assert reuse_problem(attrs, "slipway/sandbox-registry:c.1") == problem


def test_the_registry_archive_holds_the_htpasswd_before_ready_for_its_user() -> None:
    data = certificate_archive(b"CERT", b"KEY", REGISTRY_UID, {"htpasswd": b"u:$2b$08$x\n"})
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == ["cert.pem", "key.pem", "htpasswd", "ready"]
        assert [m.mode for m in members] == [0o644, 0o600, 0o600, 0o644]
        assert {m.uid for m in members} == {REGISTRY_UID}


def test_the_registry_image_user_dirs_and_config_match_ops() -> None:
    service = Path(__file__).parents[3] / "services" / "sandbox-registry"
    dockerfile = (service / "Dockerfile").read_text(encoding="utf-8")
    assert f"--uid {REGISTRY_UID}" in dockerfile
    assert f"USER {REGISTRY_UID}:{REGISTRY_UID}" in dockerfile
    assert REGISTRY_TLS_DIR in dockerfile
    settings = yaml.safe_load((service / "config.yml").read_text(encoding="utf-8"))
    assert settings["http"]["addr"] == f":{REGISTRY_PORT}"
    assert settings["http"]["tls"] == {
        "certificate": f"{REGISTRY_TLS_DIR}/cert.pem",
        "key": f"{REGISTRY_TLS_DIR}/key.pem",
    }
    assert settings["auth"]["htpasswd"]["path"] == f"{REGISTRY_TLS_DIR}/htpasswd"
    entrypoint = (service / "entrypoint").read_text(encoding="utf-8")
    assert f"TLS_DIR={REGISTRY_TLS_DIR}" in entrypoint


def test_the_certs_d_archive_trusts_the_registry_at_its_address_and_port() -> None:
    data = certs_d_archive("172.18.0.4:5000", b"CA PEM")
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
    trust_registry(hosts, REGISTRY, b"CA PEM")
    for host in hosts:
        ((path, data),) = host.put
        assert path == "/"
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            assert "etc/docker/certs.d/172.18.0.4:5000/ca.crt" in archive.getnames()


def test_the_htpasswd_entry_is_bcrypt_and_accepts_only_its_credentials() -> None:
    line = htpasswd_line("sbx-1a2b", "right-password", rounds=4)
    user, _, digest = line.strip().partition(":")
    assert user == "sbx-1a2b"
    assert digest.startswith("$2b$04$")
    assert htpasswd_accepts(line, "sbx-1a2b", "right-password")
    assert not htpasswd_accepts(line, "sbx-1a2b", "wrong-password")
    assert not htpasswd_accepts(line, "other", "right-password")
    assert not htpasswd_accepts("sbx-1a2b:not-a-hash\n", "sbx-1a2b", "right-password")
    assert not htpasswd_accepts("", "sbx-1a2b", "right-password")


def test_the_registry_certificate_names_its_address_and_keeps_its_ca(envdir: Path) -> None:
    files = _files(envdir)
    ensure_key(files)
    first = ensure_registry_certificate(files, "172.18.0.4")
    assert first.paths.ca_crt == files.registry_ca
    assert files.registry_dir.parent == files.key_dir
    leaf = x509.load_pem_x509_certificate(first.paths.tls_crt.read_bytes())
    assert {"172.18.0.4", "127.0.0.1", "sbx-registry"} <= certs.san_names(leaf)
    assert _mode(first.paths.ca_key) == 0o600
    assert _mode(first.paths.tls_key) == 0o600
    assert not ensure_registry_certificate(files, "172.18.0.4").changed
    moved = ensure_registry_certificate(files, "172.18.0.9")
    assert moved.leaf_created and not moved.ca_created


def test_registry_credentials_are_generated_once_next_to_the_other_secrets(
    envdir: Path,
) -> None:
    files = _files(envdir)
    files.secrets.write_text("# mine\nPOSTGRES_PASSWORD=keep-me\n", encoding="utf-8")
    made, how = ensure_registry_credentials(files)
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
    again, how = ensure_registry_credentials(files)
    assert how == "present"
    assert (again.user, again.password) == (made.user, made.password)
    # Half a pair is no pair: both are made again.
    text = files.secrets.read_text(encoding="utf-8").replace(made.password, "")
    files.secrets.write_text(text, encoding="utf-8")
    fresh, how = ensure_registry_credentials(files)
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

    monkeypatch.setattr("ops.sandbox.registry_server.https_status", fake)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    return sent


class FakeRegistryContainer(FakeAcmeContainer):
    name = "sbx-registry"

    def __init__(self, status: str = "running") -> None:
        super().__init__(status)
        self.labels = {LABEL: "sbx", ROLE_LABEL: "registry"}


def test_the_registry_is_awaited_until_it_refuses_anonymous_and_accepts_the_login(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    refused = urllib.error.URLError(ConnectionRefusedError(111, "refused"))
    sent = _status_answers(monkeypatch, [refused, 503, 401, 200])
    note = wait_registry(FakeRegistryContainer(), REGISTRY, tmp_path / "ca", CREDENTIALS, 30)
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
        wait_registry(FakeRegistryContainer(), REGISTRY, tmp_path / "ca", CREDENTIALS, 30)
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
        wait_registry(FakeRegistryContainer(), REGISTRY, tmp_path / "ca.crt", CREDENTIALS, 30)


class Found:
    def __init__(self, name: str) -> None:
        self.name = name


class Finding:
    """An engine that finds the given containers by name."""

    def __init__(self, found: list[Any]) -> None:
        self.containers = self
        self.found = {container.name: container for container in found}

    def get(self, name: str) -> Any:
        if name in self.found:
            return self.found[name]
        raise NotFound(name)


def test_start_or_reuse_keeps_a_fitting_container_and_replaces_another(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    removed: list[str] = []
    monkeypatch.setattr(
        "ops.sandbox.servers.remove_container", lambda engine, cname: removed.append(cname)
    )
    engine: Any = Finding([Found("sbx-registry")])
    new = Found("new")
    kept, reused = start_or_reuse(engine, "sbx-registry", lambda c: "", lambda: new)
    assert (kept.name, reused, removed) == ("sbx-registry", True, [])
    made, reused = start_or_reuse(engine, "sbx-registry", lambda c: "old", lambda: new)
    assert (made, reused, removed) == (new, False, ["sbx-registry"])
    assert "replacing sbx-registry: old" in capsys.readouterr().out
    made, reused = start_or_reuse(Finding([]), "sbx-registry", lambda c: "x", lambda: new)
    assert (made, reused) == (new, False)
