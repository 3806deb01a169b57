"""The digest of each part of a one-host release (ops/deploy/parts.py): compose's interpolation,
what changes a part's digest and what does not, and when the containers say a part runs it."""

from __future__ import annotations

import hashlib

import pytest

from ops.deploy import parts
from ops.deploy.parts import Running
from ops.errors import OpsError

pytestmark = pytest.mark.unit

COMPOSE = """
x-pg: &pg
  image: slipway/postgres:${SLIPWAY_POSTGRES_TAG:-${SLIPWAY_VERSION:-dev}}
services:
  postgres:
    <<: *pg
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set}
  redis:
    image: slipway/redis:${SLIPWAY_REDIS_TAG:-${SLIPWAY_VERSION:-dev}}
  backup:
    <<: *pg
  api:
    image: slipway/listings:${SLIPWAY_VERSION:-dev}
    environment:
      LISTINGS_RELEASE: ${SLIPWAY_RELEASE:-}
  nginx:
    image: slipway/nginx:${SLIPWAY_NGINX_TAG:-dev}
    environment:
      LIMIT: ${SLIPWAY_RATE_LIMIT:-10}
networks:
  backend: {}
"""
REMOTE = """
services:
  postgres:
    labels:
      org.slipway.config: ${SLIPWAY_CONFIG_DATA:-}
"""
ENV = {
    "SLIPWAY_VERSION": "v1",
    "SLIPWAY_RELEASE": "20261207T010000Z-v1",
    "SLIPWAY_POSTGRES_TAG": "c.1",
    "SLIPWAY_REDIS_TAG": "c.2",
    "SLIPWAY_NGINX_TAG": "c.3",
}
IMAGES = {
    "slipway/postgres:c.1": "sha256:pg",
    "slipway/redis:c.2": "sha256:redis",
    "slipway/nginx:c.3": "sha256:nginx",
    "slipway/listings:v1": "sha256:app1",
}


def digests(
    env: dict[str, str] | None = None,
    secrets: dict[str, str] | None = None,
    images: dict[str, str] | None = None,
    compose: str = COMPOSE,
) -> dict[str, str]:
    values = env if env is not None else ENV
    files = {
        "compose.yaml": compose,
        "remote.yaml": REMOTE,
        "release.env": "".join(f"{k}='{v}'\n" for k, v in values.items()),
    }
    return parts.digests(
        files,
        ["remote.yaml"],
        secrets if secrets is not None else {"POSTGRES_PASSWORD": "pw1"},
        images if images is not None else IMAGES,
        "slipway-staging",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("${A}", "a"),
        ("$A-x", "a-x"),
        ("$$A", "$A"),
        ("${UNSET:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${UNSET-dflt}", "dflt"),
        ("${A:+yes}", "yes"),
        ("${EMPTY:+yes}", ""),
        ("${EMPTY+yes}", "yes"),
        ("${UNSET:?must be set}", ""),
        ("${UNSET:-${A:-x}}-${B}", "a-b"),
        ("${UNSET:-${UNSET2:-deep}}", "deep"),
        ("{{.Name}} costs $5", "{{.Name}} costs $5"),
    ],
)
def test_interpolation_follows_compose(text: str, expected: str) -> None:
    assert parts.interpolate(text, {"A": "a", "B": "b", "EMPTY": ""}) == expected


@pytest.mark.parametrize("text", ["${A", "${A:-x", "${!}", "${A*x}"])
def test_a_malformed_reference_is_an_error(text: str) -> None:
    with pytest.raises(OpsError):
        parts.interpolate(text, {"A": "a"})


def test_a_new_version_or_release_of_the_app_changes_no_part() -> None:
    before = digests()
    after = digests(
        env={**ENV, "SLIPWAY_VERSION": "v2", "SLIPWAY_RELEASE": "20261207T020000Z-v2"},
        images={**IMAGES, "slipway/listings:v2": "sha256:app2"},
    )
    assert set(before) == {"data", "nginx", "monitoring"}
    assert after == before


def test_each_input_of_a_part_changes_that_part_only() -> None:
    base = digests()
    new_postgres = digests(images={**IMAGES, "slipway/postgres:c.1": "sha256:rebuilt"})
    assert new_postgres["data"] != base["data"]
    assert new_postgres["nginx"] == base["nginx"]
    new_password = digests(secrets={"POSTGRES_PASSWORD": "pw2"})
    assert new_password["data"] != base["data"] and new_password["nginx"] == base["nginx"]
    new_limit = digests(env={**ENV, "SLIPWAY_RATE_LIMIT": "20"})
    assert new_limit["nginx"] != base["nginx"] and new_limit["data"] == base["data"]
    new_tag = digests(env={**ENV, "SLIPWAY_REDIS_TAG": "c.9"})
    assert new_tag["data"] != base["data"]
    # A definition edited in a compose file (here the shared networks) changes every part.
    networks = digests(compose=COMPOSE.replace("backend: {}", "backend: {internal: true}"))
    assert all(networks[p] != base[p] for p in base)


def test_a_secret_enters_the_digest_only_through_its_own_digest() -> None:
    secret = "a-very-long-secret-value"
    hashed = hashlib.sha256(secret.encode()).hexdigest()
    # The same as a variable holding the secret's sha256: the value itself never enters.
    assert digests(secrets={"POSTGRES_PASSWORD": secret}) == digests(
        env={**ENV, "POSTGRES_PASSWORD": hashed}, secrets={}
    )


def test_the_variables_carry_each_digest() -> None:
    assert parts.variables({"nginx": "n1", "data": "d1"}) == {
        "SLIPWAY_CONFIG_DATA": "d1",
        "SLIPWAY_CONFIG_NGINX": "n1",
    }


def row(service: str, config: str = "d1", state: str = "running", health: str = "(healthy)") -> str:
    return f"{service}\t{state}\tUp 3 minutes {health}\t{config}"


def test_a_part_is_unchanged_only_when_every_container_runs_its_digest_and_is_not_unhealthy() -> (
    None
):
    services = ("postgres", "redis")
    good = [row("postgres"), row("redis"), row("api", config="")]
    assert parts.unchanged(parts.parse_running("\n".join(good)), services, "d1").startswith(
        "postgres, redis: running this configuration (2 healthy)"
    )
    bad = {
        "another digest": [row("postgres"), row("redis", config="d0")],
        "no label (created before the parts)": [row("postgres"), row("redis", config="")],
        "one service missing": [row("postgres")],
        "stopped": [row("postgres"), row("redis", state="exited", health="")],
        "unhealthy": [row("postgres"), row("redis", health="(unhealthy)")],
        "still starting": [row("postgres"), row("redis", health="(health: starting)")],
        "a second container of another digest": [row("postgres"), row("redis"), row("redis", "x")],
    }
    for why, rows in bad.items():
        assert parts.unchanged(parts.parse_running("\n".join(rows)), services, "d1") == "", why
    # A release recorded before the parts has no digest: never unchanged.
    assert parts.unchanged(parts.parse_running("\n".join(good)), services, "") == ""


def test_a_container_listing_is_read_whatever_its_trailing_whitespace() -> None:
    listed = parts.parse_running("postgres\trunning\tUp 1 minute\n\nredis\trunning\tUp\td1\n")
    assert listed == [
        Running("postgres", "running", "Up 1 minute", ""),
        Running("redis", "running", "Up", "d1"),
    ]
