"""`invoke bench.backup`: a pgBackRest full backup and a restore of a throwaway PostgreSQL, next to
a raw copy of the same data directory, measured in one run.

Not a test: it prints numbers and PASS/MISS against the targets (backup at least half as fast as
the raw copy; a restore of 1 GB in under a minute). Everything runs on containers and volumes of
its own, named slipway-bench-backup-<run>-*, made from the slipway/postgres image the stack runs
(built through compose when missing) and set up the way compose/compose.yaml sets up `postgres`
and `backup`: the image's entrypoint, the real pgBackRest settings (aes-256-cbc, lz4,
process-max), the backup in a second container over the shared socket with the data directory
read-only. They are removed at the end, also when a step fails, unless --keep.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
import subprocess  # nosec B404: docker argv lists built here, never a shell string
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ops import config, docker_engine, images, paths, proc
from ops.backup import repository as backup
from ops.compose import detect_build
from ops.errors import OpsError
from ops.perf.bench_ingest import verdict
from ops.steps import Report, Runner, Step, format_duration

DEFAULT_SIZE = "1GB"
MB = 2**20  # MB and GB are binary here, as in PostgreSQL (pg_size_pretty) and `du -m`
GB = 2**30
MIN_SIZE = 16 * MB
TARGET_RATIO = 0.5  # backup MB/s over raw copy MB/s
RESTORE_TARGET_PER_GB = 60.0  # seconds of restore per GB of requested size, scaled linearly
# Disk the run may fill, in multiples of --size: data (with pg_wal during the load), the raw
# copy, the repository (backup and WAL archive) and the restored copy.
DISK_FACTOR = 6

PREFIX = "slipway-bench-backup"
LABEL = "slipway.bench=backup"
IMAGE_TAG_VARIABLE = "SLIPWAY_POSTGRES_TAG"
TABLE = "bench_listings"
CALIBRATION_ROWS = 20_000
BATCH_BYTES = 128 * MB  # rows inserted per statement (progress is printed after each)
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

# Wraps a command run in a container: its own duration, measured inside (container start-up
# is not part of it), on the last line of stderr.
_TIMED = (
    's=$EPOCHREALTIME; "$@"; rc=$?; '
    'printf "bench-elapsed %s %s\\n" "$s" "$EPOCHREALTIME" >&2; exit $rc'
)
_ELAPSED = re.compile(r"^bench-elapsed ([0-9]+[.,][0-9]+) ([0-9]+[.,][0-9]+)$", re.MULTILINE)
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": MB, "g": GB, "t": 2**40}


# ------------------------------------------------------------------------------ pure parts


def parse_size(text: str) -> int:
    """Bytes of a --size such as 512MB, 1GB, 1.5GB, 2G or 256MiB (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise OpsError(f"--size={text!r} is not a size: write e.g. 256MB, 1GB or 2GB")
    number, unit = float(match.group(1)), match.group(2).lower()
    if not unit and match.group(3).lower() not in ("", "b"):
        raise OpsError(f"--size={text!r} is not a size: write e.g. 256MB, 1GB or 2GB")
    size = int(number * _UNITS[unit])
    if size < MIN_SIZE:
        raise OpsError(f"--size={text!r} is below the minimum of {MIN_SIZE // MB}MB")
    return size


def format_size(count: float) -> str:
    """Always MB (2^20 bytes), thousands separated: one unit keeps the lines comparable."""
    return f"{count / MB:,.0f} MB"


def format_gb(count: float) -> str:
    """1 GB, 0.25 GB, 1.50 GB: the requested size."""
    return f"{count / GB:.2f} GB".replace(".00 GB", " GB")


def restore_target(requested: int) -> float:
    """Seconds a restore may take: 60 s per GB of the requested size, scaled linearly."""
    return RESTORE_TARGET_PER_GB * requested / GB


def rows_needed(target: int, other: int, bytes_per_row: float) -> int:
    """Rows that bring the database to `target` bytes when `other` bytes are not the table."""
    if bytes_per_row <= 0:
        raise OpsError("internal: the calibration measured no bytes per row")
    return max(1, math.ceil((target - other) / bytes_per_row))


def plan_batches(first: int, total: int, per_batch: int) -> list[tuple[int, int]]:
    """Inclusive id ranges [first, total] cut into batches of at most per_batch rows."""
    per_batch = max(1, per_batch)
    return [
        (start, min(start + per_batch - 1, total)) for start in range(first, total + 1, per_batch)
    ]


def parse_elapsed(output: str) -> float:
    """Seconds of a command wrapped by _TIMED (its last `bench-elapsed <start> <end>` line)."""
    found = _ELAPSED.findall(output)
    if not found:
        raise OpsError(f"no duration in the command's output: {output.strip()[-300:]}")
    start, end = (float(v.replace(",", ".")) for v in found[-1])
    return end - start


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) P\d+ +\w+: (.*)$", re.MULTILINE)


def parse_copy_seconds(log: str) -> float | None:
    """Seconds pgBackRest spent copying files, from its info log: from `backup start archive`
    (the start checkpoint is done) to `execute ... backup stop`. None when the lines are missing
    (another pgBackRest version)."""
    started = stopped = None
    for stamp, message in _LOG_LINE.findall(log):
        moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f")
        if started is None and message.startswith("backup start archive"):
            started = moment
        elif started is not None and message.startswith("execute") and "backup stop" in message:
            stopped = moment
            break
    if started is None or stopped is None:
        return None
    return (stopped - started).total_seconds()


def parse_du(output: str) -> dict[str, int]:
    """`du -sb A B ...` output: path -> bytes."""
    sizes: dict[str, int] = {}
    for line in output.splitlines():
        count, sep, path = line.partition("\t")
        if sep and count.strip().isdigit():
            sizes[path.strip()] = int(count)
    return sizes


def conf_global(text: str) -> dict[str, str]:
    """The [global] options of a pgbackrest.conf."""
    options: dict[str, str] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if sep and section == "global":
            options[key.strip()] = value.strip()
    return options


def disk_needed(requested: int) -> int:
    return DISK_FACTOR * requested


@dataclass(frozen=True)
class Results:
    """What one run measured (bytes and seconds)."""

    requested: int
    rows: int
    volume: int  # du of the data volume
    wal: int  # the part of it in pg_wal, which a backup leaves to the WAL archive
    copy_s: float
    backup_s: float
    backup_copy_s: float | None  # the part of it copying files (None: not in pgBackRest's log)
    restore_files_s: float  # pgbackrest restore
    restore_start_s: float  # start of PostgreSQL on it until promoted and accepting connections
    backed_up: int  # what pgBackRest says it backed up (database size)
    stored: int  # what the backup takes in the repository (compressed, encrypted)
    repo_volume: int  # du of the repository volume: this backup plus the WAL archive

    @property
    def raw(self) -> int:
        """The raw size all three rates use: the data directory without pg_wal's segments."""
        return self.volume - self.wal

    @property
    def copy_rate(self) -> float:
        return self.raw / MB / self.copy_s if self.copy_s > 0 else 0.0

    @property
    def backup_rate(self) -> float:
        return self.raw / MB / self.backup_s if self.backup_s > 0 else 0.0

    @property
    def ratio(self) -> float:
        return self.backup_rate / self.copy_rate if self.copy_rate > 0 else 0.0

    @property
    def restore_s(self) -> float:
        return self.restore_files_s + self.restore_start_s

    @property
    def restore_rate(self) -> float:
        return self.raw / MB / self.restore_s if self.restore_s > 0 else 0.0

    @property
    def restore_target(self) -> float:
        return restore_target(self.requested)

    @property
    def compression(self) -> float:
        return self.backed_up / self.stored if self.stored > 0 else 0.0

    @property
    def ratio_ok(self) -> bool:
        return self.ratio >= TARGET_RATIO

    @property
    def restore_ok(self) -> bool:
        return self.restore_s < self.restore_target


def report_lines(r: Results, header: Sequence[str] = ()) -> list[str]:
    """The closing table: durations, rates, ratio, targets with PASS/MISS, the repository."""

    def row(label: str, seconds: str, rate: str = "", target: str = "", result: str = "") -> str:
        return f"  {label:<34} {seconds:>8} {rate:>9}  {target:<34} {result}".rstrip()

    def rate(seconds: float) -> str:
        return f"{r.raw / MB / seconds:.1f}" if seconds > 0 else "-"

    restore_target = (
        f"< {r.restore_target:.0f} s ({RESTORE_TARGET_PER_GB:.0f} s/GB x {format_gb(r.requested)})"
    )
    lines = [
        *header,
        f"  raw size: {format_size(r.raw)}, the data volume ({format_size(r.volume)}, "
        f"{r.rows:,} rows) without pg_wal ({format_size(r.wal)}), which a backup leaves to "
        "the WAL archive; MB = 2^20 bytes",
        row("", "seconds", "MB/s", "target", "result"),
        row("raw copy (cp -a but pg_wal, fsync)", f"{r.copy_s:.1f}", rate(r.copy_s)),
        row("pgBackRest full backup", f"{r.backup_s:.1f}", rate(r.backup_s)),
    ]
    if r.backup_copy_s is not None:
        lines += [
            row("  copying files", f"{r.backup_copy_s:.1f}", rate(r.backup_copy_s)),
            row("  checkpoint, stop, WAL check", f"{r.backup_s - r.backup_copy_s:.1f}"),
        ]
    return [
        *lines,
        row(
            "ratio backup/raw copy", "", f"{r.ratio:.2f}", f">= {TARGET_RATIO}", verdict(r.ratio_ok)
        ),
        row(
            "restore, until promoted",
            f"{r.restore_s:.1f}",
            rate(r.restore_s),
            restore_target,
            verdict(r.restore_ok),
        ),
        row("  pgbackrest restore", f"{r.restore_files_s:.1f}"),
        row("  start until promoted", f"{r.restore_start_s:.1f}"),
        f"  repository: the backup takes {format_size(r.stored)} of {format_size(r.backed_up)} "
        f"backed up ({r.compression:.2f}x smaller: lz4 and encryption); the volume holds "
        f"{format_size(r.repo_volume)} with the WAL archive",
        "  rates: raw size / seconds; the ratio is of the whole backup's rate; the restore: "
        "pgbackrest restore, then PostgreSQL started on it (WAL replayed, promoted, accepting "
        "connections)",
    ]


# ---------------------------------------------------------------------------- containers


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


def timed(command: Sequence[str]) -> list[str]:
    """The command wrapped so that it prints its own duration (parse_elapsed)."""
    return ["bash", "-c", _TIMED, "bench", *command]


@dataclass
class Options:
    size: str = DEFAULT_SIZE
    keep: bool = False
    process_max: int = 0  # 0: the environments' default (backup.process_max)
    timeout: float = 1800.0  # per command and per wait


VOLUMES = ("data", "repo", "socket", "copy", "restored")
CONTAINERS = ("postgres", "copy", "backup", "info", "du", "restore", "restored")


@dataclass
class State:
    image: str = ""
    conf: dict[str, str] = field(default_factory=dict)
    versions: str = ""
    rows: int = 0
    volume: int = 0
    wal: int = 0
    archive_failures: int = 0
    backup_copy_s: float | None = None
    host: str = ""
    load_start: float | None = None
    measured: dict[str, float] = field(default_factory=dict)
    backed_up: int = 0
    stored: int = 0
    repo_volume: int = 0
    created_volumes: list[str] = field(default_factory=list)
    cleaned: bool = False


class BenchBackup:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.requested = parse_size(options.size)
        self.process_max = options.process_max or config.Backup.process_max
        if self.process_max < 1:
            raise OpsError(f"--process-max must be at least 1, got {options.process_max}")
        self.run_id = secrets.token_hex(3)
        self.state = State()
        # Throwaway secrets of this run, handed to the containers through our environment.
        self.env = {
            **os.environ,
            "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
            "PGBACKREST_REPO1_CIPHER_PASS": secrets.token_urlsafe(32),
            # compose.yaml's x-pgbackrest, with the environments' defaults (config.Backup).
            "PGBACKREST_REPO1_RETENTION_FULL": str(config.Backup.retention_days),
            "PGBACKREST_PROCESS_MAX": str(self.process_max),
            "PGBACKREST_COMPRESS_TYPE": config.Backup.compress,
            "PGBACKREST_PG1_SOCKET_PATH": SOCKET,
        }

    # -- helpers ---------------------------------------------------------------------------

    def name(self, part: str) -> str:
        return f"{PREFIX}-{self.run_id}-{part}"

    def docker(
        self, argv: Sequence[str], what: str, quiet: bool = False, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a docker command with the options' timeout; OpsError with its stderr on failure."""
        if not quiet:
            proc.echo(argv)
        try:
            result = subprocess.run(  # noqa: S603  # nosec B603: argv list, no shell
                list(argv),
                env=self.env,
                capture_output=True,
                text=True,
                timeout=self.options.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise OpsError(f"{what} did not finish within {self.options.timeout:.0f}s") from exc
        except FileNotFoundError as exc:
            raise OpsError("the docker CLI is not on PATH") from exc
        if check and result.returncode != 0:
            detail = (result.stderr.strip() or result.stdout.strip())[-2000:]
            raise OpsError(f"{what} failed (exit {result.returncode}): {detail}")
        return result

    def tool(
        self, part: str, command: Sequence[str], mounts: Sequence[Mount], what: str
    ) -> subprocess.CompletedProcess[str]:
        """A one-off container of the image, like the stack's `backup` service."""
        env_names = [
            "PGBACKREST_REPO1_CIPHER_PASS",
            "PGBACKREST_REPO1_RETENTION_FULL",
            "PGBACKREST_PROCESS_MAX",
            "PGBACKREST_COMPRESS_TYPE",
            "PGBACKREST_PG1_SOCKET_PATH",
        ]
        argv = run_argv(self.name(part), self.state.image, command, mounts, env_names)
        return self.docker(argv, what)

    def timed_tool(
        self, part: str, command: Sequence[str], mounts: Sequence[Mount], what: str
    ) -> float:
        result = self.tool(part, timed(command), mounts, what)
        return parse_elapsed(result.stderr)

    def server(self, part: str, data: str) -> None:
        """PostgreSQL through the image's entrypoint, volumes as compose.yaml's `postgres`."""
        mounts = [
            Mount(data, DATA),
            Mount(self.name("repo"), REPO),
            Mount(self.name("socket"), SOCKET),
        ]
        env_names = [
            "POSTGRES_PASSWORD",
            "PGBACKREST_REPO1_CIPHER_PASS",
            "PGBACKREST_REPO1_RETENTION_FULL",
            "PGBACKREST_PROCESS_MAX",
            "PGBACKREST_COMPRESS_TYPE",
        ]
        argv = run_argv(self.name(part), self.state.image, ["postgres"], mounts, env_names, True)
        self.docker(argv, f"start PostgreSQL ({part})")

    def wait_ready(self, part: str) -> None:
        """Until the entrypoint has exec'd the server and it accepts connections: set up,
        recovered and promoted (the short servers of the entrypoint run while it is PID 1)."""
        container = self.name(part)
        print(f"    waiting for {container} to accept connections", flush=True)
        deadline = time.monotonic() + self.options.timeout
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
                raise OpsError(
                    f"{container} did not accept connections within {self.options.timeout:.0f}s"
                )
            time.sleep(POLL_INTERVAL)

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

    # -- pre-flight --------------------------------------------------------------------------

    def plan(self) -> str:
        tag = detect_build().image_tags[IMAGE_TAG_VARIABLE]
        self.state.image = f"slipway/postgres:{tag}"
        needed = disk_needed(self.requested)
        info = self.docker(
            ["docker", "info", "-f", "{{.DockerRootDir}}|{{.NCPU}}|{{.MemTotal}}"],
            "docker info",
            quiet=True,
        ).stdout.strip()
        root, _, rest = info.partition("|")
        cpus, _, memory = rest.partition("|")
        self.state.host = f"engine with {cpus} CPUs, {int(memory or 0) / GB:.0f} GB RAM"
        free_note = "free disk not checked (the engine's root is not on this machine)"
        if root and Path(root).is_dir():
            free = shutil.disk_usage(root).free
            if free < needed:
                raise OpsError(
                    f"{root} has {format_size(free)} free; a run of --size={self.options.size} "
                    f"needs about {format_size(needed)} ({DISK_FACTOR}x the size). Fix: a "
                    "smaller --size, or free disk space"
                )
            free_note = f"{format_size(free)} free in {root}, about {format_size(needed)} needed"
            # The engine runs here: its load is this machine's (other containers share it).
            self.state.load_start = os.getloadavg()[0]
        lines = [
            f"a {format_gb(self.requested)} database of synthetic rows in table {TABLE}",
            f"image {self.state.image} (SLIPWAY_POSTGRES_TAG of this checkout)",
            f"containers and volumes {PREFIX}-{self.run_id}-*, "
            + ("kept afterwards (--keep)" if self.options.keep else "removed at the end"),
            f"pgBackRest process-max {self.process_max}, compress-type {config.Backup.compress}",
            free_note,
        ]
        for line in lines:
            print(f"    plan: {line}", flush=True)
        return self.state.image

    # -- impacting ---------------------------------------------------------------------------

    def ensure_image(self) -> str:
        """The image the stack would run; built through compose (as `invoke build`) if missing."""
        engine = images.engine()
        image = self.state.image
        if not images.has_image(engine, image):
            images.ensure_base(engine)
            build = detect_build()
            env = {
                **os.environ,
                **build.image_tags,
                "SLIPWAY_ENV": "test",
                "SLIPWAY_VERSION": build.version,
                "SLIPWAY_GIT_SHA": build.git_sha,
                "SLIPWAY_BUILD_CA": str(build.ca_bundle),
                # Required by compose.yaml's interpolation; no container of it runs.
                "POSTGRES_PASSWORD": "unused",
                "REDIS_PASSWORD": "unused",
                "LISTINGS_API_KEY_PEPPER": "unused",
                "BACKUP_PASSPHRASE": "unused",
            }
            compose_file = paths.repo_root() / "compose" / "compose.yaml"
            proc.run(
                ["docker", "compose", "-p", PREFIX, "-f", str(compose_file), "build", "postgres"],
                env=env,
                what=f"build {image}",
            )
            if not images.has_image(engine, image):
                raise OpsError(f"`docker compose build postgres` did not produce {image}")
            built = "built"
        else:
            built = "present"
        shown = self.docker(
            run_argv(
                self.name("info"),
                image,
                ["sh", "-c", f"pgbackrest version; postgres --version; cat {CONF}"],
            ),
            "read the image's pgBackRest settings",
        ).stdout
        versions = [line.strip() for line in shown.splitlines()[:2]]
        self.state.versions = ", ".join(versions)
        self.state.conf = conf_global(shown)
        return f"{built}: {self.state.versions}"

    def start(self) -> str:
        for part in VOLUMES:
            volume = self.name(part)
            self.docker(
                ["docker", "volume", "create", "--label", LABEL, volume], f"create {volume}"
            )
            self.state.created_volumes.append(volume)
        self.server("postgres", self.name("data"))
        self.wait_ready("postgres")
        # The entrypoint's first start fails to archive a segment or two before it creates the
        # stanza (and succeeds later): only failures after this point are the run's.
        self.state.archive_failures = int(
            self.psql("postgres", "SELECT failed_count FROM pg_stat_archiver", "archiver stats")
        )
        return self.psql("postgres", "SHOW server_version", "server version")

    def load(self) -> str:
        """Rows like listings (about half repeated words, half hex digests) up to --size."""
        started = time.monotonic()
        self.psql(
            "postgres",
            f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, title text NOT NULL, "
            "description text NOT NULL, price numeric(12, 2) NOT NULL, "
            "created_at timestamptz NOT NULL)",
            "create the table",
        )
        self.insert(1, CALIBRATION_ROWS)
        table, database = (
            int(v)
            for v in self.psql(
                "postgres",
                f"SELECT pg_total_relation_size('{TABLE}'), pg_database_size(current_database())",
                "measure the calibration rows",
            ).split("|")
        )
        per_row = table / CALIBRATION_ROWS
        total = max(CALIBRATION_ROWS, rows_needed(self.requested, database - table, per_row))
        batches = plan_batches(CALIBRATION_ROWS + 1, total, int(BATCH_BYTES / per_row))
        print(
            f"    {per_row:.0f} bytes a row (table and primary key): {total:,} rows "
            f"in {len(batches)} batch(es)",
            flush=True,
        )
        for first, last in batches:
            self.insert(first, last)
            elapsed = time.monotonic() - started
            print(
                f"    {last:,} / {total:,} rows, {format_size(last * per_row)} "
                f"in {format_duration(elapsed)}",
                flush=True,
            )
        self.psql("postgres", f"VACUUM (ANALYZE) {TABLE}", "vacuum")
        self.state.rows = total
        size = int(
            self.psql("postgres", "SELECT pg_database_size(current_database())", "database size")
        )
        seconds = time.monotonic() - started
        return (
            f"{total:,} rows, database {format_size(size)} "
            f"({size / MB / seconds:.0f} MB/s with VACUUM)"
        )

    def insert(self, first: int, last: int) -> None:
        phrases = (
            "Bright two-bedroom flat near the station, balcony facing south, lift and cellar.",
            "Renovated family house with garden, garage and a quiet street, schools nearby.",
            "Studio in the old town: high ceilings, wooden floors, shops around the corner.",
            "Office space on the third floor, open plan, meeting room, fibre internet ready.",
            "Sunny loft with a roof terrace, fitted kitchen, underfloor heating, no agency fee.",
            "Ground-floor apartment, step-free access, private parking space, pets welcome.",
            "Country cottage with stables and two hectares of meadow, fifteen minutes to town.",
            "Compact city apartment, furnished, all bills included, available from next month.",
        )
        array = "ARRAY[" + ", ".join("'" + p.replace("'", "''") + "'" for p in phrases) + "]"
        self.psql(
            "postgres",
            f"INSERT INTO {TABLE} SELECT i, "  # noqa: S608  # nosec B608: constants and ints only
            f"'Listing ' || i || ' ' || md5(i::text), "
            f"({array})[1 + i % 8] || ' ' || ({array})[1 + (i / 8) % 8] "
            f"|| ' Ref ' || md5((i * 7)::text) || md5((i * 13)::text), "
            "(i % 100000) / 100.0, "
            "timestamptz '2026-01-01 00:00:00+00' + (i % 500000) * interval '1 minute' "
            f"FROM generate_series({int(first)}, {int(last)}) AS i",
            f"insert rows {first:,}..{last:,}",
        )

    def settle(self) -> str:
        """CHECKPOINT, switch the WAL segment, wait until the archive has it, then measure the
        data volume: the backup then starts from what a scheduled one finds at night."""
        started = time.monotonic()
        self.psql("postgres", "CHECKPOINT", "checkpoint")
        segment = self.psql(
            "postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())", "current WAL segment"
        )
        self.psql("postgres", "SELECT pg_switch_wal()", "switch the WAL segment")
        print(f"    waiting for the archive to hold {segment}", flush=True)
        deadline = time.monotonic() + self.options.timeout
        while True:
            archived, failed, last_failed = self.docker(
                [
                    "docker", "exec", self.name("postgres"), "psql", "-X", "-At", "-h", TMP,
                    "-d", "postgres", "-c",
                    "SELECT coalesce(last_archived_wal, ''), failed_count, "
                    "coalesce(last_failed_wal, '') FROM pg_stat_archiver",
                ],
                "read pg_stat_archiver",
                quiet=True,
            ).stdout.strip().split("|")  # fmt: skip
            if archived and archived[:24] >= segment:
                break
            if time.monotonic() > deadline:
                raise OpsError(
                    f"WAL segment {segment} not archived within {self.options.timeout:.0f}s "
                    f"(last archived {archived or 'none'}, {failed} failure(s), last failed "
                    f"{last_failed or 'none'}): see `docker logs {self.name('postgres')}`"
                )
            time.sleep(POLL_INTERVAL)
        waited = time.monotonic() - started
        sizes = self.du(self.name("data"), "pg_wal")
        self.state.volume, self.state.wal = sizes["."], sizes["pg_wal"]
        return (
            f"archived through {segment} after {waited:.1f}s "
            f"({int(failed) - self.state.archive_failures} failed attempt(s) during the load); "
            f"data volume {format_size(self.state.volume)}, pg_wal {format_size(self.state.wal)}"
        )

    @property
    def raw(self) -> int:
        return self.state.volume - self.state.wal

    def raw_copy(self) -> str:
        """cp -a of the data directory into an empty volume, then fsync of every file copied
        (pgBackRest syncs what it writes too)."""
        seconds = self.timed_tool(
            "copy",
            ["sh", "-c", RAW_COPY],
            [Mount(self.name("data"), DATA, read_only=True), Mount(self.name("copy"), SCRATCH)],
            "raw copy",
        )
        self.state.measured["copy"] = seconds
        copied = self.du(self.name("copy"))["."]
        return f"{format_size(copied)} in {seconds:.1f}s: {self.raw / MB / seconds:.0f} MB/s"

    def backup(self) -> str:
        """`pgbackrest backup --type=full` in a container like the stack's `backup` service."""
        mounts = [
            Mount(self.name("data"), DATA, read_only=True),
            Mount(self.name("repo"), REPO),
            Mount(self.name("socket"), SOCKET),
        ]
        # --log-level-console=info as backup-run has it: the log times the file copy.
        command = ["pgbackrest", "backup", "--type=full", "--log-level-console=info"]
        result = self.tool("backup", timed(command), mounts, "pgBackRest full backup")
        seconds = parse_elapsed(result.stderr)
        self.state.measured["backup"] = seconds
        self.state.backup_copy_s = parse_copy_seconds(result.stdout + result.stderr)
        copying = (
            f", copying files {self.state.backup_copy_s:.1f}s"
            if self.state.backup_copy_s is not None
            else ""
        )
        return f"{seconds:.1f}s: {self.raw / MB / seconds:.0f} MB/s{copying}"

    def repository(self) -> str:
        result = self.tool(
            "info",
            ["pgbackrest", "info", "--output=json"],
            [Mount(self.name("repo"), REPO, read_only=True)],
            "pgbackrest info",
        )
        status, sets = backup.parse_info(result.stdout)
        if status != "ok" or len(sets) != 1:
            raise OpsError(f"expected one backup in the repository, found {len(sets)} ({status})")
        self.state.backed_up, self.state.stored = sets[0].size, sets[0].repo_size
        sizes = self.du(self.name("repo"), "backup", "archive")
        self.state.repo_volume = sizes["."]
        return (
            f"backup {sets[0].label}: {format_size(sets[0].repo_size)} stored of "
            f"{format_size(sets[0].size)}; volume {format_size(sizes['.'])} (backup "
            f"{format_size(sizes['backup'])}, WAL archive {format_size(sizes['archive'])})"
        )

    def stop_source(self) -> str:
        """The restored cluster archives into the same repository: only one may run."""
        self.docker(["docker", "stop", "-t", "120", self.name("postgres")], "stop PostgreSQL")
        return "stopped (fast shutdown)"

    def restore(self) -> str:
        """The image's backup-restore (what `invoke restore` runs) into an empty volume."""
        seconds = self.timed_tool(
            "restore",
            ["backup-restore"],
            [Mount(self.name("restored"), DATA), Mount(self.name("repo"), REPO, read_only=True)],
            "pgbackrest restore",
        )
        self.state.measured["restore files"] = seconds
        return f"{seconds:.1f}s"

    def start_restored(self) -> str:
        started = time.monotonic()
        self.server("restored", self.name("restored"))
        self.wait_ready("restored")
        seconds = time.monotonic() - started
        recovering = self.psql("restored", "SELECT pg_is_in_recovery()", "recovery state")
        if recovering != "f":
            raise OpsError("the restored server accepts connections but is still in recovery")
        self.state.measured["restore start"] = seconds
        return f"{seconds:.1f}s until promoted and accepting connections"

    def verify(self) -> str:
        rows = int(self.psql("restored", f"SELECT count(*) FROM {TABLE}", "count rows"))  # noqa: S608  # nosec B608
        if rows != self.state.rows:
            raise OpsError(f"the restored table has {rows:,} rows, the source {self.state.rows:,}")
        return f"{rows:,} rows, as in the source"

    def cleanup(self) -> str:
        """Remove this run's containers and volumes (by their exact names), or list them."""
        self.state.cleaned = True
        containers = [self.name(p) for p in CONTAINERS]
        volumes = self.state.created_volumes
        if self.options.keep:
            servers = [self.name("postgres"), self.name("restored")]
            print(
                f"    kept; remove with: docker rm -f {' '.join(servers)} && "
                f"docker volume rm {' '.join(volumes)}",
                flush=True,
            )
            return "kept (--keep)"
        self.docker(["docker", "rm", "-f", "-v", *containers], "remove containers", check=False)
        if volumes:
            self.docker(["docker", "volume", "rm", *volumes], "remove volumes")
        return f"{len(volumes)} volume(s) and the containers removed"

    # -- the run -----------------------------------------------------------------------------

    def steps(self) -> list[Step]:
        hint = "the run's containers and volumes are removed anyway (unless --keep)"
        return [
            Step("check the Docker engine", docker_engine.check),
            Step("plan the run", self.plan),
            Step("ensure the postgres image (build it if missing)", self.ensure_image, True),
            Step("start a throwaway PostgreSQL (image entrypoint)", self.start, True, hint),
            Step(f"load {format_gb(self.requested)} of rows", self.load, True, hint),
            Step("checkpoint, archive the WAL, measure the raw size", self.settle, True, hint),
            Step("raw copy of the data directory (cp -a, fsync)", self.raw_copy, True, hint),
            Step("pgBackRest full backup (as the backup service)", self.backup, True, hint),
            Step("read the repository (pgbackrest info, du)", self.repository, True, hint),
            Step("stop the source PostgreSQL", self.stop_source, True, hint),
            Step("pgbackrest restore into an empty volume", self.restore, True, hint),
            Step("start PostgreSQL on it until promoted", self.start_restored, True, hint),
            Step("count the restored rows", self.verify, True, hint),
            Step("remove the containers and volumes", self.cleanup, True),
        ]

    def results(self) -> Results:
        m, s = self.state.measured, self.state
        return Results(
            requested=self.requested,
            rows=s.rows,
            volume=s.volume,
            wal=s.wal,
            copy_s=m["copy"],
            backup_s=m["backup"],
            backup_copy_s=s.backup_copy_s,
            restore_files_s=m["restore files"],
            restore_start_s=m["restore start"],
            backed_up=s.backed_up,
            stored=s.stored,
            repo_volume=s.repo_volume,
        )

    def header(self) -> list[str]:
        conf = self.state.conf
        return [
            f"bench.backup: {format_gb(self.requested)} requested, {self.state.image} "
            f"({self.state.versions})",
            f"  pgBackRest full backup: {conf.get('repo1-cipher-type', '?')}, "
            f"{config.Backup.compress} level {conf.get('compress-level', '?')}, "
            f"process-max {self.process_max}; restore of the latest, replaying the archive",
            f"  host: {self.state.host}"
            + (
                f", load average {self.state.load_start:.1f} at the start, "
                f"{os.getloadavg()[0]:.1f} at the end (other containers share the CPUs)"
                if self.state.load_start is not None
                else ""
            ),
        ]


def run(options: Options, runner: Runner | None = None) -> tuple[Report, Results]:
    """Run the benchmark; print each step, then the table. Removes what it made, even on
    failure, unless --keep."""
    bench = BenchBackup(options)
    runner = runner or Runner(f"invoke bench.backup --size={options.size} ({bench.run_id})")
    try:
        report = runner.run(bench.steps())
    except BaseException:
        if not bench.state.cleaned and bench.state.created_volumes:
            print("cleaning up after the failure ...", flush=True)
            try:
                print(f"    {bench.cleanup()}", flush=True)
            except OpsError as exc:
                print(f"    {exc}", flush=True)
        raise
    results = bench.results()
    print()
    for line in report_lines(results, bench.header()):
        print(line, flush=True)
    return report, results
