"""Helpers shared by the service's integration tests (not fixtures: plain functions): the
settings as a worker's environment, a job's row, the big feed the crash and shutdown tests
stop a worker in the middle of, and what a worker logged."""

from __future__ import annotations

import json
import os
from subprocess import Popen
from typing import Any

from listings.settings import Settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support.waiting import wait_for_async

# Enough rows that a worker with small batches is caught in the middle of the job.
ROWS = 40_000


def settings_env(settings: Settings, **overrides: object) -> dict[str, str]:
    """The settings as LISTINGS_* variables, for a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTINGS_")}
    values = settings.model_dump()
    for name in ("database_url", "redis_url", "api_key_pepper"):
        values[name] = getattr(settings, name).get_secret_value()
    values.update(overrides)
    for name, value in values.items():
        if value is not None:
            env[f"LISTINGS_{name.upper()}"] = str(value)
    return env


async def job_row(engine: AsyncEngine, job_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT status, accepted, attempts FROM ingest_jobs WHERE id = :id"),
                    {"id": job_id},
                )
            )
            .mappings()
            .one()
        )
    return dict(row)


def big_feed(source: str) -> bytes:
    lines = ["source,source_id,title,description,kind,price,city,bedrooms"]
    lines += [
        f"{source},{i},Home {i},Quiet street number {i},apartment,{100_000 + i},Brest,{i % 5}"
        for i in range(ROWS)
    ]
    return ("\n".join(lines) + "\n").encode()


async def count(engine: AsyncEngine, source: str) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text("SELECT count(*) FROM listings WHERE source = :s"), {"s": source}
                )
            ).scalar_one()
        )


async def wait_until_partly_written(engine: AsyncEngine, job_id: str, rows: int = ROWS) -> int:
    """The rows the job has accepted, once it runs and has written some of its `rows` but not
    all (the test fails if it finished first: the feed is too small to be caught midway)."""

    async def partly() -> int:
        row = await job_row(engine, job_id)
        assert row["status"] != "done", "the job finished before the worker could be stopped"
        running = row["status"] == "running" and 0 < row["accepted"] < rows
        return int(row["accepted"]) if running else 0

    return await wait_for_async(partly, what=f"job {job_id} partly written", interval=0.01)


def worker_messages(proc: Popen[bytes]) -> list[str]:
    """The log messages of a worker that has exited."""
    raw = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    messages = []
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            messages.append(line)
            continue
        messages.append(str(entry.get("message", "")) if isinstance(entry, dict) else line)
    return messages


def stop_all(*procs: Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        proc.wait(timeout=30)
