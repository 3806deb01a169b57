"""The ingest and deploy benchmarks' local commands: run through proc.run (with the options'
timeout, quiet where the benchmark prints its own line), failures named, without Docker."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from ops import config, paths, proc
from ops.errors import OpsError
from ops.perf import bench_deploy, bench_ingest
from ops.sandbox.files import MARKER, written_by_sandbox
from ops.stack import local as stack

pytestmark = pytest.mark.unit


class FakeRun:
    """Stands in for proc.run: records each call, answers with one result."""

    def __init__(self, code: int = 0, stdout: str = "", stderr: str = "") -> None:
        self.answer = (code, stdout, stderr)
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, argv: Sequence[str], **options: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(argv), options))
        return subprocess.CompletedProcess(list(argv), *self.answer)


@pytest.fixture
def ingest(monkeypatch: pytest.MonkeyPatch) -> bench_ingest.Bench:
    """The ingest benchmark on an environment file, its stack and postgres container faked."""
    env = config.parse({"name": "b", "target": "local"}, Path("/envs/b.yaml"), "b")
    monkeypatch.setattr(stack, "open_stack", lambda name: SimpleNamespace(env=env))
    monkeypatch.setattr(bench_ingest.Bench, "postgres_container", lambda self: "b-postgres-1")
    return bench_ingest.Bench(bench_ingest.Options("b", timeout=12.0))


def test_psql_feeds_its_input_with_the_timeout_and_echoes_a_shortened_line(
    ingest: bench_ingest.Bench, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeRun(stdout=" 42\n")
    monkeypatch.setattr(proc, "run", fake)
    statement = "SELECT " + "x" * 200
    assert ingest.psql([statement], stdin="id\n1\n", what="count rows") == " 42\n"
    ((argv, options),) = fake.calls
    assert argv[:4] == ["docker", "exec", "-i", "b-postgres-1"]
    assert argv[-2:] == ["-c", statement]
    assert options == {
        "capture": True,
        "check": False,
        "quiet": True,
        "what": "count rows",
        "stdin": "id\n1\n",
        "timeout": 12.0,
    }
    shown = capsys.readouterr().out
    assert shown.startswith("$ docker exec -i b-postgres-1 psql ")
    assert statement[:150] + "..." in shown
    assert statement not in shown


def test_psql_without_input_closes_its_input_rather_than_inheriting_ours(
    ingest: bench_ingest.Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRun()
    monkeypatch.setattr(proc, "run", fake)
    ingest.psql(["SELECT 1"], what="probe")
    assert fake.calls[0][1]["stdin"] == ""


def test_a_failed_psql_names_what_it_did_and_its_error(
    ingest: bench_ingest.Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proc, "run", FakeRun(3, "", "ERROR:  relation missing\n"))
    with pytest.raises(
        OpsError, match=r"^drop scratch failed \(exit 3\): ERROR:  relation missing$"
    ):
        ingest.psql(["DROP TABLE x"], what="drop scratch")


def test_the_deploy_benchmark_runs_our_tasks_quietly_from_the_repository(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeRun()
    monkeypatch.setattr(proc, "run", fake)
    bench_deploy._invoke({"SLIPWAY_VERSION": "v1"}, "deploy", "--env=bench-1")
    ((argv, options),) = fake.calls
    assert argv[1:] == ["-m", "invoke", "deploy", "--env=bench-1"]
    assert options == {
        "env": {"SLIPWAY_VERSION": "v1"},
        "cwd": paths.repo_root(),
        "capture": True,
        "check": False,
        "quiet": True,
    }


def test_a_failed_task_of_the_deploy_benchmark_shows_its_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(proc, "run", FakeRun(1, "step 3 failed\n", "Traceback: boom\n"))
    with pytest.raises(OpsError) as err:
        bench_deploy._invoke({}, "rollback", "--env=bench-1")
    message = str(err.value)
    assert message.startswith("`invoke rollback --env=bench-1` failed after ")
    assert "step 3 failed" in message
    assert "Traceback: boom" in message


def test_the_deploy_benchmark_raises_the_sandbox_limits_and_shortens_its_standby(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bench-1.yaml"
    path.write_text(
        f"{MARKER} sandbox bench-1\n"
        "name: bench-1\ntarget: ssh\nlistings_env: staging\n"
        "nginx: {rate_limit: 50, max_feed_size: 8m}\n"
        "deploy: {lock_wait: 5}\nhosts:\n  - ssh: deploy@127.0.0.1:2222\n"
    )
    bench_deploy._edit(path)
    data = yaml.safe_load(path.read_text())
    assert data["nginx"] == {**bench_deploy.LIMITS, "max_feed_size": "8m"}
    assert data["deploy"] == {
        "lock_wait": 5,
        "standby": bench_deploy.STANDBY,
        "watch": bench_deploy.WATCH,
    }
    parsed = config.parse(data, path, "bench-1")
    assert parsed.nginx.rate_limit == bench_deploy.LIMITS["rate_limit"]
    assert parsed.deploy.standby == bench_deploy.STANDBY
    assert parsed.deploy.watch == bench_deploy.WATCH < bench_deploy.STANDBY
    # Still sandbox.up's file: sandbox.down removes it with the sandbox's secrets.
    assert written_by_sandbox(path)


def test_a_deploy_is_judged_without_its_watch_which_the_line_states() -> None:
    table = (
        "step                                phase       result      time  note",
        "rolling update of the API           impacting   ok         12.0s  2 replica(s)",
        f"{bench_deploy.WATCH_STEP}  impacting   ok         17.5s  4000 request(s) in 20s",
        "total                                                        31.5s",
    )
    measured = bench_deploy.Measured(
        "deploy", 33.0, 5000, 0, "kept-alive 2500", 150.0, "v1 -> v2", table
    )
    assert measured.watched == 17.5
    line = measured.line(30.0)
    assert "  15.5s (target < 30s, then watched 17.5s: 33.0s in all)" in line
    assert line.endswith("PASS")
    slow = bench_deploy.Measured("deploy", 50.0, 5000, 0, "", 150.0, "v1 -> v2", table)
    assert slow.line(30.0).endswith("MISS")
    unwatched = bench_deploy.Measured("rollback", 4.0, 600, 0, "", 150.0, "v2 -> v1", table[:2])
    assert unwatched.watched == 0.0 and "then watched" not in unwatched.line(5.0)
