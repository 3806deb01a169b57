"""Searching the central logs of a one-host environment: the collector on the host, over SSH
(support.collector_host's CollectorHost serves what `docker ps` and `slipway-logs-read` print
there), and the routing of `invoke logs` for hosts."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import paramiko
import pytest
from ops_testdata import STAGING_YAML, WriteEnv
from support.collector_host import (
    CONTAINER,
    LIST,
    PROJECT,
    RECENT,
    CollectorHost,
    collected,
)

from ops.config import Host
from ops.errors import OpsError
from ops.executor import query
from ops.monitoring import logsearch
from ops.monitoring.collectors import RemoteCollector
from ops.monitoring.logsearch import LogFile, Query
from ops.remote import Remote
from ops.stack import host as hostops
from ops.stack import logs as stack

pytestmark = pytest.mark.unit

SWARM_YAML = STAGING_YAML + "  - ssh: deploy@203.0.113.11\n"
HOST_LABEL = "deploy@203.0.113.10:22"
FIND = (
    "docker ps -q --filter label=com.docker.compose.project=slipway-staging "
    "--filter label=com.docker.compose.service=logs "
    "--filter label=com.docker.compose.oneoff=False --filter status=running"
)
SERVICES = (
    "docker ps -a --filter label=com.docker.compose.project=slipway-staging "
    "--format '{{.Label \"com.docker.compose.service\"}}'"
)
OLD = "slipway-20261129T100000.000000Z.log.gz"


def history() -> dict[str, list[str]]:
    """Three files: yesterday's (gzipped), this morning's, current.log; one request across them,
    its last lines out of arrival order."""
    return {
        OLD: [
            collected("2026-11-29T09:00:00.000000Z", "api", {"request_id": "id-0", "msg": "old"}),
        ],
        RECENT: [
            collected("2026-11-30T09:59:58.000000Z", "nginx", {"request_id": "id-1", "status": 0}),
            collected("2026-11-30T09:59:59.000000Z", "api", {"request_id": "id-1", "msg": "in"}),
            collected("2026-11-30T09:59:59.500000Z", "api", "plain line mentioning id-1"),
        ],
        "current.log": [
            collected("2026-11-30T10:00:03.000000Z", "api", {"request_id": "id-1", "msg": "out"}),
            collected("2026-11-30T10:00:01.000000Z", "worker", {"request_id": "id-1", "job": 7}),
            collected("2026-11-30T10:00:02.000000Z", "worker", {"request_id": "id-2", "job": 8}),
        ],
    }


@pytest.fixture
def on_host(write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch) -> Callable[..., CollectorHost]:
    """`staging` on one host with monitoring (the default); its SSH connection is a CollectorHost
    built with the given arguments; `invoke logs` must not fall back to compose logs."""

    def make(*args: object, **kwargs: object) -> CollectorHost:
        write_env("staging", STAGING_YAML)
        fake = CollectorHost(*args, **kwargs)  # type: ignore[arg-type]

        def connect(host: Host) -> CollectorHost:
            assert host.label == HOST_LABEL
            return fake

        monkeypatch.setattr(stack, "Remote", connect)
        monkeypatch.setattr(hostops, "logs", lambda *a, **k: pytest.fail("compose logs used"))
        return fake

    return make


def no_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "Remote", lambda host: pytest.fail("SSH opened"))


# ---------------------------------------------------------------------------- the collector


def test_the_host_collector_is_found_by_its_labels_and_read_with_quoted_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = CollectorHost(history())
    collector = RemoteCollector.find(fake, PROJECT, "staging")  # type: ignore[arg-type]
    files = collector.list_files()
    assert files[-1] == LogFile("current.log", sum(map(len, history()["current.log"])), None)
    with collector.read_lines(["current.log"], ["id-1", '"service":"worker"']) as raw:
        lines = list(raw)
    assert lines == [history()["current.log"][1]]
    assert fake.lines_run == [
        FIND,
        LIST,
        "docker exec f00dcafe slipway-logs-read cat --fixed id-1 "
        '--fixed \'"service":"worker"\' current.log',
    ]
    # Echoed on stderr, naming the host; stdout is left to the lines found.
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{HOST_LABEL} $ {LIST}\n" in err
    assert f"{HOST_LABEL} $ {FIND}\n" in err


def test_no_collector_on_the_host_names_the_deploy_that_starts_it() -> None:
    fake = CollectorHost(history(), running=False)
    with pytest.raises(OpsError) as caught:
        RemoteCollector.find(fake, PROJECT, "staging")  # type: ignore[arg-type]
    message = str(caught.value)
    assert f"not running on {HOST_LABEL}" in message
    assert "Fix: `invoke deploy --env=staging`" in message
    assert fake.lines_run == [FIND]


def test_a_failed_listing_or_reading_names_the_collectors_own_messages() -> None:
    fake = CollectorHost(history(), list_error="no such directory /var/log/slipway")
    collector = RemoteCollector(fake, CONTAINER, "staging")  # type: ignore[arg-type]
    with pytest.raises(OpsError, match=r"exit 1\): no such directory.*--service logs"):
        collector.list_files()
    fake = CollectorHost(history(), cat_error="zcat: slipway-x.log.gz: unexpected end of file")
    collector = RemoteCollector(fake, CONTAINER, "staging")  # type: ignore[arg-type]
    with (
        pytest.raises(OpsError, match=r"unexpected end of file\. Fix: .*--service logs"),
        collector.read_lines([RECENT], []) as raw,
    ):
        assert len(list(raw)) == 3


def test_an_error_of_the_caller_inside_the_read_is_not_reworded() -> None:
    collector = RemoteCollector(CollectorHost(history()), CONTAINER, "staging")  # type: ignore[arg-type]
    with pytest.raises(OpsError, match=r"^mine$"), collector.read_lines([RECENT], []):
        raise OpsError("mine")


def test_the_search_works_the_same_on_the_host_collector(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = CollectorHost(history())
    collector = RemoteCollector(fake, CONTAINER, "staging")  # type: ignore[arg-type]
    assert logsearch.print_search(collector, Query(request_id="id-1")) == 4
    # In time order across files and despite the arrival order; the plain line that only
    # mentions id-1 is not part of the request.
    assert capsys.readouterr().out.splitlines() == [
        '2026-11-30T09:59:58.000000Z nginx {"request_id":"id-1","status":0}',
        '2026-11-30T09:59:59.000000Z api {"request_id":"id-1","msg":"in"}',
        '2026-11-30T10:00:01.000000Z worker {"request_id":"id-1","job":7}',
        '2026-11-30T10:00:03.000000Z api {"request_id":"id-1","msg":"out"}',
    ]
    assert fake.reads() == [
        f"docker exec f00dcafe slipway-logs-read cat --fixed id-1 {OLD} {RECENT} current.log"
    ]


# ---------------------------------------------------------------------------- Remote.lines


class FakeChannel:
    def __init__(self, stdout: Iterator[bytes], code: int = 0, stderr: bytes = b"") -> None:
        self.stdout, self.code, self.stderr = stdout, code, stderr
        self.command = ""
        self.closed = False

    def exec_command(self, command: str) -> None:
        self.command = command

    def makefile(self, mode: str) -> Iterator[bytes]:
        return self.stdout

    def makefile_stderr(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.stderr)

    def recv_exit_status(self) -> int:
        return self.code

    def close(self) -> None:
        self.closed = True


def remote_with(channel: FakeChannel, monkeypatch: pytest.MonkeyPatch) -> Remote:
    remote = Remote(Host(user="deploy", address="203.0.113.10"))

    class Transport:
        def open_session(self) -> FakeChannel:
            return channel

    monkeypatch.setattr(remote, "_transport", Transport)
    return remote


def test_a_closed_pipe_of_the_reader_stays_a_broken_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    # `invoke logs --env=staging | head`: print_search takes the BrokenPipeError as the end;
    # Remote.lines must neither turn it into an OpsError nor wait for the command.
    channel = FakeChannel(iter([b"a\n", b"b\n"]))
    remote = remote_with(channel, monkeypatch)
    with pytest.raises(BrokenPipeError), remote.lines(query("cat x")) as lines:
        assert next(lines) == "a\n"
        raise BrokenPipeError(32, "Broken pipe")
    assert channel.closed


def test_a_broken_connection_while_reading_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def dropped() -> Iterator[bytes]:
        yield b"a\n"
        raise paramiko.SSHException("connection reset")

    channel = FakeChannel(dropped())
    remote = remote_with(channel, monkeypatch)
    with (
        pytest.raises(OpsError, match=rf"read the logs on {HOST_LABEL}: connection reset"),
        remote.lines(query("cat x", "read the logs")) as lines,
    ):
        list(lines)
    assert channel.closed
    channel = FakeChannel(iter([b"a\n"]), code=2, stderr=b"zcat: bad file\n")
    remote = remote_with(channel, monkeypatch)
    with (
        pytest.raises(OpsError, match=r"failed on .* \(exit 2\): zcat: bad file$"),
        remote.lines(query("cat x")) as lines,
    ):
        assert list(lines) == ["a\n"]


# ---------------------------------------------------------------------------- `invoke logs`


def test_a_search_on_one_host_reads_the_central_history_there(
    on_host: Callable[..., CollectorHost], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = on_host(history())
    stack.logs("staging", request_id="id-1", since="2026-11-30T09:00:00Z")
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        '2026-11-30T09:59:58.000000Z nginx {"request_id":"id-1","status":0}',
        '2026-11-30T09:59:59.000000Z api {"request_id":"id-1","msg":"in"}',
        '2026-11-30T10:00:01.000000Z worker {"request_id":"id-1","job":7}',
        '2026-11-30T10:00:03.000000Z api {"request_id":"id-1","msg":"out"}',
    ]
    # --since skipped yesterday's file; no --service: no service listing.
    assert fake.lines_run == [
        FIND,
        LIST,
        f"docker exec f00dcafe slipway-logs-read cat --fixed id-1 {RECENT} current.log",
    ]
    assert fake.closed
    assert "matches" not in err


def test_a_service_tail_on_a_host_reads_only_the_newest_files(
    on_host: Callable[..., CollectorHost], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = on_host(history())
    stack.logs("staging", service="worker", tail=1)
    assert capsys.readouterr().out.splitlines() == [
        '2026-11-30T10:00:02.000000Z worker {"request_id":"id-2","job":8}'
    ]
    assert fake.lines_run == [
        FIND,
        SERVICES,
        LIST,
        'docker exec f00dcafe slipway-logs-read cat --fixed \'"service":"worker"\' current.log',
    ]


def test_a_grep_on_a_host_is_checked_in_python(
    on_host: Callable[..., CollectorHost], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = on_host(history())
    stack.logs("staging", grep=r'"job":\d+')
    assert [line.split(" ")[1] for line in capsys.readouterr().out.splitlines()] == [
        "worker",
        "worker",
    ]
    # Regular-expression syntax: no prefilter on the host.
    assert fake.reads() == [
        f"docker exec f00dcafe slipway-logs-read cat {OLD} {RECENT} current.log"
    ]


def test_a_service_on_a_host_must_be_one_of_the_deployed_stack(
    on_host: Callable[..., CollectorHost], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = on_host(history())
    with pytest.raises(OpsError) as caught:
        stack.logs("staging", service="apii", grep="x")
    assert str(caught.value).startswith(
        "unknown service 'apii'. Fix: use one of api, certbot, logs, migrate, nginx, postgres, "
        "redis, worker"
    )
    assert fake.reads() == []
    # migrate's container is removed once it ran, but its lines are in the history.
    stack.logs("staging", service="migrate")
    assert capsys.readouterr().err.endswith("no line of slipway-staging's central logs matches\n")
    assert fake.reads() == [
        'docker exec f00dcafe slipway-logs-read cat --fixed \'"service":"migrate"\' current.log',
        'docker exec f00dcafe slipway-logs-read cat --fixed \'"service":"migrate"\' '
        f"{RECENT} current.log",
        'docker exec f00dcafe slipway-logs-read cat --fixed \'"service":"migrate"\' '
        f"{OLD} {RECENT} current.log",
    ]


def test_no_collector_on_the_host_fails_naming_the_deploy(
    on_host: Callable[..., CollectorHost],
) -> None:
    fake = on_host(history(), running=False)
    with pytest.raises(OpsError, match=r"not running on deploy@.*`invoke deploy --env=staging`"):
        stack.logs("staging", grep="error")
    assert fake.lines_run == [FIND]


@pytest.mark.parametrize("text", [STAGING_YAML, SWARM_YAML], ids=["one host", "swarm"])
def test_follow_and_the_collectors_own_messages_use_compose_or_service_logs_on_hosts(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    write_env("staging", text)
    no_ssh(monkeypatch)
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(hostops, "logs", lambda env, **kwargs: calls.append(kwargs))
    stack.logs("staging", service="api", follow=True)
    stack.logs("staging", service="logs", since="1d", tail=0)
    assert calls == [
        {"service": "api", "follow": True, "since": "", "tail": 200},
        {"service": "logs", "follow": False, "since": "24h", "tail": 0},
    ]


def test_bad_input_for_a_host_fails_before_ssh(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("staging", STAGING_YAML)
    no_ssh(monkeypatch)
    monkeypatch.setattr(hostops, "logs", lambda *a, **k: pytest.fail("host reached"))
    for kwargs, message in [
        ({"since": "10 minutes"}, "--since"),
        ({"grep": "("}, "not a valid regular expression"),
        ({"request_id": "a b"}, "not a request id"),
        ({"request_id": "id-1", "follow": True}, "--follow streams new lines"),
        ({"grep": "error", "follow": True}, "--follow streams new lines"),
    ]:
        with pytest.raises(OpsError, match=message):
            stack.logs("staging", **kwargs)  # type: ignore[arg-type]


def test_a_host_without_monitoring_refuses_a_search_naming_the_setting(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_env("staging", STAGING_YAML + "monitoring: {enabled: false}\n")
    no_ssh(monkeypatch)
    with pytest.raises(OpsError) as caught:
        stack.logs("staging", request_id="id-1")
    message = str(caught.value)
    assert f"monitoring.enabled is false in {path}" in message
    assert "enable monitoring and `invoke deploy --env=staging`" in message
    assert "--since=1h --tail=0 | grep <text>" in message


def test_hosts_without_the_collector_still_show_compose_logs(
    write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("staging", STAGING_YAML + "monitoring: {enabled: false}\n")
    no_ssh(monkeypatch)
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(hostops, "logs", lambda env, **kwargs: calls.append(kwargs))
    stack.logs("staging", service="api", since="2h")
    assert calls == [{"service": "api", "follow": False, "since": "2h", "tail": 200}]
