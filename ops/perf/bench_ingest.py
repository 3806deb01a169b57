"""Ingest benchmark: the whole pipeline (nginx → API → Redis → worker → PostgreSQL) next to a raw
COPY plus upsert of the same rows into the same database, measured in the same run.

Not a test: it prints numbers and PASS/MISS against the targets. It runs against a stack that is
already up (`invoke up --env <name>`), sends load to the environment's loopback HTTPS port only,
puts a timeout on every wait, and leaves the environment as it found it (the benchmark's
listings, jobs, scratch tables and API key are removed at the end, also when a step fails).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import re
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from ops import health, proc
from ops.errors import OpsError
from ops.perf import feeds
from ops.stack import local as stack
from ops.steps import Operation, Report, Runner, Step, impacting, preflight

BENCH_SOURCE = "slipway-bench"  # the `source` of every benchmark row: what cleanup deletes
DEFAULT_ROWS = 1_000_000
DEFAULT_CHUNK_ROWS = 50_000
DEFAULT_CONCURRENCY = 4
TARGET_RATE = 50_000.0  # listings per second, end to end
TARGET_RATIO = 0.5  # pipeline rate / raw rate
# A chunk must stay this far below the feed size limit: rows vary in length.
SIZE_HEADROOM = 0.9
SCRATCH_TABLE = "bench_scratch"
STAGING_TABLE = "bench_staging"
POLL_INTERVAL = 0.5
MAX_429_RETRIES = 20

# Columns of the synthetic feed in file order; the raw COPY reads the very same CSV.
COLUMNS: tuple[str, ...] = feeds.FIELDS
_UPDATABLE = [c for c in COLUMNS if c not in ("source", "source_id")]
_COLS = ", ".join(COLUMNS)


def upsert_sql(table: str, staging: str) -> str:
    """The set-based upsert the worker runs, aimed at `table` (built from constants only)."""
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATABLE)
    old = ", ".join(f"{table}.{c}" for c in _UPDATABLE)
    new = ", ".join(f"EXCLUDED.{c}" for c in _UPDATABLE)
    return (
        f"INSERT INTO {table} ({_COLS}) SELECT {_COLS} FROM {staging} "  # noqa: S608  # nosec B608
        f"ON CONFLICT (source, source_id) DO UPDATE SET {updates}, updated_at = now() "
        f"WHERE ({old}) IS DISTINCT FROM ({new})"
    )


# ------------------------------------------------------------------------------ pure parts


def max_chunk_rows(limit_bytes: int, row_bytes: int) -> int:
    """Most rows a chunk may hold to stay SIZE_HEADROOM below the feed limit."""
    if row_bytes <= 0:
        raise ValueError("row_bytes must be positive")
    return max(1, int(limit_bytes * SIZE_HEADROOM) // row_bytes)


def plan_chunks(total_rows: int, chunk_rows: int) -> list[int]:
    """Row counts of the chunks: as many full chunks as fit, then the rest."""
    if total_rows < 1:
        raise OpsError(f"--rows must be at least 1, got {total_rows}")
    if chunk_rows < 1:
        raise OpsError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    full, rest = divmod(total_rows, chunk_rows)
    return [chunk_rows] * full + ([rest] if rest else [])


def check_chunk_sizes(sizes: Sequence[int], limit_bytes: int) -> None:
    """Refuse chunks that nginx would answer 413 to, naming the fix."""
    too_big = [(i, s) for i, s in enumerate(sizes, start=1) if s > limit_bytes]
    if too_big:
        index, size = too_big[0]
        raise OpsError(
            f"chunk {index} is {size} bytes, above the feed limit of {limit_bytes} bytes "
            f"({len(too_big)} chunk(s) too big). Fix: pass a smaller --chunk-rows"
        )


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


@dataclass(frozen=True)
class Measurement:
    """rows written in seconds; `parts` are the named phases inside it (e.g. COPY, upsert)."""

    rows: int
    seconds: float
    parts: tuple[tuple[str, float], ...] = ()

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Results:
    pipeline: Measurement
    raw: Measurement
    pipeline_replay: Measurement
    raw_replay: Measurement

    @property
    def ratio(self) -> float:
        return self.pipeline.rate / self.raw.rate if self.raw.rate > 0 else 0.0

    @property
    def replay_ratio(self) -> float:
        raw = self.raw_replay.rate
        return self.pipeline_replay.rate / raw if raw > 0 else 0.0

    @property
    def rate_ok(self) -> bool:
        return self.pipeline.rate >= TARGET_RATE

    @property
    def ratio_ok(self) -> bool:
        return self.ratio >= TARGET_RATIO


def _line(label: str, m: Measurement) -> str:
    parts = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in m.parts)
    detail = f" ({parts})" if parts else ""
    return f"  {label:<34} {m.rate:>10,.0f} listings/s  {m.rows:,} rows in {m.seconds:.1f}s{detail}"


def report_lines(results: Results) -> list[str]:
    """The closing report: rates, ratio, targets with PASS/MISS, then the replay."""
    r = results
    return [
        "ingest benchmark (new rows):",
        _line("pipeline (HTTPS → API → worker)", r.pipeline),
        _line("raw COPY + upsert (psql)", r.raw),
        f"  {'ratio pipeline/raw':<34} {r.ratio:>10.2f}",
        f"  target: >= {TARGET_RATE:,.0f} listings/s end to end: "
        f"{verdict(r.rate_ok)} ({r.pipeline.rate:,.0f})",
        f"  target: >= {TARGET_RATIO} of raw: {verdict(r.ratio_ok)} ({r.ratio:.2f})",
        "replay (same rows again: every row is an update, unchanged rows are skipped):",
        _line("pipeline replay", r.pipeline_replay),
        _line("raw replay", r.raw_replay),
        f"  {'ratio pipeline/raw':<34} {r.replay_ratio:>10.2f}",
    ]


_TIMING = re.compile(r"^Time: ([0-9]+(?:\.[0-9]+)?) ms", re.MULTILINE)


def parse_psql_timings(output: str) -> list[float]:
    """Seconds of each statement psql timed (`\\timing on` prints `Time: 12.3 ms`)."""
    return [float(ms) / 1000 for ms in _TIMING.findall(output)]


def parse_timestamp(value: object) -> float | None:
    """Epoch seconds of an ISO 8601 timestamp from the API, None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def raw_csv(chunks: Sequence[bytes]) -> bytes:
    """One CSV of all chunks for the raw COPY: the first header row, then every data row."""
    if not chunks:
        return b""
    rest = [c.split(b"\n", 1)[1] if b"\n" in c else b"" for c in chunks[1:]]
    return b"".join([chunks[0], *rest])


# ---------------------------------------------------------------------------- the benchmark


@dataclass
class Options:
    env_name: str
    rows: int = DEFAULT_ROWS
    chunk_rows: int = 0  # 0: DEFAULT_CHUNK_ROWS, lowered to fit the feed limit
    workers: int = 0  # 0: as many worker containers as the environment runs
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = 1800.0  # per wait: uploads, jobs, each psql run


@dataclass
class Job:
    job_id: str
    rows: int
    status: str = "queued"
    finished_at: float | None = None
    detected_at: float | None = None
    accepted: int = 0
    rejected: int = 0
    error: str = ""


@dataclass
class State:
    chunks: list[bytes] = field(default_factory=list)
    key_name: str = ""
    key: str = ""
    job_ids: list[str] = field(default_factory=list)
    scaled_from: int | None = None
    measured: dict[str, Measurement] = field(default_factory=dict)
    cleaned: bool = False


class Bench(Operation):
    """`invoke bench.ingest`: the pipeline and a raw COPY + upsert of the same rows, side by
    side; the environment is left as it was, whatever happened."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.stack = stack.open_stack(options.env_name)
        self.env = self.stack.env
        self.state = State()
        self.limit = self.env.nginx.max_feed_bytes
        self.title = (
            f"invoke bench.ingest --env {options.env_name} --rows {options.rows} "
            f"({self.env.project_name})"
        )

    # -- helpers ---------------------------------------------------------------------------

    def postgres_container(self) -> str:
        for s in health.states(self.stack.docker(), self.env.project_name):
            if s.service == "postgres" and s.ready:
                return s.name
        raise OpsError(
            f"postgres of {self.env.project_name} is not running. "
            f"Fix: `invoke up --env {self.env.name}`"
        )

    def psql(self, commands: Sequence[str], stdin: str = "", what: str = "psql") -> str:
        """Run psql in the postgres container (local socket, as the postgres superuser)."""
        argv = ["docker", "exec", "-i", self.postgres_container(), "psql", "-X", "-q"]
        argv += ["-v", "ON_ERROR_STOP=1", "-d", "listings"]
        for command in commands:
            argv += ["-c", command]
        # Echoed shortened (a statement can be long), and the failure names the statement by
        # `what` rather than the whole command line.
        proc.echo([a if len(a) < 160 else a[:150] + "..." for a in argv])
        result = proc.run(
            argv,
            capture=True,
            check=False,
            quiet=True,
            what=what,
            stdin=stdin,
            timeout=self.options.timeout,
        )
        if result.returncode != 0:
            err = result.stderr.strip()[-2000:]
            raise OpsError(f"{what} failed (exit {result.returncode}): {err}")
        return result.stdout

    def count_bench_rows(self) -> int:
        out = self.psql(
            ["SELECT count(*) FROM listings WHERE source = " + _quote(BENCH_SOURCE)],  # noqa: S608  # nosec B608
            what="count benchmark rows",
        )
        numbers = re.findall(r"^\s*(\d+)\s*$", out, re.MULTILINE)
        return int(numbers[0]) if numbers else 0

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.env.https_url,
            verify=health.tls_context(self.stack.ca_file),
            timeout=httpx.Timeout(120.0, connect=10.0),
            headers={"Authorization": f"Bearer {self.state.key}"} if self.state.key else {},
        )

    # -- pre-flight --------------------------------------------------------------------------

    def check_running(self) -> str:
        current = health.states(self.stack.docker(), self.env.project_name)
        ready = {s.service for s in current if s.ready and s.status == "running"}
        missing = [s for s in ("postgres", "redis", "api", "nginx", "worker") if s not in ready]
        if missing:
            raise OpsError(
                f"{self.env.project_name} is not running (not ready: {', '.join(missing)}). "
                f"Fix: `invoke up --env {self.env.name}`, then run the benchmark again"
            )
        return health.wait_ready(f"{self.env.https_url}/ready", self.stack.ca_file, timeout=30)

    def plan(self) -> str:
        o = self.options
        # 256 bytes a row measured on the synthetic feed; 320 leaves room for longer ids.
        fit = max_chunk_rows(self.limit, 320)
        chunk_rows = o.chunk_rows or min(DEFAULT_CHUNK_ROWS, fit)
        counts = plan_chunks(o.rows, chunk_rows)
        self.chunk_counts = counts
        workers = o.workers or self.env.replicas.worker
        lines = [
            f"{o.rows:,} rows, source {BENCH_SOURCE!r}, in {len(counts)} chunk(s) of up to "
            f"{chunk_rows:,} rows (feed limit {self.limit:,} bytes)",
            f"{o.concurrency} concurrent upload(s) to {self.env.https_url}/api/v1/ingest",
            f"{workers} worker container(s)"
            + ("" if not o.workers else f" (environment: {self.env.replicas.worker})"),
            f"raw: COPY + upsert into {SCRATCH_TABLE} (LIKE listings INCLUDING ALL)",
            f"every wait times out after {o.timeout:.0f}s",
        ]
        for line in lines:
            print(f"    plan: {line}", flush=True)
        return f"{len(counts)} chunks"

    def generate(self) -> str:
        source = feeds.rows(self.options.rows, source=BENCH_SOURCE, seed=7)
        self.state.chunks = [feeds.to_csv(itertools.islice(source, n)) for n in self.chunk_counts]
        sizes = [len(c) for c in self.state.chunks]
        check_chunk_sizes(sizes, self.limit)
        return f"{sum(sizes) / 2**20:.0f} MiB, largest chunk {max(sizes) / 2**20:.1f} MiB"

    # -- impacting ---------------------------------------------------------------------------

    def remove_leftovers(self) -> str:
        found = self.count_bench_rows()
        if not found:
            return "none"
        self.delete_bench_rows()
        return f"deleted {found:,} rows of source {BENCH_SOURCE!r} left by an earlier run"

    def scale_workers(self) -> str:
        wanted = self.options.workers
        current = self.env.replicas.worker
        if not wanted or wanted == current:
            return f"{current} worker(s), unchanged"
        self._scale(wanted)
        self.state.scaled_from = current
        return f"{current} → {wanted}"

    def _scale(self, count: int) -> None:
        self.stack.compose().run(
            "up",
            "-d",
            *stack.UP_FLAGS,
            "--no-deps",
            "--scale",
            f"worker={count}",
            "worker",
            what="scale workers",
        )
        health.wait_healthy(
            self.stack.docker(), self.env.project_name, ["worker"], timeout=self.options.timeout
        )

    def create_key(self) -> str:
        self.state.key_name = f"bench-{int(time.time())}-{secrets.token_hex(3)}"
        result = stack.run_listings(
            self.stack, "apikey", "create", "--name", self.state.key_name, capture=True
        )
        lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        if not lines:
            raise OpsError("listings apikey create printed no key")
        self.state.key = lines[-1]
        return f"key {self.state.key_name!r} (revoked at the end)"

    def run_pipeline(self, label: str) -> str:
        counts = self.chunk_counts
        jobs: list[Job | None] = [None] * len(self.state.chunks)
        started = time.time()
        deadline = time.monotonic() + self.options.timeout

        def upload(index: int) -> Job:
            with self.client() as client:
                for _ in range(MAX_429_RETRIES):
                    if time.monotonic() > deadline:
                        break
                    response = client.post(
                        "/api/v1/ingest",
                        content=self.state.chunks[index],
                        headers={"Content-Type": "text/csv"},
                    )
                    if response.status_code == 429:
                        time.sleep(float(response.headers.get("Retry-After", "1") or 1))
                        continue
                    if response.status_code != 202:
                        raise OpsError(
                            f"chunk {index + 1}: POST /api/v1/ingest answered "
                            f"{response.status_code}: {response.text[:300]}"
                        )
                    job_id = str(response.json()["job_id"])
                    self.state.job_ids.append(job_id)
                    return Job(job_id, counts[index])
            raise OpsError(f"chunk {index + 1}: not accepted (rate limited or out of time)")

        with concurrent.futures.ThreadPoolExecutor(self.options.concurrency) as pool:
            futures = {pool.submit(upload, i): i for i in range(len(self.state.chunks))}
            for future in concurrent.futures.as_completed(futures):
                jobs[futures[future]] = future.result()
        uploaded = time.time() - started
        accepted = [j for j in jobs if j is not None]
        self.wait_jobs(accepted, deadline)
        ends = [j.finished_at or j.detected_at or time.time() for j in accepted]
        seconds = max(ends) - started
        total = sum(j.accepted for j in accepted)
        rejected = sum(j.rejected for j in accepted)
        if total != sum(counts) or rejected:
            raise OpsError(
                f"{label}: jobs accepted {total:,} and rejected {rejected:,} rows of "
                f"{sum(counts):,}: the pipeline lost or refused rows"
            )
        self.state.measured[label] = Measurement(
            total, seconds, (("uploads", uploaded), ("jobs after last upload", seconds - uploaded))
        )
        return f"{total / seconds:,.0f} listings/s ({total:,} rows in {seconds:.1f}s)"

    def wait_jobs(self, jobs: list[Job], deadline: float) -> None:
        """Poll the jobs in order until all are done; few requests, far below the rate limit."""
        pending = list(jobs)
        with self.client() as client:
            while pending:
                if time.monotonic() > deadline:
                    states = ", ".join(f"{j.job_id[:8]} {j.status}" for j in pending[:5])
                    raise OpsError(
                        f"{len(pending)} job(s) not done within {self.options.timeout:.0f}s "
                        f"({states}). Fix: check `invoke logs --env {self.env.name} "
                        "--service worker`"
                    )
                job = pending[0]
                response = client.get(f"/api/v1/ingest/{job.job_id}")
                if response.status_code == 429:
                    time.sleep(1.0)
                    continue
                if response.status_code != 200:
                    raise OpsError(
                        f"GET /api/v1/ingest/{job.job_id} answered {response.status_code}"
                    )
                body: dict[str, Any] = response.json()
                job.status = str(body.get("status"))
                if job.status == "failed":
                    raise OpsError(f"job {job.job_id} failed: {body.get('error')}")
                if job.status == "done":
                    job.detected_at = time.time()
                    job.finished_at = parse_timestamp(body.get("finished_at"))
                    job.accepted = int(body.get("accepted") or 0)
                    job.rejected = int(body.get("rejected") or 0)
                    pending.pop(0)
                    continue
                time.sleep(POLL_INTERVAL)

    def run_raw(self) -> str:
        # Text for proc.run: the synthetic feed is ASCII, so decoding it changes no byte.
        payload = raw_csv(self.state.chunks).decode()
        copy = f"\\copy {STAGING_TABLE} ({_COLS}) FROM pstdin WITH (FORMAT csv, HEADER true)"
        upsert = upsert_sql(SCRATCH_TABLE, STAGING_TABLE)
        setup = [
            f"DROP TABLE IF EXISTS {SCRATCH_TABLE}, {STAGING_TABLE}",
            f"CREATE TABLE {SCRATCH_TABLE} (LIKE listings INCLUDING ALL)",
            f"CREATE UNLOGGED TABLE {STAGING_TABLE} AS "  # noqa: S608 - constants only  # nosec B608
            f"SELECT {_COLS} FROM listings WITH NO DATA",
        ]
        notes = []
        for label, prefix in (("raw", setup), ("raw replay", [f"TRUNCATE {STAGING_TABLE}"])):
            out = self.psql(
                [*prefix, "\\timing on", copy, upsert, "\\timing off"],
                stdin=payload,
                what=f"{label} COPY + upsert",
            )
            timings = parse_psql_timings(out)
            if len(timings) != 2:
                raise OpsError(f"{label}: expected 2 timings from psql, got: {out[-500:]}")
            copy_s, upsert_s = timings
            self.state.measured[label] = Measurement(
                self.options.rows, copy_s + upsert_s, (("COPY", copy_s), ("upsert", upsert_s))
            )
            notes.append(f"{label} {self.options.rows / (copy_s + upsert_s):,.0f}/s")
        return ", ".join(notes)

    def delete_bench_rows(self) -> None:
        self.psql(
            ["DELETE FROM listings WHERE source = " + _quote(BENCH_SOURCE)],  # noqa: S608  # nosec B608
            what="delete benchmark rows",
        )

    def cleanup(self) -> str:
        """Leave the environment as it was; every part is attempted even if one fails."""
        done: list[str] = []
        problems: list[str] = []

        def attempt(what: str, action: Callable[[], object]) -> None:
            try:
                action()
                done.append(what)
            except (OpsError, httpx.HTTPError, OSError) as exc:
                problems.append(f"{what}: {exc}")

        attempt(
            "scratch tables dropped",
            lambda: self.psql(
                [f"DROP TABLE IF EXISTS {SCRATCH_TABLE}, {STAGING_TABLE}"], what="drop scratch"
            ),
        )
        attempt(f"listings of source {BENCH_SOURCE!r} deleted", self.delete_bench_rows)
        if self.state.job_ids:
            ids = ", ".join(_quote(j) for j in self.state.job_ids)
            attempt(
                f"{len(self.state.job_ids)} benchmark job(s) deleted",
                lambda: self.psql(
                    [f"DELETE FROM ingest_jobs WHERE id IN ({ids})"],  # noqa: S608  # nosec B608
                    what="delete jobs",
                ),
            )
        if self.state.key_name:
            attempt(
                f"API key {self.state.key_name!r} revoked",
                lambda: stack.apikey(self.env.name, "revoke", self.state.key_name),
            )
        if self.state.scaled_from is not None:
            scaled_from = self.state.scaled_from
            attempt(f"workers back to {scaled_from}", lambda: self._scale(scaled_from))
        self.state.cleaned = True
        if problems:
            raise OpsError("cleanup incomplete: " + "; ".join(problems))
        return "; ".join(done)

    # -- the run -----------------------------------------------------------------------------

    def failed(self, error: BaseException) -> None:
        """Clean up after a failed step too: the environment is left as it was."""
        if not self.state.cleaned and (self.state.key_name or self.state.job_ids):
            print("cleaning up after the failure ...", flush=True)
            try:
                print(f"    {self.cleanup()}", flush=True)
            except OpsError as exc:
                print(f"    {exc}", file=sys.stderr, flush=True)

    def steps(self) -> list[Step]:
        hint = "cleanup runs anyway: the benchmark's rows, jobs, scratch tables and key are removed"
        return [
            preflight(f"check that {self.env.project_name} runs and is ready", self.check_running),
            preflight("plan the benchmark", self.plan),
            preflight("generate the synthetic feed (ops/perf/feeds.py)", self.generate),
            impacting("remove leftovers of an earlier run", self.remove_leftovers),
            impacting("scale the workers (when --workers is given)", self.scale_workers, hint),
            impacting("create a throwaway API key", self.create_key, hint),
            impacting(
                "pipeline, new rows: POST the chunks over HTTPS, wait for every job",
                lambda: self.run_pipeline("pipeline"),
                hint,
            ),
            impacting(
                "pipeline, replay: the same chunks again (all updates)",
                lambda: self.run_pipeline("pipeline replay"),
                hint,
            ),
            impacting("raw: COPY + upsert in psql, new rows then replay", self.run_raw, hint),
            impacting("clean up: scratch tables, benchmark rows and jobs, API key", self.cleanup),
        ]


def _quote(value: str) -> str:
    """A SQL string literal for values this module generates (source name, UUIDs).

    Only letters, digits and '-' pass, so the S608 suppressions where it is used are safe.
    """
    if not re.fullmatch(r"[A-Za-z0-9-]+", value):
        raise OpsError(f"internal: refusing to quote {value!r}")
    return f"'{value}'"


def run(options: Options, runner: Runner | None = None) -> tuple[Report, Results]:
    """Run the benchmark; print each step, then the report. Cleans up even on failure."""
    bench = Bench(options)
    report = bench.run(runner=runner)
    m = bench.state.measured
    results = Results(m["pipeline"], m["raw"], m["pipeline replay"], m["raw replay"])
    print()
    for line in report_lines(results):
        print(line)
    print(
        f"environment {options.env_name} left as it was: the benchmark's listings "
        f"(source {BENCH_SOURCE!r}), its jobs and scratch tables are deleted and its API key "
        "is revoked"
    )
    return report, results
