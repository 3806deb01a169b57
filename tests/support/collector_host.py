"""A fake host running the central log collector, for the unit tests of `invoke logs` on
hosts: what `docker ps` and the collector's `slipway-logs-read list|cat` print there.

    host = CollectorHost({"current.log": [collected("2026-11-30T10:00:00Z", "api", "hello")]})
    collector = RemoteCollector.find(host, PROJECT, "staging")
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator

from ops.config import Host
from ops.errors import OpsError
from ops.executor import Command, Result
from support.recorder import Recorder

PROJECT = "slipway-staging"
CONTAINER = "f00dcafe"  # the collector's container on every host
LIST = f"docker exec {CONTAINER} slipway-logs-read list"
RECENT = "slipway-20261130T100000.000000Z.log"  # a rotated file, not yet compressed


def collected(ts: str, service: str, line: str | dict[str, object], project: str = PROJECT) -> str:
    """A line as the collector writes it (compact JSON, like rsyslog's template)."""
    text = line if isinstance(line, str) else json.dumps(line, separators=(",", ":"))
    record = {
        "ts": ts,
        "service": service,
        "container": f"{project}-{service}-1",
        "host": "vm",
        "line": text,
    }
    return json.dumps(record, separators=(",", ":")) + "\n"


class CollectorHost(Recorder):
    """What the host answers: `docker ps` with the project's containers, and the collector's
    `slipway-logs-read list|cat` run on `files`. Commands are split like the remote shell
    would, so a badly quoted word breaks the search. Every command is recorded."""

    def __init__(
        self,
        files: dict[str, list[str]],
        *,
        running: bool = True,
        services: tuple[str, ...] = ("api", "logs", "nginx", "postgres", "redis", "worker"),
        list_error: str = "",
        cat_error: str = "",
        host: Host | None = None,
    ) -> None:
        super().__init__(host or Host(user="deploy", address="203.0.113.10"))
        self.files = files
        self.running = running
        self.services = services
        self.list_error = list_error
        self.cat_error = cat_error

    def __enter__(self) -> CollectorHost:
        return self

    def respond(self, command: Command, stdin: str | None) -> Result:
        line = command.line
        words = shlex.split(line)
        if words[:3] == ["docker", "ps", "-q"]:
            return Result(line, 0, f"{CONTAINER}\n" if self.running else "", "")
        if words[:3] == ["docker", "ps", "-a"]:
            # A container per replica: the same service more than once.
            out = "".join(f"{name}\n{name}\n" for name in self.services)
            return Result(line, 0, out, "")
        if words == ["docker", "exec", CONTAINER, "slipway-logs-read", "list"]:
            if self.list_error:
                return Result(line, 1, "", self.list_error)
            listing = "".join(
                f"{name}\t{sum(map(len, lines))}\t1796034000\n"
                for name, lines in self.files.items()
            )
            return Result(line, 0, listing, "")
        raise AssertionError(f"unexpected command {line!r}")

    def _open_lines(self, command: Command) -> Iterator[Iterator[str]]:
        words = shlex.split(command.line)
        assert words[:5] == ["docker", "exec", CONTAINER, "slipway-logs-read", "cat"]
        rest, fixed = words[5:], []
        while rest[:1] == ["--fixed"]:
            fixed.append(rest[1])
            rest = rest[2:]
        out = [line for name in rest for line in self.files[name] if all(f in line for f in fixed)]
        yield iter(out)
        if self.cat_error:
            raise OpsError(
                f"{command.what!r} failed on {self.host.label} (exit 2): {self.cat_error}"
            )

    def reads(self) -> list[str]:
        return [c for c in self.lines_run if " slipway-logs-read cat" in c]
