"""What the sandbox's servers that are not hosts (the ACME server, the registry) share.

Each one is a container <name>-<role> on the sandbox network with its ports on loopback. Its
entrypoint waits for files (an HTTPS certificate made here by ops.certs, and more) put into it
as a tar ending with `ready`. It is reused while it runs the wanted image with the wanted files,
else replaced; then it is awaited over HTTPS from this machine, verified with its CA only.
"""

from __future__ import annotations

import base64
import io
import ssl
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException, NotFound

from ops import certs, secrets
from ops.errors import OpsError
from ops.sandbox.engine import remove_container
from ops.sandbox.names import (
    DEFAULT_NAME,
    LABEL,
    LOOPBACK,
    NETWORK,
    ROLE_FLAGS,
    ROLE_LABEL,
    role_container_name,
    role_of,
    up_command,
)


def server_options(
    name: str, role: str, image: str, ports: Mapping[str, int], **extra: Any
) -> dict[str, Any]:
    """Arguments of `containers.create` for a server of sandbox `name` that is not a host:
    labelled with the sandbox and its role, on the network, its ports on loopback."""
    cname = role_container_name(name, role)
    return {
        "image": image,
        "name": cname,
        "hostname": cname,
        "detach": True,
        "labels": {LABEL: name, ROLE_LABEL: role},
        "network": NETWORK,
        "ports": {f"{port}/tcp": (LOOPBACK, None) for port in ports.values()},
        "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
        **extra,
    }


def reuse_problem(attrs: Mapping[str, Any], image: str) -> str:
    """Why a found server container cannot be reused ("" when it can): stopped, other image."""
    state = attrs.get("State") or {}
    if state.get("Status") != "running":
        return f"not running ({state.get('Status') or 'unknown'})"
    if (attrs.get("Config") or {}).get("Image") != image:
        return "runs another image"
    return ""


def certificate_archive(
    cert: bytes, key: bytes, uid: int, extra: Mapping[str, bytes] | None = None
) -> bytes:
    """A tar of cert.pem (0644), key.pem (0600), the `extra` files (0600), then `ready`, owned
    by `uid`: what the ACME and registry images' entrypoints wait for (`ready` last, so every
    file is whole when it appears)."""
    buffer = io.BytesIO()
    now = time.time()
    entries = [
        ("cert.pem", cert, 0o644),
        ("key.pem", key, 0o600),
        *((name, data, 0o600) for name, data in (extra or {}).items()),
        ("ready", b"", 0o644),
    ]
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.uid = info.gid = uid
            info.mtime = int(now)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def install_files(container: Any, directory: str, archive: bytes) -> None:
    """Extract `archive` into `directory` of a container (the certificate of a waiting server)."""
    try:
        done = container.put_archive(directory, archive)
    except DockerException as exc:
        raise OpsError(f"cannot put the certificate into {container.name}: {exc}") from exc
    if not done:
        raise OpsError(f"cannot put the certificate into {container.name}:{directory}")


def start_or_reuse(
    engine: docker.DockerClient,
    cname: str,
    problem_of: Callable[[Any], str],
    start: Callable[[], Any],
) -> tuple[Any, bool]:
    """(container, reused): the container `cname` when `problem_of` finds nothing against it,
    else a new one from `start` (the old one removed first, saying why)."""
    try:
        found = engine.containers.get(cname)
    except NotFound:
        found = None
    if found is not None:
        problem = problem_of(found)
        if not problem:
            return found, True
        print(f"    replacing {cname}: {problem}", flush=True)
        remove_container(engine, cname)
    return start(), False


def ensure_server_certificate(directory: Path, label: str, names: Sequence[str]) -> certs.Result:
    """A server's HTTPS certificate for `names` (and 127.0.0.1, where this machine reaches it)
    from the CA kept in `directory`. Keys stay 0600 in the 0700 key directory: only the leaf
    key goes into the container."""
    result = certs.ensure(directory, label, names)
    result.paths.tls_key.chmod(0o600)
    return result


def https_get(url: str, ca_file: Path, timeout: float = 5.0) -> bytes:
    """GET an https URL on this machine, verified with `ca_file` only."""
    context = ssl.create_default_context(cafile=str(ca_file))
    if not url.startswith("https://"):
        raise OpsError(f"internal: {url} is not an https URL")
    # https only (checked above), verified with ca_file.
    with urllib.request.urlopen(url, context=context, timeout=timeout) as answer:  # noqa: S310  # nosec B310
        body: bytes = answer.read()
    return body


def https_status(
    url: str, ca_file: Path, auth: secrets.RegistryCredentials | None = None, timeout: float = 5.0
) -> int:
    """The HTTP status of a GET of an https URL on this machine, verified with `ca_file` only,
    with HTTP basic auth when `auth` is given."""
    if not url.startswith("https://"):
        raise OpsError(f"internal: {url} is not an https URL")
    context = ssl.create_default_context(cafile=str(ca_file))
    request = urllib.request.Request(url)  # noqa: S310  # nosec B310 - https only (above)
    if auth is not None:
        basic = base64.b64encode(f"{auth.user}:{auth.password}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {basic}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as answer:  # noqa: S310  # nosec B310
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def wait_answer(
    container: Any, url: str, ca_file: Path, timeout: float, probe: Callable[[], str]
) -> str:
    """Wait until `probe` (a request to `url`, verified with `ca_file`) stops failing with
    OSError/ValueError; its note and the seconds it took. A certificate that does not verify,
    a stopped container or the timeout fail with the container's log printed."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    last = "no answer yet"
    while True:
        try:
            note = probe()
        except (OSError, ValueError) as exc:  # refused, reset, not JSON yet: try again
            # urllib wraps TLS errors; a certificate that does not verify will not get better.
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise server_failed(
                    container,
                    f"{url} presents a certificate {ca_file.name} does not verify "
                    f"({reason.verify_message})",
                ) from exc
            last = f"{type(exc).__name__}: {exc}"
        else:
            return f"{note} after {time.monotonic() - started:.1f}s"
        container.reload()
        if container.status != "running":
            raise server_failed(container, f"{container.name} stopped ({container.status})")
        if time.monotonic() > deadline:
            raise server_failed(container, f"{url} did not answer within {timeout:.0f}s ({last})")
        time.sleep(0.5)


def server_failed(container: Any, problem: str, lines: int = 30) -> OpsError:
    """Print the server's log tail; the error naming `problem` and how to start afresh."""
    try:
        logs = container.logs(tail=lines).decode(errors="replace").rstrip()
    except DockerException as exc:
        logs = f"(cannot read it: {exc})"
    print(f"--- {container.name}: container log (last {lines} lines)\n{logs or '(empty)'}")
    labels = container.labels or {}
    again = up_command(ROLE_FLAGS.get(role_of(container), ""))
    return OpsError(
        f"{problem}; its log is above. Fix: `invoke sandbox.down --name "
        f"{labels.get(LABEL, DEFAULT_NAME)} --yes`, then `{again}` "
        "again (a new server and certificate)"
    )
