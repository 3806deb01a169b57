"""Throwaway certificates for tests: a CA, certificates it signs, self-signed ones.

    ca = make_ca("Slipway test CA")
    site = make_cert("shop.test", signed_by=ca, days=10, server_auth=True)
    site.write(directory)                    # tls.crt and tls.key
    other = make_cert("b.test")              # self-signed, 7 days

Keys are P-256 (what ops/certs.py and our nginx use); times are whole seconds, as X.509 keeps
them, so `not_after` is exactly what a client reads back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

# Valid from a little before now: a container's clock a few seconds behind still accepts it.
BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Issued:
    """A private key and its certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    def write(self, directory: Path, cert: str = "tls.crt", key: str = "tls.key") -> None:
        """The certificate and the key as PEM files in `directory`."""
        (directory / cert).write_bytes(self.cert_pem)
        (directory / key).write_bytes(self.key_pem)


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(common_name: str, days: int = 30) -> Issued:
    """A self-signed CA that may sign certificates."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def make_cert(
    *names: str,
    days: float = 7,
    signed_by: Issued | None = None,
    issuer: str = "",
    server_auth: bool = False,
    backdate: dt.timedelta = BACKDATE,
) -> Issued:
    """A certificate for `names` (the first is the common name; all are DNS names of the
    subjectAltName), valid from `backdate` ago for `days` more days. Signed by `signed_by`;
    without it self-signed, under the issuer name `issuer` when given (it then looks issued by
    a CA: issuer and subject differ). `server_auth` adds that extended key usage."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(names[0]))
        .issuer_name(signed_by.cert.subject if signed_by is not None else name(issuer or names[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    )
    if server_auth:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    signer = signed_by.key if signed_by is not None else key
    return Issued(key, builder.sign(signer, hashes.SHA256()))


def load(cert: Path, key: Path) -> Issued:
    """A certificate and its key from PEM files (an environment's CA, say)."""
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey), f"{key} is not an EC key"
    return Issued(private, x509.load_pem_x509_certificate(cert.read_bytes()))


def reissue(cert: x509.Certificate, ca: Issued, days: float) -> x509.Certificate:
    """`cert` issued again by `ca` for the same key, subject and extensions, valid `days` more
    days (to make a served certificate look close to its expiry, say)."""
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(ca.cert.subject)
        .public_key(cert.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
    )
    for extension in cert.extensions:
        if extension.oid != ExtensionOID.AUTHORITY_KEY_IDENTIFIER:
            builder = builder.add_extension(extension.value, extension.critical)
    return builder.sign(ca.key, hashes.SHA256())
