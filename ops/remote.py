"""The executor over SSH: one connection to one host, opened lazily and reused.

Built on fabric (paramiko). Host keys are checked against the environment's known_hosts file:
a host seen for the first time is recorded with a warning (like OpenSSH's accept-new), a host
whose key changed is refused. What runs, echoes and dry runs is ops/executor.py's; this module
only moves bytes: commands, their input and output, and tunnels (`forward`). Nothing here knows
about deploys.
"""

from __future__ import annotations

import io
import os
import select
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paramiko
from fabric import Connection
from invoke.exceptions import CommandTimedOut, UnexpectedExit

from ops.config import Host
from ops.errors import OpsError
from ops.executor import Command, Executor, Result

CONNECT_TIMEOUT = 15.0
# CI passes the deploy key and the pinned host keys as secrets in these variables; they win
# over the environment file's `identity` and `known_hosts`.
KEY_VARIABLE = "SLIPWAY_SSH_KEY"
KNOWN_HOSTS_VARIABLE = "SLIPWAY_SSH_KNOWN_HOSTS"
CHUNK = 1024 * 1024


class _RecordNewHostKey(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Accept a host key never seen before, write it to known_hosts and say so."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        keys = client.get_host_keys()
        keys.add(hostname, key.get_name(), key)
        keys.save(str(self.known_hosts))
        self.known_hosts.chmod(0o600)
        print(
            f"    WARNING: first connection to {hostname}: its {key.get_name()} key "
            f"{key.fingerprint} was recorded in {self.known_hosts}. Verify it with the host's "
            "administrator; a later change of this key is refused.",
            flush=True,
        )


class _RefuseUnknownHost(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        raise OpsError(
            f"host key of {hostname} ({key.get_name()} {key.fingerprint}) is unknown and "
            "unknown hosts are refused here (pinned keys, or CI). Fix: add the host's verified "
            f"`ssh-keyscan` line to {KNOWN_HOSTS_VARIABLE} (CI) or to the environment's "
            "known_hosts file"
        )


def _private_key(text: str) -> paramiko.PKey:
    """A private key from its text (the SLIPWAY_SSH_KEY secret); never printed."""
    text = text.strip() + "\n"
    problems = []
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError) as exc:
            problems.append(f"{kind.__name__}: {type(exc).__name__}")
    raise OpsError(
        f"{KEY_VARIABLE} does not hold a usable unencrypted private key ({'; '.join(problems)}). "
        "Fix: put the whole OpenSSH private key text in that secret"
    )


class Remote(Executor):
    """The executor of one host over SSH; the connection opens at the first command."""

    def __init__(
        self, host: Host, connect_timeout: float = CONNECT_TIMEOUT, dry_run: bool = False
    ) -> None:
        super().__init__(host.label, dry_run)
        self.host = host
        self.connect_timeout = connect_timeout
        self._conn: Connection | None = None

    # ------------------------------------------------------------------ connection

    def _connection(self) -> Connection:
        if self._conn is not None:
            return self._conn
        connect_kwargs: dict[str, Any] = {"allow_agent": True, "look_for_keys": True}
        key_text = os.environ.get(KEY_VARIABLE, "")
        if key_text:
            connect_kwargs.update(
                pkey=_private_key(key_text), look_for_keys=False, allow_agent=False
            )
        elif self.host.identity is not None:
            if not self.host.identity.is_file():
                raise OpsError(
                    f"SSH identity {self.host.identity} of {self.host.label} does not exist. "
                    "Fix: create the key or correct `identity:` in the environment file"
                )
            connect_kwargs.update(
                key_filename=str(self.host.identity), look_for_keys=False, allow_agent=False
            )
        conn = Connection(
            host=self.host.address,
            user=self.host.user,
            port=self.host.port,
            connect_timeout=self.connect_timeout,
            connect_kwargs=connect_kwargs,
        )
        # Fabric's client trusts any key (AutoAddPolicy) and reads ~/.ssh/known_hosts: use a
        # client that knows only the environment's known_hosts file.
        client = paramiko.SSHClient()
        known = self.host.known_hosts
        pinned = os.environ.get(KNOWN_HOSTS_VARIABLE, "")
        if pinned:
            # CI: only the keys given in the variable; an unknown host is refused, never added.
            keys = client.get_host_keys()
            for number, line in enumerate(pinned.splitlines(), start=1):
                if line.strip() and not line.lstrip().startswith("#"):
                    entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
                    if entry is None:
                        raise OpsError(f"{KNOWN_HOSTS_VARIABLE} line {number} is not a host key")
                    for name in entry.hostnames:
                        keys.add(name, entry.key.get_name(), entry.key)
            client.set_missing_host_key_policy(_RefuseUnknownHost())
        else:
            if known.is_file():
                client.load_host_keys(str(known))
            if os.environ.get("CI") or os.environ.get("GITHUB_ACTIONS"):
                # A fresh CI runner knows no host: trusting a first key there trusts any key.
                client.set_missing_host_key_policy(_RefuseUnknownHost())
            else:
                client.set_missing_host_key_policy(_RecordNewHostKey(known))
        conn.client = client
        try:
            conn.open()
        except paramiko.BadHostKeyException as exc:
            raise OpsError(
                f"host key of {self.host.label} does not match {known}: refusing to connect "
                "(the host was reinstalled, or someone is in the middle). Fix: verify the new "
                f"key with the host's administrator, then remove the old line from {known}"
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise OpsError(
                f"SSH authentication to {self.host.label} failed: {exc}. Fix: check `ssh:` user "
                "and `identity:` in the environment file, and that the key is authorized"
            ) from exc
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            raise OpsError(
                f"cannot reach {self.host.label} over SSH: {exc}. Fix: check the address and "
                "port in `hosts:`, the network, and that sshd runs there"
            ) from exc
        transport = conn.client.get_transport()
        if transport is not None:
            # Keeps a quiet connection (a long migration) from being dropped by NAT or firewalls.
            transport.set_keepalive(30)
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Remote:
        return self

    # ------------------------------------------------------------------ commands

    def _execute(self, command: Command, stdin: bytes | None) -> Result:
        if stdin is not None:
            # fabric feeds stdin a kilobyte at a time and is slow to signal its end: use a raw
            # channel, which sends the data at once and then EOF.
            return self._exec_raw(command, [stdin], command.timeout)
        conn = self._connection()
        try:
            res = conn.run(
                command.line, hide=True, warn=True, in_stream=False, timeout=command.timeout
            )
        except UnexpectedExit as exc:  # only without warn=True; kept for safety
            res = exc.result
        except CommandTimedOut as exc:
            # Its own message holds the whole command line, which may carry what `shown` hides.
            raise OpsError(
                f"{command.description} on {self.label} did not finish within {command.timeout:g}s"
            ) from exc
        except Exception as exc:
            raise OpsError(f"{command.description} on {self.label}: {exc}") from exc
        return Result(command.line, int(res.exited), str(res.stdout), str(res.stderr))

    def _execute_streaming_out(self, command: Command) -> int:
        conn = self._connection()
        try:
            res = conn.run(command.line, hide=False, warn=True, in_stream=False)
        except Exception as exc:
            raise OpsError(f"{command.description} on {self.label}: {exc}") from exc
        return int(res.exited)

    def _execute_streaming_in(self, command: Command, chunks: Iterable[bytes]) -> Result:
        return self._exec_raw(command, chunks, command.timeout)

    def _open_lines(self, command: Command) -> Iterator[Iterator[str]]:
        what = command.description
        try:
            channel = self._transport().open_session()
        except (OSError, paramiko.SSHException) as exc:
            raise OpsError(f"{what} on {self.label}: {exc}") from exc
        try:
            try:
                channel.exec_command(command.line)
            except (OSError, paramiko.SSHException) as exc:
                raise OpsError(f"{what} on {self.label}: {exc}") from exc
            stdout = channel.makefile("rb")
            read_all: list[bool] = []

            def decoded() -> Iterator[str]:
                # Only the channel's errors become OpsError: the caller's own pass unchanged
                # (a BrokenPipeError of its stdout under `| head` is an OSError too).
                try:
                    for raw in stdout:
                        yield raw.decode("utf-8", errors="replace")
                    read_all.append(True)
                except (OSError, paramiko.SSHException) as exc:
                    raise OpsError(f"{what} on {self.label}: {exc}") from exc

            yield decoded()
            if not read_all:
                return  # left early (a `break`): closing the channel stops the command
            code = channel.recv_exit_status()
            if code != 0:
                stderr = channel.makefile_stderr("rb").read().decode(errors="replace")
                raise OpsError(
                    f"{what!r} failed on {self.label} (exit {code}): {stderr.strip()[-2000:]}"
                )
        finally:
            channel.close()

    @contextmanager
    def forward(
        self, remote_port: int, remote_host: str = "127.0.0.1", local_port: int = 0
    ) -> Iterator[int]:
        """An SSH tunnel (like `ssh -L`): connections to 127.0.0.1:<port> here reach
        remote_host:remote_port as seen from the host. Yields the local port (chosen by the
        system when local_port is 0); the tunnel closes when the block ends."""
        transport = self._transport()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", local_port))
        except OSError as exc:
            listener.close()
            raise OpsError(
                f"cannot listen on 127.0.0.1:{local_port} for the tunnel to {self.host.label} "
                f"({exc.strerror}). Fix: free that port or choose another"
            ) from exc
        listener.listen(16)
        listener.settimeout(0.5)
        stop = threading.Event()

        def pump(client: socket.socket) -> None:
            try:
                channel = transport.open_channel(
                    "direct-tcpip", (remote_host, remote_port), client.getpeername()
                )
            except (OSError, paramiko.SSHException):
                client.close()
                return
            try:
                while not stop.is_set():
                    ready, _, _ = select.select([client, channel], [], [], 0.5)
                    if client in ready:
                        data = client.recv(65536)
                        if not data:
                            break
                        channel.sendall(data)
                    if channel in ready:
                        data = channel.recv(65536)
                        if not data:
                            break
                        client.sendall(data)
            except (OSError, paramiko.SSHException):
                pass
            finally:
                channel.close()
                client.close()

        def accept() -> None:
            while not stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                threading.Thread(target=pump, args=(client,), daemon=True).start()

        acceptor = threading.Thread(target=accept, daemon=True)
        acceptor.start()
        try:
            yield int(listener.getsockname()[1])
        finally:
            stop.set()
            acceptor.join(timeout=2.0)
            listener.close()

    def connected(self) -> bool:
        """Whether the SSH connection is open and alive (it is never opened here)."""
        if self._conn is None:
            return False
        transport = self._conn.client.get_transport()
        return transport is not None and transport.is_active()

    def _transport(self) -> paramiko.Transport:
        transport = self._connection().client.get_transport()
        if transport is None or not transport.is_active():
            raise OpsError(f"SSH connection to {self.host.label} is closed")
        return transport

    def _exec_raw(self, command: Command, chunks: Iterable[bytes], timeout: float | None) -> Result:
        """Run the command on a raw channel with `chunks` as stdin, then EOF."""
        transport = self._transport()
        try:
            # sshd may refuse one more session (MaxSessions, a link dropped unnoticed).
            channel = transport.open_session()
        except (OSError, paramiko.SSHException) as exc:
            raise OpsError(f"{command.description} on {self.label}: {exc}") from exc
        if timeout is not None:
            channel.settimeout(timeout)
        try:
            channel.exec_command(command.line)
            for chunk in chunks:
                channel.sendall(chunk)
            channel.shutdown_write()
            stdout = channel.makefile("rb").read().decode(errors="replace")
            stderr = channel.makefile_stderr("rb").read().decode(errors="replace")
            code = channel.recv_exit_status()
        except (OSError, paramiko.SSHException) as exc:
            raise OpsError(f"{command.description} on {self.label}: {exc}") from exc
        finally:
            channel.close()
        return Result(command.line, code, stdout, stderr)
