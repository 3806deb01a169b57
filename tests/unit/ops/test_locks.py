"""The deploy lock's shell protocol, run for real by bash in a scratch directory (the same
commands the deploy sends over SSH)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import paramiko
import pytest
from support.recorder import Recorder
from support.shell import LocalShell

from ops.deploy import locks
from ops.errors import OpsError

pytestmark = pytest.mark.unit


def _lock(tmp_path: Path, ttl: int = 60) -> tuple[locks.DeployLock, LocalShell]:
    shell = LocalShell()
    return locks.DeployLock(shell, str(tmp_path / "env"), ttl), shell


def test_a_lock_is_taken_released_and_names_its_owner(tmp_path: Path) -> None:
    lock, _ = _lock(tmp_path)
    held = lock.acquire("v1", wait=0, owner="alice@laptop")
    holder, now = lock.status()
    assert holder is not None and holder.owner == "alice@laptop" and holder.version == "v1"
    assert "expires in" in holder.describe(now)
    assert held.token and lock.release()
    assert lock.status()[0] is None


def test_a_second_deploy_fails_naming_the_holder_after_waiting(tmp_path: Path) -> None:
    first, _ = _lock(tmp_path)
    first.acquire("v1", wait=0, owner="ci:run-7")
    second, _ = _lock(tmp_path)
    naps: list[float] = []
    with pytest.raises(OpsError, match=r"is locked: deploy of v1 by ci:run-7.*lock\.release"):
        second.acquire("v2", wait=0.01, sleep=naps.append, log=lambda _: None)
    assert first.status()[0] is not None  # untouched by the loser


def _stale_lock(tmp_path: Path) -> None:
    """The lock of a deploy by "ghost" that stopped refreshing it long ago."""
    lock_dir = tmp_path / "env" / "lock"
    lock_dir.mkdir(parents=True)
    stale = {"owner": "ghost", "token": "t0", "version": "v0", "started": 1, "refreshed": 1}
    (lock_dir / "info.json").write_text(json.dumps({**stale, "ttl": 5}))


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path: Path) -> None:
    _stale_lock(tmp_path)
    lock, _ = _lock(tmp_path)
    warnings: list[str] = []
    held = lock.acquire("v1", wait=0, owner="me", log=warnings.append)
    assert held.owner == "me"
    assert any("taking over a stale deploy lock" in w and "ghost" in w for w in warnings)


def test_a_stale_lock_with_an_unreadable_info_file_is_taken_over_too(tmp_path: Path) -> None:
    lock_dir = tmp_path / "env" / "lock"
    lock_dir.mkdir(parents=True)
    (lock_dir / "info.json").write_text("{half written")
    subprocess.run(["touch", "-d", "2020-01-01", str(lock_dir)], check=True)
    lock, _ = _lock(tmp_path)
    assert lock.acquire("v1", wait=0, owner="me", log=lambda _: None).owner == "me"


def test_a_lock_refreshed_since_it_was_judged_stale_is_not_broken(tmp_path: Path) -> None:
    old = locks.LockInfo("slow deploy", "tok", "v1", started=1, refreshed=1, ttl=5)
    lock_dir = tmp_path / "env" / "lock"
    lock_dir.mkdir(parents=True)
    (lock_dir / "info.json").write_text(json.dumps(old.__dict__))
    other, _ = _lock(tmp_path)
    judged, now = other.status()
    assert judged is not None and judged.expires() <= now  # looks stale...
    digest = other.last_digest
    holder, _ = _lock(tmp_path, ttl=5)
    holder.held = old
    holder.refresh()  # ...but its deploy was alive and refreshed in between
    other._break_stale(digest)
    current, _ = holder.status()
    assert current is not None and current.owner == "slow deploy"


def test_a_stale_lock_that_cannot_be_removed_fails_instead_of_spinning(tmp_path: Path) -> None:
    _stale_lock(tmp_path)
    lock, shell = _lock(tmp_path)
    lock._break_stale = lambda digest: None  # type: ignore[method-assign]  # e.g. permissions
    naps: list[float] = []
    with pytest.raises(OpsError, match="could not be removed"):
        lock.acquire("v1", wait=0.05, sleep=naps.append, log=lambda _: None)
    assert len(shell.ran) < 200


def test_refresh_fails_once_the_lock_was_taken_over(tmp_path: Path) -> None:
    mine, _ = _lock(tmp_path)
    mine.acquire("v1", wait=0, owner="me")
    theirs, _ = _lock(tmp_path)
    theirs.force_release()
    theirs.acquire("v2", wait=0, owner="them")
    with pytest.raises(OpsError, match="taken over"):
        mine.refresh()
    assert not mine.release()  # never removes someone else's lock
    assert theirs.status()[0] is not None


class Flaky(Recorder):
    """The heartbeat's connection: `fail` refreshes in a row raise a non-OpsError (the link
    dropped), then they succeed; `taken` answers as a lock another deploy took over."""

    def __init__(self, fail: int = 0, taken: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.on(r"^date \+%s$", stdout="1796000300\n")
        self.on_call(r"echo lost", self.refresh)
        self.taken = taken

    def refresh(self, command: object, stdin: object) -> str:
        if self.fail > 0:
            self.fail -= 1
            raise paramiko.ChannelException(1, "Administratively prohibited")
        return "lost\n" if self.taken else "ok\n"


def beating(connection: Recorder, beats: int, seconds_each: float) -> locks.Heartbeat:
    """A heartbeat run `beats` times by hand, the clock moving `seconds_each` between them."""
    main = Recorder()
    lock = locks.DeployLock(main, "/srv/slipway/staging", 900)
    lock.held = locks.LockInfo("me", "t0k3n", "v2", 1796000000, 1796000000, 900)
    heartbeat = locks.Heartbeat(lock, connect=lambda: connection)
    waits = iter([False] * beats + [True])
    heartbeat._stop.wait = lambda timeout=None: next(waits)  # type: ignore[method-assign]
    clock = iter(range(0, 10**6, int(seconds_each)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(locks.time, "monotonic", lambda: float(next(clock)))
        heartbeat._run()  # what its thread runs
    return heartbeat


def test_a_heartbeat_rides_out_a_dropped_connection_on_a_new_one() -> None:
    heartbeat = beating(Flaky(fail=2), beats=4, seconds_each=100)
    assert heartbeat.lost == ""
    heartbeat.check()


def test_a_heartbeat_unable_to_refresh_until_the_lock_would_look_stale_says_it_is_lost() -> None:
    heartbeat = beating(Flaky(fail=10), beats=10, seconds_each=200)
    assert "could not be refreshed for" in heartbeat.lost
    assert "Administratively prohibited" in heartbeat.lost
    with pytest.raises(OpsError, match="the deploy lock was lost"):
        heartbeat.check()


def test_a_heartbeat_that_finds_its_lock_taken_over_stops_at_once() -> None:
    heartbeat = beating(Flaky(taken=True), beats=3, seconds_each=1)
    assert "taken over by another deploy" in heartbeat.lost
