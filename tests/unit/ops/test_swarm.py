"""Several hosts without hosts: the stack file rendered from compose's configuration, when a
stack has converged, task ages, and the hosts' swarm addresses in the environment file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops import config
from ops.deploy.swarm import cluster, stackfile
from ops.errors import OpsError

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]

SECRET = stackfile.sentinel_secrets()["POSTGRES_PASSWORD"]

RESOLVED: dict[str, Any] = {
    "name": "slipway-x",
    "services": {
        "api": {
            "image": "slipway/listings:v1",
            "build": {"context": "../services/listings"},
            "command": ["api"],
            "depends_on": {"migrate": {"condition": "service_completed_successfully"}},
            "environment": {
                "LISTINGS_DATABASE_URL": f"postgresql://listings:{SECRET}@postgres/listings",
                "UNSET": None,
            },
            "healthcheck": {"test": ["CMD", "true"], "interval": "10s", "start_interval": "1s"},
            "tmpfs": ["/tmp:size=512m", "/run"],
            "restart": "unless-stopped",
            "pull_policy": "never",
            "deploy": {
                "replicas": 2,
                "endpoint_mode": "dnsrr",
                "resources": {"limits": {"cpus": 1.5, "memory": "536870912"}},
            },
            "networks": {"backend": None},
        },
        "redis": {
            "image": "slipway/redis:c.1",
            "healthcheck": {"test": ["CMD-SHELL", 'redis-cli -a "$REDIS_PASSWORD" ping']},
            "deploy": {"resources": {"limits": {"cpus": "0", "memory": "0"}}},
            "volumes": [
                {"type": "volume", "source": "redis-data", "target": "/data", "volume": {}},
                {
                    "type": "bind",
                    "source": "/srv/x/nginx",
                    "target": "/u",
                    "bind": {"create_host_path": True},
                },
            ],
            "networks": {"backend": None},
        },
        "nginx": {
            "image": "slipway/nginx:c.2",
            "ports": [
                {
                    "target": 8443,
                    "published": "443",
                    "protocol": "tcp",
                    "mode": "host",
                    "host_ip": "0.0.0.0",
                }
            ],
            "networks": {"edge": None},
        },
        "migrate": {"image": "slipway/listings:v1", "command": ["migrate"]},
    },
    "networks": {
        "backend": {"name": "slipway-x_backend", "driver": "overlay", "internal": True, "ipam": {}},
        "edge": {"name": "slipway-x_edge", "driver": "overlay"},
        "unused": {"name": "slipway-x_unused"},
    },
    "volumes": {
        "redis-data": {"name": "slipway-x_redis-data"},
        "postgres-data": {"name": "slipway-x_postgres-data"},
    },
    "secrets": {"ca": {"file": "/dev/null"}},
}


def test_the_stack_keeps_what_docker_stack_deploy_understands_and_drops_the_rest() -> None:
    document = stackfile.stack_document(RESOLVED)
    assert set(document) == {"version", "services", "networks", "volumes"}
    assert set(document["services"]) == {"api", "redis", "nginx"}  # migrate is a one-off
    api = document["services"]["api"]
    for dropped in ("build", "depends_on", "restart", "pull_policy", "tmpfs"):
        assert dropped not in api
    assert api["healthcheck"] == {"test": ["CMD", "true"], "interval": "10s"}
    assert api["deploy"]["resources"] == {"limits": {"cpus": "1.5", "memory": "536870912"}}
    assert "UNSET" not in api["environment"]
    # Service-level tmpfs (ignored by Swarm) becomes tmpfs mounts, sizes in bytes.
    assert api["volumes"] == [
        {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 512 * 1024**2}},
        {"type": "tmpfs", "target": "/run"},
    ]
    redis = document["services"]["redis"]
    assert "resources" not in redis["deploy"]  # "0" means no limit
    assert redis["volumes"][1] == {"type": "bind", "source": "/srv/x/nginx", "target": "/u"}
    assert document["services"]["nginx"]["ports"] == [
        {"target": 8443, "published": 443, "protocol": "tcp", "mode": "host"}
    ]
    assert set(document["networks"]) == {"backend", "edge"}
    assert "ipam" not in document["networks"]["backend"]
    assert set(document["volumes"]) == {"redis-data"}


def test_secrets_become_shell_variables_and_other_dollars_are_escaped() -> None:
    document = stackfile.stack_document(RESOLVED)
    url = document["services"]["api"]["environment"]["LISTINGS_DATABASE_URL"]
    assert url == "postgresql://listings:${POSTGRES_PASSWORD}@postgres/listings"
    redis_test = document["services"]["redis"]["healthcheck"]["test"][1]
    assert redis_test == 'redis-cli -a "$$REDIS_PASSWORD" ping'
    text = stackfile.stack_text(document, "r1")
    assert SECRET not in text and "SLIPWAYSECRET" not in text
    assert yaml.safe_load(text)["version"] == stackfile.STACK_VERSION


def test_only_keeps_the_named_services_and_what_they_use() -> None:
    document = stackfile.stack_document(RESOLVED, ("redis",))
    assert set(document["services"]) == {"redis"}
    assert set(document["networks"]) == {"backend"}


def _state(**values: Any) -> dict[str, Any]:
    base = {"update_state": "", "update_message": "", "desired": 2, "running": 2, "failed": 0}
    return {**base, **values}


def test_a_stack_converges_when_every_service_runs_its_replicas_and_no_update_runs() -> None:
    assert cluster.converged({"api": _state(), "nginx": _state(desired=1, running=1)}) == (True, "")
    done, waiting = cluster.converged({"api": _state(running=1), "nginx": _state()})
    assert (done, waiting) == (False, "api 1/2")
    done, waiting = cluster.converged({"api": _state(update_state="updating")})
    assert (done, waiting) == (False, "api 2/2 updating")
    assert cluster.converged({"api": _state(update_state="completed")})[0]


@pytest.mark.parametrize("state", ["rollback_started", "rollback_completed", "paused"])
def test_an_update_swarm_rolled_back_or_paused_fails_naming_it(state: str) -> None:
    with pytest.raises(OpsError, match=r"Swarm (paused|rolled back) the update of api.*unhealthy"):
        cluster.converged({"api": _state(update_state=state, update_message="task unhealthy")})


def test_tasks_failing_again_and_again_fail_the_wait_with_their_error() -> None:
    failing = _state(running=0, desired=1, failed=3, error="bind source path does not exist")
    with pytest.raises(OpsError, match=r"nginx: 3 of its tasks failed .* bind source path"):
        cluster.converged({"nginx": failing})
    assert not cluster.converged({"nginx": {**failing, "failed": 2}})[0]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("Rejected 4 seconds ago", 4.0),
        ("Failed about a minute ago", 60.0),
        ("Failed About an hour ago", 3600.0),
        ("Rejected less than a second ago", 0.0),
        ("Running 9 minutes ago", 540.0),
        ("Shutdown", float("inf")),
    ],
)
def test_task_ages_are_read_from_docker_stack_ps(text: str, seconds: float) -> None:
    assert cluster.task_age(text) == seconds


def test_one_off_containers_join_the_stacks_networks_and_volumes() -> None:
    data = yaml.safe_load(stackfile.oneoff_overlay())
    assert data["networks"]["backend"] == {"external": True, "name": "${SLIPWAY_STACK:?}_backend"}
    assert data["volumes"]["tls"]["name"] == "${SLIPWAY_TLS_VOLUME:?}"
    # the backup tools restore and drill on the data host's volumes, as the stack named them
    for tool in ("backup-restore", "backup-drill", "backup-export"):
        assert data["services"][tool] == {"pull_policy": "never"}
    for volume in ("postgres-data", "postgres-backups", "postgres-socket", "backup-drill"):
        assert data["volumes"][volume] == {
            "external": True,
            "name": "${SLIPWAY_STACK:?}_" + volume,
        }


SWARM_YAML = """\
name: staging
target: ssh
listings_env: staging
hosts:
  - ssh: deploy@203.0.113.10
    swarm_address: 10.0.0.10
  - ssh: deploy@203.0.113.11
"""


def test_several_hosts_deploy_with_swarm_advertising_their_private_addresses(
    write_env: WriteEnv,
) -> None:
    write_env("staging", SWARM_YAML)
    env = config.load("staging")
    assert env.is_swarm
    assert [h.advertise for h in env.hosts] == ["10.0.0.10", "203.0.113.11"]


@pytest.mark.parametrize("value", ["'10.0.0.10 x'", "'-x'", "''", "node1.example.org"])
def test_a_swarm_address_that_is_no_ip_address_is_refused(write_env: WriteEnv, value: str) -> None:
    write_env("staging", SWARM_YAML.replace("10.0.0.10", value))
    with pytest.raises(OpsError, match=r"hosts\[0\].swarm_address.*Fix: write the address"):
        config.load("staging")


def test_a_host_named_by_dns_needs_a_swarm_address(write_env: WriteEnv) -> None:
    write_env("staging", SWARM_YAML.replace("deploy@203.0.113.11", "deploy@node2.example.org"))
    with pytest.raises(OpsError, match=r"hosts\[1\].swarm_address' is missing.*Fix: add"):
        config.load("staging")
    write_env(
        "staging", SWARM_YAML.split("hosts:")[0] + "hosts: [{ssh: deploy@node1.example.org}]\n"
    )
    assert config.load("staging").hosts[0].advertise == "node1.example.org"  # one host: no swarm


@pytest.mark.parametrize(
    ("replicas", "batch", "order"),
    [(2, 1, "stop-first"), (3, 2, "stop-first"), (1, 1, "start-first"), (2, 2, "start-first")],
)
def test_replicas_are_replaced_stop_first_only_while_others_keep_serving(
    replicas: int, batch: int, order: str
) -> None:
    assert stackfile.api_update_order(replicas, batch) == order
