"""The postgres image's grants for monitoring, for real: the application role (which the postgres
exporter logs in as) sees when every session's transaction began, an operator's too, and a
cluster that lacks the grant (made by an older image) gets it at its next start."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from support.docker import docker, output
from support.waiting import wait_for

pytestmark = pytest.mark.integration

# Sessions of other roles whose transaction start the application role can see.
VISIBLE = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE usename = 'postgres' AND xact_start IS NOT NULL AND application_name = 'forgotten'"
)


def _container(infra: Any) -> str:
    return str(infra.compose("ps", "-q", "postgres").stdout.strip())


def _as_listings(infra: Any, sql: str) -> str:
    """`sql` as the application role over TCP, as the exporter connects."""
    return output(
        "exec", "-e", f"PGPASSWORD={infra.password}", _container(infra),
        "psql", "-h", "127.0.0.1", "-U", "listings", "-d", "listings", "-tAc", sql,
        timeout=60,
    )  # fmt: skip


def _as_superuser(infra: Any, sql: str) -> None:
    docker("exec", _container(infra), "psql", "-U", "postgres", "-d", "postgres", "-c", sql)


@pytest.fixture
def forgotten(infra: Any) -> Iterator[None]:
    """An operator's session (superuser, over the local socket) left inside a transaction."""
    process = subprocess.Popen(
        [
            "docker",
            "exec",
            "-e",
            "PGAPPNAME=forgotten",
            _container(infra),
            "psql",
            "-U",
            "postgres",
            "-d",
            "listings",
            "-c",
            "BEGIN; SELECT txid_current(); SELECT pg_sleep(120);",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.kill()
        process.wait()
        _as_superuser(
            infra,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'forgotten'",
        )


def _wait_visible(infra: Any, timeout: float = 30.0) -> str:
    return wait_for(
        lambda: _as_listings(infra, VISIBLE),
        until=lambda seen: seen == "1",
        what="the operator's transaction seen by listings",
        timeout=timeout,
    )


def test_the_application_role_sees_an_operators_open_transaction(
    infra: Any, forgotten: None
) -> None:
    assert _wait_visible(infra) == "1"


def test_a_cluster_without_the_grant_gets_it_at_its_next_start(infra: Any) -> None:
    _as_superuser(infra, "REVOKE pg_read_all_stats FROM listings")
    granted = "SELECT pg_has_role('listings', 'pg_read_all_stats', 'MEMBER')"
    assert _as_listings(infra, granted) == "f"
    infra.stop("postgres")
    infra.start("postgres")
    assert _as_listings(infra, granted) == "t"
    logs = infra.compose("logs", "--no-log-prefix", "postgres").stdout
    assert "grants checked: listings reads every session's statistics" in logs
