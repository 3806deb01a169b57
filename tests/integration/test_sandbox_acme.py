"""The sandbox's ACME server for real: `invoke sandbox.up --tls=acme`, a whole ACME order, down.

One host and its pebble (<name>-acme). The environment file goes to a temporary
SLIPWAY_ENVIRONMENTS_DIR; the module fixture always runs `invoke sandbox.down --yes` at the end
(and removes any container left with the sandbox's label, and its files), whatever happened.

The HTTP-01 proof is end to end: a tiny responder (perl, in debian:bookworm-slim loaded into
host 1's own engine, published on host 1's port 80 like the deployed nginx) answers the
challenges, pebble validates both domains by name, and the certificate it issues verifies
against acme-roots.pem.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from sandbox_harness import Sandbox, assert_down_removes, exec_in, inspect, running_sandbox
from support.docker import docker
from support.waiting import wait_for

from ops.sandbox import names, plan
from ops.sandbox.acme_server import AcmeServer, acme_server

pytestmark = pytest.mark.integration

NAME = f"it-acme-{secrets.token_hex(3)}"
ACME = names.acme_container_name(NAME)
HOST = names.container_name(NAME, 1)
DOMAINS = names.acme_domains(NAME)
RESPONDER = "acme-responder"
# Answers GET /.well-known/acme-challenge/<token> with its key authorization (KEYAUTHS holds
# "token=keyauth" pairs separated by spaces), anything else with 404; logs each request.
RESPONDER_PERL = r"""
use strict;
use IO::Socket::INET;
my %ka = map { split /=/, $_, 2 } split / /, $ENV{KEYAUTHS};
my $server = IO::Socket::INET->new(LocalPort => 8080, Listen => 16, ReuseAddr => 1)
  or die "listen: $!";
$| = 1;
print "listening\n";
while (my $client = $server->accept) {
  my $line = <$client> // "";
  while (my $header = <$client>) { last if $header =~ /^\r?\n$/ }
  my ($path) = $line =~ m{^GET (\S+)};
  $path //= "";
  my ($token) = $path =~ m{^/\.well-known/acme-challenge/([A-Za-z0-9_-]+)$};
  if (defined $token && exists $ka{$token}) {
    my $body = $ka{$token};
    print $client "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
      . "Content-Length: " . length($body) . "\r\n\r\n" . $body;
    print "served $path\n";
  } else {
    print $client "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    print "404 $path\n";
  }
  close $client;
}
"""


def _address(container: str) -> str:
    return plan.network_address(container, inspect(container))


def _pebble() -> AcmeServer:
    return acme_server(ACME, inspect(ACME))


def _get(url: str, ca_file: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(url, context=context, timeout=10) as answer:
        body: bytes = answer.read()
    return body


@pytest.fixture(scope="module")
def sbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(
        Sandbox, NAME, tmp_path_factory, "--hosts=1", "--tls=acme", leftovers=[ACME]
    ) as handle:
        yield handle


def test_up_writes_a_tls_acme_environment_for_pebble_and_host_1(sbx: Sandbox) -> None:
    env = sbx.load()
    files = sbx.files
    pebble = _pebble()
    host_https = plan.published_ports(HOST, inspect(HOST)).https
    assert env.tls == "acme"
    assert env.domains == DOMAINS
    assert env.acme is not None
    assert env.acme.email == f"ops@{NAME}.test"
    assert env.acme.directory == f"https://{pebble.address}:14000/dir"
    assert env.acme.server_ca == files.acme_server_ca
    assert env.ca_file == files.acme_roots
    assert env.public_url == f"https://{DOMAINS[0]}"
    assert env.connect_to == f"127.0.0.1:{host_https}"
    assert sorted(sbx.labelled()) == sorted([HOST, ACME])
    # Private: the key directory, and every key in it.
    assert (files.key_dir.stat().st_mode & 0o777) == 0o700
    for key in files.acme_server_dir.glob("*.key"):
        assert (key.stat().st_mode & 0o777) == 0o600, key
    ports = inspect(ACME)["NetworkSettings"]["Ports"]
    assert set(ports) == {"14000/tcp", "15000/tcp"}
    for bindings in ports.values():
        assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}


def test_the_directory_answers_on_loopback_verified_by_the_server_ca(sbx: Sandbox) -> None:
    pebble = _pebble()
    directory = json.loads(_get(pebble.local_directory, sbx.files.acme_server_ca))
    assert {"newNonce", "newAccount", "newOrder"} <= set(directory)
    # Only that CA vouches for it: the system's roots do not.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(pebble.local_directory, timeout=10)


def test_the_roots_file_is_pebbles_current_root_ca(sbx: Sandbox) -> None:
    pem = sbx.files.acme_roots.read_bytes()
    root = x509.load_pem_x509_certificate(pem)
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is True
    assert _get(_pebble().local_roots, sbx.files.acme_server_ca) == pem


def test_pebble_resolves_the_domains_to_host_1(sbx: Sandbox) -> None:
    host_address = _address(HOST)
    for domain in DOMAINS:
        assert exec_in(ACME, "getent", "hosts", domain).split()[0] == host_address


# ------------------------------------------------------------------ a whole ACME order


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class AcmeClient:
    """Just enough RFC 8555 for one order: ES256 account key, JWS POSTs, replay nonces."""

    def __init__(self, directory_url: str, ca_file: Path) -> None:
        self.context = ssl.create_default_context(cafile=str(ca_file))
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = ""
        self.nonce = ""
        self.directory: dict[str, Any] = json.loads(self.request(directory_url)[2])

    def request(
        self, url: str, body: bytes | None = None, method: str = "GET"
    ) -> tuple[int, Message, bytes]:
        headers = {"Content-Type": "application/jose+json"} if body is not None else {}
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self.context, timeout=30) as answer:
                status, info, data = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {url}: {exc.code} {exc.read()[:800]!r}") from exc
        self.nonce = info.get("Replay-Nonce", "")
        return status, info, data

    @property
    def jwk(self) -> dict[str, str]:
        numbers = self.key.public_key().public_numbers()
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }

    def key_authorization(self, token: str) -> str:
        canonical = json.dumps(self.jwk, sort_keys=True, separators=(",", ":")).encode()
        return f"{token}.{_b64(hashlib.sha256(canonical).digest())}"

    def post(self, url: str, payload: object = None) -> tuple[int, Message, bytes]:
        """A signed POST; payload None is a POST-as-GET."""
        if not self.nonce:
            self.request(self.directory["newNonce"], method="HEAD")
        protected: dict[str, object] = {"alg": "ES256", "nonce": self.nonce, "url": url}
        if self.kid:
            protected["kid"] = self.kid
        else:
            protected["jwk"] = self.jwk
        head = _b64(json.dumps(protected).encode())
        body = "" if payload is None else _b64(json.dumps(payload).encode())
        r, s = decode_dss_signature(
            self.key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        )
        signature = _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        jws = json.dumps({"protected": head, "payload": body, "signature": signature})
        self.nonce = ""
        return self.request(url, jws.encode(), "POST")

    def post_json(self, url: str, payload: object = None) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.post(url, payload)[2])
        return data

    def poll(self, url: str, until: str, timeout: float = 60.0) -> dict[str, Any]:
        def state() -> dict[str, Any]:
            found = self.post_json(url)
            assert found["status"] not in ("invalid", "deactivated", "revoked"), found
            return found

        return wait_for(
            state, until=lambda found: found["status"] == until, what=f"{url} {until}",
            timeout=timeout,
        )  # fmt: skip


def _start_responder(keyauths: dict[str, str]) -> None:
    """The challenge responder in host 1's engine, published on host 1's port 80."""
    saved = subprocess.run(
        ["docker", "save", "debian:bookworm-slim"], capture_output=True, check=True
    ).stdout
    assert "Loaded image" in exec_in(HOST, "docker", "load", stdin=saved)
    pairs = " ".join(f"{token}={value}" for token, value in keyauths.items())
    exec_in(
        HOST,
        "docker",
        "run",
        "-d",
        "--name",
        RESPONDER,
        "-p",
        "80:8080",
        "-e",
        f"KEYAUTHS={pairs}",
        "debian:bookworm-slim",
        "perl",
        "-e",
        RESPONDER_PERL,
    )
    wait_for(
        lambda: "listening" in exec_in(HOST, "docker", "logs", RESPONDER),
        what="the challenge responder listening",
        timeout=30,
        interval=0.2,
        details=lambda: exec_in(HOST, "docker", "logs", RESPONDER),
    )


def test_pebble_validates_http_01_on_host_1_and_issues_under_the_roots(sbx: Sandbox) -> None:
    pebble = _pebble()
    client = AcmeClient(pebble.local_directory, sbx.files.acme_server_ca)
    status, info, _ = client.post(
        client.directory["newAccount"],
        {"termsOfServiceAgreed": True, "contact": [f"mailto:ops@{NAME}.test"]},
    )
    assert status == 201
    client.kid = info["Location"]
    status, info, data = client.post(
        client.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": domain} for domain in DOMAINS]},
    )
    assert status == 201
    order_url, order = info["Location"], json.loads(data)
    challenges: dict[str, dict[str, Any]] = {}
    for authz_url in order["authorizations"]:
        authz = client.post_json(authz_url)
        assert authz["status"] == "pending", authz
        (http01,) = [c for c in authz["challenges"] if c["type"] == "http-01"]
        challenges[authz_url] = http01
    keyauths = {c["token"]: client.key_authorization(c["token"]) for c in challenges.values()}
    try:
        _start_responder(keyauths)
        for challenge in challenges.values():
            client.post_json(challenge["url"], {})
        for authz_url in challenges:
            client.poll(authz_url, "valid")
        served = exec_in(HOST, "docker", "logs", RESPONDER)
    finally:
        docker("exec", HOST, "docker", "rm", "-f", RESPONDER, check=False)
    # pebble fetched every token from host 1's port 80, by name.
    for token in keyauths:
        assert f"served /.well-known/acme-challenge/{token}" in served

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAINS[0])]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in DOMAINS]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    client.post_json(order["finalize"], {"csr": _b64(csr.public_bytes(serialization.Encoding.DER))})
    done = client.poll(order_url, "valid")
    chain = x509.load_pem_x509_certificates(client.post(done["certificate"])[2])
    roots = x509.load_pem_x509_certificates(sbx.files.acme_roots.read_bytes())
    for domain in DOMAINS:
        verifier = PolicyBuilder().store(Store(roots)).build_server_verifier(x509.DNSName(domain))
        verified = verifier.verify(chain[0], chain[1:])
        assert verified[-1] == roots[0]


def test_a_second_up_reuses_pebble_and_rewrites_the_same_file(sbx: Sandbox) -> None:
    before = inspect(ACME)["Id"]
    text = sbx.files.environment.read_text(encoding="utf-8")
    roots = sbx.files.acme_roots.read_bytes()
    result = sbx.up()
    assert f"reused {ACME}" in result.stdout
    assert inspect(ACME)["Id"] == before
    assert sbx.files.environment.read_text(encoding="utf-8") == text
    directory = yaml.safe_load(text)["acme"]["directory"]
    assert directory == f"https://{_address(ACME)}:14000/dir"
    # The same pebble: the same root.
    assert sbx.files.acme_roots.read_bytes() == roots


def test_down_removes_the_acme_server_and_its_files(sbx: Sandbox) -> None:
    files = sbx.files
    assert_down_removes(
        sbx, ACME, files.environment, files.acme_roots, files.acme_server_ca, files.key_dir
    )
