"""DNS names in environment files: one strict definition, used by every field that takes a name.

Labels of 1 to 63 letters, digits and hyphens, none empty, none starting or ending with a
hyphen; single-label names (localhost) are names; IP addresses are judged where a field takes
them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from ops_testdata import LOCAL_YAML

from ops import config
from ops.config.reader import hostname_problem, is_hostname
from ops.errors import OpsError

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]

LONG_LABEL = "a" * 64
SSH_YAML = """\
name: staging
target: ssh
domains: [staging.example.org]
hosts:
  - ssh: deploy@203.0.113.10
"""


def load_error(write_env: WriteEnv, name: str, text: str) -> tuple[Path, str]:
    """Write the file, load it, return (path, message) of the OpsError it must raise."""
    path = write_env(name, text)
    with pytest.raises(OpsError) as err:
        config.load(name)
    return path, str(err.value)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a..b", "it has an empty label (two dots in a row, or a dot at an end)"),
        (".example.org", "it has an empty label"),
        ("example.org.", "it has an empty label"),
        ("-a.example", "its label '-a' starts or ends with a hyphen"),
        ("a-.example", "its label 'a-' starts or ends with a hyphen"),
        pytest.param(f"{LONG_LABEL}.example", "is 64 characters long, above 63", id="64 a."),
        ("bad_name.example", "only letters, digits, hyphens and dots may appear in it"),
        pytest.param("a." * 127 + "org", "it is 257 characters long, above 253", id="257 chars"),
    ],
)
def test_a_malformed_domain_is_refused_naming_why(
    write_env: WriteEnv, name: str, reason: str
) -> None:
    text = LOCAL_YAML.replace("domains: [localhost]", f"domains: [localhost, '{name}']")
    path, message = load_error(write_env, "local", text)
    assert message.startswith(f"{path}: field 'domains[1]' "), message
    assert f"{name!r} is not a DNS name: " in message
    assert reason in message
    assert message.endswith("Fix: use a name like example.org")


@pytest.mark.parametrize(
    "name",
    [
        "localhost",
        "www.localhost",
        "listings.example.org",
        "a",
        "1-2.example",
        "xn--bcher-kva.example",
        pytest.param(f"{'a' * 63}.example", id="63 a.example"),
        pytest.param(".".join(["a" * 63] * 3 + ["a" * 61]), id="253 chars"),
        "127.0.0.1",
    ],
)
def test_a_valid_domain_is_accepted(write_env: WriteEnv, name: str) -> None:
    text = LOCAL_YAML.replace("domains: [localhost]", f"domains: [localhost, '{name}']")
    write_env("local", text)
    assert config.load("local").domains == ("localhost", name)


def test_a_domain_is_lowercased(write_env: WriteEnv) -> None:
    write_env("local", LOCAL_YAML.replace("domains: [localhost]", "domains: [App.Example.ORG]"))
    assert config.load("local").domains == ("app.example.org",)


def _ssh(destination: str) -> str:
    return SSH_YAML.replace("deploy@203.0.113.10", destination)


ACME_DIRECTORY = "tls: acme\nacme: {email: ops@example.org, directory: 'https://-ca.test/d'}\n"
S3_ENDPOINT = "backup: {s3: {endpoint: s3..example.org, bucket: slipway-backups}}\n"


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        pytest.param(_ssh("deploy@a..b"), "hosts[0].ssh", "not a host", id="ssh a..b"),
        pytest.param(_ssh("deploy@a-.example"), "hosts[0].ssh", "not a host", id="ssh a-."),
        pytest.param(
            SSH_YAML + "public_url: https://a..b\n", "public_url", "invalid host", id="public_url"
        ),
        pytest.param(
            SSH_YAML + "connect_to: 'a..b:8443'\n", "connect_to", "not host:port", id="connect_to"
        ),
        pytest.param(
            SSH_YAML + "registry: registry..example.org\n",
            "registry",
            "no valid host[:port]",
            id="registry",
        ),
        pytest.param(
            SSH_YAML + f"registry: {{push: '{LONG_LABEL}.example.org'}}\n",
            "registry.push",
            "no valid host[:port]",
            id="registry.push",
        ),
        pytest.param(
            SSH_YAML + ACME_DIRECTORY, "acme.directory", "invalid host", id="acme.directory"
        ),
        pytest.param(
            SSH_YAML + S3_ENDPOINT, "backup.s3.endpoint", "not a host name", id="s3 endpoint"
        ),
    ],
)
def test_every_field_that_takes_a_name_uses_the_same_strict_definition(
    write_env: WriteEnv, text: str, field: str, problem: str
) -> None:
    path, message = load_error(write_env, "staging", text)
    assert message.startswith(f"{path}: field '{field}' "), message
    assert re.search(rf": field '{re.escape(field)}' .*{re.escape(problem)}", message), message


def test_names_that_were_always_valid_still_load_in_those_fields(write_env: WriteEnv) -> None:
    write_env(
        "staging",
        SSH_YAML.replace("deploy@203.0.113.10", "deploy@Host-1.Example.org:2222")
        + "connect_to: 'localhost:8443'\n"
        + "registry: {push: 'localhost:5000/slipway', pull: 'registry-1.internal:5000'}\n"
        + "backup: {s3: {endpoint: S3.EU-West-1.amazonaws.com, bucket: slipway-backups}}\n",
    )
    env = config.load("staging")
    assert env.hosts[0].address == "host-1.example.org"
    assert env.connect_to == "localhost:8443"
    assert env.registry == config.Registry("localhost:5000/slipway", "registry-1.internal:5000")
    assert env.backup.s3 is not None
    assert env.backup.s3.endpoint == "S3.EU-West-1.amazonaws.com"


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("localhost", True),
        ("Mixed.Case.Example", True),
        ("a..b", False),
        ("", False),
        ("-a", False),
        ("a-", False),
        pytest.param(LONG_LABEL, False, id="64 a"),
        ("::1", False),
    ],
)
def test_is_hostname_and_the_reason_agree(text: str, valid: bool) -> None:
    assert is_hostname(text) is valid
    assert (hostname_problem(text) == "") is valid
