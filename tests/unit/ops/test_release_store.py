"""The release records on a host (ops/deploy/releases.py), run for real by bash in a scratch
directory (tests/support/shell.py): the same commands a deploy sends over SSH."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.shell import LocalShell

from ops.deploy import releases
from ops.deploy.releases import Release, ReleaseStore
from ops.errors import OpsError

pytestmark = pytest.mark.unit


def _store(tmp_path: Path, dry_run: bool = False) -> tuple[ReleaseStore, LocalShell, Path]:
    shell = LocalShell(dry_run=dry_run)
    root = tmp_path / "env"
    return ReleaseStore(shell, str(root) + "/"), shell, root


def _deployed(store: ReleaseStore, release_id: str, outcome: str = "succeeded") -> Release:
    release = Release(id=release_id, version=release_id.rsplit("-", 1)[-1], outcome=outcome)
    store.write_files(release_id, {"compose.yaml": "services: {}\n", "release.env": "A='1'\n"})
    store.record(release)
    return release


def test_the_current_release_is_a_symlink_replaced_in_one_rename(tmp_path: Path) -> None:
    store, _, root = _store(tmp_path)
    assert store.root == str(root)  # a trailing slash of deploy.remote_dir is dropped
    command = releases.point_current(store.root, "r1")
    assert command.line == (
        f"cd {root} && ln -sfn releases/r1 {root}/current.tmp && "
        f"mv -Tf {root}/current.tmp {root}/current"
    )
    assert command.changes
    assert releases.read_current(store.root).line == f"readlink {root}/current || true"
    assert store.current_id() is None  # nothing deployed yet
    _deployed(store, "20261130T090000Z-v1")
    _deployed(store, "20261130T100000Z-v2")
    store.set_current("20261130T090000Z-v1")
    store.set_current("20261130T100000Z-v2")
    assert os.readlink(root / "current") == "releases/20261130T100000Z-v2"
    assert store.current_id() == "20261130T100000Z-v2"
    # Replaced, never followed: no link left inside the previous release, no temporary one.
    assert sorted(p.name for p in (root / "releases" / "20261130T090000Z-v1").iterdir()) == [
        "compose.yaml",
        "release.env",
        "release.json",
    ]
    assert not (root / "current.tmp").exists()


def test_records_are_read_back_oldest_first_skipping_broken_ones(tmp_path: Path) -> None:
    store, _, root = _store(tmp_path)
    late = _deployed(store, "20261130T100000Z-v2")
    early = _deployed(store, "20261130T090000Z-v1", outcome="failed")
    broken = root / "releases" / "20261130T095000Z-vx"
    broken.mkdir()
    (broken / "release.json").write_text("{half written")
    assert store.history() == [early, late]
    assert store.get(late.id) == late
    assert (root / "releases" / late.id / "release.env").read_text() == "A='1'\n"
    known = f"{early.id}, {late.id}"
    with pytest.raises(
        OpsError, match=rf"no release 'zz' on deploy@scratch:22\. Known releases: {known}$"
    ):
        store.get("zz")


def test_an_environment_without_releases_has_no_history(tmp_path: Path) -> None:
    store, _, _ = _store(tmp_path)
    assert store.history() == []


def test_the_audit_log_gets_one_json_line_per_event_and_echoes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, _, root = _store(tmp_path)
    store.audit({"event": "deploy started", "release": "r1"})
    store.audit({"event": "deploy succeeded", "release": "r1"})
    lines = (root / "audit.log").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == ["deploy started", "deploy succeeded"]
    assert all(e["at"] and e["release"] == "r1" for e in events)
    echoed = capsys.readouterr().err
    assert f"deploy@scratch:22 $ append to {root}/audit.log: {lines[0]}" in echoed


def test_pruning_removes_the_oldest_beyond_keep_but_never_a_protected_one(
    tmp_path: Path,
) -> None:
    store, _, root = _store(tmp_path)
    ids = [f"20261130T0{hour}0000Z-v{hour}" for hour in range(6, 10)]
    for release_id in ids:
        _deployed(store, release_id)
    assert store.prune(keep=2, protect=[ids[0]]) == ids[1:3]
    assert sorted(p.name for p in (root / "releases").iterdir()) == [ids[0], ids[3]]
    assert store.prune(keep=2, protect=[]) == []


def test_a_dry_run_records_nothing(tmp_path: Path) -> None:
    store, shell, root = _store(tmp_path, dry_run=True)
    _deployed(store, "20261130T090000Z-v1")
    store.set_current("20261130T090000Z-v1")
    store.audit({"event": "deploy started"})
    assert store.current_id() is None and store.history() == []
    assert not root.exists()
    # Only the two reads ran.
    assert shell.ran == [
        releases.read_current(store.root).line,
        releases.read_records(store.root).line,
    ]
