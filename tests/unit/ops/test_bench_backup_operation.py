"""bench.backup as an Operation: its step table, the cleanup after a failed step, and the docker
commands of its containers (proc.run with the run's timeout), without Docker."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest

from ops import proc
from ops.errors import OpsError
from ops.perf import bench_backup
from ops.perf.bench_backup.containers import Containers
from ops.perf.bench_backup.operation import CONTAINERS
from ops.steps import PREFLIGHT, Runner, impacting

pytestmark = pytest.mark.unit


class FakeRun:
    """Stands in for proc.run: records every call, answers from `answers` (argv[1] -> result)."""

    def __init__(self, answers: dict[str, tuple[int, str, str]] | None = None) -> None:
        self.calls: list[tuple[list[str], dict[str, Any]]] = []
        self.answers = answers or {}

    def __call__(self, argv: Sequence[str], **options: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(argv), options))
        code, out, err = self.answers.get(argv[1], (0, "", ""))
        return subprocess.CompletedProcess(list(argv), code, out, err)

    @property
    def argvs(self) -> list[list[str]]:
        return [argv for argv, _ in self.calls]


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> FakeRun:
    fake = FakeRun()
    monkeypatch.setattr(proc, "run", fake)
    return fake


def quiet_runner() -> Runner:
    return Runner("bench", out=io.StringIO(), groups=False)


def test_the_steps_check_and_plan_first_change_things_after_and_clean_up_last() -> None:
    bench = bench_backup.BenchBackup(bench_backup.Options(size="64MB"))
    steps = bench.steps()
    assert [s.phase for s in steps[:2]] == [PREFLIGHT, PREFLIGHT]
    assert all(s.impacting for s in steps[2:])
    assert [s.name for s in steps[:3]] == [
        "check the Docker engine",
        "plan the run",
        "ensure the postgres image (build it if missing)",
    ]
    assert "load 0.06 GB of rows" in [s.name for s in steps]
    assert steps[-1].name == "remove the containers and volumes"
    # Every step after the image may leave containers behind: each says they are removed.
    assert all("removed anyway" in s.on_failure for s in steps[3:-1])


def test_a_failed_step_removes_the_runs_containers_and_volumes(
    fake_run: FakeRun, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = bench_backup.BenchBackup(bench_backup.Options(size="64MB"))

    def start() -> str:
        bench.state.created_volumes.append(bench.containers.name("data"))
        raise OpsError("the server did not start")

    monkeypatch.setattr(bench, "steps", lambda: [impacting("start", start)])
    with pytest.raises(OpsError, match="the server did not start"):
        bench.run(runner=quiet_runner())
    name = bench.containers.name
    assert fake_run.argvs == [
        ["docker", "rm", "-f", "-v", *(name(p) for p in CONTAINERS)],
        ["docker", "volume", "rm", name("data")],
    ]
    assert bench.state.cleaned
    out = capsys.readouterr().out
    assert "cleaning up after the failure ..." in out
    assert "1 volume(s) and the containers removed" in out


def test_with_keep_a_failed_run_removes_nothing_and_says_how_to(
    fake_run: FakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = bench_backup.BenchBackup(bench_backup.Options(size="64MB", keep=True))
    bench.state.created_volumes.append(bench.containers.name("data"))
    bench.failed(OpsError("boom"))
    assert fake_run.calls == []
    out = capsys.readouterr().out
    assert f"docker volume rm {bench.containers.name('data')}" in out
    assert "kept (--keep)" in out


def test_a_failure_before_any_volume_leaves_nothing_to_clean(fake_run: FakeRun) -> None:
    bench = bench_backup.BenchBackup(bench_backup.Options(size="64MB"))
    bench.failed(OpsError("the engine is down"))
    assert fake_run.calls == []
    assert not bench.state.cleaned


def test_a_docker_command_runs_through_proc_with_the_runs_timeout(fake_run: FakeRun) -> None:
    run = Containers("abc", {"PATH": "/bin", "POSTGRES_PASSWORD": "s3cret"}, timeout=42.0)
    run.docker(["docker", "inspect", "x"], "inspect", quiet=True)
    run.docker(["docker", "stop", "x"], "stop PostgreSQL")
    (_, polled), (_, shown) = fake_run.calls
    assert polled == {
        "env": {"PATH": "/bin", "POSTGRES_PASSWORD": "s3cret"},
        "capture": True,
        "check": False,
        "quiet": True,
        "what": "inspect",
        "timeout": 42.0,
    }
    assert shown["quiet"] is False


def test_a_failed_docker_command_names_its_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proc, "run", FakeRun({"volume": (1, "no space left", "")}))
    run = Containers("abc", {}, timeout=5.0)
    with pytest.raises(OpsError, match=r"^create v failed \(exit 1\): no space left$"):
        run.docker(["docker", "volume", "create", "v"], "create v")
    assert run.docker(["docker", "volume", "rm", "v"], "rm", check=False).returncode == 1


def test_a_docker_command_past_the_timeout_is_stopped_and_named() -> None:
    run = Containers("abc", {}, timeout=0.2)
    sleeper = [sys.executable, "-c", "import time; time.sleep(5)"]
    with pytest.raises(OpsError, match=r"^pg_isready did not finish within 0.2s and was stopped"):
        run.docker(sleeper, "pg_isready", quiet=True)


def test_the_archiver_state_is_read_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = (0, "000000010000000000000003|2|000000010000000000000002\n", "")
    fake = FakeRun({"exec": answer})
    monkeypatch.setattr(proc, "run", fake)
    run = Containers("abc", {}, timeout=5.0)
    assert run.archiver("postgres") == (
        "000000010000000000000003",
        "2",
        "000000010000000000000002",
    )
    argv, options = fake.calls[0]
    assert argv[:3] == ["docker", "exec", "slipway-bench-backup-abc-postgres"]
    assert options["quiet"] is True
