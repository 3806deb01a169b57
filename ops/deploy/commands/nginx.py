"""The stack's nginx on a host: finding it, the live slot of API replicas (its flag file),
testing and reloading its configuration, its workers still draining, the upstream file of
releases from before the slots, its certificate."""

from __future__ import annotations

from collections.abc import Sequence

from ops.deploy.commands.docker import PROJECT_LABEL, SERVICE_LABEL, SWARM_SERVICE_LABEL
from ops.executor import Command, change, query, quote

API_PORT = 8000
# Owner and modes of the certificate files in the tls volume: nginx runs as uid 101.
_INSTALL_CERTIFICATE = (
    "set -e; cd /tls; before=$(cat tls.crt tls.key 2>/dev/null | sha256sum); "
    "tar -x --same-owner -p -f -; chown 101:101 tls.crt tls.key; "
    "chmod 644 tls.crt; chmod 600 tls.key; after=$(cat tls.crt tls.key | sha256sum); "
    'if [ "$before" = "$after" ]; then echo same; else echo changed; fi'
)


def running(project: str) -> Command:
    """The project's running nginx containers, whether Compose or Swarm started them."""
    return query(
        f"docker ps -q --filter label={SWARM_SERVICE_LABEL}={quote(project + '_nginx')}; "
        f"docker ps -q --filter label={PROJECT_LABEL}={quote(project)} "
        f"--filter label={SERVICE_LABEL}=nginx "
        "--filter label=com.docker.compose.oneoff=False",
        "find nginx",
    )


def test_and_reload(container: str) -> Command:
    """`nginx -t`, then a graceful reload: open connections finish on the old workers."""
    return change(
        f"docker exec {quote(container)} nginx -t -q && "
        f"docker exec {quote(container)} nginx -s reload",
        "check and reload nginx",
    )


def draining(container: str) -> Command:
    """How many nginx workers of a previous configuration are still finishing requests."""
    return query(
        f"docker exec {quote(container)} sh -c "
        + quote("grep -l '[s]hutting down' /proc/[0-9]*/cmdline 2>/dev/null | wc -l"),
        "nginx workers still draining",
    )


SLOTS = ("blue", "green")
# The flag file that makes green the live slot (nginx/entrypoint: NGINX_UPSTREAM_SLOTS).
GREEN_FLAG = "slot-green"


def other_slot(slot: str) -> str:
    """The slot that is not `slot` (blue for anything but blue: containers from before the slots
    carry none)."""
    return "green" if slot == "blue" else "blue"


def live_slot(flags_dir: str) -> Command:
    """Which slot takes the traffic: prints `blue` or `green`."""
    flag = quote(f"{flags_dir}/{GREEN_FLAG}")
    return query(f"test -e {flag} && echo green || echo blue", "which API slot is live")


def set_live_slot(flags_dir: str, slot: str) -> Command:
    """The traffic to `slot`'s replicas: one file created or removed (atomic), read by nginx on
    every request; nothing reloads and no connection closes."""
    if slot not in SLOTS:
        raise ValueError(f"unknown slot {slot!r}")
    flag = quote(f"{flags_dir}/{GREEN_FLAG}")
    # The directory exists once nginx runs (its mount); a first deploy sets the flag before.
    line = f"mkdir -p {quote(flags_dir)} && touch {flag}" if slot == "green" else f"rm -f {flag}"
    return change(line, f"send the traffic to the {slot} API replicas")


def reads_upstream_file(container: str) -> Command:
    """Whether the running nginx is of a release from before the slots (its upstream from a
    file, reloaded to change): prints `file` or `slots`."""
    return query(
        "docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "
        + quote(container)
        + " | grep -q '^NGINX_UPSTREAM_FILE=' && echo file || echo slots",
        "how nginx finds the API",
    )


def upstream_text(names: Sequence[str]) -> str:
    """The upstream file: the API replicas an nginx of a release from before the slots proxies
    to (a rollback to one recreates it reading this file)."""
    lines = [
        "# Written by the rolling deploy (ops/deploy/rollout.py): the API replicas serving, for "
        "an nginx of a release from before the slots (NGINX_UPSTREAM_FILE).\n"
    ]
    lines += [f"server {n}:{API_PORT} max_fails=1 fail_timeout=3s;\n" for n in sorted(names)]
    return "".join(lines)


def install_certificate(volume: str, nginx_image: str) -> Command:
    """Unpack tls.crt and tls.key (a tar on standard input) into the tls volume, owned by
    nginx; prints `changed` or `same`."""
    return change(
        f"docker volume create {quote(volume)} >/dev/null && "
        "docker run --rm -i --network none --user 0 --entrypoint sh "
        f"-v {quote(volume)}:/tls {quote(nginx_image)} -c " + quote(_INSTALL_CERTIFICATE),
        "install the certificate",
        shown=f"install tls.crt and tls.key into the volume {volume} (with {nginx_image})",
    )
