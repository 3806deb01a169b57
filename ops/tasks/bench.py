"""Benchmark tasks (not tests: they print numbers and PASS/MISS against the targets)."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from ops.perf import bench_backup, bench_deploy
from ops.perf import bench_ingest as bench
from ops.tasks._common import DEFAULT_ENV, ENV_HELP, exits


@task(
    help={
        "env": ENV_HELP + "; its stack must be up (`invoke up --env <env>`)",
        "rows": f"listings in the synthetic feed (default {bench.DEFAULT_ROWS:,})",
        "chunk-rows": f"rows per POST (default {bench.DEFAULT_CHUNK_ROWS:,}, "
        "lowered to fit the feed size limit)",
        "workers": "worker containers during the run (default: the environment's "
        "replicas.worker; restored at the end)",
        "concurrency": f"uploads in flight at once (default {bench.DEFAULT_CONCURRENCY})",
        "timeout": "seconds each wait may take: uploads plus jobs, each psql run (default 1800)",
    }
)
def ingest(
    c: Context,
    env: str = DEFAULT_ENV,
    rows: int = bench.DEFAULT_ROWS,
    chunk_rows: int = 0,
    workers: int = 0,
    concurrency: int = bench.DEFAULT_CONCURRENCY,
    timeout: int = 1800,
) -> None:
    """Ingest throughput through nginx/API/worker next to raw COPY+upsert, same rows, same DB."""
    with exits():
        bench.run(
            bench.Options(
                env_name=env,
                rows=rows,
                chunk_rows=chunk_rows,
                workers=workers,
                concurrency=concurrency,
                timeout=float(timeout),
            )
        )


@task(help={"keep": "keep the benchmark's sandbox afterwards (remove it with sandbox.down)"})
def deploy(c: Context, keep: bool = False) -> None:
    """Deploy and rollback durations and failed requests under traffic, in a sandbox."""
    with exits():
        bench_deploy.run(keep=keep)


@task(
    help={
        "size": f"database to back up, e.g. 256MB, 1GB, 2GB (default {bench_backup.DEFAULT_SIZE}; "
        "MB and GB are binary)",
        "keep": "keep the benchmark's containers and volumes (slipway-bench-backup-*) afterwards",
        "process-max": "pgBackRest process-max (default: the environments' backup.process_max, 2)",
        "timeout": "seconds each command and each wait may take (default 1800)",
    }
)
def backup(
    c: Context,
    size: str = bench_backup.DEFAULT_SIZE,
    keep: bool = False,
    process_max: int = 0,
    timeout: int = 1800,
) -> None:
    """pgBackRest full backup and restore of a throwaway PostgreSQL next to a raw copy."""
    with exits():
        bench_backup.run(
            bench_backup.Options(
                size=size, keep=keep, process_max=process_max, timeout=float(timeout)
            )
        )
