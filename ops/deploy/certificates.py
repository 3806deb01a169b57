"""The TLS certificates of a host's nginx.

tls: local-ca: the environment's local CA (ops/certs.py) makes the server certificate here;
a deploy unpacks it into the tls volume (owned by nginx), and nginx reloads when it changed.
tls: acme: the certbot service (compose profile acme) prepares the volumes (`slipway-acme
prepare`, as root with only the capabilities it needs) and obtains or renews the certificates
(`slipway-acme ensure`) in one-off containers; nginx reloads gracefully when one changed.
"""

from __future__ import annotations

import json

from ops import certs, compose, config, paths
from ops.compose import Build
from ops.deploy.commands import docker, nginx
from ops.deploy.hostcompose import RemoteCompose
from ops.deploy.images import nginx_ref
from ops.deploy.release import tls_tarball
from ops.deploy.rollout import reload_nginx
from ops.errors import OpsError
from ops.executor import Executor

# The compose service that talks to the ACME CA (not the sandbox's ACME test server).
CERTBOT_SERVICE = "certbot"
# `slipway-acme prepare` runs as root to give the volumes to nginx's uid: only these capabilities.
PREPARE_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER")
ACME_TIMEOUT = 600.0


def install_local_ca_certificate(
    env: config.Environment, build: Build, remote: Executor, nginx_container: str | None
) -> str:
    """The server certificate of the environment's local CA into the tls volume (made here
    when missing or due); nginx reloads when the volume's files changed: whichever machine
    deployed last, the volume's content is what it must serve."""
    paths.ensure_state_dir()
    directory = paths.env_state_dir(env.name)
    result = certs.ensure(directory, env.name, [*env.domains])
    tarball = tls_tarball(
        (directory / "tls.crt").read_bytes(), (directory / "tls.key").read_bytes()
    )
    command = nginx.install_certificate(compose.tls_volume(env), nginx_ref(build))
    changed = remote.stream_into(command, [tarball]).stdout.strip() == "changed"
    if changed and nginx_container is not None:
        reload_nginx(remote, nginx_container)
    state = "installed" if changed else "unchanged on the host"
    return f"certificate {result.reason}; {state}"


def prepare_acme(env: config.Environment, remote: Executor, rc: RemoteCompose) -> str:
    """The tls volume owned by nginx's uid, a placeholder for domains still without one."""
    remote.run(docker.create_volume(compose.tls_volume(env)))
    caps = [word for cap in PREPARE_CAPS for word in ("--cap-add", cap)]
    out = rc.run(
        "run", "--rm", "--no-deps", "-T", "--user", "0", *caps, CERTBOT_SERVICE, "prepare",
        what="prepare the ACME volumes",
    )  # fmt: skip
    return "ACME: " + acme_message(out, "prepared")


def ensure_certificates(rc: RemoteCompose, force: bool = False) -> str:
    """`slipway-acme ensure` in a one-off certbot container; nginx reloaded when one changed."""
    args = ["ensure", *(["--force"] if force else [])]
    try:
        out = rc.oneoff(CERTBOT_SERVICE, *args, what="ACME", timeout=ACME_TIMEOUT)
    except OpsError as exc:
        raise OpsError(
            f"the ACME CA did not issue every certificate: {exc}. nginx keeps serving the "
            "previous certificates (a placeholder for a new domain). Fix: check that each domain "
            "resolves to this host and that port 80 reaches nginx, then run the command again"
        ) from exc
    for line in out.splitlines():
        if line.strip():
            print(f"    {acme_message(line, line)}", flush=True)
    summary = acme_message(out, "done", prefix="ensure done: ")
    if "changed none" not in summary:
        reloaded = reload_project_nginx(rc.remote, rc.project)
        summary += (
            "; nginx reloaded" if reloaded else "; nginx not running (it loads them at start)"
        )
    return summary


def reload_project_nginx(remote: Executor, project: str) -> bool:
    """`nginx -t`, then a graceful reload of the project's running nginx, whether Compose or
    Swarm started it; False when none runs on this host."""
    found = remote.run(nginx.running(project)).stdout.split()
    for container in found:
        reload_nginx(remote, container)
    return bool(found)


def acme_message(output: str, default: str, prefix: str = "") -> str:
    """The message of the last JSON log line of slipway-acme (starting with `prefix`)."""
    found = default
    for line in output.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        message = data.get("message", "") if isinstance(data, dict) else ""
        if isinstance(message, str) and message.startswith(prefix):
            found = message
    return found
