"""`tls: acme` without a host: the environment fields, the compose variables, the images of an
ACME release, what the deploy reads from slipway-acme, and `connect_to` against a real TLS
server on loopback."""

from __future__ import annotations

import base64
import http.server
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ops import certs, compose, config, health
from ops.deploy.certificates import acme_message
from ops.deploy.images import image_refs
from ops.errors import OpsError
from ops.secrets import Secrets

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]

ACME_YAML = """\
name: staging
target: ssh
domains: [app.sandbox.test, www.sandbox.test]
hosts:
  - ssh: deploy@127.0.0.1:2222
tls: acme
acme:
  email: ops@sandbox.test
  directory: https://172.18.0.9:14000/dir
"""


def _load_error(write_env: WriteEnv, text: str) -> str:
    write_env("staging", text)
    with pytest.raises(OpsError) as err:
        config.load("staging")
    return str(err.value)


# ------------------------------------------------------------------------- environment fields


def test_acme_server_ca_and_renewal_margin_are_read(write_env: WriteEnv, tmp_path: Path) -> None:
    write_env(
        "staging",
        ACME_YAML + "  server_ca: .slipway/x/acme-ca.pem\n  renew_before_days: 45\n",
    )
    env = config.load("staging")
    assert env.acme is not None
    assert env.acme.server_ca == tmp_path / ".slipway" / "x" / "acme-ca.pem"
    assert env.acme.renew_before_days == 45


def test_acme_renewal_margin_defaults_to_30_days(write_env: WriteEnv) -> None:
    write_env("staging", ACME_YAML)
    env = config.load("staging")
    assert env.acme is not None
    assert (env.acme.server_ca, env.acme.renew_before_days) == (None, 30)


@pytest.mark.parametrize("value", ["0", "90", "'soon'", "true"])
def test_a_renewal_margin_outside_1_to_89_days_is_refused(write_env: WriteEnv, value: str) -> None:
    message = _load_error(write_env, ACME_YAML + f"  renew_before_days: {value}\n")
    assert "field 'acme.renew_before_days'" in message
    assert "Fix: write whole days from 1 to 89" in message


def test_connect_to_keeps_public_url_and_names_the_address(write_env: WriteEnv) -> None:
    write_env(
        "staging",
        ACME_YAML + "public_url: https://app.sandbox.test\nconnect_to: 127.0.0.1:32771\n",
    )
    env = config.load("staging")
    assert env.https_url == "https://app.sandbox.test"
    assert env.public_port == 443  # nginx redirects to the world's port, not the loopback one
    assert env.connect_to == "127.0.0.1:32771"


@pytest.mark.parametrize("value", ["127.0.0.1", "'a b:1'", "':443'", "'h:0'", "'h:70000'"])
def test_a_connect_to_that_is_not_host_port_is_refused(write_env: WriteEnv, value: str) -> None:
    message = _load_error(write_env, ACME_YAML + f"connect_to: {value}\n")
    assert "field 'connect_to'" in message
    assert "is not host:port. Fix: write the address and port" in message


# -------------------------------------------------------------------------- compose variables


def test_acme_variables_reach_compose_with_the_server_ca_as_base64(
    write_env: WriteEnv, tmp_path: Path
) -> None:
    ca = tmp_path / "acme-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    write_env("staging", ACME_YAML + f"  server_ca: {ca}\n  renew_before_days: 20\n")
    env = config.load("staging")
    values = compose.acme_env(env)
    assert compose.profiles(env) == [compose.ACME_PROFILE, compose.MONITORING_PROFILE]
    assert values["SLIPWAY_TLS_SITES"] == "app.sandbox.test www.sandbox.test"
    assert values["SLIPWAY_ACME_EMAIL"] == "ops@sandbox.test"
    assert values["SLIPWAY_ACME_DIRECTORY"] == "https://172.18.0.9:14000/dir"
    assert values["SLIPWAY_ACME_RENEW_BEFORE_DAYS"] == "20"
    assert base64.b64decode(values["SLIPWAY_ACME_SERVER_CA_B64"]) == ca.read_bytes()


def test_an_unreadable_server_ca_names_the_field_and_the_fix(
    write_env: WriteEnv, tmp_path: Path
) -> None:
    write_env("staging", ACME_YAML + f"  server_ca: {tmp_path / 'missing.pem'}\n")
    with pytest.raises(OpsError, match=r"acme.server_ca .*missing.pem cannot be read.*Fix:"):
        compose.acme_env(config.load("staging"))


def test_local_ca_environments_get_no_sites_and_no_acme_profile(write_env: WriteEnv) -> None:
    write_env("staging", ACME_YAML.split("tls: acme")[0] + "tls: local-ca\n")
    env = config.load("staging")
    assert compose.acme_env(env) == {"SLIPWAY_TLS_SITES": ""}
    assert compose.ACME_PROFILE not in compose.profiles(env)


def test_extra_profiles_add_to_the_environments_own(write_env: WriteEnv, tmp_path: Path) -> None:
    write_env(
        "staging", ACME_YAML.split("tls: acme")[0] + "tls: local-ca\nmonitoring: {enabled: false}\n"
    )
    env = config.load("staging")
    build = compose.Build("v1", "abc", tmp_path / "ca.pem", {})
    base = compose.Compose(env, Secrets({}, tmp_path / ".env.staging"), build, tmp_path)
    assert base.invocation("config").env["COMPOSE_PROFILES"] == ""
    with_acme = compose.Compose(
        env, Secrets({}, tmp_path / ".env.staging"), build, tmp_path, profiles=("acme",)
    )
    assert with_acme.invocation("config").env["COMPOSE_PROFILES"] == "acme"


# ------------------------------------------------------------------------------ the deploy


def test_an_acme_release_ships_certbot_at_its_content_tag() -> None:
    tags = {
        "SLIPWAY_POSTGRES_TAG": "c.1",
        "SLIPWAY_REDIS_TAG": "c.2",
        "SLIPWAY_NGINX_TAG": "c.3",
        "SLIPWAY_CERTBOT_TAG": "c.4",
    }
    build = compose.Build("v2", "abc", Path("/dev/null"), tags)
    assert image_refs(build, acme=True)[-1] == "slipway/certbot:c.4"
    assert "slipway/certbot:c.4" not in image_refs(build)


def test_the_deploy_reads_the_last_matching_json_line_of_slipway_acme() -> None:
    out = "\n".join(
        [
            '{"level":"info","message":"app.test: requesting a certificate"}',
            "    certbot: Saving debug log to /tmp/certbot/logs/letsencrypt.log",
            '{"level":"info","message":"ensure done: changed app.test, failed none"}',
            "not json {",
        ]
    )
    assert acme_message(out, "?", prefix="ensure done: ") == (
        "ensure done: changed app.test, failed none"
    )
    assert acme_message("no json here", "fallback") == "fallback"


# ---------------------------------------------------------------- connect_to, for real on TLS


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{self.headers['Host']} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS server on 127.0.0.1 whose certificate names only app.sandbox.test."""
    result = certs.ensure(tmp_path / "tls", "acme-unit", ["app.sandbox.test"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(result.paths.tls_crt, result.paths.tls_key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], result.paths.ca_crt
    finally:
        server.shutdown()
        server.server_close()


def test_connect_to_reaches_the_address_with_the_urls_name_for_sni_host_and_check(
    tls_server: tuple[int, Path],
) -> None:
    port, ca = tls_server
    with httpx.Client(verify=health.tls_context(ca), timeout=5) as client:
        response = health.public_get(
            client, "https://app.sandbox.test", "/ready", f"127.0.0.1:{port}"
        )
    assert response.status_code == 200
    assert response.text == "app.sandbox.test /ready"


def test_with_connect_to_the_urls_name_is_what_the_certificate_must_match(
    tls_server: tuple[int, Path],
) -> None:
    port, ca = tls_server
    with (
        httpx.Client(verify=health.tls_context(ca), timeout=5) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        health.public_get(client, "https://www.other.test", "/ready", f"127.0.0.1:{port}")
