"""Environment files for hosts (`target: ssh`): hosts, ACME, public URL, registry, deploy."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from ops_testdata import LOCAL_YAML

from ops import config, paths
from ops.errors import OpsError

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]

SSH_YAML = """\
name: staging
target: ssh
domains: [staging.example.org]
hosts:
  - ssh: deploy@203.0.113.10
"""

ACME_YAML = SSH_YAML + "tls: acme\nacme: {email: ops@example.org}\n"


def load_error(write_env: WriteEnv, text: str, name: str = "staging") -> tuple[Path, str]:
    """Write the file, load it, return (path, message) of the OpsError it must raise."""
    path = write_env(name, text)
    with pytest.raises(OpsError) as err:
        config.load(name)
    return path, str(err.value)


def assert_names(message: str, path: Path, field: str, fix: str) -> None:
    assert message.startswith(f"{path}: field '{field}' "), message
    assert re.search(r"\. Fix: .*" + re.escape(fix), message), message


# ------------------------------------------------------------------------ the committed examples


@pytest.fixture
def repository_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLIPWAY_ENVIRONMENTS_DIR", raising=False)
    monkeypatch.delenv("SLIPWAY_ROOT", raising=False)
    monkeypatch.setenv("HOME", "/home/ci")


def test_the_committed_staging_example_loads_as_one_acme_host(repository_files: None) -> None:
    env = config.load("staging")
    assert (env.target, env.tls, env.listings_env) == ("ssh", "acme", "staging")
    assert [h.label for h in env.hosts] == ["deploy@203.0.113.10:22"]
    assert env.hosts[0].identity == Path("/home/ci/.ssh/slipway-staging")
    assert env.hosts[0].known_hosts == paths.REPO_ROOT / ".slipway/staging/known_hosts"
    assert env.acme == config.Acme("ops@example.org", config.LETSENCRYPT_DIRECTORY)
    assert (env.bind, env.ports.http, env.ports.https) == ("0.0.0.0", 80, 443)
    assert env.https_url == "https://staging.example.org"
    assert env.verify is True
    assert env.registry is None
    assert env.resources.api == config.Limits(cpus=1.0, memory="512m")
    assert env.deploy.remote_dir == "/srv/slipway/staging"


def test_the_committed_production_example_loads_as_one_acme_host(repository_files: None) -> None:
    env = config.load("production")
    assert (env.target, env.tls, env.listings_env) == ("ssh", "acme", "production")
    assert [h.destination for h in env.hosts] == ["deploy@203.0.113.20"]
    assert env.domains == ("listings.example.org", "www.listings.example.org")
    assert env.https_url == "https://listings.example.org"
    assert env.registry is None
    assert env.resources.postgres == config.Limits(cpus=2.0, memory="2g")
    assert env.deploy.remote_dir == "/srv/slipway/production"
    assert env.deploy.keep_releases == 10


# ---------------------------------------------------------------------------------- defaults


def test_an_ssh_environment_defaults_to_public_ports_and_no_limits(
    write_env: WriteEnv, tmp_path: Path
) -> None:
    write_env("staging", SSH_YAML)
    env = config.load("staging")
    assert env.is_ssh and not env.is_local
    assert env.bind == "0.0.0.0"
    assert (env.ports.http, env.ports.https) == (80, 443)
    assert env.https_url == "https://staging.example.org"
    assert (env.public_host, env.public_port) == ("staging.example.org", 443)
    (host,) = env.hosts
    assert host == config.Host(
        user="deploy",
        address="203.0.113.10",
        port=22,
        identity=None,
        known_hosts=tmp_path / ".slipway" / "staging" / "known_hosts",
    )
    assert env.tls == "local-ca"
    assert env.verify == tmp_path / ".slipway" / "staging" / "ca.crt"
    assert env.acme is None
    assert env.public_url == ""
    assert env.ca_file is None
    assert env.registry is None
    assert env.resources == config.Resources()
    assert env.deploy == config.Deploy(
        batch=0,
        remote_dir="/srv/slipway/staging",
        lock_wait=300,
        lock_ttl=900,
        health_timeout=120,
        min_free_disk="2g",
        keep_releases=5,
        standby=300,
    )
    assert env.deploy.min_free_disk_bytes == 2 * 1024**3


def test_local_environments_keep_their_loopback_defaults_and_accept_a_deploy_section(
    write_env: WriteEnv,
) -> None:
    write_env("e2e", "name: e2e\ntarget: local\ndeploy: {batch: 2}\n")
    env = config.load("e2e")
    assert env.bind == "127.0.0.1"
    assert (env.ports.http, env.ports.https) == (8080, 8443)
    assert env.hosts == ()
    assert env.https_url == "https://localhost:8443"
    assert env.deploy.batch == 2
    assert env.deploy.remote_dir == "/srv/slipway/e2e"


def test_explicit_bind_and_ports_win_over_the_ssh_defaults(write_env: WriteEnv) -> None:
    write_env("staging", SSH_YAML + "bind: 203.0.113.10\nports: {http: 8080, https: 8443}\n")
    env = config.load("staging")
    assert env.bind == "203.0.113.10"
    assert env.https_url == "https://staging.example.org:8443"
    assert env.public_port == 8443


# ------------------------------------------------------------------------------------- hosts


@pytest.mark.parametrize(
    ("ssh", "user", "address", "port", "label", "destination"),
    [
        (
            "deploy@203.0.113.10:2222",
            "deploy",
            "203.0.113.10",
            2222,
            "deploy@203.0.113.10:2222",
            "deploy@203.0.113.10",
        ),
        (
            "ops@Host-1.Example.org",
            "ops",
            "host-1.example.org",
            22,
            "ops@host-1.example.org:22",
            "ops@host-1.example.org",
        ),
        (
            "deploy@[2001:DB8::10]:22",
            "deploy",
            "2001:db8::10",
            22,
            "deploy@[2001:db8::10]:22",
            "deploy@2001:db8::10",
        ),
        ("deploy@[::1]", "deploy", "::1", 22, "deploy@[::1]:22", "deploy@::1"),
        (
            "_ci.user@localhost:22",
            "_ci.user",
            "localhost",
            22,
            "_ci.user@localhost:22",
            "_ci.user@localhost",
        ),
    ],
)
def test_ssh_destinations_are_parsed(
    write_env: WriteEnv,
    ssh: str,
    user: str,
    address: str,
    port: int,
    label: str,
    destination: str,
) -> None:
    write_env("staging", SSH_YAML.replace("deploy@203.0.113.10", ssh))
    (host,) = config.load("staging").hosts
    assert (host.user, host.address, host.port) == (user, address, port)
    assert host.label == label
    assert host.destination == destination
    assert host.ssh_url == f"ssh://{label}"


@pytest.mark.parametrize(
    ("ssh", "problem"),
    [
        ("203.0.113.10", "names no login user"),
        ("@203.0.113.10", "names no login user"),
        ("-oProxyCommand=sh@203.0.113.10", "is not a login name"),
        ("deploy@2001:db8::1", "an IPv6 address needs brackets"),
        ("deploy@[2001:zz::1]", "is not an IPv6 address"),
        ("deploy@[203.0.113.10]", "is not an IPv6 address"),
        ("deploy@bad_host!", "is not a host name or IP address"),
        ("deploy@203.0.113.300", "is not a host name or IP address"),
        ("deploy@", "is not a host name or IP address"),
        ("deploy@host:0", "is not a port number between 1 and 65535"),
        ("deploy@host:65536", "is not a port number between 1 and 65535"),
        ("deploy@host:ssh", "is not a port number between 1 and 65535"),
        ("deploy@host@other", "is not user@host[:port]"),
    ],
)
def test_invalid_ssh_destinations_are_named(write_env: WriteEnv, ssh: str, problem: str) -> None:
    path, message = load_error(write_env, SSH_YAML.replace("deploy@203.0.113.10", f"'{ssh}'"))
    assert_names(message, path, "hosts[0].ssh", "")
    assert problem in message


def test_identity_expands_home_and_resolves_relative_paths_against_the_repository(
    write_env: WriteEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", "/home/ci")
    write_env(
        "staging",
        "name: staging\ntarget: ssh\ndomains: [staging.example.org]\nhosts:\n"
        "  - {ssh: deploy@203.0.113.10, identity: ~/.ssh/id_staging}\n"
        "  - {ssh: deploy@203.0.113.11, identity: keys/id}\n",
    )
    first, second = config.load("staging").hosts
    assert first.identity == Path("/home/ci/.ssh/id_staging")
    assert second.identity == tmp_path / "keys" / "id"


def test_known_hosts_can_be_set_per_host(write_env: WriteEnv, tmp_path: Path) -> None:
    write_env(
        "staging",
        SSH_YAML.replace(
            "deploy@203.0.113.10",
            "deploy@203.0.113.10\n    known_hosts: /etc/ssh/pinned\n    identity: /keys/id",
        ),
    )
    (host,) = config.load("staging").hosts
    assert host.known_hosts == Path("/etc/ssh/pinned")
    assert host.identity == Path("/keys/id")


def test_an_identity_that_is_a_directory_is_refused(write_env: WriteEnv, tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    path, message = load_error(
        write_env, SSH_YAML.replace("203.0.113.10", "203.0.113.10\n    identity: keys")
    )
    assert_names(message, path, "hosts[0].identity", "name the file inside it")
    assert f"{tmp_path / 'keys'} is a directory" in message


def test_a_missing_identity_file_is_left_to_the_pre_flight(write_env: WriteEnv) -> None:
    write_env("staging", SSH_YAML.replace("203.0.113.10", "203.0.113.10\n    identity: nope"))
    (host,) = config.load("staging").hosts
    assert host.identity is not None
    assert not host.identity.exists()


@pytest.mark.parametrize(
    ("text", "field", "fix"),
    [
        ("name: staging\ntarget: ssh\n", "hosts", "hosts: [{ssh: deploy@203.0.113.10}]"),
        ("name: staging\ntarget: ssh\nhosts: []\n", "hosts", "list the machines"),
        ("name: staging\ntarget: ssh\nhosts: deploy@h\n", "hosts", "list the machines"),
        ("name: staging\ntarget: ssh\nhosts: [deploy@h]\n", "hosts[0]", "write key: value"),
        (SSH_YAML + "  - identity: k\n", "hosts[1].ssh", "add 'ssh:'"),
        (
            SSH_YAML.replace("203.0.113.10", "203.0.113.10\n    port: 22"),
            "hosts[0].port",
            "known_hosts, ssh",
        ),
        (SSH_YAML + "  - ssh: other@203.0.113.10:22\n", "hosts[1].ssh", "list each host once"),
        (LOCAL_YAML + "hosts: [{ssh: deploy@203.0.113.10}]\n", "hosts", "set target: ssh"),
    ],
)
def test_host_list_mistakes_are_named(write_env: WriteEnv, text: str, field: str, fix: str) -> None:
    name = "local" if "name: local" in text else "staging"
    path, message = load_error(write_env, text, name)
    assert_names(message, path, field, fix)


# ------------------------------------------------------------------------------ listings_env


def test_an_ssh_environment_with_another_name_must_state_its_service_mode(
    write_env: WriteEnv,
) -> None:
    text = SSH_YAML.replace("name: staging", "name: rehearsal")
    path, message = load_error(write_env, text, "rehearsal")
    assert_names(message, path, "listings_env", "listings_env: staging")
    assert "'rehearsal' is not a service mode" in message
    write_env("rehearsal", text + "listings_env: staging\n")
    assert config.load("rehearsal").listings_env == "staging"


def test_an_ssh_environment_named_like_a_mode_runs_in_that_mode(write_env: WriteEnv) -> None:
    write_env("production", SSH_YAML.replace("name: staging", "name: production"))
    assert config.load("production").listings_env == "production"


# -------------------------------------------------------------------------------------- acme


def test_acme_defaults_to_lets_encrypt_production(write_env: WriteEnv) -> None:
    write_env("staging", ACME_YAML)
    env = config.load("staging")
    assert env.acme is not None
    assert env.acme.email == "ops@example.org"
    assert env.acme.directory == "https://acme-v02.api.letsencrypt.org/directory"
    assert env.acme.is_letsencrypt
    assert env.verify is True


def test_a_private_acme_directory_allows_test_names(write_env: WriteEnv, tmp_path: Path) -> None:
    write_env(
        "staging",
        SSH_YAML.replace("staging.example.org", "a.sandbox.test")
        + "tls: acme\nacme: {email: ops@sandbox.test, directory: 'https://pebble:14000/dir'}\n"
        + "ca_file: .slipway/pebble/ca.pem\n",
    )
    env = config.load("staging")
    assert env.acme == config.Acme("ops@sandbox.test", "https://pebble:14000/dir")
    assert not env.acme.is_letsencrypt
    assert env.verify == tmp_path / ".slipway" / "pebble" / "ca.pem"


@pytest.mark.parametrize(
    "domain", ["localhost", "staging.localhost", "a.sandbox.test", "203.0.113.10", "intranet"]
)
def test_lets_encrypt_is_refused_for_names_it_cannot_validate(
    write_env: WriteEnv, domain: str
) -> None:
    path, message = load_error(
        write_env, ACME_YAML.replace("[staging.example.org]", f"[staging.example.org, {domain}]")
    )
    assert_names(message, path, "domains[1]", "or use tls: local-ca")
    assert "Let's Encrypt only issues certificates for public DNS names" in message


def test_lets_encrypt_staging_counts_as_lets_encrypt(write_env: WriteEnv) -> None:
    text = ACME_YAML.replace(
        "{email: ops@example.org}",
        "{email: ops@example.org, directory: "
        "'https://acme-staging-v02.api.letsencrypt.org/directory'}",
    ).replace("staging.example.org", "localhost")
    path, message = load_error(write_env, text)
    assert_names(message, path, "domains[0]", "use tls: local-ca")


@pytest.mark.parametrize(
    ("text", "field", "fix"),
    [
        (LOCAL_YAML.replace("tls: local-ca", "tls: acme"), "tls", "use tls: local-ca"),
        (SSH_YAML + "tls: acme\n", "acme", "acme: {email: ops@example.org}"),
        (SSH_YAML + "tls: acme\nacme: {}\n", "acme.email", "add 'email:'"),
        (SSH_YAML + "tls: acme\nacme: {email: ops}\n", "acme.email", "e.g. ops@example.org"),
        (SSH_YAML + "tls: acme\nacme: {email: 'a b@example.org'}\n", "acme.email", "ops@"),
        (
            ACME_YAML.replace("}", ", directory: 'http://ca.example.org/dir'}"),
            "acme.directory",
            "https://host[:port]/path",
        ),
        (ACME_YAML.replace("}", ", directory: 'https:///dir'}"), "acme.directory", "https://host"),
        (ACME_YAML.replace("}", ", url: x}"), "acme.url", "directory, email"),
        (SSH_YAML + "acme: {email: ops@example.org}\n", "acme", "set tls: acme"),
        (SSH_YAML + "tls: letsencrypt\n", "tls", "local-ca, acme"),
    ],
)
def test_acme_mistakes_are_named(write_env: WriteEnv, text: str, field: str, fix: str) -> None:
    name = "local" if "name: local" in text else "staging"
    path, message = load_error(write_env, text, name)
    assert_names(message, path, field, fix)


# ----------------------------------------------------------------------- public_url, ca_file


def test_public_url_overrides_the_computed_https_url(write_env: WriteEnv) -> None:
    write_env(
        "staging",
        SSH_YAML.replace("staging.example.org", "localhost")
        + "public_url: HTTPS://LocalHost:18443/\n",
    )
    env = config.load("staging")
    assert env.public_url == "https://localhost:18443"
    assert env.https_url == "https://localhost:18443"
    assert (env.public_host, env.public_port) == ("localhost", 18443)
    assert env.http_url == "http://localhost"  # still from domains and ports.http


def test_public_url_on_port_443_is_written_without_it(write_env: WriteEnv) -> None:
    write_env("staging", SSH_YAML + "public_url: https://staging.example.org:443\n")
    env = config.load("staging")
    assert env.https_url == "https://staging.example.org"
    assert env.public_port == 443


def test_public_url_may_use_a_loopback_name_the_local_ca_always_covers(
    write_env: WriteEnv,
) -> None:
    write_env("staging", SSH_YAML + "public_url: 'https://[::1]:9443'\n")
    env = config.load("staging")
    assert env.https_url == "https://[::1]:9443"
    assert env.public_host == "::1"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://staging.example.org", "must use https, not http"),
        ("staging.example.org", "must use https, not no scheme"),
        ("https://staging.example.org/app", "must have no path"),
        ("https://staging.example.org?x=1", "must have no path"),
        ("https://user:pw@staging.example.org", "must name a host (and no user or password)"),
        ("https://bad_host", "has an invalid host"),
        ("https://staging.example.org:99999", "is not a URL"),
        ("https://other.example.org", "certificate does not cover"),
    ],
)
def test_public_url_mistakes_are_named(write_env: WriteEnv, url: str, problem: str) -> None:
    path, message = load_error(write_env, SSH_YAML + f"public_url: '{url}'\n")
    assert_names(message, path, "public_url", "")
    assert problem in message


def test_public_url_must_be_covered_by_the_acme_certificate(write_env: WriteEnv) -> None:
    path, message = load_error(write_env, ACME_YAML + "public_url: https://localhost:8443\n")
    assert_names(message, path, "public_url", "add localhost to domains")


def test_ca_file_is_resolved_against_the_repository_and_wins(
    write_env: WriteEnv, tmp_path: Path
) -> None:
    write_env("staging", SSH_YAML + "ca_file: .slipway/sandbox/ca.crt\n")
    env = config.load("staging")
    assert env.ca_file == tmp_path / ".slipway" / "sandbox" / "ca.crt"
    assert env.verify == env.ca_file
    write_env("staging", ACME_YAML + "ca_file: /etc/ssl/certs/ca-certificates.crt\n")
    assert config.load("staging").verify == Path("/etc/ssl/certs/ca-certificates.crt")


def test_ca_file_that_is_a_directory_is_refused(write_env: WriteEnv, tmp_path: Path) -> None:
    path, message = load_error(write_env, SSH_YAML + f"ca_file: {tmp_path}\n")
    assert_names(message, path, "ca_file", "name the file inside it")


# ---------------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("none", None),
        ("registry.example.org", "registry.example.org"),
        ("registry.example.org/slipway/", "registry.example.org/slipway"),
        ("localhost:5000", "localhost:5000"),
        ("10.0.0.5:5000/team/apps", "10.0.0.5:5000/team/apps"),
        ("registry:5000/slipway", "registry:5000/slipway"),
    ],
)
def test_one_registry_address_is_both_push_and_pull(
    write_env: WriteEnv, value: str, expected: str | None
) -> None:
    write_env("staging", SSH_YAML + f"registry: {value}\n")
    wanted = None if expected is None else config.Registry(push=expected, pull=expected)
    assert config.load("staging").registry == wanted


def test_registry_defaults_to_none(write_env: WriteEnv) -> None:
    write_env("staging", SSH_YAML)
    assert config.load("staging").registry is None


def test_a_registry_mapping_gives_push_and_pull_addresses(write_env: WriteEnv) -> None:
    write_env(
        "staging",
        SSH_YAML + "registry: {push: 127.0.0.1:32790/slipway, pull: '172.18.0.4:5000/slipway/'}\n",
    )
    assert config.load("staging").registry == config.Registry(
        push="127.0.0.1:32790/slipway", pull="172.18.0.4:5000/slipway"
    )


def test_pull_defaults_to_push(write_env: WriteEnv) -> None:
    write_env("staging", SSH_YAML + "registry:\n  push: registry.example.org/slipway\n")
    assert config.load("staging").registry == config.Registry(
        push="registry.example.org/slipway", pull="registry.example.org/slipway"
    )
    write_env("staging", SSH_YAML + "registry: {push: registry.example.org, pull: null}\n")
    assert config.load("staging").registry == config.Registry(
        push="registry.example.org", pull="registry.example.org"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("myorg", "does not look like a registry host to Docker"),
        ("myorg/slipway", "does not look like a registry host to Docker"),
        ("https://registry.example.org", "has a scheme"),
        ("registry.example.org:99999", "has no valid host[:port]"),
        ("bad_host.example.org", "has no valid host[:port]"),
        ("registry.example.org/Slipway", "has an invalid namespace 'Slipway'"),
        ("registry.example.org//x", "has an invalid namespace"),
        ("", "has no valid host[:port]"),
    ],
)
def test_registry_mistakes_are_named(write_env: WriteEnv, value: str, problem: str) -> None:
    path, message = load_error(write_env, SSH_YAML + f"registry: '{value}'\n")
    assert_names(message, path, "registry", "docker.io/<user> for Docker Hub")
    assert problem in message


@pytest.mark.parametrize(
    ("value", "where", "problem"),
    [
        ("{push: myorg/slipway}", "registry.push", "does not look like a registry host"),
        ("{push: registry.example.org, pull: 'http://10.0.0.5'}", "registry.pull", "a scheme"),
        ("{push: registry.example.org, pull: 'x:0'}", "registry.pull", "no valid host[:port]"),
        ("{push: none}", "registry.push", "is none inside a registry mapping"),
        ("{push: 5000}", "registry.push", "must be a string, got an integer"),
    ],
)
def test_registry_mapping_mistakes_name_the_address(
    write_env: WriteEnv, value: str, where: str, problem: str
) -> None:
    path, message = load_error(write_env, SSH_YAML + f"registry: {value}\n")
    assert message.startswith(f"{path}: field '{where}' "), message
    assert problem in message
    assert ". Fix: " in message


def test_a_registry_mapping_without_push_says_what_to_add(write_env: WriteEnv) -> None:
    path, message = load_error(write_env, SSH_YAML + "registry: {pull: 10.0.0.5:5000}\n")
    assert_names(message, path, "registry.push", "pull defaults to it")
    path, message = load_error(write_env, SSH_YAML + "registry: {}\n")
    assert_names(message, path, "registry.push", "or write registry: none")


def test_unknown_registry_keys_are_refused(write_env: WriteEnv) -> None:
    text = SSH_YAML + "registry: {push: registry.example.org, user: me}\n"
    path, message = load_error(write_env, text)
    assert_names(message, path, "registry.user", "use one of: pull, push")


def test_a_registry_of_another_type_names_every_form(write_env: WriteEnv) -> None:
    path, message = load_error(write_env, SSH_YAML + "registry: [registry.example.org]\n")
    assert_names(message, path, "registry", "{push: <address>, pull: <address>}")
    assert "must be none, an address or a mapping, got a list" in message


# --------------------------------------------------------------------------------- resources


def test_resources_become_compose_variables_with_zero_for_no_limit(write_env: WriteEnv) -> None:
    write_env(
        "staging",
        SSH_YAML
        + "resources:\n  api: {cpus: 1.5, memory: 512m}\n  postgres: {memory: 2G}\n"
        + "  nginx: {cpus: 1}\n  prometheus: {memory: 1g}\n  logs: {cpus: 0.25}\n",
    )
    resources = config.load("staging").resources
    assert resources.api == config.Limits(cpus=1.5, memory="512m")
    assert resources.postgres == config.Limits(cpus=None, memory="2g")
    assert resources.nginx.cpus == 1.0
    assert resources.compose_env() == {
        "SLIPWAY_API_CPUS": "1.5",
        "SLIPWAY_API_MEMORY": str(512 * 1024**2),
        "SLIPWAY_WORKER_CPUS": "0",
        "SLIPWAY_WORKER_MEMORY": "0",
        "SLIPWAY_POSTGRES_CPUS": "0",
        "SLIPWAY_POSTGRES_MEMORY": str(2 * 1024**3),
        "SLIPWAY_REDIS_CPUS": "0",
        "SLIPWAY_REDIS_MEMORY": "0",
        "SLIPWAY_NGINX_CPUS": "1",
        "SLIPWAY_NGINX_MEMORY": "0",
        "SLIPWAY_CERTBOT_CPUS": "0",
        "SLIPWAY_CERTBOT_MEMORY": "0",
        "SLIPWAY_PROMETHEUS_CPUS": "0",
        "SLIPWAY_PROMETHEUS_MEMORY": str(1024**3),
        "SLIPWAY_ALERTMANAGER_CPUS": "0",
        "SLIPWAY_ALERTMANAGER_MEMORY": "0",
        "SLIPWAY_LOGS_CPUS": "0.25",
        "SLIPWAY_LOGS_MEMORY": "0",
    }


@pytest.mark.parametrize(
    ("section", "field", "fix"),
    [
        (
            "{db: {cpus: 1}}",
            "resources.db",
            "alertmanager, api, certbot, logs, nginx, postgres, prometheus, redis, worker",
        ),
        ("{api: {cpu: 1}}", "resources.api.cpu", "cpus, memory"),
        ("{api: 2}", "resources.api", "write key: value pairs"),
        ("{api: {cpus: 0}}", "resources.api.cpus", "a number of CPUs >= 0.01"),
        ("{api: {cpus: -1}}", "resources.api.cpus", "a number of CPUs >= 0.01"),
        ("{api: {cpus: .inf}}", "resources.api.cpus", "a number of CPUs >= 0.01"),
        ("{api: {cpus: one}}", "resources.api.cpus", "a number of CPUs >= 0.01"),
        ("{api: {cpus: true}}", "resources.api.cpus", "a number of CPUs >= 0.01"),
        ("{api: {memory: 512mb}}", "resources.api.memory", "write e.g. 50m"),
        ("{api: {memory: 0}}", "resources.api.memory", "write e.g. 50m"),
        ("{redis: {memory: 5m}}", "resources.redis.memory", "write at least 6m"),
    ],
)
def test_resource_mistakes_are_named(
    write_env: WriteEnv, section: str, field: str, fix: str
) -> None:
    path, message = load_error(write_env, SSH_YAML + f"resources: {section}\n")
    assert_names(message, path, field, fix)


# ------------------------------------------------------------------------------------ deploy


def test_the_deploy_section_is_read(write_env: WriteEnv) -> None:
    write_env(
        "staging",
        SSH_YAML + "deploy: {batch: 2, remote_dir: /opt/slipway/stg/, lock_wait: 0, "
        "lock_ttl: 30, health_timeout: 5, min_free_disk: 512M, keep_releases: 2, standby: 0}\n",
    )
    deploy = config.load("staging").deploy
    assert deploy == config.Deploy(
        batch=2,
        remote_dir="/opt/slipway/stg",
        lock_wait=0,
        lock_ttl=30,
        health_timeout=5,
        min_free_disk="512m",
        keep_releases=2,
        standby=0,
    )
    assert deploy.min_free_disk_bytes == 512 * 1024**2


@pytest.mark.parametrize(
    ("section", "field", "fix"),
    [
        ("{batch: -1}", "deploy.batch", "an integer >= 0"),
        ("{lock_wait: -1}", "deploy.lock_wait", "an integer >= 0"),
        ("{lock_ttl: 29}", "deploy.lock_ttl", "an integer >= 30"),
        ("{health_timeout: 4}", "deploy.health_timeout", "an integer >= 5"),
        ("{keep_releases: 1}", "deploy.keep_releases", "an integer >= 2"),
        ("{keep_releases: '5'}", "deploy.keep_releases", "an integer >= 2"),
        ("{standby: -1}", "deploy.standby", "an integer >= 0"),
        ("{min_free_disk: 2 GB}", "deploy.min_free_disk", "write e.g. 50m"),
        ("{remote_dir: srv/slipway}", "deploy.remote_dir", "/srv/slipway/<name>"),
        ("{remote_dir: /}", "deploy.remote_dir", "/srv/slipway/<name>"),
        ("{remote_dir: /srv/../etc}", "deploy.remote_dir", "/srv/slipway/<name>"),
        ("{remote_dir: '/srv/my dir'}", "deploy.remote_dir", "it goes into commands on the host"),
        ("{remote_dir: '/srv/$(reboot)'}", "deploy.remote_dir", "'/' only"),
        ("{remote_dir: 7}", "deploy.remote_dir", "write a string"),
        ("{batches: 1}", "deploy.batches", "batch, check_latency, checks, health_timeout"),
        ("{checks: /api/v1/listings}", "deploy.checks", "a list of paths"),
        ("{checks: [api/v1/listings]}", "deploy.checks[0]", "a path starting with /"),
        ("{checks: [/, '/a b']}", "deploy.checks[1]", "without spaces"),
        ("{checks: [7]}", "deploy.checks[0]", "a path starting with /"),
        ("{check_latency: 0}", "deploy.check_latency", "an integer >= 1"),
        ("{watch: -1}", "deploy.watch", "an integer >= 0"),
        ("{watch_error_percent: 101}", "deploy.watch_error_percent", "from 0 to 100"),
        ("{watch_min_requests: 0}", "deploy.watch_min_requests", "an integer >= 1"),
        ("{standby: 60, watch: 60}", "deploy.watch", "shorter than the standby"),
    ],
)
def test_deploy_mistakes_are_named(write_env: WriteEnv, section: str, field: str, fix: str) -> None:
    path, message = load_error(write_env, SSH_YAML + f"deploy: {section}\n")
    assert_names(message, path, field, fix)


def test_the_checks_default_to_a_search_a_listing_and_the_viewer_and_can_be_replaced(
    write_env: WriteEnv,
) -> None:
    write_env("staging", SSH_YAML)
    assert config.load("staging").deploy.checks == (
        "/api/v1/listings?limit=5",
        "/api/v1/listings/{listing}",
        "/",
    )
    write_env(
        "staging", SSH_YAML + "deploy: {checks: ['/api/v1/listings?city=Lyon'], check_latency: 2}\n"
    )
    deploy = config.load("staging").deploy
    assert deploy.checks == ("/api/v1/listings?city=Lyon",) and deploy.check_latency == 2
    write_env("staging", SSH_YAML + "deploy: {checks: []}\n")
    assert config.load("staging").deploy.checks == ()


def test_the_watch_defaults_to_a_minute_and_can_be_tuned_or_switched_off(
    write_env: WriteEnv,
) -> None:
    write_env("staging", SSH_YAML)
    deploy = config.load("staging").deploy
    assert (deploy.watch, deploy.watch_error_percent, deploy.watch_min_requests) == (60, 5, 20)
    write_env(
        "staging",
        SSH_YAML + "deploy: {watch: 30, watch_error_percent: 1, watch_min_requests: 200}\n",
    )
    deploy = config.load("staging").deploy
    assert (deploy.watch, deploy.watch_error_percent, deploy.watch_min_requests) == (30, 1, 200)
    # No standby: any watch (a rejected release then starts the previous one's replicas again).
    write_env("staging", SSH_YAML + "deploy: {standby: 0, watch: 600}\n")
    assert config.load("staging").deploy.watch == 600
    # A standby shorter than the default watch: the watch left to its default ends 10 s
    # before the standby does (none under 10 s); one written out must be shorter.
    for standby, watch in ((60, 50), (45, 35), (10, 0)):
        write_env("staging", SSH_YAML + f"deploy: {{standby: {standby}}}\n")
        assert config.load("staging").deploy.watch == watch


def test_an_environment_built_in_code_gets_the_default_remote_dir() -> None:
    built = config.Environment(name="canary", source=Path("canary.yaml"))
    assert built.deploy.remote_dir == "/srv/slipway/canary"
