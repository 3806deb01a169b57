"""Local certificate authority and server certificate for `tls: local-ca` environments.

Written to .slipway/<env>/: ca.crt, ca.key (0600), tls.crt, tls.key. nginx runs as uid 101 and
reads tls.key through a read-only bind mount of .slipway/<env>/, so that directory is 0755 and
the leaf key 0644 (a root-owned 0600 key would be unreadable in the container). The parent
.slipway/ is 0700: other users of the host cannot reach any of it, while dockerd (root) still
resolves the mount. The CA key stays 0600 and never enters a container.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ops.errors import OpsError

CA_DAYS = 5 * 365
LEAF_DAYS = 365
RENEW_BEFORE_DAYS = 30
ALWAYS_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertPaths:
    """The four files of one environment's local TLS material."""

    directory: Path

    @property
    def ca_crt(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def tls_crt(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def tls_key(self) -> Path:
        return self.directory / "tls.key"


@dataclass(frozen=True)
class Result:
    """What ensure() did: which parts were (re)generated, and why."""

    paths: CertPaths
    ca_created: bool
    leaf_created: bool
    reason: str

    @property
    def changed(self) -> bool:
        return self.ca_created or self.leaf_created


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def wanted_names(domains: Sequence[str]) -> list[str]:
    """localhost, 127.0.0.1, ::1 and the environment's domains, without duplicates."""
    names: list[str] = []
    for name in (*ALWAYS_NAMES, *domains):
        if name not in names:
            names.append(name)
    return names


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def san_names(cert: x509.Certificate) -> set[str]:
    """DNS names and IP addresses in a certificate's subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = set(san.get_values_for_type(x509.DNSName))
    names |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return names


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.chmod(mode)
    tmp.replace(path)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(env_name: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Slipway local CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Slipway {env_name} CA"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    names: Sequence[str],
    now: dt.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + dt.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _load_ca_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _remaining(cert: x509.Certificate, now: dt.datetime) -> dt.timedelta:
    return cert.not_valid_after_utc - now


def _leaf_problem(
    paths: CertPaths, ca_cert: x509.Certificate, names: Sequence[str], now: dt.datetime
) -> str:
    """Why the existing leaf cannot be reused ("" when it can)."""
    leaf = _load_cert(paths.tls_crt)
    if leaf is None or not paths.tls_key.is_file():
        return "no server certificate yet"
    if leaf.issuer != ca_cert.subject:
        return "server certificate not issued by this CA"
    try:
        leaf.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "server certificate not signed by this CA"
    if _remaining(leaf, now) < dt.timedelta(days=RENEW_BEFORE_DAYS):
        return f"server certificate expires within {RENEW_BEFORE_DAYS} days"
    missing = set(names) - san_names(leaf)
    if missing:
        return f"server certificate does not cover {', '.join(sorted(missing))}"
    return ""


def ensure(
    directory: Path, env_name: str, domains: Sequence[str], now: dt.datetime | None = None
) -> Result:
    """Create or reuse the CA and the server certificate in `directory` (idempotent)."""
    now = now or _now()
    paths = CertPaths(directory)
    names = wanted_names(domains)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
    except OSError as exc:
        raise OpsError(f"cannot create {directory}: {exc}. Fix: check its permissions") from exc

    ca_cert = _load_cert(paths.ca_crt)
    ca_key = _load_ca_key(paths.ca_key)
    ca_created = False
    reason = ""
    if (
        ca_cert is None
        or ca_key is None
        or _remaining(ca_cert, now) < dt.timedelta(days=RENEW_BEFORE_DAYS)
    ):
        reason = "new CA" if ca_cert is None else "CA unusable or about to expire: new CA"
        ca_key, ca_cert = make_ca(env_name, now)
        _write(paths.ca_key, key_pem(ca_key), 0o600)
        _write(paths.ca_crt, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        ca_created = True

    problem = "new CA" if ca_created else _leaf_problem(paths, ca_cert, names, now)
    if problem:
        leaf_key, leaf = make_leaf(ca_key, ca_cert, names, now)
        # 0644: nginx (uid 101) reads it through the read-only mount; .slipway/ is 0700.
        _write(paths.tls_key, key_pem(leaf_key), 0o644)
        _write(paths.tls_crt, leaf.public_bytes(serialization.Encoding.PEM), 0o644)
        reason = reason or problem
    return Result(
        paths, ca_created, bool(problem), reason or "reused: valid and covering all names"
    )
