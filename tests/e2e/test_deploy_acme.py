"""`tls: acme` for real: a sandbox host and pebble (Debian's ACME test server, validating
HTTP-01 for real through the deployed nginx), driven by `invoke deploy` and `invoke certs.*`.

Tests run in file order and build on each other: the first deploy obtains one certificate per
domain, a second deploy asks the CA nothing, a domain added gets its certificate before traffic
moves, a forced renewal under load fails no request, the renewal service runs, and last a
renewal that the CA cannot answer keeps the old certificates.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from sandboxes import SandboxEnv, remove_images, sandbox

pytestmark = pytest.mark.e2e

TAG = secrets.token_hex(3)
NAME = f"e2e-acme-{TAG}"
VERSION = f"e2e-{TAG}-acme"
SERIALS: dict[str, int] = {}  # served certificate serial per domain, from one test to the next


def served(box: SandboxEnv, domain: str) -> x509.Certificate:
    """The certificate nginx serves for `domain` (SNI), verified with the CA's root."""
    host, _, port = box.environment.connect_to.rpartition(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        box.verify().wrap_socket(raw, server_hostname=domain) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def nginx_started_at(box: SandboxEnv) -> str:
    return box.on_host(
        f"docker inspect -f '{{{{.State.StartedAt}}}}' slipway-{NAME}-nginx-1"
    ).strip()


@pytest.fixture(scope="module")
def site() -> Iterator[SandboxEnv]:
    with sandbox(NAME, "--tls=acme", "--listings-env=staging", version=VERSION) as box:
        box.edit(lambda data: data["deploy"].update({"health_timeout": 60, "lock_wait": 30}))
        # Monitoring on a host is proven by test_deploy.py; off here, it keeps these deploys
        # (and CI) shorter.
        box.edit(lambda data: data.update({"monitoring": {"enabled": False}}))
        try:
            yield box
        finally:
            remove_images(f"slipway/listings:{VERSION}")


def _issuer(cert: x509.Certificate) -> str:
    return str(cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n) for n in san.get_values_for_type(x509.DNSName)]


def test_the_first_deploy_gets_one_certificate_per_domain_from_the_ca(site: SandboxEnv) -> None:
    env = site.environment
    assert env.tls == "acme" and len(env.domains) == 2
    result = site.invoke("deploy", f"--env={NAME}")
    assert "current = " in result.stdout
    for domain in env.domains:
        cert = served(site, domain)  # verified against pebble's root: no placeholder passes
        assert _names(cert) == [domain]
        assert "pebble" in _issuer(cert).lower()
        SERIALS[domain] = cert.serial_number
    assert site.version() == VERSION
    status = site.invoke("certs.status", f"--env={NAME}").stdout
    for domain in env.domains:
        line = next(x for x in status.splitlines() if x.startswith(domain))
        assert "\tca\t" in line and "placeholder" not in line
    # Port 80 serves challenges from the webroot and redirects everything else to HTTPS.
    published = subprocess.run(
        ["docker", "port", f"slipway-sandbox-{NAME}-1", "80/tcp"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    headers = {"Host": env.primary_domain}
    challenge = httpx.get(f"http://{published}/.well-known/acme-challenge/x", headers=headers)
    assert challenge.status_code == 404
    other = httpx.get(f"http://{published}/api/v1/version", headers=headers)
    assert other.status_code == 301
    assert other.headers["location"] == f"https://{env.primary_domain}/api/v1/version"


def test_a_second_deploy_asks_the_ca_nothing(site: SandboxEnv) -> None:
    result = site.invoke("deploy", f"--env={NAME}")
    assert "ensure done: changed none, failed none" in result.stdout
    assert "requesting a certificate" not in result.stdout
    for domain, serial in SERIALS.items():
        assert served(site, domain).serial_number == serial


def test_a_domain_added_gets_its_certificate_before_traffic_moves(site: SandboxEnv) -> None:
    spare = f"new.{NAME}.test"  # pebble resolves it to the host too (ops.sandbox)
    site.edit(lambda data: data.update(domains=[*data["domains"], spare]))
    result = site.invoke("deploy", f"--env={NAME}")
    asked = result.stdout.index(f"{spare}: requesting a certificate")
    assert asked < result.stdout.index("rolling update of the API")
    cert = served(site, spare)
    assert _names(cert) == [spare]
    assert "pebble" in _issuer(cert).lower()
    for domain, serial in SERIALS.items():  # the others are not asked for again
        assert served(site, domain).serial_number == serial
    SERIALS[spare] = cert.serial_number


def test_a_forced_renewal_under_load_serves_new_certificates_and_fails_no_request(
    site: SandboxEnv,
) -> None:
    before = nginx_started_at(site)
    load = site.traffic()
    with load:
        result = site.invoke("certs.renew", f"--env={NAME}", "--force")
    tally = load.tally
    assert tally.failures == [], f"{tally.summary()}: {tally.failures[:5]}"
    assert tally.requests > 0
    assert "nginx reloaded" in result.stdout
    for domain, serial in SERIALS.items():
        renewed = served(site, domain)
        assert renewed.serial_number != serial
        assert _names(renewed) == [domain]
        SERIALS[domain] = renewed.serial_number
    assert nginx_started_at(site) == before  # reloaded, never restarted


def test_the_renewal_service_runs_on_the_host(site: SandboxEnv) -> None:
    state = site.on_host(
        f"docker inspect -f '{{{{.State.Status}}}} {{{{.Config.User}}}}' slipway-{NAME}-certbot-1"
    ).split()
    assert state == ["running", "101:101"]
    logs = site.invoke("logs", f"--env={NAME}", "--service=certbot", "--since=24h").stdout
    assert "renewal loop: every 43200s, renew below 30 days" in logs
    # --since really filters: nothing the service logged is from the future.
    assert (
        "renewal loop"
        not in site.invoke(
            "logs", f"--env={NAME}", "--service=certbot", "--since=2099-01-01T00:00:00Z"
        ).stdout
    )


def test_a_renewal_the_ca_cannot_answer_fails_loudly_and_keeps_the_certificates(
    site: SandboxEnv,
) -> None:
    acme = [f"{NAME}-acme"]  # the sandbox's pebble (ops.sandbox.role_container_name)
    subprocess.run(["docker", "stop", "-t", "2", acme[0]], check=True, capture_output=True)
    result = site.invoke("certs.renew", f"--env={NAME}", "--force", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "the ACME CA did not issue every certificate" in output
    assert "nginx keeps serving the previous certificates" in output
    for domain, serial in SERIALS.items():
        assert served(site, domain).serial_number == serial
    assert site.version() == VERSION
