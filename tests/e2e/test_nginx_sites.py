"""nginx sites mode: one certificate per domain chosen by SNI, renewed without a restart.

Each test runs the nginx image alone (no API: the upstream is 127.0.0.1:9, which resolves and
is never asked) the way compose runs it (read-only root filesystem, tmpfs /tmp, no
capabilities), with a Docker volume at /etc/nginx/tls laid out as the ACME contract says
(docs/architecture.md, "ACME certificates"): `sites/<domain>` a symlink to
`versions/<domain>-<stamp>/` holding fullchain.pem (0644) and privkey.pem (0600), owned by 101,
replaced with `mv -T`. Everything the tests create is removed at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import http.client
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
from built import built_image
from support import tls
from support.waiting import wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
LABEL = "slipway.test=nginx-sites"
TLS = "/etc/nginx/tls"
# Bounded waits: nginx starts in well under a second, the watcher checks every second.
START_TIMEOUT = 30.0
RENEW_TIMEOUT = 30.0

# Writes one certificate into the volume (mounted at /tls) exactly like a renewal does: a new
# versions/ directory, a symlink under a temporary name, then `mv -T` over sites/<domain>.
INSTALL_SCRIPT = r"""
set -euo pipefail
cd /tls
mkdir -p sites versions
dir="versions/$DOMAIN-$STAMP"
mkdir "$dir"
printf '%s' "$CERT_PEM" >"$dir/fullchain.pem"
printf '%s' "$KEY_PEM" >"$dir/privkey.pem"
chmod 0755 "$dir"
chmod 0644 "$dir/fullchain.pem"
chmod 0600 "$dir/privkey.pem"
chown -R 101:101 "$dir"
chown 101:101 /tls /tls/sites /tls/versions
ln -s "../$dir" "sites/.$DOMAIN.new"
chown -h 101:101 "sites/.$DOMAIN.new"
mv -T "sites/.$DOMAIN.new" "sites/$DOMAIN"
"""

# The single-certificate layout: tls.crt and tls.key at the top of the volume.
SINGLE_SCRIPT = r"""
set -euo pipefail
printf '%s' "$CERT_PEM" >/tls/tls.crt
printf '%s' "$KEY_PEM" >/tls/tls.key
chmod 0644 /tls/tls.crt
chmod 0600 /tls/tls.key
chown 101:101 /tls /tls/tls.crt /tls/tls.key
"""


@dataclass(frozen=True)
class Cert:
    domain: str
    cert_pem: str
    key_pem: str
    der: bytes


def make_cert(domain: str) -> Cert:
    """A self-signed certificate for `domain` (CN and SAN), with a random serial."""
    issued = tls.make_cert(domain)
    return Cert(domain, issued.cert_pem.decode(), issued.key_pem.decode(), issued.der)


def _client_context() -> ssl.SSLContext:
    # The certificates are self-signed: the tests compare what is served, not a chain.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def served_cert(port: int, sni: str | None) -> bytes:
    """DER of the certificate nginx on 127.0.0.1:port presents for this SNI (None: no SNI)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        _client_context().wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


class SNIConnection(http.client.HTTPConnection):
    """HTTPS to 127.0.0.1 with a chosen SNI (and Host), keeping the connection alive."""

    def __init__(self, port: int, sni: str) -> None:
        super().__init__("127.0.0.1", port, timeout=5)
        self.sni = sni
        self.last_cert = b""

    def connect(self) -> None:
        super().connect()
        self.sock = _client_context().wrap_socket(self.sock, server_hostname=self.sni)

    def get(self, path: str) -> tuple[int, bytes]:
        """(status, body); `last_cert` is the certificate of the connection that answered."""
        self.request("GET", path, headers={"Host": self.sni})
        response = self.getresponse()
        body = response.read()
        der = self.sock.getpeercert(binary_form=True) if self.sock is not None else None
        self.last_cert = der or b""
        if response.will_close:
            # The answer said Connection: close; the next request opens a new connection.
            self.close()
        return response.status, body


def https_get(port: int, sni: str, path: str) -> tuple[int, bytes, bytes]:
    """(status, body, served certificate) of one request on a new connection."""
    conn = SNIConnection(port, sni)
    try:
        status, body = conn.get(path)
        return status, body, conn.last_cert
    finally:
        conn.close()


@dataclass
class Docker:
    """The engine, the nginx image, and everything created here (removed at teardown)."""

    client: Any
    image: str
    containers: list[Any] = field(default_factory=list)
    volumes: list[Any] = field(default_factory=list)

    def volume(self) -> str:
        volume = self.client.volumes.create(
            name=f"slipway-nginx-sites-{secrets.token_hex(4)}", labels={"slipway.test": "nginx"}
        )
        self.volumes.append(volume)
        return str(volume.name)

    def _one_off(self, volume: str, script: str, environment: dict[str, str]) -> None:
        """Run `script` as root in a throw-away container with the volume at /tls."""
        container = self.client.containers.run(
            self.image,
            entrypoint=["bash", "-c", script],
            user="0:0",
            environment=environment,
            volumes={volume: {"bind": "/tls", "mode": "rw"}},
            network_mode="none",
            labels={"slipway.test": "nginx-sites"},
            detach=True,
        )
        try:
            status = container.wait(timeout=60)
            logs = container.logs().decode(errors="replace")
            assert status["StatusCode"] == 0, f"writing the TLS volume failed:\n{logs}"
        finally:
            container.remove(force=True)

    def install_site(self, volume: str, cert: Cert, stamp: str) -> None:
        """sites/<domain> -> versions/<domain>-<stamp>/, swapped in atomically."""
        env = {
            "DOMAIN": cert.domain,
            "STAMP": stamp,
            "CERT_PEM": cert.cert_pem,
            "KEY_PEM": cert.key_pem,
        }
        self._one_off(volume, INSTALL_SCRIPT, env)

    def install_single(self, volume: str, cert: Cert) -> None:
        self._one_off(volume, SINGLE_SCRIPT, {"CERT_PEM": cert.cert_pem, "KEY_PEM": cert.key_pem})

    def run_nginx(self, volume: str, environment: dict[str, str], restart: bool = True) -> Any:
        """nginx as compose runs it, HTTPS published on a random loopback port.

        Without `restart`, a container that exits stays stopped (tests of start-up errors).
        """
        container = self.client.containers.run(
            self.image,
            environment={"NGINX_UPSTREAM": "127.0.0.1:9", **environment},
            volumes={volume: {"bind": TLS, "mode": "ro"}},
            read_only=True,
            tmpfs={"/tmp": "size=64m"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            ports={"8443/tcp": ("127.0.0.1", None)},
            restart_policy={"Name": "unless-stopped" if restart else "no"},
            labels={"slipway.test": "nginx-sites"},
            detach=True,
        )
        self.containers.append(container)
        return container

    def cleanup(self) -> None:
        for container in self.containers:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        for volume in self.volumes:
            with contextlib.suppress(docker.errors.NotFound):
                volume.remove(force=True)


@pytest.fixture(scope="module")
def nginx_image() -> str:
    """The nginx image of this checkout (content tag), built through compose when missing."""
    return built_image("nginx", "SLIPWAY_NGINX_TAG")


@pytest.fixture
def dock(nginx_image: str) -> Iterator[Docker]:
    handle = Docker(client=docker.from_env(), image=nginx_image)
    try:
        yield handle
    finally:
        handle.cleanup()


def _logs(container: Any) -> str:
    return str(container.logs().decode(errors="replace"))


def wait_for_https(container: Any, sni: str | None = None) -> int:
    """The published HTTPS port, once nginx completes a TLS handshake there."""

    def handshake() -> int:
        container.reload()
        assert container.status in {"created", "running"}, (
            f"nginx stopped ({container.status}):\n{_logs(container)}"
        )
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get("8443/tcp")
        if not bindings:
            return 0
        port = int(bindings[0]["HostPort"])
        served_cert(port, sni)
        return port

    return wait_for(
        handshake,
        what="TLS on 8443",
        timeout=START_TIMEOUT,
        interval=0.1,
        ignoring=(OSError,),
        details=lambda: _logs(container),
    )


def assert_config_valid(container: Any) -> None:
    code, output = container.exec_run(["nginx", "-t"])
    text = output.decode(errors="replace")
    assert code == 0, text
    assert "test is successful" in text
    # A duplicate server_name on 8443 would be a warning, not an error: none at all.
    assert "[warn]" not in text and "[emerg]" not in text, text


def wait_exit(container: Any) -> tuple[int, str]:
    """Exit code and log of a container that must stop by itself (it has no restart policy)."""
    status = container.wait(timeout=START_TIMEOUT)
    return int(status["StatusCode"]), _logs(container)


# ---------------------------------------------------------------------------- tests


def test_each_domain_gets_its_certificate_by_sni_and_the_first_one_is_the_default(
    dock: Docker,
) -> None:
    a, b = make_cert("a.test"), make_cert("b.test")
    volume = dock.volume()
    dock.install_site(volume, a, "1")
    dock.install_site(volume, b, "1")

    nginx = dock.run_nginx(volume, {"NGINX_TLS_SITES": "a.test b.test"})
    port = wait_for_https(nginx, "a.test")

    assert served_cert(port, "a.test") == a.der
    assert served_cert(port, "b.test") == b.der
    assert served_cert(port, "unknown.test") == a.der, "unknown SNI: the first domain's"
    assert served_cert(port, None) == a.der, "no SNI: the first domain's"
    assert_config_valid(nginx)
    for name, cert in (("a.test", a), ("b.test", b)):
        status, body, der = https_get(port, name, "/nginx-health")
        assert (status, body, der) == (200, b"ok\n", cert.der)


def test_a_renewed_certificate_is_served_without_restart_or_failed_request(
    dock: Docker,
) -> None:
    a, b_old, b_new = make_cert("a.test"), make_cert("b.test"), make_cert("b.test")
    volume = dock.volume()
    dock.install_site(volume, a, "1")
    dock.install_site(volume, b_old, "1")
    nginx = dock.run_nginx(
        volume, {"NGINX_TLS_SITES": "a.test b.test", "NGINX_RESOLVE_INTERVAL": "1"}
    )
    port = wait_for_https(nginx, "b.test")
    assert served_cert(port, "b.test") == b_old.der
    nginx.reload()
    started_at = nginx.attrs["State"]["StartedAt"]

    stop = threading.Event()
    failures: list[str] = []
    seen: dict[str, set[bytes]] = {"new connections": set(), "kept-alive connection": set()}
    counts = {"new connections": 0, "kept-alive connection": 0, "reconnects": 0}
    # The clients below pause 10 ms between requests: a steady load, not a wait for anything.

    def new_connections() -> None:
        while not stop.is_set():
            try:
                status, body, der = https_get(port, "b.test", "/nginx-health")
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"new connection: {exc!r}")
            else:
                if status != 200 or body != b"ok\n":
                    failures.append(f"new connection: {status} {body!r}")
                seen["new connections"].add(der)
                counts["new connections"] += 1
            time.sleep(0.01)

    def kept_alive() -> None:
        conn = SNIConnection(port, "b.test")
        try:
            while not stop.is_set():
                reused = conn.sock is not None
                try:
                    status, body = conn.get("/nginx-health")
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    if not reused:
                        failures.append(f"kept-alive connection, new: {exc!r}")
                        time.sleep(0.01)
                        continue
                    # A graceful reload closes idle keep-alive connections (old workers exit):
                    # like any HTTP client, send the request again on a new connection.
                    counts["reconnects"] += 1
                    try:
                        status, body = conn.get("/nginx-health")
                    except (OSError, http.client.HTTPException) as retry_exc:
                        failures.append(f"kept-alive connection, retry: {retry_exc!r}")
                        conn.close()
                        time.sleep(0.01)
                        continue
                if status != 200 or body != b"ok\n":
                    failures.append(f"kept-alive connection: {status} {body!r}")
                seen["kept-alive connection"].add(conn.last_cert)
                counts["kept-alive connection"] += 1
                time.sleep(0.01)
        finally:
            conn.close()

    threads = [threading.Thread(target=f, daemon=True) for f in (new_connections, kept_alive)]
    for thread in threads:
        thread.start()
    try:
        wait_for(
            lambda: all(b_old.der in s for s in seen.values()),
            what="both clients answered with the old certificate",
            timeout=START_TIMEOUT,
            interval=0.1,
        )
        dock.install_site(volume, b_new, "2")
        wait_for(
            lambda: served_cert(port, "b.test") == b_new.der,
            what="the renewed certificate of b.test served",
            timeout=RENEW_TIMEOUT,
            interval=0.1,
        )
        wait_for(
            lambda: all(b_new.der in s for s in seen.values()),
            what="both clients answered with the renewed certificate",
            timeout=RENEW_TIMEOUT,
            interval=0.1,
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    assert not any(t.is_alive() for t in threads)

    assert not failures, failures[:10]
    assert counts["new connections"] > 0 and counts["kept-alive connection"] > 0, counts
    assert served_cert(port, "a.test") == a.der, "a.test keeps its certificate"
    assert served_cert(port, None) == a.der
    nginx.reload()
    assert nginx.status == "running"
    assert nginx.attrs["State"]["StartedAt"] == started_at, "nginx was restarted"
    assert nginx.attrs["RestartCount"] == 0
    logs = _logs(nginx)
    assert "certificate (" in logs and "sites/b.test/fullchain.pem" in logs, logs[-3000:]
    assert "nginx reloaded" in logs


def test_a_listed_domain_without_a_certificate_stops_nginx_naming_the_file(
    dock: Docker,
) -> None:
    volume = dock.volume()
    dock.install_site(volume, make_cert("a.test"), "1")
    nginx = dock.run_nginx(volume, {"NGINX_TLS_SITES": "a.test b.test"}, restart=False)
    code, logs = wait_exit(nginx)
    assert code != 0, logs
    assert f"{TLS}/sites/b.test/fullchain.pem is missing" in logs, logs
    assert "NGINX_TLS_SITES" in logs


def test_a_malformed_site_list_stops_nginx_naming_the_variable(dock: Docker) -> None:
    volume = dock.volume()
    dock.install_site(volume, make_cert("a.test"), "1")
    nginx = dock.run_nginx(volume, {"NGINX_TLS_SITES": "a.test *.b.test"}, restart=False)
    code, logs = wait_exit(nginx)
    assert code != 0, logs
    assert "NGINX_TLS_SITES='a.test *.b.test' is not valid" in logs, logs


def test_without_sites_the_single_certificate_is_served(dock: Docker) -> None:
    cert = make_cert("localhost")
    volume = dock.volume()
    dock.install_single(volume, cert)
    nginx = dock.run_nginx(volume, {})
    port = wait_for_https(nginx)

    assert served_cert(port, None) == cert.der
    assert served_cert(port, "localhost") == cert.der
    assert served_cert(port, "other.test") == cert.der
    assert_config_valid(nginx)
    status, body, der = https_get(port, "localhost", "/nginx-health")
    assert (status, body, der) == (200, b"ok\n", cert.der)
