"""Shipping through a registry without one: credentials, names, the push and the host's script."""

from __future__ import annotations

import shlex
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from docker.errors import APIError, NotFound
from support.recorder import Recorder

from ops import config, secrets
from ops.deploy import registry
from ops.deploy.registry import Registry
from ops.errors import OpsError
from ops.executor import Command, Result

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]

SSH_YAML = """\
name: staging
target: ssh
domains: [staging.example.org]
hosts: [{ssh: deploy@203.0.113.10}]
registry: {push: 127.0.0.1:32790/slipway, pull: 172.18.0.4:5000/slipway}
"""
USER, PASSWORD = secrets.REGISTRY_NAMES
SECRET = "Zq8-secret_Password.With~Chars"
IMAGE_ID = "sha256:" + "ab" * 32


@pytest.fixture
def staging(write_env: WriteEnv) -> config.Environment:
    write_env("staging", SSH_YAML)
    return config.load("staging")


def _env_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env.staging"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------- credentials


def test_no_credentials_is_none(staging: config.Environment, tmp_path: Path) -> None:
    assert secrets.registry_credentials(staging, environ={}, path=tmp_path / "missing") is None


def test_credentials_come_from_the_file(staging: config.Environment, tmp_path: Path) -> None:
    path = _env_file(tmp_path, f"POSTGRES_PASSWORD=x\n{USER}=ci-bot\n{PASSWORD}={SECRET}\n")
    found = secrets.registry_credentials(staging, environ={}, path=path)
    assert found == secrets.RegistryCredentials("ci-bot", SECRET, str(path))


def test_the_process_environment_wins_over_the_file(
    staging: config.Environment, tmp_path: Path
) -> None:
    path = _env_file(tmp_path, f"{USER}=file-user\n{PASSWORD}=file-password-value\n")
    environ = {USER: "ci-bot", PASSWORD: SECRET}
    found = secrets.registry_credentials(staging, environ=environ, path=path)
    assert found is not None
    assert (found.user, found.password) == ("ci-bot", SECRET)
    assert found.source == "the process environment"
    # Per variable, as for the other secrets.
    found = secrets.registry_credentials(staging, environ={PASSWORD: SECRET}, path=path)
    assert found is not None
    assert (found.user, found.password) == ("file-user", SECRET)
    assert found.source == f"{path} and the process environment"


@pytest.mark.parametrize(
    ("environ", "text", "present", "missing"),
    [
        ({USER: "ci-bot"}, "", USER, PASSWORD),
        ({}, f"{PASSWORD}={SECRET}\n", PASSWORD, USER),
        ({}, f"{USER}=ci-bot\n{PASSWORD}=\n", USER, PASSWORD),
    ],
)
def test_credentials_are_both_or_neither(
    staging: config.Environment,
    tmp_path: Path,
    environ: dict[str, str],
    text: str,
    present: str,
    missing: str,
) -> None:
    path = _env_file(tmp_path, text)
    with pytest.raises(OpsError) as err:
        secrets.registry_credentials(staging, environ=environ, path=path)
    message = str(err.value)
    assert f"{present} is set but {missing} is not (both or neither)" in message
    assert f"Fix: set both (or neither) in {path}" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("user", "password", "problem"),
    [
        ("change-me", SECRET, f"{USER} is the placeholder"),
        ("ci-bot", "change-me", f"{PASSWORD} is the placeholder"),
        ("ci:bot", SECRET, f"{USER} is not a registry user name"),
        ("-bot", SECRET, f"{USER} is not a registry user name"),
        ("ci-bot", SECRET + "\nmore", f"{PASSWORD} has a line break"),
        ("ci-bot", " " + SECRET, f"{PASSWORD} has a line break or leading/trailing blanks"),
    ],
)
def test_unfit_credentials_are_named_never_shown(
    staging: config.Environment, tmp_path: Path, user: str, password: str, problem: str
) -> None:
    environ = {USER: user, PASSWORD: password}
    with pytest.raises(OpsError, match="are unfit") as err:
        secrets.registry_credentials(staging, environ=environ, path=tmp_path / "none")
    assert problem in str(err.value)
    assert password not in str(err.value)


def test_the_password_never_appears_in_repr() -> None:
    found = secrets.RegistryCredentials("ci-bot", SECRET, "the process environment")
    assert SECRET not in repr(found)
    assert SECRET not in str(found)
    assert "ci-bot" in repr(found)


def test_registry_credentials_are_never_release_secrets(
    staging: config.Environment, tmp_path: Path
) -> None:
    good = {
        "POSTGRES_PASSWORD": "Jq3vN8xR2mT5wK7pL4sY9b",
        "REDIS_PASSWORD": "Hd6fG1kZ8cV3nB5mQ2wE7r",
        "LISTINGS_API_KEY_PEPPER": "uT4yI9oP2aS6dF1gH8jK3lZ7xC5vB0nM4qW",
        "BACKUP_PASSPHRASE": "Rk2wQ9zL5tX8vC1nB7mJ4hG6fD3sA0pY2eU",
    }
    text = "".join(f"{k}={v}\n" for k, v in good.items()) + f"{USER}=ci-bot\n{PASSWORD}={SECRET}\n"
    path = _env_file(tmp_path, text)
    loaded = secrets.require(staging, environ={PASSWORD: SECRET}, path=path)
    # What a deploy writes to releases/<id>/secrets.env comes from these values only.
    assert set(loaded.values) == set(secrets.REQUIRED)
    assert not set(secrets.REGISTRY_NAMES) & set(secrets.REQUIRED)


def test_set_values_replaces_those_names_keeps_the_rest_and_stays_private(tmp_path: Path) -> None:
    path = _env_file(tmp_path, f"# mine\nPOSTGRES_PASSWORD=keep\n{USER}=old\n")
    path.chmod(0o644)
    secrets.set_values(path, {USER: "new-user", PASSWORD: "new_pass-1"})
    assert path.read_text(encoding="utf-8") == (
        f"# mine\nPOSTGRES_PASSWORD=keep\n{USER}=new-user\n{PASSWORD}=new_pass-1\n"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = tmp_path / "sub" / ".env.new"
    secrets.set_values(fresh, {USER: "u"})
    assert secrets.read_file(fresh) == {USER: "u"}
    with pytest.raises(OpsError, match="needs quoting"):
        secrets.set_values(fresh, {USER: "two words"})


# ---------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("prefix", "ref", "expected"),
    [
        ("127.0.0.1:32790/slipway", "slipway/listings:v1", "127.0.0.1:32790/slipway/listings:v1"),
        ("registry.example.org", "slipway/nginx:c.0123", "registry.example.org/nginx:c.0123"),
        ("10.0.0.5:5000/team/", "slipway/it-1a2b3c:v1", "10.0.0.5:5000/team/it-1a2b3c:v1"),
        ("localhost:5000", "debian:bookworm-slim", "localhost:5000/debian:bookworm-slim"),
    ],
)
def test_canonical_names_map_under_the_registry_prefix(
    prefix: str, ref: str, expected: str
) -> None:
    assert registry.registry_ref(prefix, ref) == expected


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ("slipway/listings", "has no tag"),
        ("slipway/listings@sha256:" + "0" * 64, "has a digest"),
        ("registry.example.org/slipway/listings:v1", "already names a registry"),
        ("localhost:5000/listings:v1", "already names a registry"),
        ("slipway/Listings:v1", "is not a valid repository name"),
        ("slipway/listings:v1;rm", "has no tag"),
    ],
)
def test_references_that_are_not_local_names_are_refused(ref: str, problem: str) -> None:
    with pytest.raises(OpsError, match=problem):
        registry.split_ref(ref)


def test_the_registry_host_is_the_first_component() -> None:
    assert registry.registry_host("172.18.0.4:5000/slipway") == "172.18.0.4:5000"
    assert registry.registry_host("registry.example.org") == "registry.example.org"


def test_from_env_takes_the_addresses_and_the_given_credentials(
    staging: config.Environment,
) -> None:
    credentials = secrets.RegistryCredentials("ci-bot", SECRET)
    reg = Registry.from_env(staging, credentials)
    assert (reg.push_to, reg.pull_from) == ("127.0.0.1:32790/slipway", "172.18.0.4:5000/slipway")
    assert reg.credentials == credentials
    assert reg.push_ref("slipway/listings:v1") == "127.0.0.1:32790/slipway/listings:v1"
    assert reg.pull_ref("slipway/listings:v1") == "172.18.0.4:5000/slipway/listings:v1"
    assert SECRET not in repr(reg)


def test_from_env_refuses_registry_none(write_env: WriteEnv) -> None:
    write_env("staging", SSH_YAML.replace("registry: {push", "# {push"))
    with pytest.raises(OpsError, match=r"registry: none.*Fix: set `registry:`"):
        Registry.from_env(config.load("staging"), None)


# ---------------------------------------------------------------------------------- push


class FakeImage:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.attrs = {"Size": 80_000_000}
        self.id = IMAGE_ID

    def tag(self, repository: str, tag: str) -> bool:
        self.engine.tags.append(f"{repository}:{tag}")
        return True


class FakeApi:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def push(self, repository: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.engine.pushes.append((repository, kwargs))
        if isinstance(self.engine.answer, Exception):
            raise self.engine.answer
        return iter(self.engine.answer)

    def remove_image(self, image: str, noprune: bool = False) -> None:
        assert noprune
        self.engine.tags.remove(image)


class FakeImages:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def get(self, ref: str) -> FakeImage:
        if ref not in self.engine.tags:
            raise NotFound(ref)
        return FakeImage(self.engine)


class FakeEngine:
    def __init__(self, answer: list[dict[str, Any]] | Exception) -> None:
        self.answer = answer
        self.tags = ["slipway/listings:v1"]
        self.pushes: list[tuple[str, dict[str, Any]]] = []
        self.api = FakeApi(self)
        self.images = FakeImages(self)


PUSHED = [{"status": "Pushing"}, {"status": "v1: digest: sha256:00 size: 1"}]
REFUSED = [
    {"status": "Preparing"},
    {
        "errorDetail": {"message": "unauthorized: authentication required"},
        "error": "unauthorized: authentication required",
    },
]


def _registry(credentials: bool = True) -> Registry:
    found = None
    if credentials:
        found = secrets.RegistryCredentials("ci-bot", SECRET, "/repo/.env.staging")
    return Registry("127.0.0.1:32790/slipway", "172.18.0.4:5000/slipway", found, "staging")


def test_push_tags_pushes_with_the_credentials_and_untags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine: Any = FakeEngine(PUSHED)
    (done,) = _registry().push(engine, ["slipway/listings:v1"])
    assert done.registry_ref == "127.0.0.1:32790/slipway/listings:v1"
    ((repository, options),) = engine.pushes
    assert repository == "127.0.0.1:32790/slipway/listings"
    assert options["tag"] == "v1"
    assert options["auth_config"] == {"username": "ci-bot", "password": SECRET}
    assert options["stream"] and options["decode"]
    assert engine.tags == ["slipway/listings:v1"]
    out = capsys.readouterr().out
    assert "slipway/listings:v1: pushed to 127.0.0.1:32790/slipway/listings:v1 (80 MB) in" in out
    assert SECRET not in out


def test_push_without_credentials_sends_no_auth() -> None:
    engine: Any = FakeEngine(PUSHED)
    _registry(credentials=False).push(engine, ["slipway/listings:v1"])
    assert engine.pushes[0][1]["auth_config"] is None


def test_a_refused_push_names_the_image_the_error_and_the_fix_and_untags() -> None:
    engine: Any = FakeEngine(REFUSED)
    with pytest.raises(OpsError) as err:
        _registry().push(engine, ["slipway/listings:v1"])
    message = str(err.value)
    assert message.startswith(
        "push of slipway/listings:v1 to 127.0.0.1:32790/slipway/listings:v1 failed: "
        "unauthorized: authentication required. Fix: check "
        "SLIPWAY_REGISTRY_USER/SLIPWAY_REGISTRY_PASSWORD (from /repo/.env.staging)"
    )
    assert SECRET not in message
    assert engine.tags == ["slipway/listings:v1"]


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (APIError("x509: certificate signed by unknown authority"), "certs.d/127.0.0.1:32790"),
        (APIError("dial tcp 127.0.0.1:32790: connection refused"), "runs and that this machine"),
        (APIError("blob upload invalid"), "its log"),
    ],
)
def test_engine_errors_of_a_push_get_their_fix(error: Exception, fix: str) -> None:
    engine: Any = FakeEngine(error)
    with pytest.raises(OpsError, match=f"push of slipway/listings:v1 .*Fix: .*{fix}"):
        _registry().push(engine, ["slipway/listings:v1"])
    assert engine.tags == ["slipway/listings:v1"]


def test_pushing_a_missing_image_says_so() -> None:
    engine: Any = FakeEngine(PUSHED)
    with pytest.raises(OpsError, match="cannot push slipway/redis:x: no such image here"):
        _registry().push(engine, ["slipway/redis:x"])


def test_the_push_stream_is_read_to_the_end_for_its_error() -> None:
    assert registry.push_error(iter(PUSHED)) == ""
    assert registry.push_error(iter(REFUSED)) == "unauthorized: authentication required"
    assert registry.push_error(iter([{"error": "denied"}, "junk"])) == "denied"


# ---------------------------------------------------------------------------------- host script


def test_the_host_script_logs_in_with_a_temporary_config_and_the_password_on_stdin() -> None:
    script = _registry().host_script("slipway/listings:v1", IMAGE_ID)
    assert SECRET not in script
    lines = script.splitlines()
    assert lines[2] == "DOCKER_CONFIG=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d) || exit 1"
    assert "export DOCKER_CONFIG" in lines
    assert "trap 'rm -rf \"$DOCKER_CONFIG\"' EXIT" in lines
    assert (
        "out=$(docker login --username=ci-bot --password-stdin 172.18.0.4:5000 2>&1) || {" in lines
    )
    assert "docker pull -q 172.18.0.4:5000/slipway/listings:v1 >/dev/null || exit 11" in lines
    assert f'if [ "$id" != {IMAGE_ID} ]; then' in lines
    assert "docker tag 172.18.0.4:5000/slipway/listings:v1 slipway/listings:v1 || exit 13" in lines
    assert lines[-1] == "docker rmi 172.18.0.4:5000/slipway/listings:v1 >/dev/null || exit 13"


def test_without_credentials_the_host_script_does_not_log_in() -> None:
    script = _registry(credentials=False).host_script("slipway/listings:v1", IMAGE_ID)
    assert "docker login" not in script
    assert "DOCKER_CONFIG=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)" in script


def test_the_user_is_quoted_and_never_read_as_an_option() -> None:
    odd = Registry("r.example.org/s", "r.example.org/s", secrets.RegistryCredentials("a'b", SECRET))
    script = odd.host_script("slipway/listings:v1", IMAGE_ID)
    assert f"--username={shlex.quote(odd.credentials.user)} " in script  # type: ignore[union-attr]


def test_a_malformed_expected_id_is_refused() -> None:
    with pytest.raises(OpsError, match="not an image id"):
        _registry().host_script("slipway/listings:v1", "abc; rm -rf /")


def _run_script(
    tmp_path: Path, script: str, stdin: str, docker_exits: dict[str, int]
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the host script with a fake `docker` on PATH; (result, the fake's call log)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls"
    cases = "\n".join(f"  {verb}) exit {code} ;;" for verb, code in docker_exits.items())
    fake = bin_dir / "docker"
    fake.write_text(
        "#!/bin/sh\n"
        f'printf "%s|%s|%s\\n" "$*" "$DOCKER_CONFIG" "$(cat)" >>{log}\n'
        f'[ "$1 $2" = "image inspect" ] && echo {IMAGE_ID}\n'
        'case "$1" in\n'
        f"{cases}\n"
        "esac\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        ["sh", "-c", script], input=stdin, capture_output=True, text=True, env=env, check=False
    )
    return result, log.read_text(encoding="utf-8") if log.exists() else ""


def test_the_host_script_runs_every_step_and_removes_its_config(tmp_path: Path) -> None:
    script = _registry().host_script("slipway/listings:v1", IMAGE_ID)
    result, calls = _run_script(tmp_path, script, SECRET + "\n", {})
    assert result.returncode == 0, result.stderr
    verbs = [line.split("|")[0].split()[0] for line in calls.splitlines()]
    assert verbs == ["login", "pull", "image", "tag", "rmi"]
    login = calls.splitlines()[0].split("|")
    # The password reached `docker login` on its standard input only.
    assert login[2] == SECRET
    assert SECRET not in login[0]
    config_dir = login[1]
    # In memory where the host has /dev/shm, else under TMPDIR; gone once the pull is done.
    assert config_dir.startswith(("/dev/shm/", str(tmp_path)))
    assert not Path(config_dir).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("tmp.")] == []


@pytest.mark.parametrize(
    ("exits", "code"),
    [({"login": 1}, registry.EXIT_LOGIN), ({"pull": 1}, registry.EXIT_PULL)],
)
def test_a_failing_step_exits_with_its_code_and_still_removes_the_config(
    tmp_path: Path, exits: dict[str, int], code: int
) -> None:
    script = _registry().host_script("slipway/listings:v1", IMAGE_ID)
    result, calls = _run_script(tmp_path, script, SECRET + "\n", exits)
    assert result.returncode == code
    assert "tag" not in [line.split()[0] for line in calls.splitlines()]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("tmp.")] == []


def test_another_image_id_is_refused_and_its_registry_tag_removed(tmp_path: Path) -> None:
    script = _registry().host_script("slipway/listings:v1", "sha256:" + "0" * 64)
    result, calls = _run_script(tmp_path, script, SECRET + "\n", {})
    assert result.returncode == registry.EXIT_ID
    assert f"pulled image id {IMAGE_ID}, expected sha256:" in result.stderr
    verbs = [line.split()[0] for line in calls.splitlines()]
    assert verbs == ["login", "pull", "image", "rmi"]


# ---------------------------------------------------------------------------------- pull


def _host(*answers: tuple[int, str]) -> Recorder:
    """A host whose pulls answer in turn with (exit code, stderr); no answer left fails."""
    left = list(answers)

    def pull(command: Command, stdin: str | None) -> Result:
        code, stderr = left.pop(0)
        return Result(command.line, code, "", stderr)

    return Recorder(config.Host("deploy", "203.0.113.10")).on_call(r"docker pull", pull)


def test_pull_on_host_runs_one_command_per_image_with_the_password_on_stdin(
    capsys: pytest.CaptureFixture[str],
) -> None:
    remote = _host((0, ""), (0, ""))
    refs = ["slipway/listings:v1", "slipway/redis:c.1"]
    done = _registry().pull_on_host(remote, refs, {r: IMAGE_ID for r in refs})
    assert [t.registry_ref for t in done] == [
        "172.18.0.4:5000/slipway/listings:v1",
        "172.18.0.4:5000/slipway/redis:c.1",
    ]
    assert [i.stdin for i in remote.issued] == [SECRET + "\n"] * 2
    assert all(SECRET not in c.line + c.display for c in remote.commands)
    # A change, echoed with its host as a summary (the script itself is long).
    assert [c.changes for c in remote.commands] == [True, True]
    assert remote.commands[0].display == (
        "docker pull 172.18.0.4:5000/slipway/listings:v1; check its id is "
        "sha256:abababababab...; tag it slipway/listings:v1"
    )
    out = capsys.readouterr().out
    assert "slipway/redis:c.1: pulled from 172.18.0.4:5000/slipway/redis:c.1 on deploy@" in out


def test_without_credentials_nothing_goes_to_stdin() -> None:
    remote = _host((0, ""))
    _registry(credentials=False).pull_on_host(
        remote, ["slipway/listings:v1"], {"slipway/listings:v1": IMAGE_ID}
    )
    assert remote.issued[0].stdin is None


@pytest.mark.parametrize(
    ("code", "stderr", "expected"),
    [
        (
            registry.EXIT_LOGIN,
            "login attempt failed with status: 401 Unauthorized",
            r"\(docker login\): login attempt .*Fix: check SLIPWAY_REGISTRY_USER",
        ),
        (
            registry.EXIT_PULL,
            "Get https://172.18.0.4:5000/v2/: x509: certificate signed by unknown authority",
            r"\(docker pull\).*Fix: the host deploy@203\.0\.113\.10:22 must trust "
            r".*certs\.d/172\.18\.0\.4:5000/ca\.crt",
        ),
        (
            registry.EXIT_PULL,
            "manifest unknown",
            r"\(docker pull\): manifest unknown\. Fix: check the registry at "
            r"172\.18\.0\.4:5000/slipway",
        ),
        (
            registry.EXIT_ID,
            "pulled image id sha256:1, expected sha256:2",
            r"\(image id check\).*not the image built here; push it again",
        ),
    ],
)
def test_a_failed_pull_names_the_image_the_step_and_the_fix(
    code: int, stderr: str, expected: str
) -> None:
    remote = _host((code, stderr))
    with pytest.raises(OpsError, match=expected) as err:
        _registry().pull_on_host(remote, ["slipway/listings:v1"], {"slipway/listings:v1": IMAGE_ID})
    assert str(err.value).startswith(
        "pull of slipway/listings:v1 from 172.18.0.4:5000/slipway/listings:v1 on "
        "deploy@203.0.113.10:22 failed"
    )


def test_every_image_needs_an_expected_id() -> None:
    remote = _host()
    with pytest.raises(OpsError, match="no expected image id for slipway/listings:v1"):
        _registry().pull_on_host(remote, ["slipway/listings:v1"], {})
