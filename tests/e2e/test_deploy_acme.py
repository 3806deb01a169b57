"""`tls: acme` for real: a sandbox host and pebble (Debian's ACME test server, validating
HTTP-01 for real through the deployed nginx), driven by `invoke deploy` and `invoke certs.*`.

Tests run in file order and build on each other: the first deploy obtains one certificate per
domain, a second deploy asks the CA nothing, a forced renewal under load fails no request, the
renewal service runs, and last a renewal that the CA cannot answer keeps the old certificates.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from ops import config, health
from ops.traffic import Traffic

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TAG = secrets.token_hex(3)
NAME = f"e2e-acme-{TAG}"
VERSION = f"e2e-{TAG}-acme"
LOAD_RATE = 24.0
SERIALS: dict[str, int] = {}  # served certificate serial per domain, from one test to the next


@dataclass
class Site:
    env: dict[str, str]
    envdir: Path

    @property
    def environment(self) -> config.Environment:
        os.environ["SLIPWAY_ENVIRONMENTS_DIR"] = str(self.envdir)
        try:
            return config.load(NAME)
        finally:
            del os.environ["SLIPWAY_ENVIRONMENTS_DIR"]

    def invoke(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n--- stdout\n"
                f"{result.stdout[-8000:]}\n--- stderr\n{result.stderr[-4000:]}"
            )
        return result

    def on_host(self, command: str) -> str:
        result = subprocess.run(
            ["docker", "exec", f"slipway-sandbox-{NAME}-1", "sh", "-c", command],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        return result.stdout

    def served(self, domain: str) -> x509.Certificate:
        """The certificate nginx serves for `domain` (SNI), verified with the CA's root."""
        env = self.environment
        host, _, port = env.connect_to.rpartition(":")
        assert isinstance(env.verify, Path)
        context = ssl.create_default_context(cafile=str(env.verify))
        with (
            socket.create_connection((host, int(port)), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=domain) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)

    def version(self) -> str:
        env = self.environment
        assert isinstance(env.verify, Path)
        with httpx.Client(verify=health.tls_context(env.verify), timeout=10) as client:
            answer = health.public_get(client, env.https_url, "/api/v1/version", env.connect_to)
        return str(answer.json()["version"])

    def nginx_started_at(self) -> str:
        return self.on_host(
            f"docker inspect -f '{{{{.State.StartedAt}}}}' slipway-{NAME}-nginx-1"
        ).strip()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    envdir = Path(tempfile.mkdtemp(prefix="slipway-acme-envs-"))
    env = {**os.environ, "SLIPWAY_ENVIRONMENTS_DIR": str(envdir), "SLIPWAY_VERSION": VERSION}
    made = Site(env, envdir)
    try:
        made.invoke("sandbox.up", f"--name={NAME}", "--tls=acme", "--listings-env=staging")
        path = envdir / f"{NAME}.yaml"
        data = yaml.safe_load(path.read_text())
        data["deploy"].update({"health_timeout": 60, "lock_wait": 30})
        path.write_text(
            "# Written by `invoke sandbox.up`, then edited by tests/e2e/test_deploy_acme.py\n"
            + yaml.safe_dump(data, sort_keys=False)
        )
        yield made
    finally:
        if os.environ.get("SLIPWAY_E2E_KEEP") != "1":
            made.invoke("sandbox.down", f"--name={NAME}", "--yes", check=False)
            shutil.rmtree(envdir, ignore_errors=True)
            shutil.rmtree(ROOT / ".slipway" / NAME, ignore_errors=True)
            subprocess.run(
                ["docker", "rmi", "-f", f"slipway/listings:{VERSION}"],
                check=False,
                capture_output=True,
            )


def _issuer(cert: x509.Certificate) -> str:
    return str(cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n) for n in san.get_values_for_type(x509.DNSName)]


def test_the_first_deploy_gets_one_certificate_per_domain_from_the_ca(site: Site) -> None:
    env = site.environment
    assert env.tls == "acme" and len(env.domains) == 2
    result = site.invoke("deploy", f"--env={NAME}")
    assert "current = " in result.stdout
    for domain in env.domains:
        cert = site.served(domain)  # verified against pebble's root: no placeholder passes
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


def test_a_second_deploy_asks_the_ca_nothing(site: Site) -> None:
    result = site.invoke("deploy", f"--env={NAME}")
    assert "ensure done: changed none, failed none" in result.stdout
    assert "requesting a certificate" not in result.stdout
    for domain, serial in SERIALS.items():
        assert site.served(domain).serial_number == serial


def test_a_forced_renewal_under_load_serves_new_certificates_and_fails_no_request(
    site: Site,
) -> None:
    env = site.environment
    before = site.nginx_started_at()
    assert isinstance(env.verify, Path)
    load = Traffic(
        env.https_url,
        health.tls_context(env.verify),
        rate=LOAD_RATE,
        connect_to=env.connect_to,
    )
    with load:
        result = site.invoke("certs.renew", f"--env={NAME}", "--force")
    tally = load.tally
    assert tally.failures == [], f"{tally.summary()}: {tally.failures[:5]}"
    assert tally.requests > 0
    assert "nginx reloaded" in result.stdout
    for domain, serial in SERIALS.items():
        renewed = site.served(domain)
        assert renewed.serial_number != serial
        assert _names(renewed) == [domain]
        SERIALS[domain] = renewed.serial_number
    assert site.nginx_started_at() == before  # reloaded, never restarted


def test_the_renewal_service_runs_on_the_host(site: Site) -> None:
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
    site: Site,
) -> None:
    pebble = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=org.slipway.sandbox={NAME}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    hosts = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"name=slipway-sandbox-{NAME}-1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    acme = [c for c in pebble if c not in hosts]
    assert len(acme) == 1, "expected exactly one pebble container"
    subprocess.run(["docker", "stop", "-t", "2", acme[0]], check=True, capture_output=True)
    result = site.invoke("certs.renew", f"--env={NAME}", "--force", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "the ACME CA did not issue every certificate" in output
    assert "nginx keeps serving the previous certificates" in output
    for domain, serial in SERIALS.items():
        assert site.served(domain).serial_number == serial
    assert site.version() == VERSION
