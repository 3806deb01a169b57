"""bench.backup's run: an Operation whose steps plan, load a throwaway PostgreSQL, copy it raw,
back it up with pgBackRest, restore it and count the rows; `run()` prints the table after."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker

from ops import config, docker_engine, images, paths, proc
from ops.backup import repository as backup
from ops.compose import detect_build
from ops.errors import OpsError
from ops.perf.bench_backup.containers import (
    CONF,
    DATA,
    LABEL,
    POLL_INTERVAL,
    PREFIX,
    RAW_COPY,
    REPO,
    SCRATCH,
    SOCKET,
    Containers,
    run_argv,
)
from ops.perf.bench_backup.measure import (
    DEFAULT_SIZE,
    DISK_FACTOR,
    GB,
    MB,
    conf_global,
    disk_needed,
    format_gb,
    format_size,
    parse_copy_seconds,
    parse_elapsed,
    parse_size,
    plan_batches,
    rows_needed,
    timed,
)
from ops.perf.bench_backup.report import Results, report_lines
from ops.steps import Operation, Report, Runner, Step, format_duration, impacting, preflight

IMAGE_TAG_VARIABLE = "SLIPWAY_POSTGRES_TAG"
TABLE = "bench_listings"
CALIBRATION_ROWS = 20_000
BATCH_BYTES = 128 * MB  # rows inserted per statement (progress is printed after each)

# What the rows' descriptions are made of: real words compress like real listings do.
_PHRASES = (
    "Bright two-bedroom flat near the station, balcony facing south, lift and cellar.",
    "Renovated family house with garden, garage and a quiet street, schools nearby.",
    "Studio in the old town: high ceilings, wooden floors, shops around the corner.",
    "Office space on the third floor, open plan, meeting room, fibre internet ready.",
    "Sunny loft with a roof terrace, fitted kitchen, underfloor heating, no agency fee.",
    "Ground-floor apartment, step-free access, private parking space, pets welcome.",
    "Country cottage with stables and two hectares of meadow, fifteen minutes to town.",
    "Compact city apartment, furnished, all bills included, available from next month.",
)


@dataclass
class Options:
    """What `invoke bench.backup` was asked for."""

    size: str = DEFAULT_SIZE
    keep: bool = False
    process_max: int = 0  # 0: the environments' default (backup.process_max)
    timeout: float = 1800.0  # per command and per wait


VOLUMES = ("data", "repo", "socket", "copy", "restored")
CONTAINERS = ("postgres", "copy", "backup", "info", "du", "restore", "restored")


@dataclass
class State:
    """What the steps found and measured, for the ones after them and the table."""

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


class BenchBackup(Operation):
    """One run of the benchmark: its state, a step per method, the table of them at the bottom.

    Its containers and volumes are removed by the last step, or by `failed()` when a step
    fails (unless --keep).
    """

    def __init__(self, options: Options) -> None:
        self.options = options
        self.requested = parse_size(options.size)
        self.process_max = options.process_max or config.Backup.process_max
        if self.process_max < 1:
            raise OpsError(f"--process-max must be at least 1, got {options.process_max}")
        self.run_id = secrets.token_hex(3)
        self.title = f"invoke bench.backup --size={options.size} ({self.run_id})"
        self.state = State()
        # Throwaway secrets of this run, handed to the containers through our environment.
        env = {
            **os.environ,
            "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
            "PGBACKREST_REPO1_CIPHER_PASS": secrets.token_urlsafe(32),
            # compose.yaml's x-pgbackrest, with the environments' defaults (config.Backup).
            "PGBACKREST_REPO1_RETENTION_FULL": str(config.Backup.retention_days),
            "PGBACKREST_PROCESS_MAX": str(self.process_max),
            "PGBACKREST_COMPRESS_TYPE": config.Backup.compress,
            "PGBACKREST_PG1_SOCKET_PATH": SOCKET,
        }
        self.containers = Containers(self.run_id, env, options.timeout)

    # -- pre-flight --------------------------------------------------------------------------

    def plan(self) -> str:
        tag = detect_build().image_tags[IMAGE_TAG_VARIABLE]
        self.containers.image = f"slipway/postgres:{tag}"
        needed = disk_needed(self.requested)
        info = self.containers.docker(
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
            f"image {self.containers.image} (SLIPWAY_POSTGRES_TAG of this checkout)",
            f"containers and volumes {PREFIX}-{self.run_id}-*, "
            + ("kept afterwards (--keep)" if self.options.keep else "removed at the end"),
            f"pgBackRest process-max {self.process_max}, compress-type {config.Backup.compress}",
            free_note,
        ]
        for line in lines:
            print(f"    plan: {line}", flush=True)
        return self.containers.image

    # -- impacting ---------------------------------------------------------------------------

    def ensure_image(self) -> str:
        """The image the stack would run; built through compose (as `invoke build`) if missing."""
        engine = images.engine()
        image = self.containers.image
        built = "present"
        if not images.has_image(engine, image):
            _build_postgres(engine, image)
            if not images.has_image(engine, image):
                raise OpsError(f"`docker compose build postgres` did not produce {image}")
            built = "built"
        shown = self.containers.docker(
            run_argv(
                self.containers.name("info"),
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
            volume = self.containers.name(part)
            self.containers.docker(
                ["docker", "volume", "create", "--label", LABEL, volume], f"create {volume}"
            )
            self.state.created_volumes.append(volume)
        self.containers.server("postgres", self.containers.name("data"))
        self.containers.wait_ready("postgres")
        # The entrypoint's first start fails to archive a segment or two before it creates the
        # stanza (and succeeds later): only failures after this point are the run's.
        self.state.archive_failures = int(
            self.containers.psql(
                "postgres", "SELECT failed_count FROM pg_stat_archiver", "archiver stats"
            )
        )
        return self.containers.psql("postgres", "SHOW server_version", "server version")

    def load(self) -> str:
        """Rows like listings (about half repeated words, half hex digests) up to --size."""
        started = time.monotonic()
        self.containers.psql(
            "postgres",
            f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, title text NOT NULL, "
            "description text NOT NULL, price numeric(12, 2) NOT NULL, "
            "created_at timestamptz NOT NULL)",
            "create the table",
        )
        self.insert(1, CALIBRATION_ROWS)
        table, database = (
            int(v)
            for v in self.containers.psql(
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
        self.containers.psql("postgres", f"VACUUM (ANALYZE) {TABLE}", "vacuum")
        self.state.rows = total
        size = int(
            self.containers.psql(
                "postgres", "SELECT pg_database_size(current_database())", "database size"
            )
        )
        seconds = time.monotonic() - started
        return (
            f"{total:,} rows, database {format_size(size)} "
            f"({size / MB / seconds:.0f} MB/s with VACUUM)"
        )

    def insert(self, first: int, last: int) -> None:
        """Rows first..last of the table, made by PostgreSQL (nothing large crosses a pipe)."""
        array = "ARRAY[" + ", ".join("'" + p.replace("'", "''") + "'" for p in _PHRASES) + "]"
        self.containers.psql(
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
        self.containers.psql("postgres", "CHECKPOINT", "checkpoint")
        segment = self.containers.psql(
            "postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())", "current WAL segment"
        )
        self.containers.psql("postgres", "SELECT pg_switch_wal()", "switch the WAL segment")
        print(f"    waiting for the archive to hold {segment}", flush=True)
        server = self.containers.name("postgres")
        deadline = time.monotonic() + self.options.timeout
        while True:
            archived, failed, last_failed = self.containers.archiver("postgres")
            if archived and archived[:24] >= segment:
                break
            if time.monotonic() > deadline:
                raise OpsError(
                    f"WAL segment {segment} not archived within {self.options.timeout:.0f}s "
                    f"(last archived {archived or 'none'}, {failed} failure(s), last failed "
                    f"{last_failed or 'none'}): see `docker logs {server}`"
                )
            time.sleep(POLL_INTERVAL)
        waited = time.monotonic() - started
        sizes = self.containers.du(self.containers.name("data"), "pg_wal")
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
        seconds = self.containers.timed_tool(
            "copy",
            ["sh", "-c", RAW_COPY],
            [
                self.containers.mount("data", DATA, read_only=True),
                self.containers.mount("copy", SCRATCH),
            ],
            "raw copy",
        )
        self.state.measured["copy"] = seconds
        copied = self.containers.du(self.containers.name("copy"))["."]
        return f"{format_size(copied)} in {seconds:.1f}s: {self.raw / MB / seconds:.0f} MB/s"

    def backup(self) -> str:
        """`pgbackrest backup --type=full` in a container like the stack's `backup` service."""
        mounts = [
            self.containers.mount("data", DATA, read_only=True),
            self.containers.mount("repo", REPO),
            self.containers.mount("socket", SOCKET),
        ]
        # --log-level-console=info as backup-run has it: the log times the file copy.
        command = ["pgbackrest", "backup", "--type=full", "--log-level-console=info"]
        result = self.containers.tool("backup", timed(command), mounts, "pgBackRest full backup")
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
        result = self.containers.tool(
            "info",
            ["pgbackrest", "info", "--output=json"],
            [self.containers.mount("repo", REPO, read_only=True)],
            "pgbackrest info",
        )
        status, sets = backup.parse_info(result.stdout)
        if status != "ok" or len(sets) != 1:
            raise OpsError(f"expected one backup in the repository, found {len(sets)} ({status})")
        self.state.backed_up, self.state.stored = sets[0].size, sets[0].repo_size
        sizes = self.containers.du(self.containers.name("repo"), "backup", "archive")
        self.state.repo_volume = sizes["."]
        return (
            f"backup {sets[0].label}: {format_size(sets[0].repo_size)} stored of "
            f"{format_size(sets[0].size)}; volume {format_size(sizes['.'])} (backup "
            f"{format_size(sizes['backup'])}, WAL archive {format_size(sizes['archive'])})"
        )

    def stop_source(self) -> str:
        """The restored cluster archives into the same repository: only one may run."""
        self.containers.docker(
            ["docker", "stop", "-t", "120", self.containers.name("postgres")], "stop PostgreSQL"
        )
        return "stopped (fast shutdown)"

    def restore(self) -> str:
        """The image's backup-restore (what `invoke restore` runs) into an empty volume."""
        seconds = self.containers.timed_tool(
            "restore",
            ["backup-restore"],
            [
                self.containers.mount("restored", DATA),
                self.containers.mount("repo", REPO, read_only=True),
            ],
            "pgbackrest restore",
        )
        self.state.measured["restore files"] = seconds
        return f"{seconds:.1f}s"

    def start_restored(self) -> str:
        started = time.monotonic()
        self.containers.server("restored", self.containers.name("restored"))
        self.containers.wait_ready("restored")
        seconds = time.monotonic() - started
        recovering = self.containers.psql(
            "restored", "SELECT pg_is_in_recovery()", "recovery state"
        )
        if recovering != "f":
            raise OpsError("the restored server accepts connections but is still in recovery")
        self.state.measured["restore start"] = seconds
        return f"{seconds:.1f}s until promoted and accepting connections"

    def verify(self) -> str:
        count = f"SELECT count(*) FROM {TABLE}"  # noqa: S608  # nosec B608: a constant
        rows = int(self.containers.psql("restored", count, "count rows"))
        if rows != self.state.rows:
            raise OpsError(f"the restored table has {rows:,} rows, the source {self.state.rows:,}")
        return f"{rows:,} rows, as in the source"

    def cleanup(self) -> str:
        """Remove this run's containers and volumes (by their exact names), or list them."""
        self.state.cleaned = True
        containers = [self.containers.name(p) for p in CONTAINERS]
        volumes = self.state.created_volumes
        if self.options.keep:
            servers = [self.containers.name("postgres"), self.containers.name("restored")]
            print(
                f"    kept; remove with: docker rm -f {' '.join(servers)} && "
                f"docker volume rm {' '.join(volumes)}",
                flush=True,
            )
            return "kept (--keep)"
        self.containers.docker(
            ["docker", "rm", "-f", "-v", *containers], "remove containers", check=False
        )
        if volumes:
            self.containers.docker(["docker", "volume", "rm", *volumes], "remove volumes")
        return f"{len(volumes)} volume(s) and the containers removed"

    # -- the results ---------------------------------------------------------------------------

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
            f"bench.backup: {format_gb(self.requested)} requested, {self.containers.image} "
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

    # -- the operation -----------------------------------------------------------------------

    def failed(self, error: BaseException) -> None:
        """A step failed: remove what the run made (unless --keep), then the error goes on."""
        if self.state.cleaned or not self.state.created_volumes:
            return
        print("cleaning up after the failure ...", flush=True)
        try:
            print(f"    {self.cleanup()}", flush=True)
        except OpsError as exc:
            print(f"    {exc}", flush=True)

    def steps(self) -> list[Step]:
        hint = "the run's containers and volumes are removed anyway (unless --keep)"
        return [
            preflight("check the Docker engine", docker_engine.check),
            preflight("plan the run", self.plan),
            impacting("ensure the postgres image (build it if missing)", self.ensure_image),
            impacting("start a throwaway PostgreSQL (image entrypoint)", self.start, hint),
            impacting(f"load {format_gb(self.requested)} of rows", self.load, hint),
            impacting("checkpoint, archive the WAL, measure the raw size", self.settle, hint),
            impacting("raw copy of the data directory (cp -a, fsync)", self.raw_copy, hint),
            impacting("pgBackRest full backup (as the backup service)", self.backup, hint),
            impacting("read the repository (pgbackrest info, du)", self.repository, hint),
            impacting("stop the source PostgreSQL", self.stop_source, hint),
            impacting("pgbackrest restore into an empty volume", self.restore, hint),
            impacting("start PostgreSQL on it until promoted", self.start_restored, hint),
            impacting("count the restored rows", self.verify, hint),
            impacting("remove the containers and volumes", self.cleanup),
        ]


def _build_postgres(engine: docker.DockerClient, image: str) -> None:
    """`docker compose build postgres` of this checkout, as `invoke build` builds it."""
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


def run(options: Options, runner: Runner | None = None) -> tuple[Report, Results]:
    """Run the benchmark; print each step, then the table. Removes what it made, even on
    failure, unless --keep."""
    bench = BenchBackup(options)
    report = bench.run(runner=runner)
    results = bench.results()
    print()
    for line in report_lines(results, bench.header()):
        print(line, flush=True)
    return report, results
