"""The executor's rules, through the recording executor: changes are echoed with their host,
queries are quiet, a dry run runs queries and never a change, failures name the command."""

from __future__ import annotations

import time

import paramiko
import pytest
from invoke.exceptions import CommandTimedOut
from support.recorder import Recorder
from support.shell import LocalShell

from ops.config import Host
from ops.errors import OpsError
from ops.executor import ECHO_QUERIES_VARIABLE, Result, change, query, write_file
from ops.remote import Remote

pytestmark = pytest.mark.unit

HOST = "deploy@203.0.113.10:22"


def test_a_change_is_echoed_with_its_host_and_a_query_is_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    host = Recorder().on("docker ps", stdout="web\n")
    assert host.run(query("docker ps -q", "list")).stdout == "web\n"
    host.run(change("docker stop web", "stop web"))
    assert capsys.readouterr().err == f"{HOST} $ docker stop web\n"
    assert host.lines_run == ["docker ps -q", "docker stop web"]


def test_queries_are_echoed_when_asked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = Recorder().on("docker ps", stdout="")
    host.run(query("docker ps -q"), echo=True)
    monkeypatch.setenv(ECHO_QUERIES_VARIABLE, "1")
    host.run(query("docker ps -a"))
    host.run(change("refresh the lock"), echo=False)
    assert capsys.readouterr().err == f"{HOST} $ docker ps -q\n{HOST} $ docker ps -a\n"


def test_a_dry_run_runs_queries_and_only_prints_changes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    host = Recorder(dry_run=True).on("docker image inspect", stdout="sha256:1\n")
    assert host.run(query("docker image inspect x")).stdout == "sha256:1\n"
    result = host.run(change("docker tag sha256:1 x:v2", "tag"))
    assert result.ok and result.stdout == ""
    host.put_text("/srv/x/current.txt", "hello")
    assert host.lines_run == ["docker image inspect x"]
    assert [c.what for c in host.changes] == ["tag", "write /srv/x/current.txt"]
    err = capsys.readouterr().err
    assert f"{HOST} $ docker tag sha256:1 x:v2\n{HOST}   (dry run: not run)\n" in err
    assert f"{HOST} $ write /srv/x/current.txt (mode 644, 5 bytes)\n" in err


def test_a_failed_command_names_what_it_did_the_host_and_its_error() -> None:
    host = Recorder().on("docker stop", code=1, stderr="Error: No such container: web\n")
    with pytest.raises(OpsError) as err:
        host.run(change("docker stop web", "stop the old replicas"))
    assert str(err.value) == (
        f"'stop the old replicas' failed on {HOST} (exit 1): Error: No such container: web"
    )
    assert not host.run(change("docker stop web"), check=False).ok


def test_an_unanswered_query_fails_the_test_rather_than_guessing() -> None:
    with pytest.raises(AssertionError, match="no rule answers the query 'docker info'"):
        Recorder().run(query("docker info"))


def test_a_file_is_written_atomically_through_a_temporary_name() -> None:
    host = Recorder()
    host.put_text("/srv/slipway/releases/r1/release.env", "A='1'\n", mode=0o600)
    (issued,) = host.issued
    assert issued.stdin == "A='1'\n"
    assert issued.command.line == (
        "set -e; mkdir -p -m 755 /srv/slipway/releases/r1; umask 077; "
        "tmp=/srv/slipway/releases/r1/release.env.tmp.$$; "
        'cat > "$tmp"; chmod 600 "$tmp"; mv -f "$tmp" /srv/slipway/releases/r1/release.env'
    )
    assert write_file("/a b/c").line.startswith("set -e; mkdir -p -m 755 '/a b';")


def test_lines_read_queries_only() -> None:
    host = Recorder().on("cat", stdout="a\nb\n")
    with host.lines(query("cat x")) as lines:
        assert list(lines) == ["a\n", "b\n"]
    with (
        pytest.raises(OpsError, match="lines\\(\\) reads queries only"),
        host.lines(change("rm x")),
    ):
        pass


def test_an_ssh_session_refused_while_writing_a_file_is_an_operator_error() -> None:
    """sshd refusing one more session (MaxSessions, a link dropped unnoticed) names the write
    and the host, not a traceback."""

    class Transport:
        def open_session(self) -> None:
            raise paramiko.ChannelException(1, "Administratively prohibited")

    remote = Remote(Host(user="deploy", address="203.0.113.10"))
    remote._transport = lambda: Transport()  # type: ignore[method-assign]
    with pytest.raises(OpsError, match=rf"write /srv/x/upstream.conf on {HOST}: .*prohibited"):
        remote.put_text("/srv/x/upstream.conf", "server x:8000;\n")


def test_a_command_past_its_timeout_is_named_by_what_it_does_not_by_its_line() -> None:
    """invoke's own timeout message holds the whole command line, which may carry what
    `shown` hides (a join token)."""

    class Connection:
        def run(self, line: str, **kwargs: object) -> None:
            raise CommandTimedOut(Result(line, 0, "", ""), 5)  # type: ignore[arg-type]

    remote = Remote(Host(user="deploy", address="203.0.113.10"))
    remote._connection = lambda: Connection()  # type: ignore[method-assign, assignment, return-value]
    secret = change("docker swarm join --token SWMTKN-secret", "join", 5.0, shown="join <token>")
    with pytest.raises(OpsError) as err:
        remote.run(secret, echo=False)
    assert str(err.value) == f"join on {HOST} did not finish within 5s"


def test_queries_run_together_keep_their_own_output_errors_and_status() -> None:
    shell = LocalShell()
    commands = [
        query("printf 'no newline'"),
        query("printf 'two\\n\\nlines\\n'; echo oops >&2; exit 3"),
        query("sleep 0.3; echo slow"),
        query("echo ::slipway-batch-lookalike:: 1"),
        query("true"),
    ]
    results = shell.run_all(commands, check=False)
    assert len(shell.ran) == 1  # one round trip
    assert [(r.code, r.stdout, r.stderr) for r in results] == [
        (0, "no newline", ""),
        (3, "two\n\nlines\n", "oops\n"),
        (0, "slow\n", ""),
        (0, "::slipway-batch-lookalike:: 1\n", ""),
        (0, "", ""),
    ]
    with pytest.raises(OpsError, match=r"exit 3.*oops"):
        shell.run_all(commands)


def test_queries_run_together_start_at_once() -> None:
    shell = LocalShell()
    began = time.monotonic()
    results = shell.run_all([query("sleep 1; echo a"), query("sleep 1; echo b")])
    assert [r.stdout for r in results] == ["a\n", "b\n"]
    assert time.monotonic() - began < 1.9  # not one after the other (2 s)


def test_changes_never_run_together_and_a_recorder_answers_each_query() -> None:
    with pytest.raises(OpsError, match="queries only"):
        LocalShell().run_all([query("true"), change("rm -rf /tmp/x")])
    host = Recorder().on("^docker ps", stdout="web\n").on("^date", stdout="1\n")
    results = host.run_all([query("docker ps -q"), query("date +%s")])
    assert [r.stdout for r in results] == ["web\n", "1\n"]
    assert host.lines_run == ["docker ps -q", "date +%s"]
