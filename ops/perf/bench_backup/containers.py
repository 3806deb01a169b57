"""bench.backup's containers: the run's names, the hardened `docker run` of the postgres image,
and the docker commands the steps are made of (start a server, wait for it, psql, du, a tool).

The run's throwaway secrets reach the containers through the environment of the docker CLI
(`-e NAME`), never a command line.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ops import proc
from ops.errors import OpsError
from ops.perf.bench_backup.measure import parse_du, parse_elapsed, timed

if TYPE_CHECKING:
    import subprocess  # nosec B404: the result type only; proc runs the commands

PREFIX = "slipway-bench-backup"
LABEL = "slipway.bench=backup"
POLL_INTERVAL = 0.2

# Paths inside the image (services/postgres/Dockerfile, compose/compose.yaml).
DATA = "/var/lib/postgresql/data"
REPO = "/var/lib/pgbackrest"
SOCKET = "/run/postgresql"
SCRATCH = "/var/lib/slipway-drill"  # owned by postgres in the image: the raw copy goes here
CONF = "/etc/pgbackrest/pgbackrest.conf"
# The raw copy: what a backup copies (everything but pg_wal's segments, which a backup leaves
# to the WAL archive) with `cp -a`, then an fsync of every file copied, as pgBackRest syncs
# what it writes (one `sync FILE...` per batch of names).
RAW_COPY = (
    f"cd {DATA} && for entry in *; do "
    f'if [ "$entry" = pg_wal ]; then mkdir {SCRATCH}/pg_wal; '
    f'else cp -a "$entry" {SCRATCH}/; fi; done '
    f"&& find {SCRATCH} -type f -exec sync -- {{}} +"
)
# Inside the containers: the tmpfs where the server puts its own socket (PGHOST of the image).
TMP = "/tmp"  # noqa: S108  # nosec B108: a path in the container, not on this machine
# Ready: PID 1 is the server itself (the entrypoint has exec'd it: the servers it starts for
# initdb and for recovery listen on /tmp too, then stop) and it accepts connections.
READY = f'[ "$(cat /proc/1/comm)" = postgres ] && pg_isready -q -h {TMP}'


HARDENING = (
    "--read-only",
    "--security-opt",
    "no-new-privileges:true",
    "--cap-drop",
    "ALL",
    "--network",
    "none",
    "--label",
    LABEL,
)


@dataclass(frozen=True)
class Mount:
    """A volume mounted into a container (`docker run --mount`)."""

    volume: str
    target: str
    read_only: bool = False

    def arg(self) -> str:
        return f"type=volume,source={self.volume},target={self.target}" + (
            ",readonly" if self.read_only else ""
        )


def run_argv(
    name: str,
    image: str,
    command: Sequence[str],
    mounts: Sequence[Mount] = (),
    env_names: Sequence[str] = (),
    server: bool = False,
) -> list[str]:
    """`docker run` of the image hardened as compose.yaml does; a server is detached with /tmp
    and /run on tmpfs and 256 MB of shared memory (as `postgres`), a tool runs once (--rm, /tmp
    on tmpfs, as `backup`). Environment values never appear: `-e NAME` takes them from ours."""
    argv = ["docker", "run", "--name", name, *HARDENING]
    if server:
        argv += ["-d", "--tmpfs", TMP, "--tmpfs", "/run", "--shm-size", "256m"]
    else:
        argv += ["--rm", "--tmpfs", TMP]
    for variable in env_names:
        argv += ["-e", variable]
    for mount in mounts:
        argv += ["--mount", mount.arg()]
    return [*argv, image, *command]


# The variables of compose.yaml's x-pgbackrest a one-off tool gets (the `backup` service's).
TOOL_ENV = (
    "PGBACKREST_REPO1_CIPHER_PASS",
    "PGBACKREST_REPO1_RETENTION_FULL",
    "PGBACKREST_PROCESS_MAX",
    "PGBACKREST_COMPRESS_TYPE",
    "PGBACKREST_PG1_SOCKET_PATH",
)
# The variables the server gets (the `postgres` service's).
SERVER_ENV = (
    "POSTGRES_PASSWORD",
    "PGBACKREST_REPO1_CIPHER_PASS",
    "PGBACKREST_REPO1_RETENTION_FULL",
    "PGBACKREST_PROCESS_MAX",
    "PGBACKREST_COMPRESS_TYPE",
)


class Containers:
    """The containers and volumes of one run (named <PREFIX>-<run id>-<part>) and the docker
    commands on them, each with the run's timeout."""

    def __init__(self, run_id: str, env: dict[str, str], timeout: float) -> None:
        self.run_id = run_id
        self.env = env  # the docker CLI's environment: ours plus the run's secrets
        self.timeout = timeout
        self.image = ""  # the postgres image, once the plan has named it

    def name(self, part: str) -> str:
        return f"{PREFIX}-{self.run_id}-{part}"

    def mount(self, part: str, target: str, read_only: bool = False) -> Mount:
        """The run's volume <part> mounted at `target`."""
        return Mount(self.name(part), target, read_only)

    def docker(
        self, argv: Sequence[str], what: str, quiet: bool = False, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a docker command with the run's timeout; OpsError with its output on failure."""
        result = proc.run(
            argv,
            env=self.env,
            capture=True,
            check=False,
            quiet=quiet,
            what=what,
            timeout=self.timeout,
        )
        if check and result.returncode != 0:
            detail = (result.stderr.strip() or result.stdout.strip())[-2000:]
            raise OpsError(f"{what} failed (exit {result.returncode}): {detail}")
        return result

    def tool(
        self, part: str, command: Sequence[str], mounts: Sequence[Mount], what: str
    ) -> subprocess.CompletedProcess[str]:
        """A one-off container of the image, like the stack's `backup` service."""
        argv = run_argv(self.name(part), self.image, command, mounts, TOOL_ENV)
        return self.docker(argv, what)

    def timed_tool(
        self, part: str, command: Sequence[str], mounts: Sequence[Mount], what: str
    ) -> float:
        """Seconds the command took inside its container (start-up left out)."""
        result = self.tool(part, timed(command), mounts, what)
        return parse_elapsed(result.stderr)

    def server(self, part: str, data: str) -> None:
        """PostgreSQL through the image's entrypoint, volumes as compose.yaml's `postgres`."""
        mounts = [Mount(data, DATA), self.mount("repo", REPO), self.mount("socket", SOCKET)]
        argv = run_argv(self.name(part), self.image, ["postgres"], mounts, SERVER_ENV, True)
        self.docker(argv, f"start PostgreSQL ({part})")

    def wait_ready(self, part: str) -> None:
        """Until the entrypoint has exec'd the server and it accepts connections: set up,
        recovered and promoted (the short servers of the entrypoint run while it is PID 1)."""
        container = self.name(part)
        print(f"    waiting for {container} to accept connections", flush=True)
        deadline = time.monotonic() + self.timeout
        while True:
            state = self.docker(
                ["docker", "inspect", "-f", "{{.State.Running}}", container],
                "inspect",
                quiet=True,
            ).stdout.strip()
            if state != "true":
                logs = self.docker(
                    ["docker", "logs", "--tail", "30", container], "logs", quiet=True, check=False
                )
                raise OpsError(
                    f"{container} stopped before it accepted connections:\n"
                    f"{(logs.stdout + logs.stderr).strip()[-3000:]}"
                )
            ready = self.docker(
                ["docker", "exec", container, "sh", "-c", READY],
                "pg_isready",
                quiet=True,
                check=False,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise OpsError(f"{container} did not accept connections within {self.timeout:.0f}s")
            time.sleep(POLL_INTERVAL)

    def archiver(self, part: str) -> tuple[str, str, str]:
        """pg_stat_archiver's last archived WAL, failure count and last failed WAL (quiet: it
        is polled)."""
        sql = (
            "SELECT coalesce(last_archived_wal, ''), failed_count, "
            "coalesce(last_failed_wal, '') FROM pg_stat_archiver"
        )
        argv = ["docker", "exec", self.name(part), "psql", "-X", "-At", "-h", TMP]
        argv += ["-d", "postgres", "-c", sql]
        result = self.docker(argv, "read pg_stat_archiver", quiet=True)
        archived, failed, last_failed = result.stdout.strip().split("|")
        return archived, failed, last_failed

    def psql(self, part: str, sql: str, what: str, database: str = "listings") -> str:
        argv = ["docker", "exec", self.name(part), "psql", "-X", "-q", "-At"]
        argv += ["-v", "ON_ERROR_STOP=1", "-h", TMP, "-d", database, "-c", sql]
        return self.docker(argv, what).stdout.strip()

    def du(self, volume: str, *subdirs: str) -> dict[str, int]:
        """Bytes (apparent sizes) of a volume and of directories in it."""
        root = "/mnt/volume"
        paths_ = [root, *(f"{root}/{d}" for d in subdirs)]
        mounts = [Mount(volume, root, read_only=True)]
        # -l: a directory inside another one is counted in both.
        result = self.tool("du", ["du", "-sbl", *paths_], mounts, f"size of {volume}")
        sizes = parse_du(result.stdout)
        return {(p[len(root) + 1 :] or "."): sizes.get(p, 0) for p in paths_}
