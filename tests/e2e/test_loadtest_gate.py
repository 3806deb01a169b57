"""The load-test gate against the whole stack: a short smoke run passes and reports every
endpoint; the same run held to an impossible SLO fails naming the breach.

The stack starts empty, so a feed is ingested first: searches and viewer pages need listings
to return, and the detail endpoint needs ids seen in them.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ops.perf import feeds, loadtest

if TYPE_CHECKING:
    from conftest import Stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SEED_ROWS = 400  # every city x kind pair, ten times each


def _seed(stack: Stack, api_key: str) -> None:
    body = feeds.to_csv(feeds.rows(SEED_ROWS, source=f"e2e-loadtest-{uuid.uuid4().hex[:8]}"))
    auth = {"Authorization": f"Bearer {api_key}"}
    with stack.client() as client:
        queued = client.post(
            "/api/v1/ingest", content=body, headers={**auth, "Content-Type": "text/csv"}
        )
        assert queued.status_code == 202, queued.text
    job = stack.ingest_job(queued.json()["job_id"], api_key, timeout=60)
    assert job["status"] == "done" and job["accepted"] == SEED_ROWS, job


def _loadtest(stack: Stack, *args: str, key: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in stack.env.items() if k != loadtest.API_KEY_VAR}
    if key:
        env[loadtest.API_KEY_VAR] = key
    argv = [sys.executable, "-m", "ops.perf.loadtest", "--env=e2e", "--profile=smoke", *args]
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    print(result.stdout)  # the table, for whoever reads the test log
    return result


def _explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-4000:]}"


def test_smoke_passes_and_a_one_millisecond_p95_fails_naming_the_breach(
    stack: Stack, api_key: str, tmp_path: Path
) -> None:
    _seed(stack, api_key)

    reports = tmp_path / "reports"
    passed = _loadtest(stack, "--run-time=15s", f"--reports={reports}", key=api_key)
    assert passed.returncode == 0, _explain(passed)
    assert f"against e2e ({stack.base_url})" in passed.stdout
    assert f"TLS verified with {stack.ca_path}" in passed.stdout
    assert "all SLOs met" in passed.stdout
    (stats_csv,) = reports.glob("e2e-smoke-*_stats.csv")
    prefix = str(stats_csv).removesuffix("_stats.csv")
    assert Path(f"{prefix}.html").stat().st_size > 0
    stats = {s.name: s for s in loadtest.parse_stats(stats_csv, Path(f"{prefix}_failures.csv"))}
    expected = loadtest.expected_endpoints(loadtest.enabled_users(api_key))
    assert set(expected) == {
        "GET /api/v1/listings",
        "GET /",
        "GET /api/v1/listings/{id}",
        "POST /api/v1/ingest",
        "GET /api/v1/ingest/{id}",
    }
    for name in expected:
        assert stats[name].requests > 0, f"{name} got no requests\n{_explain(passed)}"
    assert stats["Aggregated"].rate_limited == 0, "smoke must stay within nginx's limits"

    impossible = tmp_path / "slo.yaml"
    impossible.write_text(
        "version: 99\ndefault: {max_error_percent: 1, p95_ms: 1, p99_ms: 1}\n", encoding="utf-8"
    )
    failed = _loadtest(
        stack, "--run-time=6s", f"--reports={tmp_path / 'strict'}", f"--slo={impossible}"
    )
    assert failed.returncode == loadtest.EXIT_BREACH, _explain(failed)
    assert "SLO BREACHED" in failed.stdout
    assert "slo.yaml version 99" in failed.stdout
    assert " - GET /api/v1/listings p95 " in failed.stdout
    assert "ms > 1 ms" in failed.stdout
