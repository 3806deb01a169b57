"""The host check of a deploy's pre-flight (ops/deploy/preflight.py check_host): every question
asked in one round trip, each answer judged and a failure named with its fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from ops_testdata import ONE_HOST
from support.recorder import Recorder

from ops import config
from ops.deploy import preflight
from ops.errors import OpsError

pytestmark = pytest.mark.unit

ANSWERS = {
    r"^docker version": "26.1.5\n",
    r"^docker compose version": "2.40.3\n",
    r"^docker info": "/var/lib/docker\n",
    r"^d=": "/srv\n",
    r"^df -Pk": "52428800\n",
    r"^for t in tcp": "",
    r"^docker ps --filter": "",
}


def host(**changed: tuple[str, int]) -> Recorder:
    """A host answering ANSWERS, but `changed` (pattern -> (stdout, exit code))."""
    remote = Recorder()
    for pattern, out in ANSWERS.items():
        remote.on(pattern, stdout=out)
    for pattern, (out, code) in changed.items():
        remote.on(pattern, stdout=out, code=code)
    return remote


@pytest.fixture
def env(write_env: Callable[[str, str], Path]) -> config.Environment:
    write_env("staging", ONE_HOST)
    return config.load("staging")


def check(env: config.Environment, remote: Recorder, first: bool = True) -> str:
    return preflight.check_host(env, env.hosts[0], remote, first, True)


def test_a_usable_host_is_described_after_two_round_trips(env: config.Environment) -> None:
    remote = host()
    note = check(env, remote)
    assert note.startswith("docker 26.1.5, compose 2.40.3, 51200 MiB free in /srv, ")
    assert note.endswith("5 ports free or already this stack's")
    # The questions went together (a recorder answers each as if sent alone): the versions,
    # the data root, the place, the ports; then the free space of both places.
    assert [c.what for c in remote.commands] == [
        "docker version",
        "docker data root",
        "compose version",
        "check that /srv/slipway/staging can be written",
        "ports in use",
        "services running",
        "free disk /srv",
        "free disk /var/lib/docker",
    ]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({r"^docker version": ("", 127)}, r"docker or the compose v2 plugin is missing"),
        ({r"^docker compose version": ("", 1)}, r"docker or the compose v2 plugin is missing"),
        ({r"^d=": ("/", 1)}, r"/srv/slipway/staging \(deploy.remote_dir\) cannot be created"),
        ({r"^docker info": ("", 1)}, r"'docker data root' failed"),
        ({r"^df -Pk": ("1024\n", 0)}, r"only 1 MiB free under /srv, below deploy.min_free_disk"),
    ],
)
def test_each_problem_of_a_host_is_named(
    env: config.Environment, answer: dict[str, tuple[str, int]], message: str
) -> None:
    with pytest.raises(OpsError, match=message):
        check(env, host(**answer))


def test_another_host_of_a_swarm_is_not_asked_for_compose_or_the_place(
    env: config.Environment,
) -> None:
    remote = host(**{r"^docker compose version": ("", 127)})
    note = preflight.check_host(env, env.hosts[0], remote, False, False)
    assert note.startswith(f"{env.hosts[0].label}: docker 26.1.5, ")
    assert "compose version" not in [c.what for c in remote.commands]
