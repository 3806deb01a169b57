"""Searching the central logs of several hosts (Docker Swarm): a collector per host, each read
over its own SSH connection (support.collector_host's CollectorHost, one per host), the matches
of all merged in time order; hosts that cannot be searched; the routing of `invoke logs`."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from ops_testdata import STAGING_YAML, WriteEnv
from support.collector_host import CONTAINER, LIST, RECENT, CollectorHost, collected

from ops.config import Host
from ops.errors import OpsError
from ops.executor import Command, Result
from ops.monitoring import collectors, logsearch
from ops.monitoring.collectors import RemoteCollector
from ops.monitoring.logsearch import Entry, Query
from ops.stack import host as hostops
from ops.stack import logs as stack

pytestmark = pytest.mark.unit

SWARM_YAML = STAGING_YAML + "  - ssh: deploy@203.0.113.11\n  - ssh: deploy@203.0.113.12\n"
MANAGER, SECOND, THIRD = "203.0.113.10", "203.0.113.11", "203.0.113.12"
FIND = (
    "docker ps -q --filter label=com.docker.swarm.service.name=slipway-staging_logs "
    "--filter status=running"
)
SERVICES = (
    "docker service ls --filter label=com.docker.stack.namespace=slipway-staging "
    "--format '{{.Name}}'"
)
STACK_SERVICES = ("api", "worker", "nginx", "postgres", "redis", "logs", "prometheus")


def label(address: str) -> str:
    return f"deploy@{address}:22"


def cat(*words: str) -> str:
    return shlex.join(["docker", "exec", CONTAINER, "slipway-logs-read", "cat", *words])


class SwarmHost(CollectorHost):
    """One host of the swarm: its collector's files; the manager also answers `docker service
    ls`. `down`: SSH does not reach it."""

    def __init__(
        self, address: str, files: dict[str, list[str]], *, down: bool = False, **kwargs: object
    ) -> None:
        super().__init__(files, host=Host(user="deploy", address=address), **kwargs)  # type: ignore[arg-type]
        self.down = down

    def respond(self, command: Command, stdin: str | None) -> Result:
        if self.down:
            raise OpsError(
                f"cannot reach {self.host.label} over SSH: timed out. Fix: check the address"
            )
        if command.line.startswith("docker service ls"):
            out = "".join(f"slipway-staging_{name}\n" for name in STACK_SERVICES)
            return Result(command.line, 0, out + "other-stack_api\n", "")
        return super().respond(command, stdin)


def manager_files() -> dict[str, list[str]]:
    """The manager: nginx and one API replica."""
    return {
        RECENT: [
            collected("2026-11-30T09:59:58.000000Z", "nginx", {"request_id": "id-1", "status": 0}),
            collected("2026-11-30T09:59:59.000000Z", "api", {"request_id": "id-1", "msg": "in"}),
        ],
        "current.log": [
            collected("2026-11-30T10:00:04.000000Z", "nginx", {"request_id": "id-2", "status": 1}),
            collected("2026-11-30T10:00:06.000000Z", "api", {"request_id": "id-3", "msg": "x"}),
        ],
    }


def second_files() -> dict[str, list[str]]:
    """Another host: a worker and another API replica, lines between the manager's."""
    return {
        "current.log": [
            collected("2026-11-30T09:59:59.500000Z", "api", {"request_id": "id-1", "msg": "b"}),
            collected("2026-11-30T10:00:01.000000Z", "worker", {"request_id": "id-1", "job": 7}),
            collected("2026-11-30T10:00:05.000000Z", "worker", {"request_id": "id-2", "job": 8}),
        ],
    }


def third_files() -> dict[str, list[str]]:
    return {
        "current.log": [
            collected("2026-11-30T10:00:03.000000Z", "api", {"request_id": "id-1", "msg": "out"}),
        ],
    }


@pytest.fixture
def swarm(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., dict[str, SwarmHost]]:
    """`staging` on three hosts with monitoring (the default); stack.Remote connects to the
    SwarmHost of each address (files and options per address); compose logs must not be used."""

    def make(**options: dict[str, object]) -> dict[str, SwarmHost]:
        write_env("staging", SWARM_YAML)
        files = {MANAGER: manager_files(), SECOND: second_files(), THIRD: third_files()}
        hosts = {
            address: SwarmHost(address, files[address], **options.get(address, {}))  # type: ignore[arg-type]
            for address in files
        }
        monkeypatch.setattr(stack, "Remote", lambda host: hosts[host.address])
        monkeypatch.setattr(hostops, "logs", lambda *a, **k: pytest.fail("service logs used"))
        return hosts

    return make


def no_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "Remote", lambda host: pytest.fail("SSH opened"))


# ---------------------------------------------------------------------------- the pieces


def test_a_swarm_hosts_collector_is_found_by_the_stacks_service_label() -> None:
    fake = SwarmHost(SECOND, second_files())
    collector = RemoteCollector.find(fake, "slipway-staging", "staging", swarm=True)  # type: ignore[arg-type]
    assert collector.container == CONTAINER
    assert fake.lines_run == [FIND]
    fake = SwarmHost(SECOND, second_files(), running=False)
    with pytest.raises(OpsError) as caught:
        RemoteCollector.find(fake, "slipway-staging", "staging", swarm=True)  # type: ignore[arg-type]
    assert str(caught.value).startswith(
        "the log collector of slipway-staging (service slipway-staging_logs) is not running on "
        f"{label(SECOND)}. Fix: `invoke deploy --env=staging` starts it"
    )


def test_the_stacks_services_lose_their_prefix_and_other_stacks_are_left_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = SwarmHost(MANAGER, {})
    assert collectors.swarm_services(fake, "slipway-staging") == sorted(STACK_SERVICES)  # type: ignore[arg-type]
    assert fake.lines_run == [SERVICES]
    assert f"{label(MANAGER)} $ {SERVICES}\n" in capsys.readouterr().err


def entry(ts: str, text: str) -> Entry:
    return Entry(datetime.fromisoformat(ts).replace(tzinfo=UTC), ts, "api", "c", text)


def test_merged_streams_are_in_time_order_ties_in_host_order_and_tail_keeps_the_newest() -> None:
    first = [entry("2026-11-30T10:00:00", "a1"), entry("2026-11-30T10:00:02", "a2")]
    second = [entry("2026-11-30T10:00:01", "b1"), entry("2026-11-30T10:00:02", "b2")]
    third = [entry("2026-11-30T10:00:03", "c1")]
    lines = [e.line for e in logsearch.merged([iter(first), iter(second), iter(third)])]
    assert lines == ["a1", "b1", "a2", "b2", "c1"]
    lines = [e.line for e in logsearch.merged([first, second, third], tail=3)]
    assert lines == ["a2", "b2", "c1"]


# ---------------------------------------------------------------------------- `invoke logs`


def test_a_request_is_followed_across_every_hosts_collector_in_time_order(
    swarm: Callable[..., dict[str, SwarmHost]], capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = swarm()
    stack.logs("staging", request_id="id-1")
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        '2026-11-30T09:59:58.000000Z nginx {"request_id":"id-1","status":0}',
        '2026-11-30T09:59:59.000000Z api {"request_id":"id-1","msg":"in"}',
        '2026-11-30T09:59:59.500000Z api {"request_id":"id-1","msg":"b"}',
        '2026-11-30T10:00:01.000000Z worker {"request_id":"id-1","job":7}',
        '2026-11-30T10:00:03.000000Z api {"request_id":"id-1","msg":"out"}',
    ]
    # Each host: its collector, its files, one read of them all (no --service: no listing).
    assert hosts[MANAGER].lines_run == [FIND, LIST, cat("--fixed", "id-1", RECENT, "current.log")]
    for address in (SECOND, THIRD):
        assert hosts[address].lines_run == [FIND, LIST, cat("--fixed", "id-1", "current.log")]
        assert f"{label(address)} $ {FIND}\n" in err
    assert all(host.closed for host in hosts.values())
    assert "warning" not in err and "matches" not in err


def test_a_tail_is_the_newest_lines_of_all_hosts_together(
    swarm: Callable[..., dict[str, SwarmHost]], capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = swarm()
    stack.logs("staging", tail=3)
    assert capsys.readouterr().out.splitlines() == [
        '2026-11-30T10:00:04.000000Z nginx {"request_id":"id-2","status":1}',
        '2026-11-30T10:00:05.000000Z worker {"request_id":"id-2","job":8}',
        '2026-11-30T10:00:06.000000Z api {"request_id":"id-3","msg":"x"}',
    ]
    # Each host reads only as many of its newest files as give it 3 lines.
    assert hosts[MANAGER].reads() == [cat("current.log"), cat(RECENT, "current.log")]
    assert hosts[SECOND].reads() == [cat("current.log")]
    assert hosts[THIRD].reads() == [cat("current.log")]


def test_a_tail_can_come_from_one_host_alone(
    swarm: Callable[..., dict[str, SwarmHost]], capsys: pytest.CaptureFixture[str]
) -> None:
    swarm()
    stack.logs("staging", service="worker", tail=1)
    assert capsys.readouterr().out.splitlines() == [
        '2026-11-30T10:00:05.000000Z worker {"request_id":"id-2","job":8}'
    ]


def test_a_service_is_checked_against_the_stack_on_the_manager_before_any_read(
    swarm: Callable[..., dict[str, SwarmHost]], capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = swarm()
    with pytest.raises(OpsError) as caught:
        stack.logs("staging", service="apii", grep="x")
    assert str(caught.value).startswith(
        "unknown service 'apii'. Fix: use one of api, certbot, logs, migrate, nginx, postgres, "
        "prometheus, redis, worker"
    )
    assert hosts[MANAGER].lines_run == [SERVICES]
    assert hosts[SECOND].lines_run == hosts[THIRD].lines_run == []
    # migrate ran once and is gone; its lines are in the history.
    stack.logs("staging", service="migrate", since="2026-11-30T10:00:00Z")
    assert capsys.readouterr().err.endswith("no line of slipway-staging's central logs matches\n")
    assert hosts[MANAGER].lines_run[-4:] == [
        SERVICES,
        FIND,
        LIST,
        cat("--fixed", '"service":"migrate"', RECENT, "current.log"),
    ]
    # Only the manager lists the services.
    assert SERVICES not in hosts[SECOND].commands


def test_a_host_without_collector_is_skipped_loudly_and_the_search_fails_after_the_others_lines(
    swarm: Callable[..., dict[str, SwarmHost]], capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = swarm(**{SECOND: {"running": False}})
    with pytest.raises(OpsError) as caught:
        stack.logs("staging", request_id="id-1")
    out, err = capsys.readouterr()
    # The lines of the manager and the third host are printed.
    assert [line.split(" ")[0] for line in out.splitlines()] == [
        "2026-11-30T09:59:58.000000Z",
        "2026-11-30T09:59:59.000000Z",
        "2026-11-30T10:00:03.000000Z",
    ]
    # A warning as soon as the host is found without collector, before the lines are read.
    warning = (
        f"warning: the central logs of {label(SECOND)} are NOT searched, its lines are missing "
        "below: the log collector of slipway-staging (service slipway-staging_logs) is not "
        f"running on {label(SECOND)}. Fix: `invoke deploy --env=staging`"
    )
    assert warning in err
    assert err.index(warning) < err.index(f"{label(THIRD)} $ {FIND}")
    # Then the search fails (exit 1), naming the host and the fix again after the lines.
    message = str(caught.value)
    assert message.startswith(
        "the central logs of 1 of 3 hosts were not searched, so lines of the containers that ran "
        "there are missing (the lines above are the other hosts'): "
        f"{label(SECOND)}: the log collector of slipway-staging"
    )
    assert "Fix: `invoke deploy --env=staging` starts it" in message
    assert hosts[SECOND].lines_run == [FIND]
    assert all(host.closed for host in hosts.values())


def test_a_host_ssh_cannot_reach_is_skipped_the_same_way(
    swarm: Callable[..., dict[str, SwarmHost]], capsys: pytest.CaptureFixture[str]
) -> None:
    swarm(**{THIRD: {"down": True}})
    with pytest.raises(OpsError, match=r"1 of 3 hosts .*deploy@203\.0\.113\.12:22: cannot reach"):
        stack.logs("staging", tail=2)
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        '2026-11-30T10:00:05.000000Z worker {"request_id":"id-2","job":8}',
        '2026-11-30T10:00:06.000000Z api {"request_id":"id-3","msg":"x"}',
    ]
    assert f"warning: the central logs of {label(THIRD)} are NOT searched" in err


def test_no_host_searched_fails_without_a_no_match_message(
    swarm: Callable[..., dict[str, SwarmHost]], capsys: pytest.CaptureFixture[str]
) -> None:
    swarm(**{address: {"running": False} for address in (MANAGER, SECOND, THIRD)})
    with pytest.raises(OpsError) as caught:
        stack.logs("staging", grep="error")
    assert str(caught.value).startswith(
        "the central logs of 3 of 3 hosts were not searched, so lines of the containers that ran "
        f"there are missing: {label(MANAGER)}: the log collector"
    )
    out, err = capsys.readouterr()
    assert out == ""
    assert "matches" not in err


def test_a_host_with_nothing_since_is_not_read(
    swarm: Callable[..., dict[str, SwarmHost]], capsys: pytest.CaptureFixture[str]
) -> None:
    old = "slipway-20261101T000000.000000Z.log.gz"
    hosts = swarm()
    hosts[THIRD].files = {old: third_files()["current.log"]}
    stack.logs("staging", request_id="id-1", since="2026-11-30T09:59:59Z")
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert hosts[THIRD].reads() == []


def test_a_read_failing_on_one_host_fails_the_search_after_the_lines_so_far(
    swarm: Callable[..., dict[str, SwarmHost]], capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = swarm()
    hosts[SECOND].cat_error = "zcat: unexpected end of file"
    with pytest.raises(OpsError, match=r"unexpected end of file\. Fix: .*--service logs"):
        stack.logs("staging", request_id="id-1")
    assert len(capsys.readouterr().out.splitlines()) == 5
    assert all(host.closed for host in hosts.values())


def test_a_swarm_without_monitoring_refuses_a_search_and_shows_service_logs(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_env("staging", SWARM_YAML + "monitoring: {enabled: false}\n")
    no_ssh(monkeypatch)
    with pytest.raises(OpsError) as caught:
        stack.logs("staging", grep="error")
    assert f"monitoring.enabled is false in {path}" in str(caught.value)
    assert "--since=1h --tail=0 | grep <text>" in str(caught.value)
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(hostops, "logs", lambda env, **kwargs: calls.append(kwargs))
    stack.logs("staging", service="api", since="2h")
    assert calls == [{"service": "api", "follow": False, "since": "2h", "tail": 200}]


def test_bad_input_for_a_swarm_fails_before_ssh(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("staging", SWARM_YAML)
    no_ssh(monkeypatch)
    monkeypatch.setattr(hostops, "logs", lambda *a, **k: pytest.fail("host reached"))
    for kwargs, message in [
        ({"since": "10 minutes"}, "--since"),
        ({"grep": "("}, "not a valid regular expression"),
        ({"request_id": "a b"}, "not a request id"),
        ({"request_id": "id-1", "follow": True}, "--follow streams new lines"),
    ]:
        with pytest.raises(OpsError, match=message):
            stack.logs("staging", **kwargs)  # type: ignore[arg-type]


def test_the_search_on_a_swarm_is_the_same_with_a_query_object(
    capsys: pytest.CaptureFixture[str],
) -> None:
    hosts = [SwarmHost(MANAGER, manager_files()), SwarmHost(SECOND, second_files())]
    found = collectors.print_hosts_search(hosts, "slipway-staging", "staging", Query(tail=2))  # type: ignore[arg-type]
    assert found == collectors.HostsSearch(printed=2, skipped=[])
    assert [line[:27] for line in capsys.readouterr().out.splitlines()] == [
        "2026-11-30T10:00:05.000000Z",
        "2026-11-30T10:00:06.000000Z",
    ]
