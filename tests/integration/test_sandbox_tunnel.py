"""ops.remote's tunnel and line streaming over real SSH, then `invoke monitor` through the tunnel.

One sandbox host (`invoke sandbox.up --hosts=1`). Remote.forward is tested against the host's
own sshd (127.0.0.1:22 there, which greets every connection with its `SSH-2.0-` banner), and
Remote.lines with seq, yes and a failing shell. The host image has no HTTP server but has Perl
(perl-base is essential in Debian): a few lines of it serve Prometheus-like JSON on the host's
loopback, so `invoke monitor` runs end to end: tunnel, view, held open, SIGTERM, closed. The
environment file goes to a temporary SLIPWAY_ENVIRONMENTS_DIR; the module fixture always runs
`invoke sandbox.down --yes` at the end (and removes any container left with its label).
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator

import pytest
import yaml
from free_port import free_port
from sandbox_harness import ROOT, Sandbox, running_sandbox
from support.waiting import wait_for

from ops.errors import OpsError
from ops.executor import change, query, quote
from ops.remote import Remote

pytestmark = pytest.mark.integration

NAME = f"it-tun-{secrets.token_hex(3)}"
# A generous bound on anything that should take well under a second: reaching it is a hang.
HANG = 60.0
SERVE_DIR = "/tmp/fake-monitoring"
# A static HTTP/1.0 server: `perl serve.pl <port> <dir>` answers GET <path> with the file
# <dir>/<path with every non-alphanumeric character as _>, 404 when there is none.
SERVE_PL = r"""
use strict; use warnings; use IO::Socket::INET;
$SIG{PIPE} = 'IGNORE';  # a client gone before the answer must not end the server
my ($port, $dir) = @ARGV;
my $server = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
    Listen => 16, ReuseAddr => 1) or die "listen $port: $!";
while (my $client = $server->accept) {
    my $request = <$client> // '';
    while (my $line = <$client>) { last if $line =~ /^\r?\n$/ }
    my ($path) = $request =~ m{^GET (\S+)};
    $path = '/' unless defined $path;
    $path =~ s{[^A-Za-z0-9]}{_}g;
    if (open(my $fh, '<', "$dir/$path")) {
        local $/; my $body = <$fh>; close $fh;
        print $client "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
            . "Content-Length: " . length($body) . "\r\n\r\n" . $body;
    } else {
        print $client "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    }
    close $client;
}
"""
ALERTS = {
    "status": "success",
    "data": {
        "alerts": [
            {
                "labels": {"alertname": "TunnelTestAlert", "severity": "critical"},
                "annotations": {"summary": "served by perl on the host"},
                "state": "firing",
                "activeAt": "2026-12-01T10:00:00Z",
            }
        ]
    },
}
TARGETS = {
    "status": "success",
    "data": {
        "activeTargets": [
            {
                "labels": {"job": "redis", "instance": "redis-exporter:9121"},
                "health": "down",
                "lastError": "perl says no",
            }
        ]
    },
}


@pytest.fixture(scope="module")
def sbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(Sandbox, NAME, tmp_path_factory, "--hosts=1") as handle:
        yield handle


@pytest.fixture
def remote(sbx: Sandbox) -> Iterator[Remote]:
    with Remote(sbx.load().hosts[0]) as connection:
        yield connection


def banner(sock: socket.socket) -> bytes:
    """The first line a server sends (sshd: its version)."""
    sock.settimeout(HANG)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(256)
        if not chunk:
            break
        data += chunk
    return data


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run `work` in a daemon thread; its result (or exception) lands in the list."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(work())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


# ---------------------------------------------------------------------------- Remote.forward


def test_forward_reaches_the_hosts_sshd_through_the_tunnel(remote: Remote) -> None:
    with remote.forward(22) as port:
        assert port != 22
        with socket.create_connection(("127.0.0.1", port), timeout=HANG) as sock:
            assert banner(sock).startswith(b"SSH-2.0-")


def test_two_connections_through_one_tunnel_work_side_by_side(remote: Remote) -> None:
    with remote.forward(22) as port:
        first = socket.create_connection(("127.0.0.1", port), timeout=HANG)
        second = socket.create_connection(("127.0.0.1", port), timeout=HANG)
        with first, second:
            # The second answers while the first is open and unread, then the first.
            assert banner(second).startswith(b"SSH-2.0-")
            assert banner(first).startswith(b"SSH-2.0-")
            # Both carry data both ways: sshd answers a bad version line with an error.
            for sock in (first, second):
                sock.sendall(b"not-ssh\r\n")
                assert b"Invalid SSH identification string" in banner(sock)


def test_forward_to_a_closed_port_gives_a_connection_that_closes(remote: Remote) -> None:
    with remote.forward(1) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=HANG) as sock:
            sock.settimeout(HANG)
            try:
                data = sock.recv(1024)
            except ConnectionResetError:
                data = b""
            assert data == b""
        # The tunnel still serves: another forward on the same connection works.
        with (
            remote.forward(22) as other,
            socket.create_connection(("127.0.0.1", other), timeout=HANG) as sock,
        ):
            assert banner(sock).startswith(b"SSH-2.0-")


def test_the_tunnel_and_its_connections_close_with_the_block(remote: Remote) -> None:
    with remote.forward(22) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=HANG)
        assert banner(sock).startswith(b"SSH-2.0-")
    with sock:
        sock.settimeout(HANG)
        try:
            rest = sock.recv(1024)
        except ConnectionResetError:
            rest = b""
        assert rest == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=HANG)


def test_connected_follows_the_ssh_connection(sbx: Sandbox) -> None:
    """What `invoke monitor` polls while it holds a tunnel open."""
    remote = Remote(sbx.load().hosts[0])
    assert not remote.connected()  # never opened by asking
    remote.run(query("true"))
    assert remote.connected()
    remote.close()
    assert not remote.connected()


def test_forward_on_a_local_port_that_is_taken_names_it(remote: Remote) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        expected = rf"cannot listen on 127\.0\.0\.1:{taken} for the tunnel"
        with pytest.raises(OpsError, match=expected), remote.forward(22, local_port=taken):
            pass


# ---------------------------------------------------------------------------- Remote.lines


def test_lines_streams_200000_lines_completely_and_in_order(remote: Remote) -> None:
    with remote.lines(query("seq 1 200000")) as it:
        got = [line.rstrip("\n") for line in it]
    assert len(got) == 200000
    assert got == [str(n) for n in range(1, 200001)]


@pytest.mark.parametrize(
    "command",
    ["seq 1 200000", "yes slipway-tunnel-test"],
    ids=["leaving seq early", "leaving an endless command early"],
)
def test_leaving_the_block_after_10_lines_returns_promptly(remote: Remote, command: str) -> None:
    def ten() -> list[str]:
        got = []
        with remote.lines(query(command)) as it:
            for line in it:
                got.append(line.rstrip("\n"))
                if len(got) == 10:
                    break
        return got

    thread, out = in_thread(ten)
    thread.join(HANG)
    assert not thread.is_alive(), f"leaving `{command}` early did not return"
    assert len(out) == 1 and not isinstance(out[0], Exception), out
    first = out[0]
    expected = (
        [str(n) for n in range(1, 11)]
        if command.startswith("seq")
        else ["slipway-tunnel-test"] * 10
    )
    assert first == expected
    # The connection is still usable, and the endless command was stopped (SIGPIPE).
    wait_for(
        lambda: not remote.run(query("pgrep -x yes || true")).stdout.strip(),
        what="`yes` stopped on the host",
        timeout=HANG,
        interval=0.2,
    )


def test_a_failing_command_raises_naming_its_exit_code_and_stderr(remote: Remote) -> None:
    command = "sh -c 'echo good; echo bad >&2; exit 3'"
    with pytest.raises(OpsError, match=r"\(exit 3\): bad$"), remote.lines(query(command)) as it:
        assert [line.rstrip("\n") for line in it] == ["good"]


# ---------------------------------------------------------------------------- invoke monitor


def _write_monitor_env(sbx: Sandbox, name: str, prometheus: int, alertmanager: int) -> None:
    data = yaml.safe_load(sbx.files.environment.read_text(encoding="utf-8"))
    data["name"] = name
    data["monitoring"] = {"prometheus_port": prometheus, "alertmanager_port": alertmanager}
    (sbx.envdir / f"{name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")


@pytest.fixture(scope="module")
def served(sbx: Sandbox) -> Iterator[tuple[str, int, int]]:
    """An environment whose host serves Prometheus-like JSON at its monitoring ports (perl).
    The ports are free on this machine, like a host's 9090 and 9093 without a local stack."""
    prometheus, alertmanager = free_port(), free_port()
    assert prometheus != alertmanager
    name = f"{NAME}-mon"
    _write_monitor_env(sbx, name, prometheus, alertmanager)
    with Remote(sbx.load().hosts[0]) as host:
        files = {
            "_": "{}",
            "___ready": "ready",
            "_api_v1_alerts": json.dumps(ALERTS),
            "_api_v1_targets": json.dumps(TARGETS),
        }
        for file, text in files.items():
            host.put_text(f"{SERVE_DIR}/{file}", text)
        host.put_text(f"{SERVE_DIR}/serve.pl", SERVE_PL)
        pids = [
            host.run(
                change(
                    f"nohup perl {SERVE_DIR}/serve.pl {port} {SERVE_DIR} "
                    f">{SERVE_DIR}/{port}.log 2>&1 </dev/null & echo $!",
                    "start a perl server",
                )
            ).stdout.strip()
            for port in (prometheus, alertmanager)
        ]
        check = (
            f"for i in $(seq 1 100); do : 2>/dev/null </dev/tcp/127.0.0.1/{prometheus} && "
            f": 2>/dev/null </dev/tcp/127.0.0.1/{alertmanager} && exit 0; sleep 0.1; done; exit 1"
        )
        host.run(query(f"bash -c {quote(check)}", "wait for the perl servers"))
        try:
            yield name, prometheus, alertmanager
        finally:
            host.run(change(f"kill {' '.join(pids)}", "stop the perl servers"))


def _invoke(sbx: Sandbox, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        env=sbx.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_monitor_once_prints_the_view_from_the_host_and_exits(
    sbx: Sandbox, served: tuple[str, int, int]
) -> None:
    name, prometheus, alertmanager = served
    result = sbx.invoke("monitor", f"--env={name}", "--once")
    out = result.stdout
    assert f"Prometheus    http://127.0.0.1:{prometheus}/" in out
    assert f"Alertmanager  http://127.0.0.1:{alertmanager}/" in out
    assert f"to its 127.0.0.1:{prometheus} (Prometheus)" in out
    assert "firing alerts: 1" in out and "TunnelTestAlert" in out
    assert "  redis redis-exporter:9121: perl says no" in out
    assert "Ctrl-C" not in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_monitor_holds_the_tunnel_open_on_another_port_until_stopped(
    sbx: Sandbox, served: tuple[str, int, int], sig: int
) -> None:
    name, prometheus, _ = served
    with socket.socket() as local_stack:  # this machine's own Prometheus, say
        local_stack.bind(("127.0.0.1", prometheus))
        local_stack.listen(1)
        proc = _invoke(sbx, "monitor", f"--env={name}")
        try:
            assert proc.stdout is not None
            lines = []
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if "Ctrl-C" in line:
                    break
            assert lines[-1] == (
                "The SSH tunnel stays open for the URLs above. Close it with Ctrl-C (or SIGTERM)."
            ), lines
            url = lines[0].split()[1].rstrip("/")
            port = int(url.rsplit(":", 1)[1])
            assert port != prometheus
            # The tunnel answers while held open, several times.
            for _ in range(3):
                with urllib.request.urlopen(f"{url}/api/v1/targets", timeout=HANG) as answer:
                    assert json.load(answer) == TARGETS
            proc.send_signal(sig)
            rest, err = proc.communicate(timeout=HANG)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert rest.strip().splitlines()[-1] == "tunnel closed"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=HANG)


def test_monitor_fails_when_prometheus_does_not_answer_on_the_host(sbx: Sandbox) -> None:
    name = f"{NAME}-off"
    # Nothing listens on the host at these ports (free here, and the host serves nothing).
    _write_monitor_env(sbx, name, free_port(), free_port())
    result = sbx.invoke("monitor", f"--env={name}", "--once", check=False)
    assert result.returncode == 1, result.stdout
    assert "error: Prometheus does not answer on deploy@127.0.0.1:" in result.stderr
    assert f"`invoke deploy --env={name}`" in result.stderr
    assert f"`invoke status --env={name}`" in result.stderr
