"""Local CA and server certificate: names, validity, key types, modes, reuse vs regenerate."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from ops import certs

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_run_writes_ca_and_leaf_with_the_right_modes(tmp_path: Path) -> None:
    directory = tmp_path / "local"
    result = certs.ensure(directory, "local", ["localhost"], now=NOW)
    assert result.ca_created and result.leaf_created
    p = result.paths
    assert _mode(p.ca_key) == 0o600
    assert _mode(p.ca_crt) == 0o644
    assert _mode(p.tls_key) == 0o644  # read by nginx (uid 101) through the bind mount
    assert _mode(p.tls_crt) == 0o644
    assert _mode(directory) == 0o755


def test_leaf_covers_localhost_loopbacks_and_domains_for_server_auth(tmp_path: Path) -> None:
    p = certs.ensure(tmp_path / "e", "e", ["localhost", "shop.example.test"], now=NOW).paths
    leaf, ca = _cert(p.tls_crt), _cert(p.ca_crt)
    assert certs.san_names(leaf) == {"localhost", "127.0.0.1", "::1", "shop.example.test"}
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    for cert in (leaf, ca):
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.curve.name == "secp256r1"
    leaf.verify_directly_issued_by(ca)


def test_validity_is_five_years_for_the_ca_and_about_one_for_the_leaf(tmp_path: Path) -> None:
    p = certs.ensure(tmp_path / "l", "l", ["localhost"], now=NOW).paths
    ca_days = (_cert(p.ca_crt).not_valid_after_utc - NOW).days
    leaf_days = (_cert(p.tls_crt).not_valid_after_utc - NOW).days
    assert 5 * 365 - 1 <= ca_days <= 5 * 365
    assert 364 <= leaf_days <= 366


def test_second_run_reuses_everything(tmp_path: Path) -> None:
    first = certs.ensure(tmp_path / "l", "l", ["localhost"], now=NOW)
    before = {f: f.read_bytes() for f in tmp_path.glob("l/*")}
    again = certs.ensure(tmp_path / "l", "l", ["localhost"], now=NOW + dt.timedelta(days=100))
    assert not again.changed
    assert again.reason.startswith("reused")
    assert {f: f.read_bytes() for f in tmp_path.glob("l/*")} == before
    assert first.paths == again.paths


def test_leaf_expiring_within_30_days_is_regenerated_with_the_same_ca(tmp_path: Path) -> None:
    first = certs.ensure(tmp_path / "l", "l", ["localhost"], now=NOW)
    ca_before = first.paths.ca_crt.read_bytes()
    later = NOW + dt.timedelta(days=340)
    again = certs.ensure(tmp_path / "l", "l", ["localhost"], now=later)
    assert again.leaf_created and not again.ca_created
    assert "expires within 30 days" in again.reason
    assert first.paths.ca_crt.read_bytes() == ca_before
    assert _cert(again.paths.tls_crt).not_valid_after_utc > later + dt.timedelta(days=300)


def test_a_new_domain_regenerates_the_leaf(tmp_path: Path) -> None:
    certs.ensure(tmp_path / "l", "l", ["localhost"], now=NOW)
    again = certs.ensure(tmp_path / "l", "l", ["localhost", "new.example.test"], now=NOW)
    assert again.leaf_created and not again.ca_created
    assert "new.example.test" in again.reason
    assert "new.example.test" in certs.san_names(_cert(again.paths.tls_crt))


def test_a_leaf_from_another_ca_is_replaced(tmp_path: Path) -> None:
    certs.ensure(tmp_path / "a", "a", ["localhost"], now=NOW)
    b = certs.ensure(tmp_path / "b", "b", ["localhost"], now=NOW)
    (tmp_path / "a" / "tls.crt").write_bytes(b.paths.tls_crt.read_bytes())
    again = certs.ensure(tmp_path / "a", "a", ["localhost"], now=NOW)
    assert again.leaf_created
    assert "CA" in again.reason


def test_missing_ca_key_makes_a_new_ca_and_leaf(tmp_path: Path) -> None:
    first = certs.ensure(tmp_path / "l", "l", ["localhost"], now=NOW)
    first.paths.ca_key.unlink()
    again = certs.ensure(tmp_path / "l", "l", ["localhost"], now=NOW)
    assert again.ca_created and again.leaf_created
