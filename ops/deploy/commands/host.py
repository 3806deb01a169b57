"""Facts about a deploy host and its plain files."""

from __future__ import annotations

from ops import ports
from ops.executor import Command, change, query, quote


def engine_version() -> Command:
    return query("docker version -f '{{.Server.Version}}'", "docker version")


def compose_version() -> Command:
    """The compose plugin's version (the host that runs compose)."""
    return query("docker compose version --short", "compose version")


def docker_root() -> Command:
    return query("docker info -f '{{.DockerRootDir}}'", "docker data root")


def writable_place(path: str) -> Command:
    """The nearest existing directory of `path` (itself, or the parent that will hold it),
    printed when this user may write there; exit 1 when it may not. Creates nothing."""
    return query(
        f'd={quote(path)}; while [ ! -e "$d" ]; do d=$(dirname "$d"); done; '
        'if [ -d "$d" ] && [ -w "$d" ]; then echo "$d"; else echo "$d"; exit 1; fi',
        f"check that {path} can be written",
    )


def free_kib(path: str) -> Command:
    return query(f"df -Pk {quote(path)} | awk 'NR==2 {{print $4}}'", f"free disk {path}")


def socket_tables() -> Command:
    return query(ports.SOCKET_TABLES, "ports in use")


def exists(path: str) -> Command:
    return query(f"test -e {quote(path)}", f"is there {path}")


def remove_file(path: str, what: str = "") -> Command:
    return change(f"rm -f {quote(path)}", what or f"remove {path}")


def make_directory(path: str) -> Command:
    return change(f"mkdir -p {quote(path)}", f"create {path}")


def clock() -> Command:
    """The host's time in seconds: locks are judged by the host's clock, never ours."""
    return query("date +%s", "read the host's clock")
