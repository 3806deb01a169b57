"""The standby's commands (ops/deploy/commands/standby.py), the scheduled stop run for real by
sh in a scratch directory, with a stand-in `docker` on PATH that records its arguments."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from ops.deploy import rollout
from ops.deploy.commands import standby

pytestmark = pytest.mark.unit

FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$DOCKER_LOG"
case "$1" in ps) echo c1; echo c2 ;; esac
"""


def stop_script(root: Path, until: int, slot: str = "green") -> str:
    line = standby.schedule_stop(
        "slipway-staging", str(root), slot, "20261206T2000Z-v1", until, stop_timeout=45
    )
    assert line.line.startswith("nohup sh -c ") and line.line.endswith(" &")
    assert line.changes and "stop the green replicas of 20261206T2000Z-v1" in line.display
    return shlex.split(line.line)[3]


def run_stop(root: Path, tmp_path: Path, script: str) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    log.touch()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_LOG": str(log)}
    subprocess.run(["sh", "-c", script], env=env, check=True, timeout=30)
    return log.read_text().splitlines()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "srv"
    (directory / "nginx").mkdir(parents=True)
    return directory


def test_the_scheduled_stop_removes_its_standby_under_the_lock_and_forgets_it(
    root: Path, tmp_path: Path
) -> None:
    until = int(time.time())
    (root / standby.RECORD).write_text(
        json.dumps({"release": "r", "slot": "green", "until": until})
    )
    calls = run_stop(root, tmp_path, stop_script(root, until))
    assert calls[0].startswith("ps -aq --filter label=com.docker.compose.project=slipway-staging")
    assert "label=org.slipway.slot=green" in calls[0]
    assert "label=org.slipway.release=20261206T2000Z-v1" in calls[0]
    assert calls[1:3] == ["stop -t 45 c1 c2", "rm -f c1 c2"]
    # Then its workers, parked or kept stopped since the switch: that release's only.
    assert "label=com.docker.compose.service=worker" in calls[3]
    assert "label=org.slipway.release=20261206T2000Z-v1" in calls[3]
    assert "--filter status=" not in calls[3]
    assert calls[4:] == ["stop -t 45 c1 c2", "rm -f c1 c2"]
    assert not (root / standby.RECORD).exists()
    assert not (root / "lock").exists()  # taken, then given back


@pytest.mark.parametrize("case", ["another standby recorded since", "its slot is live again"])
def test_the_scheduled_stop_leaves_what_is_no_longer_its_standby(
    root: Path, tmp_path: Path, case: str
) -> None:
    until = int(time.time())
    recorded = until + 60 if case == "another standby recorded since" else until
    (root / standby.RECORD).write_text(json.dumps({"until": recorded}))
    if case == "its slot is live again":
        (root / "nginx" / "slot-green").touch()
    assert run_stop(root, tmp_path, stop_script(root, until)) == []
    assert (root / standby.RECORD).exists() and not (root / "lock").exists()


def test_the_scheduled_stop_never_takes_a_lock_held_by_a_deploy(root: Path, tmp_path: Path) -> None:
    until = int(time.time())
    (root / standby.RECORD).write_text(json.dumps({"until": until}))
    (root / "lock").mkdir()
    (root / "lock" / "info.json").write_text('{"owner": "a deploy"}')
    script = stop_script(root, until).replace(f"+ {standby.LOCK_WAIT} ))", "+ 1 ))")
    script = script.replace("  sleep 5\n", "  sleep 0.2\n")
    assert run_stop(root, tmp_path, script) == []  # gave up waiting: the deploy decides
    assert (root / "lock" / "info.json").read_text() == '{"owner": "a deploy"}'


def test_only_slots_and_plain_release_ids_go_into_the_script(root: Path) -> None:
    with pytest.raises(ValueError, match="not a slot and a release id"):
        standby.schedule_stop("p", str(root), "red", "r1", 1, 45)
    with pytest.raises(ValueError, match="not a slot and a release id"):
        standby.schedule_stop("p", str(root), "blue", "r1; reboot", 1, 45)


class _Probes:
    """Containers whose probes answer from a script: one verdict list per name, in order."""

    def __init__(self, answers: dict[str, list[tuple[bool, str]]]) -> None:
        self.answers = answers

    def probe_all(self, names: list[str], command: object) -> dict[str, tuple[bool, str]]:
        return {
            n: self.answers[n].pop(0) if len(self.answers[n]) > 1 else self.answers[n][0]
            for n in names
        }

    def diagnose(self, name: str) -> str:
        return f"--- logs of {name}"


def test_a_worker_started_in_the_background_may_be_exited_for_a_moment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rollout.time, "sleep", lambda _: None)
    exited = (False, "container is exited")
    # Exited at the first probe, then healthy: within the settling time, it passes.
    probes = _Probes({"w-1": [exited, (True, "heartbeat 0.1s old")]})
    rollout.wait_passing(probes, ["w-1"], ["true"], 30.0, "worker", settle=15.0)  # type: ignore[arg-type]
    # Without settling time an exited container fails at once, naming it.
    probes = _Probes({"w-1": [exited, (True, "heartbeat 0.1s old")]})
    with pytest.raises(rollout.RolloutError, match="worker w-1 exited while starting"):
        rollout.wait_passing(probes, ["w-1"], ["true"], 30.0, "worker")  # type: ignore[arg-type]
    # A dead one is never waited for.
    probes = _Probes({"w-1": [(False, "container is dead")]})
    with pytest.raises(rollout.RolloutError, match="exited while starting"):
        rollout.wait_passing(probes, ["w-1"], ["true"], 30.0, "worker", settle=15.0)  # type: ignore[arg-type]
