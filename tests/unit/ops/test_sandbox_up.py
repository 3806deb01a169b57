"""sandbox.up as an operation (ops/sandbox/up.py), without Docker: its step table, its dry run,
whole runs against a fake engine, and the helpers its steps call."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from docker.errors import APIError, NotFound

from ops import certs, compose, config, docker_engine, images, proc
from ops.errors import OpsError
from ops.executor import Command
from ops.sandbox import build
from ops.sandbox.acme_server import check_domain_leads_to
from ops.sandbox.engine import ensure_network, remove_network_if_unused
from ops.sandbox.files import SandboxFiles, forget_servers
from ops.sandbox.hosts import HEALTH_COMMAND, HOST_KEYS_COMMAND, compose_version, engine_id
from ops.sandbox.hosts import host_keys as read_host_keys
from ops.sandbox.names import LABEL, NETWORK, up_command
from ops.sandbox.registry_server import RegistryServer, check_hosts_reach
from ops.sandbox.up import SandboxUp, up
from ops.steps import IMPACTING, PREFLIGHT

pytestmark = pytest.mark.unit

HOST_KEY = b"ssh-ed25519 AAAAC3host root@sbx\n"


# ------------------------------------------------------------------------------ a fake engine


class Box:
    """A container as the docker SDK shows it; keeps the files put into it."""

    def __init__(self, engine: FakeDocker, image: str, options: dict[str, Any]) -> None:
        self.engine = engine
        self.name = options["name"]
        self.labels = dict(options.get("labels") or {})
        self.status = "running"
        self.files: dict[str, bytes] = {}
        self.execs: list[list[str]] = []
        engine.serial += 1
        serial = engine.serial
        ports = {
            spec: [{"HostIp": "127.0.0.1", "HostPort": str(40000 + serial * 100 + number)}]
            for number, spec in enumerate(options.get("ports") or {})
        }
        extra = options.get("extra_hosts") or {}
        self.attrs: dict[str, Any] = {
            "State": {"Status": "running"},
            "Config": {"Image": image},
            "HostConfig": {"ExtraHosts": [f"{name}:{ip}" for name, ip in extra.items()]},
            "NetworkSettings": {
                "Ports": ports,
                "Networks": {NETWORK: {"IPAddress": f"172.18.0.{serial + 1}"}},
            },
        }

    @property
    def address(self) -> str:
        return str(self.attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"])

    def start(self) -> None:
        pass

    def reload(self) -> None:
        pass

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.engine.removed.append(self.name)
        self.engine.found.pop(self.name, None)

    def logs(self, tail: int) -> bytes:
        return b"(log)\n"

    def exec_run(self, argv: list[str], environment: Any = None) -> tuple[int, bytes]:
        self.execs.append(argv)
        if argv == HEALTH_COMMAND:
            return 0, b""
        if argv == HOST_KEYS_COMMAND:
            return 0, HOST_KEY
        if argv[:2] == ["getent", "hosts"]:
            return 0, f"{self.engine.host_1_address()} {argv[2]}\n".encode()
        if argv[:2] == ["docker", "pull"]:
            return 1, b"Error response from daemon: unauthorized: authentication required"
        raise AssertionError(f"unexpected command in {self.name}: {argv}")

    def put_archive(self, path: str, data: bytes) -> bool:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive.getmembers():
                handle = archive.extractfile(member)
                if handle is not None:
                    self.files[f"{path.rstrip('/')}/{member.name}"] = handle.read()
        return True

    def get_archive(self, path: str) -> tuple[list[bytes], dict[str, Any]]:
        if path not in self.files:
            raise NotFound(path)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo(Path(path).name)
            info.size = len(self.files[path])
            archive.addfile(info, io.BytesIO(self.files[path]))
        return [buffer.getvalue()], {}


class FakeNetworks:
    def __init__(self) -> None:
        self.made: list[str] = []

    def list(self, names: list[str]) -> list[Any]:
        return [Named(name) for name in self.made if name in names]

    def create(self, name: str, **options: Any) -> None:
        self.made.append(name)


class Named:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeDocker:
    """containers and networks of an engine; what was created and removed."""

    def __init__(self) -> None:
        self.containers = self
        self.networks = FakeNetworks()
        self.found: dict[str, Box] = {}
        self.created: list[str] = []
        self.removed: list[str] = []
        self.serial = 0

    def list(self, all: bool = False, filters: dict[str, str] | None = None) -> list[Box]:
        return list(self.found.values())

    def get(self, name: str) -> Box:
        if name not in self.found:
            raise NotFound(name)
        return self.found[name]

    def create(self, image: str, **options: Any) -> Box:
        box = Box(self, image, options)
        self.found[box.name] = box
        self.created.append(box.name)
        return box

    def host_1_address(self) -> str:
        return self.found["slipway-sandbox-sbx-1"].address

    def changes(self) -> list[str]:
        return [*self.created, *self.removed, *self.networks.made]


@pytest.fixture
def engine(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    """A fake engine where every image is present (no build) and the build inputs hash to
    fixed tags."""
    fake = FakeDocker()
    monkeypatch.setattr(docker_engine, "client", lambda: fake)
    monkeypatch.setattr(docker_engine, "check", lambda: "fake engine")
    monkeypatch.setattr(images, "has_image", lambda engine, name: True)
    monkeypatch.setattr(build, "image_tag", lambda root, inputs=(): f"c.{len(inputs)}")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    return fake


@pytest.fixture
def logins(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, Command]]:
    """ssh_run answers: an engine ID per port, compose 2.40.0; the (port, command) asked."""
    asked: list[tuple[int, Command]] = []

    def fake(files: SandboxFiles, port: int, command: Command, timeout: float = 30.0) -> str:
        asked.append((port, command))
        return f"ENGINE-{port}" if "docker info" in command.line else "2.40.0"

    monkeypatch.setattr("ops.sandbox.up.ssh_run", fake)
    return asked


@pytest.fixture
def servers_answer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The ACME directory, pebble's root and the registry answer at once."""
    root = certs.ensure(tmp_path / "pebble", "pebble", ["pebble"]).paths.ca_crt.read_bytes()

    def fetch(server: Any, files: SandboxFiles) -> x509.Certificate:
        return x509.load_pem_x509_certificate(root)

    monkeypatch.setattr(
        "ops.sandbox.up.wait_acme_directory", lambda *a: "directory answers after 0.0s"
    )
    monkeypatch.setattr("ops.sandbox.up.fetch_acme_roots", fetch)
    monkeypatch.setattr("ops.sandbox.up.wait_registry", lambda *a: "TLS verified after 0.0s")


# ------------------------------------------------------------------------------ the table

PLAIN_STEPS = [
    ("check the Docker engine and compose plugin", PREFLIGHT),
    ("check the files of sandbox sbx", PREFLIGHT),
    ("plan: image, hosts, login key, files", PREFLIGHT),
    ("build the slipway/sandbox-host image", IMPACTING),
    ("ensure the login key .slipway/sandbox-sbx/id_ed25519", IMPACTING),
    ("ensure the network slipway-sandbox", IMPACTING),
    ("remove unwanted hosts", IMPACTING),
    ("start the missing hosts", IMPACTING),
    ("wait until every host's dockerd and sshd answer", IMPACTING),
    ("record the hosts' SSH host keys", IMPACTING),
    ("write sbx.yaml and .env.sbx", IMPACTING),
    ("log in over SSH as deploy: docker and compose on every host", IMPACTING),
]
ACME_BUILD = ("build the slipway/sandbox-acme image", IMPACTING)
REGISTRY_BUILD = ("build the slipway/sandbox-registry image", IMPACTING)
ACME_STEPS = [
    ("start (or reuse) the ACME server sbx-acme with its HTTPS certificate", IMPACTING),
    ("wait until the ACME directory answers and the domains lead to host 1", IMPACTING),
    ("fetch pebble's issuing root into .slipway/sandbox-sbx/acme-roots.pem", IMPACTING),
]
REGISTRY_STEPS = [
    (
        "start (or reuse) the registry sbx-registry with its certificate and htpasswd "
        "(credentials in .env.sbx)",
        IMPACTING,
    ),
    ("wait until the registry answers over TLS and refuses anonymous requests", IMPACTING),
    (
        "trust the registry's CA on every host (/etc/docker/certs.d/<address>:5000/ca.crt)",
        IMPACTING,
    ),
]


def _table(operation: SandboxUp) -> list[tuple[str, str]]:
    return [(step.name, step.phase) for step in operation.steps()]


def test_a_plain_sandbox_checks_and_plans_then_builds_starts_writes_and_logs_in(
    envdir: Path,
) -> None:
    assert _table(SandboxUp("sbx", hosts=2)) == PLAIN_STEPS


@pytest.mark.parametrize(
    ("tls", "registry", "builds", "servers"),
    [
        ("acme", False, [ACME_BUILD], ACME_STEPS),
        ("local-ca", True, [REGISTRY_BUILD], REGISTRY_STEPS),
        ("acme", True, [ACME_BUILD, REGISTRY_BUILD], ACME_STEPS + REGISTRY_STEPS),
    ],
)
def test_the_servers_asked_for_are_built_after_the_hosts_image_and_started_after_the_hosts(
    envdir: Path, tls: str, registry: bool, builds: list[Any], servers: list[Any]
) -> None:
    expected = [*PLAIN_STEPS[:4], *builds, *PLAIN_STEPS[4:10], *servers, *PLAIN_STEPS[10:]]
    assert _table(SandboxUp("sbx", hosts=1, tls=tls, registry=registry)) == expected


def test_a_failed_build_says_nothing_was_touched_and_which_up_to_run_again(envdir: Path) -> None:
    failures = {
        step.name: step.on_failure
        for step in SandboxUp("sbx", tls="acme", registry=True).steps()
        if step.name.startswith("build")
    }
    again = "no host was touched; fix the build and run `invoke sandbox.up{}` again"
    assert failures == {
        "build the slipway/sandbox-host image": again.format(""),
        "build the slipway/sandbox-acme image": again.format(" --tls=acme"),
        "build the slipway/sandbox-registry image": again.format(" --registry"),
    }


def test_a_failure_after_the_build_says_how_to_inspect_and_remove(envdir: Path) -> None:
    hints = {s.on_failure for s in SandboxUp("sbx", tls="acme").steps()[6:] if s.on_failure}
    assert hints == {
        f"inspect with `docker ps -a --filter label={LABEL}=sbx`, "
        "remove with `invoke sandbox.down --name sbx --yes`"
    }


def test_the_title_is_the_command_with_the_flags_that_change_the_steps(envdir: Path) -> None:
    assert SandboxUp("sbx", hosts=3).title == "invoke sandbox.up --name sbx --hosts 3"
    assert SandboxUp("sbx", tls="acme", registry=True).title == (
        "invoke sandbox.up --name sbx --hosts 1 --tls acme --registry"
    )


def test_bad_options_are_refused_before_anything_runs(envdir: Path) -> None:
    with pytest.raises(OpsError, match="invalid sandbox name"):
        SandboxUp("Sbx")
    with pytest.raises(OpsError, match="--hosts must be between 1 and 8"):
        SandboxUp("sbx", hosts=9)
    with pytest.raises(OpsError, match="not a sandbox TLS mode"):
        SandboxUp("sbx", tls="letsencrypt")
    with pytest.raises(OpsError, match="not a mode of the service"):
        SandboxUp("sbx", listings_env="prod")


# ------------------------------------------------------------------------------ dry run


def test_a_dry_run_runs_only_the_preflight_steps_and_changes_nothing(
    engine: FakeDocker, envdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    operation = SandboxUp("sbx", hosts=2, tls="acme", registry=True)

    def never() -> str:
        raise AssertionError("an impacting step ran in a dry run")

    for step in operation.steps():
        if step.impacting:
            setattr(operation, step.action.__name__, never)
    report = operation.run(dry_run=True)
    assert [o.status for o in report.outcomes] == ["ok"] * 3 + ["planned"] * 17
    assert engine.changes() == []
    files = SandboxFiles.of("sbx")
    assert not files.key_dir.exists()
    assert not files.environment.exists()
    assert not files.secrets.exists()
    out = capsys.readouterr().out
    assert "plan: start: sbx-1, sbx-2" in out
    assert "plan: login key .slipway/sandbox-sbx/id_ed25519: will be generated" in out


def test_up_in_a_dry_run_says_nothing_was_changed_and_prints_no_access(
    engine: FakeDocker, capsys: pytest.CaptureFixture[str]
) -> None:
    up("sbx", dry_run=True)
    out = capsys.readouterr().out
    assert out.rstrip().endswith("dry run: stopped before the impacting steps, nothing was changed")
    assert "is up" not in out


# ------------------------------------------------------------------------------ whole runs


def test_a_run_starts_the_hosts_writes_the_environment_and_prints_how_to_reach_them(
    engine: FakeDocker,
    logins: list[tuple[int, Command]],
    envdir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = up("sbx", hosts=2)
    assert {o.status for o in report.outcomes} <= {"ok", "skipped"}
    assert engine.created == ["slipway-sandbox-sbx-1", "slipway-sandbox-sbx-2"]
    assert engine.networks.made == [NETWORK]
    files = SandboxFiles.of("sbx")
    known = files.known_hosts.read_text(encoding="utf-8").splitlines()
    assert known == [
        "[127.0.0.1]:40100 ssh-ed25519 AAAAC3host",
        "[127.0.0.1]:40200 ssh-ed25519 AAAAC3host",
    ]
    env = config.load("sbx")
    assert [h.port for h in env.hosts] == [40100, 40200]
    assert [h.advertise for h in env.hosts] == ["172.18.0.2", "172.18.0.3"]
    assert env.tls == "local-ca"
    # The login is read-only: queries only, each host asked for its engine and compose.
    assert [(port, c.line, c.changes) for port, c in logins] == [
        (40100, engine_id().line, False),
        (40100, compose_version().line, False),
        (40200, engine_id().line, False),
        (40200, compose_version().line, False),
    ]
    out = capsys.readouterr().out
    assert "sbx-1: deploy@127.0.0.1:40100 engine ENGINE-40100, compose 2.40.0" in out
    assert "Sandbox sbx is up: 2 host(s) on the Docker network slipway-sandbox" in out
    assert "-p 40200 deploy@127.0.0.1    (http :40201, https :40202)" in out
    assert "public URL   https://localhost:40102 (once a deploy runs there)" in out


def test_two_hosts_answering_with_one_engine_are_crossed_ports(
    engine: FakeDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ops.sandbox.up.ssh_run", lambda files, port, command: "SAME")
    with pytest.raises(OpsError, match="the ports are crossed"):
        up("sbx", hosts=2)


def test_a_second_run_keeps_the_hosts_and_reuses_both_servers(
    engine: FakeDocker,
    logins: list[tuple[int, Command]],
    servers_answer: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = up("sbx", tls="acme", registry=True)
    assert {o.status for o in first.outcomes} <= {"ok", "skipped"}
    assert engine.created == ["slipway-sandbox-sbx-1", "sbx-acme", "sbx-registry"]
    files = SandboxFiles.of("sbx")
    env = config.load("sbx")
    assert env.tls == "acme"
    assert env.acme is not None
    assert env.acme.directory == "https://172.18.0.3:14000/dir"
    assert env.registry == config.Registry(
        push="127.0.0.1:40300/slipway", pull="172.18.0.4:5000/slipway"
    )
    assert "getent" in engine.found["sbx-acme"].execs[0]
    host = engine.found["slipway-sandbox-sbx-1"]
    assert "/etc/docker/certs.d/172.18.0.4:5000/ca.crt" in host.files
    assert (
        host.files["/etc/docker/certs.d/172.18.0.4:5000/ca.crt"] == files.registry_ca.read_bytes()
    )
    assert [o.note for o in first.outcomes if "(or reuse)" in o.step.name] == [
        "started sbx-acme at 172.18.0.3, certificate: new CA",
        "started sbx-registry at 172.18.0.4, certificate: new CA; "
        "credentials generated in .env.sbx",
    ]
    capsys.readouterr()
    again = up("sbx", tls="acme", registry=True)
    assert engine.created == ["slipway-sandbox-sbx-1", "sbx-acme", "sbx-registry"]
    assert engine.removed == []
    assert [o.note for o in again.outcomes if "(or reuse)" in o.step.name] == [
        "reused sbx-acme at 172.18.0.3",
        "reused sbx-registry at 172.18.0.4; credentials present in .env.sbx",
    ]
    out = capsys.readouterr().out
    assert "plan: keep: sbx-1" in out
    assert "ACME server  sbx-acme: directory https://172.18.0.3:14000/dir" in out
    assert "registry     sbx-registry: push 127.0.0.1:40300/slipway (from here)" in out


def test_a_run_without_the_servers_removes_them_and_their_files(
    engine: FakeDocker,
    logins: list[tuple[int, Command]],
    servers_answer: None,
) -> None:
    up("sbx", tls="acme", registry=True)
    files = SandboxFiles.of("sbx")
    assert files.acme_server_ca.is_file()
    assert files.registry_dir.is_dir()
    up("sbx")
    assert sorted(engine.removed) == ["sbx-acme", "sbx-registry"]
    assert not files.acme_server_ca.exists()
    assert not files.acme_server_dir.exists()
    assert not files.registry_dir.exists()
    assert config.load("sbx").tls == "local-ca"


# ------------------------------------------------------------------------------ step helpers


def test_a_build_that_produces_no_image_names_the_dockerfile_and_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(proc, "run", lambda argv, **kwargs: ran.append(list(argv)))
    monkeypatch.setattr(images, "has_image", lambda engine, name: False)
    monkeypatch.setattr(compose, "detect_build", lambda: compose.Build("v1", "abc", tmp_path))
    engine: Any = FakeDocker()
    acme = "slipway/sandbox-acme:c.1"
    with pytest.raises(
        OpsError,
        match=r"did not produce slipway/sandbox-acme:c\.1: .* Fix services/sandbox-acme/"
        r"Dockerfile, then `invoke sandbox\.up --tls=acme` again",
    ):
        build.build_image(tmp_path, engine, build.ACME_SERVER_SERVICE, acme, "--tls=acme")
    assert ran == [[*ran[0][:-2], "build", "sandbox-acme"]]
    with pytest.raises(OpsError, match=r"then `invoke sandbox\.up` again"):
        build.build_image(tmp_path, engine, build.BUILD_SERVICE, "slipway/sandbox-host:c.1")


def test_the_up_command_names_the_flag_of_a_server() -> None:
    assert up_command() == "invoke sandbox.up"
    assert up_command("--registry") == "invoke sandbox.up --registry"


def test_the_network_is_created_once_even_when_another_up_creates_it_at_the_same_moment() -> None:
    fake = FakeDocker()
    assert ensure_network(fake) == "created"  # type: ignore[arg-type]
    assert ensure_network(fake) == "present"  # type: ignore[arg-type]

    class Racing(FakeNetworks):
        def create(self, name: str, **options: Any) -> None:
            self.made.append(name)  # the other sandbox.up's
            raise APIError("conflict", response=type("R", (), {"status_code": 409})())

    fake.networks = Racing()
    assert ensure_network(fake).startswith("present (created at the same moment")  # type: ignore[arg-type]


def test_the_network_is_removed_only_when_no_sandbox_container_is_left() -> None:
    removed: list[str] = []

    class Network(Named):
        attrs: ClassVar[dict[str, Any]] = {"Containers": {}}

        def reload(self) -> None:
            pass

        def remove(self) -> None:
            removed.append(self.name)

    fake = FakeDocker()
    fake.networks.list = lambda names: [Network(NETWORK)]  # type: ignore[method-assign]
    fake.create("img", name="slipway-sandbox-other-1")
    assert not remove_network_if_unused(fake)  # type: ignore[arg-type]
    fake.found.clear()
    assert remove_network_if_unused(fake)  # type: ignore[arg-type]
    assert removed == [NETWORK]


def test_forgetting_the_servers_deletes_only_what_is_asked(envdir: Path) -> None:
    files = SandboxFiles.of("sbx")
    for path in (files.acme_roots, files.acme_server_ca, files.acme_server_dir / "ca.crt"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="ascii")
    (files.registry_dir / "ca.crt").parent.mkdir(parents=True)
    (files.registry_dir / "ca.crt").write_text("x", encoding="ascii")
    forget_servers(files, acme=False, registry=True)
    assert not files.registry_dir.exists()
    assert files.acme_roots.exists() and files.acme_server_dir.exists()
    forget_servers(files, acme=True, registry=False)
    assert not files.acme_roots.exists()
    assert not files.acme_server_ca.exists()
    assert not files.acme_server_dir.exists()


def test_a_domain_that_does_not_lead_to_host_1_fails_with_the_servers_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeDocker()
    fake.create("img", name="slipway-sandbox-sbx-1")
    pebble = fake.create(
        "img", name="sbx-acme", labels={LABEL: "sbx", "org.slipway.sandbox.role": "acme"}
    )
    assert check_domain_leads_to(pebble, "sbx", "172.18.0.2") == "app.sbx.test"
    with pytest.raises(
        OpsError,
        match=r"app\.sbx\.test resolves to 172\.18\.0\.2 inside sbx-acme, not to host 1 "
        r"\(172\.18\.0\.9\).*sandbox\.up --tls=acme",
    ):
        check_domain_leads_to(pebble, "sbx", "172.18.0.9")
    assert "sbx-acme: container log" in capsys.readouterr().out


def test_a_host_that_does_not_get_to_the_registrys_login_is_an_error() -> None:
    fake = FakeDocker()
    host = fake.create("img", name="slipway-sandbox-sbx-1")
    server = RegistryServer("sbx-registry", "172.18.0.4", 32790)
    check_hosts_reach([host], server, "sbx")
    assert host.execs == [["docker", "pull", "172.18.0.4:5000/slipway/sandbox-probe:none"]]
    host.exec_run = lambda argv, environment=None: (  # type: ignore[method-assign]
        1,
        b"x509: certificate signed by unknown authority",
    )
    with pytest.raises(OpsError, match=r"cannot reach the registry as expected: .*x509"):
        check_hosts_reach([host], server, "sbx")


def test_the_host_keys_come_from_the_host_and_a_failure_names_it() -> None:
    fake = FakeDocker()
    host = fake.create("img", name="slipway-sandbox-sbx-1")
    assert read_host_keys(host) == HOST_KEY.decode()
    host.exec_run = lambda argv, environment=None: (1, b"")  # type: ignore[method-assign]
    with pytest.raises(OpsError, match="cannot read the SSH host keys of slipway-sandbox-sbx-1"):
        read_host_keys(host)


def test_the_login_commands_are_queries() -> None:
    assert engine_id() == Command("docker info --format '{{.ID}}'", "the engine's ID", False)
    assert not compose_version().changes
