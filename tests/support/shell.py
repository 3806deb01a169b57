"""An executor that runs each command with bash on this machine: the same lines a deploy sends
over SSH, run for real in a scratch directory (the lock's and the release store's protocols)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator

from ops.executor import Command, Executor, Result


class LocalShell(Executor):
    """Runs commands with `bash -c`; keeps every line it ran."""

    def __init__(self, label: str = "deploy@scratch:22", dry_run: bool = False) -> None:
        super().__init__(label, dry_run)
        self.ran: list[str] = []

    def _execute(self, command: Command, stdin: bytes | None) -> Result:
        self.ran.append(command.line)
        done = subprocess.run(
            ["bash", "-c", command.line],
            input=stdin or b"",
            capture_output=True,
            timeout=command.timeout or 30,
            check=False,
        )
        return Result(command.line, done.returncode, done.stdout.decode(), done.stderr.decode())

    def _execute_streaming_in(self, command: Command, chunks: Iterable[bytes]) -> Result:
        return self._execute(command, b"".join(chunks))

    def _execute_streaming_out(self, command: Command) -> int:
        result = self._execute(command, None)
        print(result.stdout, end="", flush=True)
        return result.code

    def _open_lines(self, command: Command) -> Iterator[Iterator[str]]:
        result = self._execute(command, None)
        yield iter(result.stdout.splitlines(keepends=True))
