"""Certificates and the public address: `acme:` (tls: acme), `public_url:` and `connect_to:`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from ops import certs
from ops.config.model import LETSENCRYPT_DIRECTORY, MAX_RENEW_BEFORE_DAYS, Acme, format_https_url
from ops.config.reader import Reader, is_hostname

_EMAIL_RE = re.compile(r"^[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# Top-level domains that never resolve publicly (RFC 2606, 6761, 6762; ICANN's .internal):
# Let's Encrypt cannot validate names under them.
_PRIVATE_TLDS = ("localhost", "test", "example", "invalid", "local", "internal")


def read_acme(
    reader: Reader,
    top: Mapping[str, Any],
    target: str,
    tls: str,
    domains: tuple[str, ...],
) -> Acme | None:
    present = top.get("acme") is not None
    if tls != "acme":
        if present:
            reader.fail(
                "acme", f"is set but tls is {tls}", "set tls: acme, or remove the acme section"
            )
        return None
    if target != "ssh":
        reader.fail(
            "tls",
            f"is acme but target is {target}: an ACME CA must reach the host over the internet",
            "use tls: local-ca for target: local, or deploy with target: ssh",
        )
    if not present:
        reader.fail(
            "acme",
            "is missing (tls is acme)",
            "add e.g. 'acme: {email: ops@example.org}' (see docs/environments.md)",
        )
    data = reader.section(top, "acme", {"email", "directory", "server_ca", "renew_before_days"})
    email = reader.string(data, "email", where="acme.email").strip()
    if not _EMAIL_RE.match(email):
        reader.fail(
            "acme.email",
            f"{email!r} is not an e-mail address",
            "write the address the ACME CA may contact, e.g. ops@example.org",
        )
    directory = reader.string(
        data, "directory", default=LETSENCRYPT_DIRECTORY, where="acme.directory"
    )
    reader.https_url(directory, "acme.directory", allow_path=True)
    server_ca = None
    if data.get("server_ca") is not None:
        server_ca = reader.local_path(
            reader.string(data, "server_ca", where="acme.server_ca"), "acme.server_ca"
        )
    renew_before = reader.integer(
        data,
        "acme.renew_before_days",
        "renew_before_days",
        Acme.renew_before_days,
        minimum=1,
        maximum=MAX_RENEW_BEFORE_DAYS,
        expected=f"whole days from 1 to {MAX_RENEW_BEFORE_DAYS} (certificates last 90)",
    )
    acme = Acme(
        email=email,
        directory=directory.strip(),
        server_ca=server_ca,
        renew_before_days=renew_before,
    )
    if acme.is_letsencrypt:
        for index, domain in enumerate(domains):
            problem = _not_public(domain)
            if problem:
                reader.fail(
                    f"domains[{index}]",
                    f"{domain!r} {problem}; Let's Encrypt only issues certificates for public "
                    "DNS names",
                    "list the public names the hosts answer for, or use tls: local-ca",
                )
    return acme


def read_connect_to(reader: Reader, top: Mapping[str, Any]) -> str:
    if top.get("connect_to") is None:
        return ""
    text = reader.string(top, "connect_to").strip()
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    valid = bool(sep and host and port.isdigit() and 0 < int(port) < 65536)
    if valid and not is_hostname(host.lower()):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            valid = False
    if not valid:
        reader.fail(
            "connect_to",
            f"{text!r} is not host:port",
            "write the address and port clients on this machine reach public_url at, "
            "e.g. 127.0.0.1:8443 (the URL's name is still used for SNI and the certificate)",
        )
    return f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"


def _not_public(domain: str) -> str:
    """Why Let's Encrypt cannot validate `domain` ("" when it can try)."""
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        pass
    else:
        return "is an IP address"
    if "." not in domain:
        return "has no dot"
    if domain.rsplit(".", 1)[1] in _PRIVATE_TLDS:
        return "is under a top-level domain that never resolves publicly"
    return ""


def read_public_url(
    reader: Reader, top: Mapping[str, Any], tls: str, domains: tuple[str, ...]
) -> str:
    if top.get("public_url") is None:
        return ""
    text = reader.string(top, "public_url")
    host, port = reader.https_url(text, "public_url", allow_path=False)
    # nginx's certificate covers the domains (a local CA adds localhost and the loopback IPs):
    # any other host would fail verification on every check through public_url.
    covered = certs.wanted_names(domains) if tls == "local-ca" else list(domains)
    if host not in covered:
        reader.fail(
            "public_url",
            f"names host {host!r}, which the tls: {tls} certificate does not cover "
            f"({', '.join(covered)})",
            f"add {host} to domains, or use one of those names in public_url",
        )
    return format_https_url(host, port)
