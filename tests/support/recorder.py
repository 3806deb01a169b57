"""A recording executor: runs nothing, answers from rules, keeps every command it was given.

    host = Recorder()
    host.on(r"^docker image inspect", stdout="sha256:abc\n")
    host.on(r"readlink .*/current", stdout="releases/r1\n")
    ...run the code under test with `host` as its executor...
    assert [c.what for c in host.changes] == [...]

Rules are regular expressions searched in the command's line; the newest matching rule
answers. A command no rule matches gets exit 0 and no output when it is a change, and fails
the test when it is a query (strict=True): a query's answer is what the code decides on, so a
test must say it. In a dry run the executor's own rules apply: changes are announced and
recorded but never answered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from ops.config import Host
from ops.errors import OpsError
from ops.executor import Command, Executor, Result

Answer = Result | Callable[[Command, str | None], "Result | str"]


@dataclass
class Issued:
    """One command as the code gave it, with its input and whether it ran."""

    command: Command
    stdin: str | None
    ran: bool


class Recorder(Executor):
    """An Executor for unit tests (see the module docstring)."""

    def __init__(
        self, host: Host | None = None, *, dry_run: bool = False, strict: bool = True
    ) -> None:
        self.host = host or Host(user="deploy", address="203.0.113.10")
        super().__init__(self.host.label, dry_run)
        self.strict = strict
        self.issued: list[Issued] = []
        self.rules: list[tuple[re.Pattern[str], Answer]] = []
        self.closed = False

    # ------------------------------------------------------------------ rules

    def on(self, pattern: str, stdout: str = "", code: int = 0, stderr: str = "") -> Recorder:
        """Commands whose line matches `pattern` answer with this output."""
        self.rules.append((re.compile(pattern), Result("", code, stdout, stderr)))
        return self

    def on_call(
        self, pattern: str, answer: Callable[[Command, str | None], Result | str]
    ) -> Recorder:
        """Commands whose line matches `pattern` answer with what `answer` returns (a str is
        the stdout of a success)."""
        self.rules.append((re.compile(pattern), answer))
        return self

    def respond(self, command: Command, stdin: str | None) -> Result:
        for pattern, answer in reversed(self.rules):
            if pattern.search(command.line):
                if isinstance(answer, Result):
                    return Result(command.line, answer.code, answer.stdout, answer.stderr)
                got = answer(command, stdin)
                return Result(command.line, 0, got, "") if isinstance(got, str) else got
        if command.changes or not self.strict:
            return Result(command.line, 0, "", "")
        raise AssertionError(f"no rule answers the query {command.line!r} ({command.what})")

    # ------------------------------------------------------------------ what was issued

    @property
    def commands(self) -> list[Command]:
        return [i.command for i in self.issued]

    @property
    def changes(self) -> list[Command]:
        """Every state-changing command the code issued (run, or announced in a dry run)."""
        return [i.command for i in self.issued if i.command.changes]

    @property
    def lines_run(self) -> list[str]:
        return [i.command.line for i in self.issued if i.ran]

    def find(self, pattern: str) -> list[Command]:
        """The issued commands whose line matches `pattern`."""
        found = re.compile(pattern)
        return [c for c in self.commands if found.search(c.line)]

    # ------------------------------------------------------------------ Executor

    def _announce(self, command: Command, echo: bool | None) -> bool:
        skipped = super()._announce(command, echo)
        self.issued.append(Issued(command, None, not skipped))
        return skipped

    def _execute(self, command: Command, stdin: bytes | None) -> Result:
        text = stdin.decode() if stdin is not None else None
        self.issued[-1].stdin = text
        return self.respond(command, text)

    def _execute_all(self, commands: Sequence[Command]) -> list[Result]:
        """Each command of a batch answered by the rules on its own, as if sent alone."""
        issued = self.issued[-len(commands) :]
        return [
            self.respond(c, None) if i.ran else Result(c.line, 0, "", "")
            for c, i in zip(commands, issued, strict=True)
        ]

    def _execute_streaming_in(self, command: Command, chunks: Iterable[bytes]) -> Result:
        data = b"".join(chunks)
        return self._execute(command, data)

    def _execute_streaming_out(self, command: Command) -> int:
        result = self.respond(command, None)
        print(result.stdout, end="", flush=True)
        return result.code

    def _open_lines(self, command: Command) -> Iterator[Iterator[str]]:
        result = self.respond(command, None)
        yield iter(result.stdout.splitlines(keepends=True))
        if not result.ok:
            raise OpsError(
                f"{command.description!r} failed on {self.label} (exit {result.code}): "
                f"{result.stderr.strip()}"
            )

    def close(self) -> None:
        self.closed = True
