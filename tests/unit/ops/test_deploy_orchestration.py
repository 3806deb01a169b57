"""The deploy and rollback orchestration on a simulated host (tests/support/simhost.py): the
step tables, the lock before the first change and released after any outcome, the rolling
update's waves, the automatic rollback after a failed check through nginx, the choice of the
release a rollback puts back, and dry runs that issue no change at all."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import docker.errors
import httpx
import pytest
from ops_testdata import GOOD_SECRETS, IMAGE_TAGS
from support.simhost import FakeEngine, SimHost, image_id

from ops import config
from ops.compose import Build
from ops.deploy import checks as deploy_checks
from ops.deploy import deployment, releases, rollback, rollout, smoke, watch
from ops.deploy.deployment import Deployment
from ops.deploy.hostcompose import RemoteCompose
from ops.deploy.images import LocalEngine, image_refs
from ops.deploy.onehost import OneHostDeploy
from ops.deploy.releases import Release
from ops.deploy.swarm.operation import SwarmDeploy
from ops.errors import OpsError
from ops.executor import Result
from ops.stack import host as stack_host
from ops.steps import Report

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
ONE_HOST = """\
name: staging
target: ssh
listings_env: staging
domains: [app.example.org]
deploy: {lock_wait: 0}
hosts:
  - ssh: deploy@203.0.113.10
"""
SECRETS = GOOD_SECRETS
TAGS = IMAGE_TAGS
DEPLOY_STEPS = [
    "check configuration and secrets",
    "check the images (built after the lock when missing)",
    "check the host (SSH, docker, compose, disk, ports)",
    "plan",
    "take the deploy lock",
    "build missing images",
    "ship images",
    "write the release files",
    "start postgres and redis",
    "backup before migrations",
    "migrate the schema (new image)",
    "TLS certificates from the ACME CA (nginx running)",
    "start the new workers next to the running ones",
    "rolling update of the API",
    "workers: the new ones healthy, the others stopped",
    "nginx",
    "TLS certificates (first deploy) and renewals",
    "monitoring and central logs",
    "smoke checks through the public URL",
    "watch the error ratio (Prometheus)",
    "record the release",
]


def build(version: str) -> Build:
    return Build(version, "abc", Path("/dev/null"), TAGS)


def refs(version: str) -> list[str]:
    return image_refs(build(version), monitoring=True)


class Smoke:
    """The checks through nginx: they pass unless told to fail for a version."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.seen: list[str] = []
        # The watch's Prometheus: the releases of these versions answer 30 % 5xx after the
        # switch; every release got 100 requests. A clock that a pause moves.
        self.erroring: set[str] = set()
        self.watched: list[str] = []
        self.t = time.time()

    @contextmanager
    def prometheus(self, env: config.Environment, remote: object) -> Iterator[watch.Ask]:
        def ask(promql: str, at: float | None) -> float:
            release = re.findall(r'release="([^"]+)"', promql)[0]
            self.watched.append(release)
            if at is not None:
                return 0.0
            errors = release.rsplit("-", 1)[-1] in self.erroring
            return (30.0 if errors else 0.0) if 'status=~"5.."' in promql else 100.0

        yield ask

    def pause(self, seconds: float) -> None:
        self.t += seconds

    def __call__(self, env: config.Environment, version: str, timeout: float = 60.0) -> str:
        self.seen.append(version)
        if version in self.failing:
            raise OpsError(f"smoke check through {env.https_url} failed: /ready 503")
        return f"ready, version {version}"


@pytest.fixture
def world(
    tmp_path: Path, write_env: Callable[[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SimHost, FakeEngine, Smoke]]:
    """staging on one simulated host; this machine's engine has v1's and v2's images."""
    shutil.copytree(ROOT / "compose", tmp_path / "compose")
    write_env("staging", ONE_HOST)
    (tmp_path / ".env.staging").write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    engine = FakeEngine({ref: image_id(ref) for v in ("v1", "v2") for ref in refs(v)})
    checks = Smoke()
    monkeypatch.setattr(smoke, "smoke_check", checks)
    # Through nginx: the real requests need a real nginx (e2e); here the replicas' checks tell.
    monkeypatch.setattr(deploy_checks, "through_nginx", lambda env: "3 checks passed")
    monkeypatch.setattr(watch, "prometheus", checks.prometheus)
    monkeypatch.setattr(watch, "now", lambda: checks.t)
    monkeypatch.setattr(watch, "pause", checks.pause)
    yield SimHost(), engine, checks


def operation(
    host: SimHost, engine: FakeEngine, version: str = "v1", **options: object
) -> Deployment:
    return OneHostDeploy(
        config.load("staging"),
        build(version),
        local=engine,  # type: ignore[arg-type]
        connect=lambda _: host,
        **options,  # type: ignore[arg-type]
    )


def run(host: SimHost, engine: FakeEngine, version: str = "v1", **options: object) -> Report:
    return operation(host, engine, version, **options).run(dry_run=bool(options.get("dry_run")))


def api(host: SimHost) -> list[str]:
    return sorted(c.release.rsplit("-", 1)[-1] for c in host.running("api"))


def serving(host: SimHost) -> list[str]:
    """The versions of the API replicas taking the traffic (the live slot's)."""
    live = host.serving()
    return sorted(c.release.rsplit("-", 1)[-1] for c in host.running("api") if c.name in live)


def no_standby(write_env: Callable[[str, str], Path]) -> None:
    write_env(
        "staging", ONE_HOST.replace("deploy: {lock_wait: 0}", "deploy: {lock_wait: 0, standby: 0}")
    )


def fail_in_the_deploy(
    monkeypatch: pytest.MonkeyPatch, step: str, error: BaseException
) -> list[str]:
    """OneHostDeploy's `step` raises `error` in the deploy and works in the automatic rollback;
    returns the kinds it was called for, in order."""
    real = getattr(OneHostDeploy, step)
    calls: list[str] = []

    def broken(self: OneHostDeploy) -> str:
        calls.append(self.kind)
        if self.kind == "deploy":
            raise error
        return str(real(self))

    monkeypatch.setattr(OneHostDeploy, step, broken)
    return calls


def distinct_release_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Release ids one after the other, even for deploys within the same second."""
    numbers = iter(range(1, 100))
    monkeypatch.setattr(
        deployment, "new_id", lambda version: f"20261206T2000{next(numbers):02d}Z-{version}"
    )


# ------------------------------------------------------------------------------ deploy


def test_a_deploy_runs_its_table_and_takes_the_lock_before_any_other_change(
    world: tuple[SimHost, FakeEngine, Smoke], capsys: pytest.CaptureFixture[str]
) -> None:
    host, engine, checks = world
    report = run(host, engine)
    assert [o.step.name for o in report.outcomes] == DEPLOY_STEPS
    # A first deploy skips what has nothing to do yet; everything else runs.
    skipped = {
        "build missing images",  # every image is here
        "backup before migrations",  # no data yet
        "TLS certificates from the ACME CA (nginx running)",  # tls: local-ca
        "TLS certificates (first deploy) and renewals",
        "watch the error ratio (Prometheus)",  # nothing to switch back to
    }
    assert {o.step.name: o.status for o in report.outcomes} == {
        name: "skipped" if name in skipped else "ok" for name in DEPLOY_STEPS
    }
    assert host.migrations == 1
    changes = host.changes
    assert changes[0].what == "take the deploy lock"
    assert changes[-1].what == "release the deploy lock"
    assert "@lock" not in host.files
    # Every change was said, with its host, as it ran.
    err = capsys.readouterr().err
    for command in changes:
        assert f"deploy@203.0.113.10:22 $ {command.display}" in err
    current = host.current()
    assert current is not None and current.endswith("-v1")
    record = json.loads(host.files[f"/srv/slipway/staging/releases/{current}/release.json"])
    assert record["outcome"] == "succeeded"
    assert api(host) == ["v1", "v1"]
    assert checks.seen == ["v1"]  # first deploy: nginx starts after the API, smoke checks once


def test_the_rolling_update_starts_new_replicas_switches_once_then_stops_the_old(
    world: tuple[SimHost, FakeEngine, Smoke], write_env: Callable[[str, str], Path]
) -> None:
    host, engine, checks = world
    write_env(
        "staging",
        ONE_HOST.replace("deploy: {lock_wait: 0}", "deploy: {lock_wait: 0, standby: 0, batch: 1}"),
    )
    run(host, engine, "v1")
    old = sorted(c.name for c in host.running("api"))
    first_slot = host.live_slot()
    assert host.serving() == old
    host.issued.clear()
    run(host, engine, "v2")
    lines = host.lines_run
    scale_ups = [i for i, line in enumerate(lines) if "--scale api=" in line]
    flips = [i for i, line in enumerate(lines) if "nginx/slot-green" in line and "echo" not in line]
    reloads = [i for i, line in enumerate(lines) if "nginx -s reload" in line]
    stops = [i for i, line in enumerate(lines) if line.startswith("docker stop ")]
    # batch 1: two waves of one new replica each, next to the two old ones, in the other slot.
    assert ["api=3" in lines[i] for i in scale_ups] == [True, False]
    assert "api=4" in lines[scale_ups[1]]
    other = "blue" if first_slot == "green" else "green"
    assert all(f"SLIPWAY_API_SLOT={other} docker compose" in lines[i] for i in scale_ups)
    # One switch: the flag file, and no reload (an nginx of this release reads it per request).
    assert len(flips) == 1 and reloads == []
    assert scale_ups[-1] < flips[0] < stops[0]
    assert [lines[i].split()[4] for i in stops] == old  # the old ones, one at a time
    assert api(host) == ["v2", "v2"]
    assert host.live_slot() == other
    assert host.serving() == sorted(c.name for c in host.running("api"))
    # The upstream file follows, for a rollback to a release from before the slots.
    assert sorted(host.upstream()) == host.serving()
    assert checks.seen == ["v1", "v2", "v2"]  # through nginx after the switch, then smoke


def test_the_surge_starts_every_new_replica_at_once_when_the_memory_allows(
    world: tuple[SimHost, FakeEngine, Smoke], write_env: Callable[[str, str], Path]
) -> None:
    host, engine, _ = world
    no_standby(write_env)  # batch left to its default: 0, the surge
    run(host, engine, "v1")
    old = sorted(c.name for c in host.running("api"))
    host.issued.clear()
    run(host, engine, "v2")
    lines = host.lines_run
    scale_ups = [line for line in lines if "--scale api=" in line]
    stops = [line for line in lines if line.startswith("docker stop ")]
    assert len(scale_ups) == 1 and "api=4" in scale_ups[0]  # both new replicas together
    assert len(stops) == 1 and stops[0].split()[4:6] == old  # both old ones drained together
    assert api(host) == ["v2", "v2"]
    # Without the memory for two more replicas (512 MiB each without a limit): one at a time.
    host.memory_kib = 700 * 1024
    host.issued.clear()
    run(host, engine, "v1")
    assert [line.count("api=") for line in host.lines_run if "--scale api=" in line] == [1, 1]
    assert api(host) == ["v1", "v1"]


def test_a_deploy_of_what_serves_already_switches_nothing(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    serving, slot = host.serving(), host.live_slot()
    host.issued.clear()
    # The same release's rollout again: its replicas already serve in the live slot.
    again = rollout.Rollout(
        RemoteCompose(host, host.project, "/srv/slipway/staging", host.current() or ""),
        replicas=2,
        batch=1,
        health_timeout=5.0,
        log=lambda _: None,
    )
    assert again.run().startswith(f"2 replica(s) of {host.current()} serving ({slot}), 0 ")
    assert host.serving() == serving and host.live_slot() == slot
    assert not [line for line in host.lines_run if "--scale api=" in line]


def test_an_nginx_from_before_the_slots_is_reloaded_at_the_switch(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    host.on(r"^docker inspect -f '\{\{range \.Config\.Env", stdout="file\n")
    host.issued.clear()
    run(host, engine, "v2")
    reloads = [line for line in host.lines_run if "nginx -s reload" in line]
    assert len(reloads) == 1  # it reads the upstream file, rewritten once
    assert sorted(host.upstream()) == host.serving()


def test_a_failed_check_through_nginx_switches_back_and_rolls_back_automatically(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, checks = world
    run(host, engine, "v1")
    first = host.current()
    checks.failing.add("v2")
    with pytest.raises(OpsError) as err:
        run(host, engine, "v2")
    assert str(err.value).startswith("deploy failed: after the switch: smoke check through")
    assert str(err.value).endswith(f"rolled back to {first}")
    assert host.current() == first
    assert api(host) == ["v1", "v1"]
    assert host.serving() == sorted(c.name for c in host.running("api"))
    assert sorted(host.upstream()) == host.serving()
    failed = [json.loads(v) for k, v in host.files.items() if k.endswith(".json") and "-v2/" in k]
    assert [r["outcome"] for r in failed] == ["rolled back"]
    assert "@lock" not in host.files
    assert '"event": "deploy failed, rolled back"' in host.files["@audit"]


def test_a_failed_migration_leaves_the_running_release_untouched_and_unlocks(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    before = [(c.name, c.release) for c in host.containers]
    engine.heads["slipway/listings:v2"] = "0003_new"  # v2 ships a migration, which fails
    host.failing["migrate"] = "alembic.util.exc.CommandError: Can't locate revision"
    with pytest.raises(OpsError, match=r"migration failed: .* the running release was not touched"):
        run(host, engine, "v2")
    assert [(c.name, c.release) for c in host.containers if c.service == "api"] == [
        (name, release) for name, release in before if "-api-" in name
    ]
    assert host.current() is not None and host.current().endswith("-v1")  # type: ignore[union-attr]
    assert "@lock" not in host.files
    assert not [line for line in host.lines_run if "--scale api=" in line and "v2" in line]


def test_a_bug_in_a_step_surfaces_as_itself_not_as_an_operator_error(
    world: tuple[SimHost, FakeEngine, Smoke], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, engine, _ = world

    def broken(self: Deployment) -> str:
        raise AssertionError("release planned before the lock")

    monkeypatch.setattr(OneHostDeploy, "migrate", broken)
    with pytest.raises(AssertionError, match="release planned before the lock"):
        run(host, engine, "v1")
    assert "@lock" not in host.files


def test_a_second_deploy_of_the_same_release_changes_nothing_but_the_audit(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    first = host.current()
    containers = sorted((c.name, c.release) for c in host.containers)
    report = run(host, engine, "v1")
    assert {o.step.name: o.note for o in report.outcomes}["plan"] == "unchanged"
    assert host.current() == first
    assert sorted((c.name, c.release) for c in host.containers) == containers
    assert '"event": "deploy: nothing changed"' in host.files["@audit"]


def test_missing_images_are_built_only_after_the_lock(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    engine.images = {}
    engine.buildable = refs("v3")
    report = run(host, engine, "v3")
    notes = {o.step.name: o.note for o in report.outcomes}
    assert notes["check the images (built after the lock when missing)"].startswith(
        f"to build after the lock: {len(refs('v3'))}"
    )
    assert notes["plan"] == f"{len(refs('v3'))} image(s) to build"
    assert notes["build missing images"].startswith(f"built {len(refs('v3'))}")
    assert sorted(engine.built) == sorted(refs("v3"))
    assert api(host) == ["v3", "v3"]


def test_a_held_lock_stops_the_deploy_naming_its_holder_and_changes_nothing_else(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    host.files["@lock"] = json.dumps(
        {"owner": "ci@runner", "token": "t", "version": "v9", "started": 1796000000,
         "refreshed": 4102444800, "ttl": 900, "operation": "deploy"}
    )  # fmt: skip
    host.issued.clear()
    with pytest.raises(OpsError, match="is locked: deploy of v9 by ci@runner"):
        run(host, engine, "v2")
    assert [c.what for c in host.changes] == ["take the deploy lock"]


# ------------------------------------------------------------------------------ dry runs


def test_a_dry_run_deploy_issues_no_change_and_builds_nothing(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    engine.images = {r: i for r, i in engine.images.items() if ":v2" not in r}
    engine.buildable = refs("v2")
    dry = SimHost(dry_run=True)
    dry.files, dry.images, dry.containers = (
        dict(host.files),
        dict(host.images),
        list(host.containers),
    )
    report = run(dry, engine, "v2", dry_run=True)
    assert dry.changes == []
    assert engine.built == []
    assert [o.status for o in report.outcomes if o.step.impacting] == ["planned"] * 17
    assert dry.files == host.files


def test_a_dry_run_rollback_retags_nothing_and_takes_no_lock(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    run(host, engine, "v2")
    dry = SimHost(dry_run=True)
    dry.files, dry.images, dry.stored = dict(host.files), dict(host.images), set(host.stored)
    report = run(dry, engine, "v2", kind="rollback", dry_run=True)
    assert dry.changes == []
    assert {o.step.name: o.note for o in report.outcomes}[
        "choose the release and check its images"
    ].endswith("-v1")


# ------------------------------------------------------------------------------ rollback


def test_a_rollback_puts_the_previous_release_back_with_its_recorded_images(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    first = host.current()
    run(host, engine, "v2")
    listings = "slipway/listings:v1"
    host.images[listings] = "sha256:" + "f" * 64  # the tag was moved by a rebuild since
    host.stored.add("sha256:" + "f" * 64)
    host.issued.clear()
    report = run(host, engine, "v2", kind="rollback")
    assert [o.step.name for o in report.outcomes][:5] == [
        "check configuration and secrets",
        "check the host (SSH, docker, compose, disk, ports)",
        "choose the release and check its images",
        "take the deploy lock",
        "point the image tags at the release's images",
    ]
    assert host.current() == first
    assert host.images[listings] == image_id(listings)
    assert serving(host) == ["v1", "v1"]
    assert engine.built == []
    assert host.changes[0].what == "take the deploy lock"


def test_the_replicas_a_switch_leaves_stay_on_standby_and_a_rollback_within_is_a_switch(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    first_release, first_slot = host.current(), host.live_slot()
    v1_replicas = host.serving()
    report = run(host, engine, "v2")
    second_release = host.current()
    # v1's replicas still run, out of traffic, until the stop scheduled on the host.
    assert api(host) == ["v1", "v1", "v2", "v2"] and serving(host) == ["v2", "v2"]
    record = host.standby()
    assert record is not None
    assert (record["release"], record["slot"]) == (first_release, first_slot)
    assert [(slot, release) for slot, release, _ in host.scheduled] == [(first_slot, first_release)]
    assert record["until"] == host.scheduled[0][2]
    rolled = next(o for o in report.outcomes if o.step.name == "rolling update of the API")
    assert rolled.note.endswith("2 on standby for 300s")

    host.issued.clear()
    run(host, engine, "v2", kind="rollback")
    # The standby went back into traffic: nothing started, one flip of the flag.
    assert host.current() == first_release
    assert host.serving() == v1_replicas and host.live_slot() == first_slot
    assert not [line for line in host.lines_run if "--scale api=" in line]
    assert (
        len([line for line in host.lines_run if "nginx/slot-green" in line and "echo" not in line])
        == 1
    )
    record = host.standby()
    assert record is not None and record["release"] == second_release

    # Time passes: the first stop finds its standby gone back into traffic and leaves it; the
    # second stops v2's replicas.
    host.fire_scheduled()
    assert api(host) == ["v1", "v1"] and serving(host) == ["v1", "v1"]
    assert host.standby() is None


def test_a_standby_that_no_longer_answers_is_replaced_by_new_replicas(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    first_release, v1_replicas = host.current(), host.serving()
    run(host, engine, "v2")
    host.failing_containers.update(v1_replicas)  # e.g. their database connections went bad
    host.issued.clear()
    report = run(host, engine, "v2", kind="rollback")
    assert host.current() == first_release and serving(host) == ["v1", "v1"]
    assert not set(host.serving()) & set(v1_replicas)  # new replicas, the standby removed
    assert [line for line in host.lines_run if "--scale api=" in line]
    assert not [c for c in host.containers if c.name in v1_replicas]
    rolled = next(o for o in report.outcomes if o.step.name == "rolling update of the API")
    assert rolled.status == "ok" and "serving (green)" in rolled.note


def test_a_release_from_before_the_slots_is_served_and_rolled_back_to(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, checks = world
    host.legacy.add("v1")  # v1's files give its replicas no slot; its nginx reads a file
    run(host, engine, "v1")
    first = host.current()
    v1_replicas = sorted(c.name for c in host.running("api"))
    assert all(not c.slot for c in host.running("api"))
    assert sorted(host.upstream()) == v1_replicas
    # The upgrade: v1 served through the upstream file; v2's nginx (of the slots) comes later.
    host.issued.clear()
    run(host, engine, "v2")
    assert len([line for line in host.lines_run if "nginx -s reload" in line]) == 1
    assert serving(host) == ["v2", "v2"] and host.standby() is None  # v1 had no slots
    # Back to v1: its replicas carry no slot name, so v2's nginx is recreated as v1 runs it
    # right at the switch, before the check through it and before v2's replicas go.
    host.issued.clear()
    run(host, engine, "v2", kind="rollback")
    lines = host.lines_run
    flip = next(
        i for i, line in enumerate(lines) if "nginx/slot-green" in line and "echo" not in line
    )
    recreate = next(
        i for i, line in enumerate(lines) if line.endswith(" up -d --no-deps nginx 2>&1")
    )
    assert flip < recreate
    assert host.current() == first and api(host) == ["v1", "v1", "v2", "v2"]
    assert host.running("nginx")[0].release == first
    v1_now = sorted(c.name for c in host.running("api") if not c.slot)
    assert sorted(host.upstream()) == v1_now  # what v1's nginx reads
    record = host.standby()
    assert record is not None and str(record["release"]).endswith("-v2")  # v2 on standby
    assert checks.seen[-2:] == ["v1", "v1"]  # through nginx after the switch, then smoke


def test_no_standby_when_the_host_lacks_the_memory_or_it_is_set_to_zero(
    world: tuple[SimHost, FakeEngine, Smoke], write_env: Callable[[str, str], Path]
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    host.memory_kib = 700 * 1024  # two replicas need 2 x 512 MiB without a limit
    report = run(host, engine, "v2")
    assert api(host) == ["v2", "v2"] and host.standby() is None and host.scheduled == []
    rolled = next(o for o in report.outcomes if o.step.name == "rolling update of the API")
    assert rolled.note.endswith("2 stopped")
    host.memory_kib = 8 * 1024 * 1024
    no_standby(write_env)
    run(host, engine, "v1")
    assert api(host) == ["v1", "v1"] and host.standby() is None


def test_the_watch_rolls_back_a_release_whose_clients_get_errors_to_its_standby(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, checks = world
    run(host, engine, "v1")
    first, v1_replicas = host.current(), host.serving()
    checks.erroring.add("v2")  # it passes every check; 30 % of the clients' requests fail
    host.issued.clear()
    with pytest.raises(OpsError) as err:
        run(host, engine, "v2")
    assert "answered 30 of 100 requests with 5xx since the switch (30.0%" in str(err.value)
    assert str(err.value).endswith(f"rolled back to {first}")
    # The switch back went to v1's standby: no v1 replica started.
    assert host.current() == first and host.serving() == v1_replicas
    assert not [line for line in host.lines_run if "--scale api=" in line and "-v1/" in line]
    failed = [json.loads(v) for k, v in host.files.items() if k.endswith(".json") and "-v2/" in k]
    assert [r["outcome"] for r in failed] == ["rolled back"]
    assert "5xx" in failed[0]["note"]
    assert all(release.endswith("-v2") for release in checks.watched)


def test_the_watch_judges_after_the_switch_and_is_skipped_when_switched_off(
    world: tuple[SimHost, FakeEngine, Smoke], write_env: Callable[[str, str], Path]
) -> None:
    host, engine, checks = world
    run(host, engine, "v1")
    report = run(host, engine, "v2")
    watched = next(o for o in report.outcomes if o.step.name.startswith("watch the error"))
    assert watched.status == "ok"
    assert watched.note.startswith("100 request(s) in 60s after the switch, 0 answered 5xx")
    write_env("staging", ONE_HOST.replace("{lock_wait: 0}", "{lock_wait: 0, watch: 0}"))
    checks.erroring.add("v1")
    report = run(host, engine, "v2", kind="rollback")  # a rollback never watches
    assert not [o for o in report.outcomes if o.step.name.startswith("watch the error")]
    report = run(host, engine, "v2")
    watched = next(o for o in report.outcomes if o.step.name.startswith("watch the error"))
    assert (watched.status, watched.note) == ("skipped", "skipped: deploy.watch is 0")


def test_a_failed_release_is_never_kept_on_standby_after_the_automatic_rollback(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, checks = world
    run(host, engine, "v1")
    checks.failing.add("v2")
    with pytest.raises(OpsError):
        run(host, engine, "v2")
    assert api(host) == ["v1", "v1"] and host.standby() is None


def test_a_rollback_whose_images_are_gone_is_refused_in_pre_flight(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    run(host, engine, "v2")
    listings = "slipway/listings:v1"
    host.stored.discard(host.images.pop(listings))
    host.issued.clear()
    with pytest.raises(OpsError, match=r"images of .*-v1 are no longer on the host: slipway/list"):
        run(host, engine, "v2", kind="rollback")
    assert host.changes == []


def record(release_id: str, outcome: str = "succeeded") -> Release:
    return Release(id=release_id, version=release_id.rsplit("-", 1)[-1], outcome=outcome)


@pytest.mark.parametrize(
    ("history", "current", "to", "chosen"),
    [
        (["1-a", "2-b", "3-c"], "3-c", None, "2-b"),
        (["1-a", "2-b", "3-c"], "2-b", None, "1-a"),  # never a newer one
        (["1-a", "2-b", "3-c"], "3-c", "1-a", "1-a"),
        (["1-a", "2-b", "3-c"], "3-c", "3-c", "3-c"),  # --to the current one: a repair
    ],
)
def test_a_rollback_chooses_the_newest_older_success_or_the_one_named(
    history: list[str], current: str, to: str | None, chosen: str
) -> None:
    found = rollback.choose_target([record(r) for r in history], current, to, "h", "staging")
    assert found.id == chosen


def test_failed_and_rolled_back_releases_are_never_chosen() -> None:
    history = [record("1-a"), record("2-b", "rolled back"), record("3-c", "failed"), record("4-d")]
    assert rollback.choose_target(history, "4-d", None, "h", "staging").id == "1-a"
    with pytest.raises(OpsError, match=r"no earlier successful release .* pass one with --to"):
        rollback.choose_target(history[1:], "4-d", None, "h", "staging")
    with pytest.raises(OpsError, match=r"no release '9-z' on h\. Known releases: 1-a, 2-b"):
        rollback.choose_target(history, "4-d", "9-z", "h", "staging")


# ------------------------------------------------------------------------------ swarm


def test_a_swarm_deploy_has_its_own_table_without_one_host_steps(
    write_env: Callable[[str, str], Path],
) -> None:
    write_env("staging", ONE_HOST + "  - ssh: deploy@203.0.113.11\n")
    names = [s.name for s in SwarmDeploy(config.load("staging"), build("v1")).deploy_steps()]
    assert "replace the workers" not in names and "nginx" not in names
    assert names.index("take the deploy lock") < names.index("build missing images")
    assert (
        names.index("build missing images")
        < names.index("form the swarm (init on the first host, join the others)")
        < names.index("ship images")
    )
    back = [s.name for s in SwarmDeploy(config.load("staging"), build("v1")).rollback_steps()]
    assert "build missing images" not in back and "ship images" not in back


def test_a_swarm_dry_run_issues_no_change_on_any_host(
    world: tuple[SimHost, FakeEngine, Smoke],
    write_env: Callable[[str, str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, engine, _ = world
    write_env(
        "staging",
        ONE_HOST.replace("deploy: {lock_wait: 0}\n", "") + "  - ssh: deploy@203.0.113.11\n",
    )
    env = config.load("staging")
    hosts = {h.label: SimHost(h, dry_run=True) for h in env.hosts}
    for host in hosts.values():
        host.on(r"^docker info -f '\{\{\.Swarm", stdout="inactive\n")
        host.on(r"^docker ps -a --filter label=com.docker.compose.project=\S+ --format", stdout="")
    monkeypatch.setattr(SwarmDeploy, "release_files", lambda self, release_id: {"stack.yaml": "x"})
    operation = SwarmDeploy(
        env,
        build("v1"),
        dry_run=True,
        local=engine,
        connect=lambda h: hosts[h.label],  # type: ignore[arg-type]
    )
    report = operation.run(dry_run=True)
    assert [host.changes for host in hosts.values()] == [[], []]
    assert {o.step.name: o.note for o in report.outcomes}["plan"].endswith(
        "swarm: form with deploy@203.0.113.10:22, deploy@203.0.113.11:22"
    )


def test_a_replica_that_never_gets_ready_is_removed_and_nothing_switches(
    world: tuple[SimHost, FakeEngine, Smoke], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    upstream = host.upstream()
    ticks = iter(range(10**6))  # a clock that moves a second each time it is read
    monkeypatch.setattr(rollout.time, "monotonic", lambda: float(next(ticks)))
    monkeypatch.setattr(rollout.time, "sleep", lambda seconds: None)
    host.unhealthy.add("api")
    with pytest.raises(OpsError, match="new replica\\(s\\) not ready after 120s"):
        run(host, engine, "v2")
    host.unhealthy.clear()
    assert host.upstream() == upstream
    assert api(host) == ["v1", "v1"]


def test_a_bug_after_the_switch_puts_the_previous_release_back_then_surfaces_as_itself(
    world: tuple[SimHost, FakeEngine, Smoke],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    first = host.current()
    calls = fail_in_the_deploy(monkeypatch, "finish_workers", KeyError("worker"))
    with pytest.raises(KeyError, match="worker"):
        run(host, engine, "v2")
    assert calls == ["deploy", "rollback"]
    assert host.current() == first
    assert api(host) == ["v1", "v1"]
    assert f"rolled back to {first}; the error below is a bug in ops" in capsys.readouterr().out


def test_under_maintenance_the_automatic_rollback_skips_the_public_checks(
    world: tuple[SimHost, FakeEngine, Smoke], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, engine, checks = world
    run(host, engine, "v1")
    first = host.current()
    host.files["/srv/slipway/staging/nginx/maintenance"] = ""
    checks.failing.update({"v1", "v2"})  # nginx answers 503 to the public
    fail_in_the_deploy(monkeypatch, "start_nginx", OpsError("nginx not healthy after 60s"))
    with pytest.raises(OpsError) as err:
        run(host, engine, "v2")
    assert str(err.value) == f"deploy failed: nginx not healthy after 60s. rolled back to {first}"
    assert host.current() == first
    assert api(host) == ["v1", "v1"]


def test_a_backup_still_running_is_read_from_its_output_whatever_its_exit_code(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    host.on_call(
        r"exec -T backup backup-run",
        lambda command, stdin: Result(
            command.line, 75, '{"message": "not started: another backup is running"}\n', ""
        ),
    )
    engine.heads["slipway/listings:v2"] = "0003_new"  # a migration to protect from
    report = run(host, engine, "v2")
    note = {o.step.name: o.note for o in report.outcomes}["backup before migrations"]
    assert note.startswith("skipped: a backup was still running after 600s")


# ------------------------------------------------------------------------------ the lock


def test_a_heartbeat_that_lost_its_own_connection_still_lets_the_automatic_rollback_run(
    world: tuple[SimHost, FakeEngine, Smoke], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock is still ours on the host: the rollback checks it on the main connection and
    goes on with a new heartbeat."""
    host, engine, _ = world
    run(host, engine, "v1")
    first = host.current()
    real = OneHostDeploy.finish_workers

    def heartbeat_dropped(self: OneHostDeploy) -> str:
        if self.kind == "deploy":
            assert self.heartbeat is not None
            self.heartbeat.lost = "cannot reach deploy@203.0.113.10:22 over SSH: reset"
            self.refresh_lock()
        return real(self)

    monkeypatch.setattr(OneHostDeploy, "finish_workers", heartbeat_dropped)
    with pytest.raises(OpsError) as err:
        run(host, engine, "v2")
    assert str(err.value).endswith(f"rolled back to {first}")
    assert host.current() == first
    assert api(host) == ["v1", "v1"]


def test_a_lock_taken_over_during_the_smoke_checks_stops_the_deploy_before_it_records(
    world: tuple[SimHost, FakeEngine, Smoke], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    first = host.current()
    real = Deployment.smoke

    def taken_over(self: Deployment) -> str:
        note = real(self)
        if self.kind == "deploy" and self.heartbeat is not None:
            self.heartbeat.lost = "the deploy lock was taken over by another deploy"
        return note

    monkeypatch.setattr(Deployment, "smoke", taken_over)
    with pytest.raises(OpsError, match="lock"):
        run(host, engine, "v2")
    assert host.current() == first


def test_the_automatic_rollback_points_the_tags_back_at_the_previous_images(
    world: tuple[SimHost, FakeEngine, Smoke], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild of the same version moved the tag on the host; failing after the switch, the
    previous release comes back with its own recorded image, not the tag's new one."""
    host, engine, _ = world
    distinct_release_ids(monkeypatch)
    run(host, engine, "v1")
    first = host.current()
    recorded = json.loads(host.files[f"/srv/slipway/staging/releases/{first}/release.json"])
    listings = "slipway/listings:v1"
    engine.images[listings] = "sha256:" + "e" * 64  # rebuilt here: same version, another id
    fail_in_the_deploy(monkeypatch, "finish_workers", OpsError("worker not healthy after 120s"))
    with pytest.raises(OpsError, match=f"rolled back to {first}"):
        run(host, engine, "v1")
    assert host.images[listings] == recorded["images"][listings]


def test_a_local_engine_failure_while_shipping_is_an_operator_error_not_a_bug(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    """The engine here runs out of disk while `docker save` streams an image: the deploy stops
    with an operator's error naming the fix, its lock released, not with a traceback."""
    host, engine, _ = world
    run(host, engine, "v1")

    class Image:
        id = "sha256:" + "d" * 64
        attrs: ClassVar[dict[str, int]] = {"Size": 1}

        def save(self, chunk_size: int, named: str) -> Iterator[bytes]:
            raise docker.errors.APIError("write /var/lib/docker/tmp: no space left on device")

    class Client:
        class images:  # docker's client.images
            @staticmethod
            def get(ref: str) -> Image:
                return Image()

    local = LocalEngine(connect=lambda: Client)  # type: ignore[arg-type, return-value]
    with pytest.raises(OpsError, match=r"no space left on device.*Fix: check `docker info`"):
        run(host, local, "v2")  # type: ignore[arg-type]
    assert "@lock" not in host.files


def test_a_rollback_accepts_a_content_tag_built_elsewhere_but_not_a_missing_listings_image(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    """On a swarm a host may hold another build of a content-tagged image than the one the
    release recorded (the first host's): its tag names the same inputs, so the rollback goes
    on and leaves that tag alone."""
    host, engine, _ = world
    run(host, engine, "v1")
    first = host.current()
    run(host, engine, "v2")
    postgres = next(ref for ref in refs("v1") if ref.startswith("slipway/postgres:"))
    record_path = f"/srv/slipway/staging/releases/{first}/release.json"
    record_ = json.loads(host.files[record_path])
    record_["images"][postgres] = "sha256:" + "a" * 64  # an id this host never had
    host.files[record_path] = json.dumps(record_)
    host.issued.clear()
    run(host, engine, "v2", kind="rollback")
    assert host.current() == first
    assert not host.find(r"^docker tag sha256:a{64} ")


def test_a_plain_rollback_goes_to_another_version_after_b_a_b() -> None:
    """B, rolled back to A, then B again: the rollback goes back to A, not to the earlier B."""
    history = [
        Release(id="1-a", version="a", outcome="succeeded"),
        Release(id="2-b", version="b", outcome="succeeded"),
        Release(id="3-b", version="b", outcome="succeeded"),
    ]
    assert rollback.choose_target(history, "3-b", None, "h", "staging").id == "1-a"
    assert rollback.marked(history, "3-b", "h", "staging") == "1-a"
    assert rollback.marked(history, "1-a", "h", "staging") == ""  # nothing older: none marked
    with pytest.raises(OpsError, match=r"no earlier successful release of another version"):
        rollback.choose_target(history[1:], "3-b", None, "h", "staging")


def test_releases_mark_the_current_release_and_the_one_a_rollback_puts_back(
    world: tuple[SimHost, FakeEngine, Smoke], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, engine, _ = world
    distinct_release_ids(monkeypatch)
    run(host, engine, "v1")
    run(host, engine, "v2")
    run(host, engine, "v2", kind="rollback")
    run(host, engine, "v2")  # B -> A -> B again
    monkeypatch.setattr(stack_host, "Remote", lambda _: host)
    lines = stack_host.list_releases(config.load("staging"))
    marks = {line[:2]: line.split()[1] for line in lines[1:] if line[:2] in ("* ", "< ")}
    assert marks == {"* ": "20261206T200003Z-v2", "< ": "20261206T200001Z-v1"}
    assert lines[-1] == "  (* current; < what `invoke rollback` puts back without --to)"


# ------------------------------------------------------------------------------ what is skipped

UNCHANGED_STEPS = (
    "start postgres and redis",
    "backup before migrations",
    "migrate the schema (new image)",
    "nginx",
    "monitoring and central logs",
)


def outcomes(report: Report) -> dict[str, tuple[str, str]]:
    return {o.step.name: (o.status, o.note) for o in report.outcomes}


def started(host: SimHost, service: str) -> list[str]:
    """The compose lines that started or updated `service` by name."""
    return [
        line
        for line in host.lines_run
        if " up -d --no-deps " in line
        and service in line.split(" up -d --no-deps ", 1)[1].removesuffix(" 2>&1").split()
    ]


def test_an_app_only_deploy_skips_every_step_whose_inputs_did_not_change(
    world: tuple[SimHost, FakeEngine, Smoke], capsys: pytest.CaptureFixture[str]
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    assert host.migrations == 1
    kept = {c.name for c in host.containers if c.service not in ("api", "worker")}
    host.issued.clear()
    capsys.readouterr()
    report = run(host, engine, "v2")
    table = outcomes(report)
    for name in UNCHANGED_STEPS:
        status, note = table[name]
        assert status == "skipped" and note.startswith("unchanged, skipped: "), name
    assert (
        "schema is at the image's newest revision (0002_api_key_names)"
        in table["migrate the schema (new image)"][1]
    )
    for name in (
        "start the new workers next to the running ones",
        "rolling update of the API",
        "workers: the new ones healthy, the others stopped",
        "record the release",
    ):
        assert table[name][0] == "ok", name
    # Nothing of the unchanged parts was touched: same containers, no compose line, no backup.
    assert {c.name for c in host.containers if c.service not in ("api", "worker")} == kept
    for service in ("postgres", "redis", "backup", "nginx", "prometheus", "logs"):
        assert started(host, service) == [], service
    assert host.migrations == 1
    assert not [line for line in host.lines_run if "backup-run" in line]
    assert serving(host) == ["v2", "v2"]
    working = {c.release.rsplit("-", 1)[-1]: c.parked for c in host.running("worker")}
    assert working == {"v2": False, "v1": True}  # v1's parked for the standby
    # The summary table says so, and the release records the digests it compared.
    out = capsys.readouterr().out
    assert re.search(
        r"start postgres and redis\s+impacting\s+skipped\s+\S+\s+unchanged, skipped", out
    )
    current = host.current()
    record = json.loads(host.files[f"/srv/slipway/staging/releases/{current}/release.json"])
    assert set(record["parts"]) == {"data", "nginx", "monitoring"}
    env_file = host.files[f"/srv/slipway/staging/releases/{current}/release.env"]
    assert f"SLIPWAY_CONFIG_NGINX='{record['parts']['nginx']}'" in env_file


def test_a_part_runs_again_when_its_inputs_changed_or_a_container_is_not_healthy(
    world: tuple[SimHost, FakeEngine, Smoke], write_env: Callable[[str, str], Path]
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    # A new migration in the image, a stopped redis, another nginx setting: those parts run.
    engine.heads["slipway/listings:v2"] = host.migrate_to = "0003_new"
    next(c for c in host.containers if c.service == "redis").state = "exited"
    write_env("staging", ONE_HOST + "nginx: {rate_limit: 75}\n")
    nginx_before = host.running("nginx")[0].name
    host.issued.clear()
    table = outcomes(run(host, engine, "v2"))
    for name in ("start postgres and redis", "backup before migrations", "nginx"):
        assert table[name][0] == "ok", name
    assert table["migrate the schema (new image)"][0] == "ok"
    assert host.schema == "0003_new" and host.migrations == 2
    assert [line for line in host.lines_run if "backup-run" in line]
    assert host.running("redis") and host.running("nginx")[0].name != nginx_before
    assert table["monitoring and central logs"][0] == "skipped"  # its inputs are the same
    # A container that Docker finds unhealthy is not left alone either: compose runs for it.
    host.unhealthy.add("prometheus")
    host.issued.clear()
    table = outcomes(run(host, engine, "v1"))
    assert table["monitoring and central logs"][0] == "ok" and started(host, "prometheus")
    assert table["start postgres and redis"][0] == "skipped"


def test_a_rollback_in_the_standby_skips_nginx_and_monitoring(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    run(host, engine, "v2")
    host.issued.clear()
    table = outcomes(run(host, engine, "v2", kind="rollback"))
    assert table["nginx"][0] == table["monitoring and central logs"][0] == "skipped"
    assert table["workers: the release's healthy, the others stopped"][0] == "ok"
    assert serving(host) == ["v1", "v1"]
    assert not [line for line in host.lines_run if "--scale api=" in line]  # a switch only


# ------------------------------------------------------------------------------ workers


def workers(host: SimHost) -> dict[str, str]:
    """Each worker container's version and state."""
    return {
        c.name: f"{c.release.rsplit('-', 1)[-1]} {c.state}"
        for c in host.containers
        if c.service == "worker"
    }


def test_new_workers_start_before_the_switch_and_the_old_ones_park_for_the_standby(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    (old,) = workers(host)
    host.issued.clear()
    run(host, engine, "v2")
    lines = host.lines_run
    new_worker = next(i for i, line in enumerate(lines) if "--scale worker=2" in line)
    new_api = next(i for i, line in enumerate(lines) if "--scale api=" in line)
    flip = next(
        i for i, line in enumerate(lines) if "nginx/slot-green" in line and "echo" not in line
    )
    park = next(i for i, line in enumerate(lines) if line.startswith("docker kill -s USR1 "))
    assert "--no-recreate" in lines[new_worker]
    assert new_worker < new_api < flip < park  # start-first; the old one parks after the switch
    assert not [line for line in lines if "docker stop -t 60" in line]
    parked = {c.name: c.parked for c in host.running("worker")}
    assert parked[old] is True and sorted(parked.values()) == [False, True]
    # A rollback in the standby resumes it: no worker started or created, v2's parked in turn.
    host.issued.clear()
    run(host, engine, "v2", kind="rollback")
    assert f"docker kill -s USR2 {old} >/dev/null" in host.lines_run
    assert not [
        line for line in host.lines_run if "docker start" in line or "--scale worker=" in line
    ]
    parked = {c.release.rsplit("-", 1)[-1]: c.parked for c in host.running("worker")}
    assert parked == {"v1": False, "v2": True}
    # The standby's end removes the parked one with its API replicas.
    host.fire_scheduled()
    assert list(workers(host).values()) == ["v1 running"]


def test_only_the_new_standby_keeps_parked_workers_an_older_ones_go(
    world: tuple[SimHost, FakeEngine, Smoke], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, engine, _ = world
    # A second apart each: the two releases of v1 must not share an id (it has seconds).
    seconds = itertools.count()
    start = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
    monkeypatch.setattr(releases, "utc_now", lambda: start + dt.timedelta(seconds=next(seconds)))
    run(host, engine, "v1")
    (first,) = workers(host)
    run(host, engine, "v2")  # v1's worker parked for the standby
    second_release = host.current()
    run(host, engine, "v1")  # a new release of v1: v2's worker parked, the first one goes
    assert first not in workers(host)
    state = {c.release: c.parked for c in host.running("worker")}
    assert state[second_release] is True and sorted(state.values()) == [False, True]


def test_workers_of_an_image_that_cannot_park_are_stopped_for_the_standby(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    host.unparkable.update(c.release for c in host.containers)  # v1's image predates parking
    (old,) = workers(host)
    run(host, engine, "v2")
    assert workers(host)[old] == "v1 exited"  # never sent SIGUSR1: it would have died of it
    host.issued.clear()
    run(host, engine, "v2", kind="rollback")
    started = [line for line in host.lines_run if f"'docker start {old}'" in line]
    assert started and not [line for line in host.lines_run if "USR2" in line]
    assert workers(host)[old] == "v1 running"


def test_without_a_standby_the_old_workers_are_removed_once_stopped(
    world: tuple[SimHost, FakeEngine, Smoke], write_env: Callable[[str, str], Path]
) -> None:
    host, engine, _ = world
    no_standby(write_env)
    run(host, engine, "v1")
    run(host, engine, "v2")
    stops = [line for line in host.lines_run if "docker stop -t 60" in line]
    assert len(stops) == 1 and "docker rm -f" in stops[0]
    assert list(workers(host).values()) == ["v2 running"]


def test_a_failed_switch_leaves_the_previous_workers_running_and_removes_the_new_ones(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, checks = world
    run(host, engine, "v1")
    checks.failing.add("v2")
    with pytest.raises(OpsError, match="rolled back"):
        run(host, engine, "v2")
    assert list(workers(host).values()) == ["v1 running"]


def test_status_shows_the_standby_workers_stopped_and_the_host_ready(
    world: tuple[SimHost, FakeEngine, Smoke],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host, engine, _ = world
    run(host, engine, "v1")
    run(host, engine, "v2")
    monkeypatch.setattr(stack_host, "Remote", lambda _: host)
    monkeypatch.setattr(stack_host.health, "public_get", lambda *_: httpx.Response(200))
    capsys.readouterr()
    assert stack_host.status(config.load("staging")) is True
    out = capsys.readouterr().out
    (kept,) = [line for line in out.splitlines() if "-worker-" in line and "(standby)" in line]
    assert "Up" in kept  # parked, running
    assert "overall: ready" in out
    # A stopped worker that is no standby's is a problem.
    host.fire_scheduled()
    next(c for c in host.containers if c.service == "worker").state = "exited"
    assert stack_host.status(config.load("staging")) is False


def test_a_release_that_is_ready_but_fails_its_checks_never_takes_traffic(
    world: tuple[SimHost, FakeEngine, Smoke],
) -> None:
    host, engine, checks = world
    run(host, engine, "v1")
    before = host.serving()
    host.failing_checks.add("v2")
    host.issued.clear()
    with pytest.raises(OpsError, match=r"failed the checks \(deploy\.checks\) before taking any"):
        run(host, engine, "v2")
    lines = host.lines_run
    # Checked in the replicas before any switch: the flag never moved, the new ones are gone.
    assert not [line for line in lines if "nginx/slot-green" in line and "echo" not in line]
    assert host.serving() == before and serving(host) == ["v1", "v1"]
    assert api(host) == ["v1", "v1"]
    assert list(workers(host).values()) == ["v1 running"]
    assert "v2" not in checks.seen
    current = host.current()
    assert current is not None and current.endswith("-v1")
