"""An S3 server for the backup tests: SeaweedFS from the slipway/sandbox-s3 image (built through
compose/sandbox.yaml when missing), over HTTPS with a certificate from a throwaway CA made here.

The server answers on port 8443 under a network alias of the caller's choosing (the certificate's
only name), with one bucket and one access key. Its data lives in the container: removing the
container removes everything it stored.
"""

from __future__ import annotations

import json
import os
import secrets
import string
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from support.docker import docker, inspect, logs
from support.waiting import wait_for

from ops import certs

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "slipway/sandbox-s3"
SERVICE = "sandbox-s3"
# What the image is built from: its tag is a digest of these (as for the other sandbox images).
BUILD_INPUTS = ("services/sandbox-s3", "compose/sandbox.yaml")
PORT = 8443
CONF_DIR = "/etc/sandbox-s3"


@dataclass(frozen=True)
class S3Server:
    container: str
    alias: str  # the host name clients use (network alias, certificate SAN)
    bucket: str
    key: str
    secret: str
    ca_file: Path  # PEM of the CA that signed the server's certificate
    directory: Path  # certificate, key and identities (mounted read-only)

    @property
    def port(self) -> int:
        return PORT


def image() -> str:
    """slipway/sandbox-s3:<content tag>, built with `docker compose -p slipway-sandbox -f
    compose/sandbox.yaml build sandbox-s3` when missing."""
    from ops.compose import detect_build
    from ops.images import engine, ensure_base, has_image
    from ops.sandbox.build import image_tag

    tag = image_tag(ROOT, BUILD_INPUTS)
    name = f"{IMAGE}:{tag}"
    client = engine()
    if has_image(client, name):
        return name
    ensure_base(client)
    build = detect_build()
    env = {
        **os.environ,
        "SLIPWAY_BUILD_CA": str(build.ca_bundle),
        "SLIPWAY_GIT_SHA": build.git_sha,
        "SLIPWAY_SANDBOX_S3_TAG": tag,
    }
    result = subprocess.run(
        ["docker", "compose", "-p", "slipway-sandbox", "-f", str(ROOT / "compose" / "sandbox.yaml"),
         "build", SERVICE],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and has_image(client, name), (
        f"building {name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return name


def write_tls(directory: Path, host: str) -> Path:
    """A throwaway CA (ca.crt) and a certificate for `host` signed by it (tls.crt, tls.key),
    made as `invoke certs.local` makes a local stack's (ops/certs.py)."""
    now = datetime.now(UTC)
    ca_key, ca = certs.make_ca("test S3", now)
    key, cert = certs.make_leaf(ca_key, ca, [host], now)
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(certs.key_pem(key))
    return ca_file


def start(container: str, network: str, alias: str, bucket: str, directory: Path) -> S3Server:
    """The server on `network` as `alias`, with `bucket` and a fresh key; waits until the
    bucket exists. `directory` receives the CA, certificate, key and identities."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_file = write_tls(directory, alias)
    alphabet = string.ascii_uppercase + string.digits
    key = "AK" + "".join(secrets.choice(alphabet) for _ in range(18))
    secret = secrets.token_urlsafe(30)
    identities = {
        "identities": [
            {
                "name": "backup",
                "credentials": [{"accessKey": key, "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (directory / "s3.json").write_text(json.dumps(identities))
    # The image's user (uid 10016) reads them through a read-only bind mount.
    directory.chmod(0o755)
    for name in ("tls.crt", "tls.key", "s3.json", "ca.crt"):
        (directory / name).chmod(0o644)
    docker(
        "run", "-d", "--name", container, "--network", network, "--network-alias", alias,
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
        "-v", f"{directory}:{CONF_DIR}:ro", "-e", f"S3_BUCKETS={bucket}", image(),
    )  # fmt: skip
    server = S3Server(container, alias, bucket, key, secret, ca_file, directory)
    wait_ready(server)
    return server


def wait_ready(server: S3Server, timeout: float = 120) -> None:
    def ready() -> bool:
        state = inspect(server.container, "{{.State.Status}} {{.State.Health.Status}}").split()
        out = logs(server.container)
        assert state[:1] == ["running"], f"{server.container} is {state}:\n{out[-4000:]}"
        return state == ["running", "healthy"] and f"bucket {server.bucket} ready" in out

    wait_for(
        ready,
        what=f"{server.container} ready",
        timeout=timeout,
        interval=1,
        details=lambda: logs(server.container)[-4000:],
    )
