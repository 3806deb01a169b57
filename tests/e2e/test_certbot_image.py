"""The certbot image's `slipway-acme`, run as compose runs it (uid 101, read-only root, no
capabilities) on real volumes: placeholders, when a certificate is due for renewal, and what a
CA that does not answer leaves in place. The whole flow against a real CA (pebble) is in
test_deploy_acme.py; here the CA is unreachable on purpose, so every request fails fast."""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from built import built_image
from support.docker import docker
from support.tls import make_cert

pytestmark = pytest.mark.e2e

TAG = secrets.token_hex(3)
VOLUMES = {
    "tls": f"slipway-acme-test-tls-{TAG}",
    "state": f"slipway-acme-test-state-{TAG}",
    "web": f"slipway-acme-test-web-{TAG}",
}
UNREACHABLE = "https://127.0.0.1:9/dir"  # nothing listens: a request fails at once


@pytest.fixture(scope="module")
def image() -> str:
    return built_image("certbot", "SLIPWAY_CERTBOT_TAG")


@pytest.fixture
def volumes() -> Iterator[dict[str, str]]:
    try:
        yield VOLUMES
    finally:
        docker("volume", "rm", "-f", *VOLUMES.values(), check=False)


def _run(
    image: str, *args: str, root: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    argv = ["run", "--rm", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"]
    if root:  # `prepare`, as the deploy runs it
        argv += ["--user", "0", "--cap-add", "CHOWN", "--cap-add", "DAC_OVERRIDE"]
        argv += ["--cap-add", "FOWNER"]
    argv += ["-v", f"{VOLUMES['tls']}:/tls", "-v", f"{VOLUMES['state']}:/var/lib/acme"]
    argv += ["-v", f"{VOLUMES['web']}:/var/www/acme"]
    for key, value in {"ACME_DOMAINS": "a.test b.test", **env}.items():
        argv += ["-e", f"{key}={value}"]
    return docker(*argv, image, *args, check=False)


def _shell(image: str, script: str) -> str:
    """A root shell on the volumes (to look at them, or to put a lineage in place)."""
    return docker(
        "run", "--rm", "--user", "0", "--entrypoint", "sh",
        "-v", f"{VOLUMES['tls']}:/tls", "-v", f"{VOLUMES['state']}:/var/lib/acme",
        image, "-c", script, timeout=60,
    ).stdout  # fmt: skip


def _certificate(name: str, days: int, directory: Path) -> None:
    """A CA-signed-looking certificate (issuer != subject) for `name`, valid `days` more days."""
    issued = make_cert(name, days=days, issuer="Test CA", backdate=dt.timedelta(days=1))
    issued.write(directory, cert="fullchain.pem", key="privkey.pem")


def _lineage(image: str, name: str, days: int, tmp_path: Path) -> None:
    """certbot's own copy (live/<name>/) of a certificate with `days` left, owned by uid 101."""
    local = tmp_path / name
    local.mkdir()
    _certificate(name, days, local)
    pem = (local / "fullchain.pem").read_text()
    key = (local / "privkey.pem").read_text()
    _shell(
        image,
        f"d=/var/lib/acme/config/live/{name}; mkdir -p $d && "
        f"printf '%s' '{pem}' > $d/fullchain.pem && printf '%s' '{key}' > $d/privkey.pem && "
        "chown -R 101:101 /var/lib/acme",
    )


def test_prepare_gives_each_domain_a_private_placeholder_owned_by_nginx(
    image: str, volumes: dict[str, str]
) -> None:
    result = _run(image, "prepare", root=True)
    assert result.returncode == 0, result.stderr
    assert '"message":"prepared: placeholders for a.test b.test' in result.stdout
    listing = _shell(image, "stat -L -c '%n %u %a' /tls/sites/*/* | sort")
    assert listing.split("\n")[:4] == [
        "/tls/sites/a.test/fullchain.pem 101 644",
        "/tls/sites/a.test/privkey.pem 101 600",
        "/tls/sites/b.test/fullchain.pem 101 644",
        "/tls/sites/b.test/privkey.pem 101 600",
    ]
    status = _run(image, "status")
    assert status.returncode == 0
    assert [line.split("\t")[:2] for line in status.stdout.splitlines()] == [
        ["a.test", "placeholder"],
        ["b.test", "placeholder"],
    ]
    # Again: the placeholders stay (a redeploy must not replace a domain's certificate).
    before = _shell(image, "readlink /tls/sites/a.test")
    assert _run(image, "prepare", root=True).returncode == 0
    assert _shell(image, "readlink /tls/sites/a.test") == before


def test_only_certificates_due_for_renewal_are_asked_for_and_the_rest_installed(
    image: str, volumes: dict[str, str], tmp_path: Path
) -> None:
    assert _run(image, "prepare", root=True).returncode == 0
    _lineage(image, "a.test", 10, tmp_path)  # due: fewer than 30 days left
    _lineage(image, "b.test", 60, tmp_path)  # not due
    acme = {"ACME_EMAIL": "ops@a.test", "ACME_DIRECTORY": UNREACHABLE}
    result = _run(image, "ensure", **acme)
    assert result.returncode == 1
    assert "a.test: requesting a certificate" in result.stdout
    assert "(fewer than 30 days left" in result.stdout
    assert "b.test: requesting" not in result.stdout
    # b.test's lineage is installed for nginx even though the CA was not needed for it.
    assert "b.test: certificate installed" in result.stdout
    assert '"level":"error"' in result.stdout and "failed a.test" in result.stdout
    # With a margin of 5 days, the 10-day certificate is not due either: nothing is asked.
    calm = _run(image, "ensure", ACME_RENEW_BEFORE_DAYS="5", **acme)
    assert calm.returncode == 0, calm.stdout + calm.stderr
    assert "requesting" not in calm.stdout
    assert "a.test: certificate installed" in calm.stdout  # its lineage, installed now
    status = _run(image, "status").stdout.splitlines()
    assert [line.split("\t")[1] for line in status] == ["ca", "ca"]


def test_a_ca_that_does_not_answer_leaves_every_certificate_in_place(
    image: str, volumes: dict[str, str], tmp_path: Path
) -> None:
    assert _run(image, "prepare", root=True).returncode == 0
    _lineage(image, "a.test", 60, tmp_path)
    acme = {"ACME_EMAIL": "ops@a.test", "ACME_DIRECTORY": UNREACHABLE}
    assert _run(image, "ensure", **acme).returncode == 1  # b.test has no certificate yet
    before = _shell(image, "cat /tls/sites/*/fullchain.pem | sha256sum")
    forced = _run(image, "ensure", "--force", **acme)
    assert forced.returncode == 1
    assert "certificates not obtained for: a.test b.test" in forced.stdout
    assert "nginx keeps serving the previous ones" in forced.stdout
    assert _shell(image, "cat /tls/sites/*/fullchain.pem | sha256sum") == before


def test_bad_settings_are_refused_naming_the_fix(image: str, volumes: dict[str, str]) -> None:
    wildcard = _run(image, "status", ACME_DOMAINS="*.a.test")
    assert wildcard.returncode == 2
    assert "'*.a.test' is not a DNS name: fix the environment's domains" in wildcard.stdout
    no_email = _run(image, "ensure", ACME_DIRECTORY=UNREACHABLE)
    assert no_email.returncode == 2
    assert "ACME_EMAIL is empty: set acme.email in the environment file" in no_email.stdout
    unknown = _run(image, "renew")
    assert unknown.returncode == 2 and "use prepare, ensure [--force], loop or status" in (
        unknown.stdout
    )


def test_a_certificate_from_another_directory_is_asked_for_again(
    image: str, volumes: dict[str, str], tmp_path: Path
) -> None:
    # Rehearsed on a staging CA, then switched to production: the staging certificate (not
    # trusted by clients) must not stay until it expires.
    assert _run(image, "prepare", root=True).returncode == 0
    _lineage(image, "a.test", 60, tmp_path)
    _shell(
        image,
        "mkdir -p /var/lib/acme/config/renewal && printf 'server = https://staging.test/dir\\n'"
        " > /var/lib/acme/config/renewal/a.test.conf && chown -R 101:101 /var/lib/acme",
    )
    result = _run(image, "ensure", ACME_DOMAINS="a.test", ACME_EMAIL="ops@a.test",
                  ACME_DIRECTORY=UNREACHABLE)  # fmt: skip
    assert "issued by another directory (https://staging.test/dir)" in result.stdout
    assert result.returncode == 1


def test_a_key_that_does_not_match_its_certificate_is_never_installed(
    image: str, volumes: dict[str, str], tmp_path: Path
) -> None:
    assert _run(image, "prepare", root=True).returncode == 0
    _lineage(image, "a.test", 60, tmp_path)
    _lineage(image, "b.test", 60, tmp_path)
    # a.test's lineage gets b.test's key: a broken pair that nginx would refuse to load.
    _shell(
        image, "cp /var/lib/acme/config/live/b.test/privkey.pem /var/lib/acme/config/live/a.test/"
    )
    before = _shell(image, "readlink /tls/sites/a.test")
    result = _run(image, "ensure", ACME_EMAIL="ops@a.test", ACME_DIRECTORY=UNREACHABLE)
    assert result.returncode == 1
    assert "a.test: the new certificate could not be installed" in result.stdout
    assert "b.test: certificate installed" in result.stdout
    assert _shell(image, "readlink /tls/sites/a.test") == before
