"""Commands on a host, and the one place that runs them.

Command builders (pure functions in the packages, e.g. ops/deploy/commands/) return a
`Command`: the shell line the host runs, what it does in words, and whether it changes
anything there. An `Executor` runs them on one host:

- a command that changes state is echoed first as `<host> $ <line>` (on stderr: stdout stays
  for what a command prints); a query (changes=False) runs quietly, so polling loops do not
  flood the output. SLIPWAY_ECHO_QUERIES=1 echoes the queries too;
- the command's timeout applies;
- a failure (check=True) raises OpsError naming the command, the host and its output;
- in a dry run a change is printed with "(dry run: not run)" and not run: queries still run,
  so pre-flight checks see the host as it is, and nothing on it changes.

`ops.remote.Remote` is the executor over SSH; tests use a recording one
(tests/support/recorder.py) that answers from a script and keeps every command it was given.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath

from ops.errors import OpsError

ECHO_QUERIES_VARIABLE = "SLIPWAY_ECHO_QUERIES"


@dataclass(frozen=True)
class Command:
    """One shell line for a host, with what it means."""

    line: str
    what: str = ""
    changes: bool = True
    timeout: float | None = None
    # What the echo shows instead of `line`: a long script's summary, a line with a secret
    # (a join token) masked. Never used to run anything.
    shown: str = ""

    @property
    def display(self) -> str:
        return self.shown or self.line

    @property
    def description(self) -> str:
        return self.what or self.display


def change(line: str, what: str = "", timeout: float | None = None, shown: str = "") -> Command:
    """A command that changes something on the host: echoed, and not run in a dry run."""
    return Command(line, what, True, timeout, shown)


def query(line: str, what: str = "", timeout: float | None = None) -> Command:
    """A command that only reads: quiet, and run in a dry run too."""
    return Command(line, what, False, timeout)


def quote(value: str) -> str:
    """Shell-quote one word for a host's command line."""
    return shlex.quote(value)


def join(words: Iterable[str]) -> str:
    """argv as one shell line."""
    return " ".join(quote(word) for word in words)


@dataclass(frozen=True)
class Result:
    """What a command printed and returned."""

    command: str
    code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0


# ------------------------------------------------------------------------------ file builders


def write_file(path: str, mode: int = 0o644, size: int | None = None) -> Command:
    """Write stdin to `path` atomically: a temporary file in the same directory, then rename."""
    directory = str(PurePosixPath(path).parent)
    line = (
        f"set -e; mkdir -p -m 755 {quote(directory)}; umask 077; tmp={quote(path)}.tmp.$$; "
        f'cat > "$tmp"; chmod {mode:o} "$tmp"; mv -f "$tmp" {quote(path)}'
    )
    detail = f", {size} bytes" if size is not None else ""
    return change(line, f"write {path}", shown=f"write {path} (mode {mode:o}{detail})")


def read_file(path: str) -> Command:
    """A file's content; exit status 1 when it does not exist."""
    return query(f"cat {quote(path)} 2>/dev/null", f"read {path}")


def batch(commands: Sequence[Command], token: str) -> Command:
    """Independent queries as one line: all started at once, each one's output, errors and
    exit status kept apart in a scratch directory on the host, then printed in order, each
    part after a line carrying `token` (split_batch reads them back)."""
    started = " ".join(
        f'{{ ( {c.line} ) >"$t/{i}.o" 2>"$t/{i}.e" </dev/null; echo $? >"$t/{i}.c"; }} &'
        for i, c in enumerate(commands)
    )
    numbers = " ".join(str(i) for i in range(len(commands)))
    line = (
        f"t=$(mktemp -d) || exit 1; {started} wait; for i in {numbers}; do "
        f'printf \'\\n{token} %s\\n\' "$(cat "$t/$i.c" 2>/dev/null || echo 255)"; '
        f'cat "$t/$i.o"; printf \'\\n{token} err\\n\'; cat "$t/$i.e"; done; '
        'rm -rf "$t"'
    )
    timeouts = [c.timeout for c in commands]
    return Command(
        line,
        "; ".join(c.description for c in commands),
        False,
        None if None in timeouts else max(t or 0.0 for t in timeouts),
        " & ".join(c.display for c in commands),
    )


def split_batch(commands: Sequence[Command], token: str, printed: str) -> list[Result]:
    """The result of each command of a batch() from what it printed (a part missing: the
    batch itself failed before that command ended, exit 255)."""
    parts = printed.split(f"\n{token} ")[1:]
    results = []
    for index, command in enumerate(commands):
        try:
            head, _, out = parts[2 * index].partition("\n")
            err = parts[2 * index + 1].partition("\n")[2]
            code = int(head)
        except (IndexError, ValueError):
            results.append(Result(command.line, 255, "", "the host did not report it"))
            continue
        results.append(Result(command.line, code, out, err))
    return results


# ------------------------------------------------------------------------------ the executor


class Executor(ABC):
    """Runs commands on one host (see the module's docstring for the rules)."""

    def __init__(self, label: str, dry_run: bool = False) -> None:
        self.label = label
        self.dry_run = dry_run

    # ------------------------------------------------------------------ what subclasses do

    @abstractmethod
    def _execute(self, command: Command, stdin: bytes | None) -> Result:
        """Run the line with `stdin` (None: no input) and return what it did."""

    @abstractmethod
    def _execute_streaming_in(self, command: Command, chunks: Iterable[bytes]) -> Result:
        """Run the line with `chunks` as its standard input, then EOF."""

    @abstractmethod
    def _open_lines(self, command: Command) -> Iterator[Iterator[str]]:
        """A context manager's generator: the command's stdout line by line (see lines())."""

    @abstractmethod
    def _execute_streaming_out(self, command: Command) -> int:
        """Run the line, its output printed here as it comes; its exit code."""

    def close(self) -> None:  # noqa: B027  # nothing to release unless a subclass connects
        """Release the connection, if any."""

    # ------------------------------------------------------------------ running

    def echo(self, command: Command) -> None:
        print(f"{self.label} $ {command.display}", file=sys.stderr, flush=True)

    def _announce(self, command: Command, echo: bool | None) -> bool:
        """Echo as the rules say (echo: None; True or False overrides them); True when the
        command must not run (a dry run's change)."""
        if echo is None:
            echo = command.changes or os.environ.get(ECHO_QUERIES_VARIABLE) == "1"
        if echo:
            self.echo(command)
        if command.changes and self.dry_run:
            print(f"{self.label}   (dry run: not run)", file=sys.stderr, flush=True)
            return True
        return False

    def failure(self, command: Command, result: Result) -> OpsError:
        detail = (result.stderr.strip() or result.stdout.strip())[-2000:]
        return OpsError(
            f"{command.description!r} failed on {self.label} (exit {result.code}): {detail}"
        )

    def run(
        self,
        command: Command,
        *,
        check: bool = True,
        stdin: str | None = None,
        echo: bool | None = None,
    ) -> Result:
        """Run one command. echo=False: a change made in the background (the lock's heartbeat
        would interleave with the steps' output); echo=True: a query shown because the
        operator may want to run it by hand (the central logs' search)."""
        if self._announce(command, echo):
            return Result(command.line, 0, "", "")
        result = self._execute(command, stdin.encode() if stdin is not None else None)
        if check and not result.ok:
            raise self.failure(command, result)
        return result

    def run_all(self, commands: Sequence[Command], *, check: bool = True) -> list[Result]:
        """Independent queries in one round trip, run at once on the host: their results in
        order (check=True: the first failure raises, as run() would)."""
        if any(c.changes for c in commands):
            raise OpsError("internal: run_all() runs queries only")
        for command in commands:
            self._announce(command, None)
        results = self._execute_all(commands)
        for command, result in zip(commands, results, strict=True):
            if check and not result.ok:
                raise self.failure(command, result)
        return results

    def _execute_all(self, commands: Sequence[Command]) -> list[Result]:
        """One line for all of them (batch()); executors that answer each command on its own
        (a test's) override this."""
        token = f"::slipway-batch-{secrets.token_hex(6)}::"
        whole = self._execute(batch(commands, token), None)
        return split_batch(commands, token, whole.stdout)

    def put_text(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write a file on the host atomically."""
        self.run(write_file(path, mode, len(text.encode())), stdin=text)

    def read_text(self, path: str) -> str | None:
        """A file's content, None when it does not exist."""
        result = self.run(read_file(path), check=False)
        return result.stdout if result.ok else None

    def stream_into(self, command: Command, chunks: Iterable[bytes]) -> Result:
        """Run `command` with `chunks` as its standard input (e.g. `docker load`)."""
        if self._announce(command, None):
            return Result(command.line, 0, "", "")
        result = self._execute_streaming_in(command, chunks)
        if not result.ok:
            raise self.failure(command, result)
        return result

    def stream(self, command: Command, echo: bool | None = None) -> None:
        """Run a command, its output printed here as it comes (`logs --follow`)."""
        if self._announce(command, echo):
            return
        code = self._execute_streaming_out(command)
        if code != 0:
            raise OpsError(f"{command.description!r} failed on {self.label} (exit {code})")

    @contextmanager
    def lines(self, command: Command, echo: bool | None = None) -> Iterator[Iterator[str]]:
        """The standard output of a query line by line, as it comes (large outputs are never
        held in memory). Leaving early stops the command; a command that ran to its end and
        failed raises OpsError with its standard error."""
        if command.changes:
            raise OpsError(f"internal: lines() reads queries only, not {command.description!r}")
        self._announce(command, echo)
        with contextmanager(self._open_lines)(command) as found:
            yield found

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
