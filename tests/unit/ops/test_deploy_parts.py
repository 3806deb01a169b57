"""Pure parts of deploys: rendered compose, release variables, upstream file, lock and release
records, content tags of infrastructure images."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from ops import compose
from ops.compose import Build
from ops.deploy import locks, releases
from ops.deploy.commands import nginx
from ops.deploy.images import image_refs
from ops.deploy.release import dotenv, release_digest, render_compose, tls_tarball
from ops.deploy.run import terminate_as_interrupt
from ops.errors import OpsError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def test_the_rendered_compose_file_has_no_build_sections_or_build_secrets() -> None:
    text = render_compose((ROOT / "compose" / "compose.yaml").read_text())
    data = yaml.safe_load(text)
    assert "secrets" not in data
    for name, service in data["services"].items():
        assert "build" not in service, name
    # Everything else survives, merge keys expanded: the API still has its healthcheck.
    assert data["services"]["api"]["healthcheck"]["test"][-1] == "api"
    assert data["services"]["postgres"]["volumes"] == [
        "postgres-data:/var/lib/postgresql/data",
        "postgres-backups:/var/lib/pgbackrest",  # the backup repository, on its own volume
        "postgres-socket:/run/postgresql",  # pgBackRest reaches PostgreSQL over this socket
    ]
    # The backup passphrase reaches every pgBackRest container from the environment (the
    # release's secrets.env), never a default: rendering keeps the required interpolation.
    for name in ("postgres", "backup", "backup-drill", "backup-restore"):
        cipher = data["services"][name]["environment"]["PGBACKREST_REPO1_CIPHER_PASS"]
        assert cipher.startswith("${BACKUP_PASSPHRASE:?"), name


def test_rendering_refuses_a_file_without_services() -> None:
    with pytest.raises(OpsError, match="no services"):
        render_compose("x-foo: 1\n")


def test_dotenv_quotes_values_and_refuses_quotes_inside() -> None:
    assert dotenv({"B": "two words", "A": "1"}) == "A='1'\nB='two words'\n"
    with pytest.raises(OpsError, match="B contains a quote"):
        dotenv({"B": "it's"})


def test_image_refs_use_the_version_for_listings_and_content_tags_for_the_rest() -> None:
    build = Build(
        "v2",
        "abc",
        Path("/dev/null"),
        {"SLIPWAY_POSTGRES_TAG": "c.1", "SLIPWAY_REDIS_TAG": "c.2", "SLIPWAY_NGINX_TAG": "c.3"},
    )
    assert image_refs(build) == [
        "slipway/listings:v2",
        "slipway/postgres:c.1",
        "slipway/redis:c.2",
        "slipway/nginx:c.3",
    ]


def test_the_certificate_tarball_gives_nginx_the_files_and_keeps_the_key_private() -> None:
    data = tls_tarball(b"CERT", b"KEY")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["tls.key"].mode == 0o600
        assert members["tls.crt"].mode == 0o644
        assert {m.uid for m in members.values()} == {101}
        key = tar.extractfile("tls.key")
        assert key is not None and key.read() == b"KEY"


def test_the_upstream_file_lists_each_replica_once_sorted() -> None:
    text = nginx.upstream_text(["p-api-3", "p-api-1"])
    servers = [line for line in text.splitlines() if line.startswith("server")]
    assert servers == [
        "server p-api-1:8000 max_fails=1 fail_timeout=3s;",
        "server p-api-3:8000 max_fails=1 fail_timeout=3s;",
    ]


# ---------------------------------------------------------------------------- content tags


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_a_content_tag_changes_only_when_the_context_changes(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "nginx").mkdir()
    (tmp_path / "nginx" / "nginx.conf").write_text("a")
    (tmp_path / "other.txt").write_text("x")
    first = compose.content_tag(tmp_path, "nginx")
    (tmp_path / "other.txt").write_text("y")  # outside the context
    assert compose.content_tag(tmp_path, "nginx") == first
    (tmp_path / "nginx" / "nginx.conf").write_text("b")
    second = compose.content_tag(tmp_path, "nginx")
    assert second != first and second.startswith("c.")
    (tmp_path / "nginx" / "nginx.conf").chmod(0o755)  # executable bit counts (entrypoints)
    assert compose.content_tag(tmp_path, "nginx") != second


def test_ignored_files_do_not_change_a_content_tag(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("*.pyc\n")
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "Dockerfile").write_text("FROM x")
    before = compose.content_tag(tmp_path, "redis")
    (tmp_path / "redis" / "junk.pyc").write_text("zzz")
    assert compose.content_tag(tmp_path, "redis") == before


def test_an_exported_tag_wins_over_the_content_tag(tmp_path: Path) -> None:
    tags = compose.content_tags(tmp_path, {"SLIPWAY_NGINX_TAG": "pinned"})
    assert tags["SLIPWAY_NGINX_TAG"] == "pinned"
    assert tags["SLIPWAY_REDIS_TAG"].startswith("c.")


# ---------------------------------------------------------------------------- locks


def test_lock_info_describes_holder_and_staleness() -> None:
    info = locks.LockInfo("ci@runner", "t0k", "v3", started=1000, refreshed=1100, ttl=60)
    assert "by ci@runner" in info.describe(1120) and "expires in 40s" in info.describe(1120)
    assert "STALE since 20s" in info.describe(1180)


def test_a_broken_info_file_is_a_lock_of_unknown_owner() -> None:
    info = locks.parse_info("{not json", fallback_time=500)
    assert info.owner == "" and info.ttl == 0 and info.started == 500
    assert "unknown" in info.describe(510)


def test_the_owner_names_the_github_actor_under_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTOR", "octo")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    assert locks.default_owner() == "github:octo (run 42)"
    monkeypatch.delenv("GITHUB_ACTOR")
    assert "@" in locks.default_owner() and "pid" in locks.default_owner()


# ---------------------------------------------------------------------------- releases


def test_release_ids_sort_by_time_and_name_the_version() -> None:
    early = releases.new_id("v1", dt.datetime(2026, 11, 30, 9, 5, 1, tzinfo=dt.UTC))
    late = releases.new_id("v0", dt.datetime(2026, 11, 30, 10, 0, 0, tzinfo=dt.UTC))
    assert early == "20261130T090501Z-v1"
    assert sorted([late, early]) == [early, late]


def test_release_records_round_trip_and_ignore_unknown_fields() -> None:
    release = releases.Release(id="r1", version="v1", images={"a:1": "sha256:x"}, seconds=3.5)
    text = release.to_json().replace('"id"', '"future_field": 1, "id"', 1)
    back = releases.Release.from_json(text)
    assert back == release
    with pytest.raises(ValueError):
        releases.Release.from_json("[]")


def test_the_release_digest_follows_files_images_and_secrets_but_holds_no_secret() -> None:
    files, ids, keys = {"compose.yaml": "a"}, {"x:1": "sha256:1"}, {"POSTGRES_PASSWORD": "s3cr3t"}
    same = release_digest(dict(files), dict(ids), dict(keys))
    assert same == release_digest(files, ids, keys)
    assert release_digest({"compose.yaml": "b"}, ids, keys) != same
    assert release_digest(files, {"x:1": "sha256:2"}, keys) != same
    assert release_digest(files, ids, {"POSTGRES_PASSWORD": "rotated"}) != same
    assert "s3cr3t" not in same


def test_up_and_down_refuse_an_environment_on_a_host(envdir: Path) -> None:
    from ops.stack import local as stack
    from ops.stack.up import up

    (envdir / "staging.yaml").write_text(
        "name: staging\ntarget: ssh\nhosts:\n  - ssh: deploy@203.0.113.10\n"
        "domains: [staging.example.org]\n"
    )
    with pytest.raises(OpsError, match=r"runs on deploy@203\.0\.113\.10:22.*invoke deploy"):
        up("staging")
    with pytest.raises(OpsError, match="invoke maintenance"):
        stack.down("staging", volumes=True, yes=True)


def test_sigterm_during_a_deploy_takes_the_ctrl_c_path() -> None:
    import os
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="signal 15"), terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
    assert signal.getsignal(signal.SIGTERM) is before
