"""Release records on a host: <remote_dir>/releases/<id>/ with the exact compose files, the
non-secret variables and release.json; `current` is a symlink replaced atomically; audit.log
holds one JSON line per deploy or rollback event.

A release directory is complete before `current` points at it, so a rollback never finds half a
release. Ids sort by time: `<UTC yyyymmddThhmmssZ>-<version>`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from ops.errors import OpsError
from ops.executor import Command, Executor, change, query, quote

SEPARATOR = "----slipway-release----"
DEFAULT_OVERLAYS = ("remote.yaml",)


@dataclass
class Release:
    """One release as recorded on the host."""

    id: str
    version: str
    git_sha: str = ""
    images: dict[str, str] = field(default_factory=dict)  # image name:tag -> image id
    who: str = ""
    kind: str = "deploy"  # deploy | rollback
    started: str = ""
    finished: str = ""
    seconds: float = 0.0
    outcome: str = "in progress"  # in progress | succeeded | failed | rolled back
    previous: str = ""  # the release that was current before this one
    note: str = ""
    # sha256 of what the release runs: files, variables, image ids, a digest of the secrets.
    # A deploy whose digest equals the current release's changes nothing.
    digest: str = ""
    # The compose files after compose.yaml that `docker compose -f` takes, in order (records
    # written before the central logs existed have none: remote.yaml alone).
    overlays: list[str] = field(default_factory=lambda: list(DEFAULT_OVERLAYS))
    # The digest of each part of a one-host release (ops/deploy/parts.py): a deploy leaves a
    # part whose containers run with it alone. Records from before the parts have none.
    parts: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Release:
        data = json.loads(text)
        if not isinstance(data, dict) or "id" not in data:
            raise ValueError("not a release record")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id(version: str, now: dt.datetime | None = None) -> str:
    """`20261130T101500Z-<version>`."""
    stamp = (now or utc_now()).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{version}"


def iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds")


# ------------------------------------------------------------------------------ commands


def read_current(root: str) -> Command:
    return query(f"readlink {quote(root + '/current')} || true", "read the current release")


def read_records(root: str) -> Command:
    """Every release.json under releases/, each followed by SEPARATOR."""
    return query(
        f"cd {quote(root + '/releases')} 2>/dev/null || exit 0; "
        f'for f in */release.json; do [ -f "$f" ] || continue; cat "$f"; '
        f"echo; echo {SEPARATOR}; done",
        "list releases",
    )


def point_current(root: str, release_id: str) -> Command:
    """Point `current` at the release: a new symlink renamed over the old one (atomic)."""
    tmp = f"{root}/current.tmp"
    return change(
        f"cd {quote(root)} && ln -sfn {quote('releases/' + release_id)} {quote(tmp)} && "
        f"mv -Tf {quote(tmp)} {quote(root + '/current')}",
        "switch the current release",
    )


def append_audit(root: str, line: str) -> Command:
    """Append standard input to audit.log (O_APPEND: lines from two writers never mix)."""
    return change(
        f"mkdir -p {quote(root)} && cat >> {quote(root + '/audit.log')}",
        "append to the audit log",
        shown=f"append to {root}/audit.log: {line}",
    )


def remove_release(path: str) -> Command:
    return change(f"rm -rf {quote(path)}", "prune release")


# ------------------------------------------------------------------------------ the store


def parse_current(out: str) -> str | None:
    """The release id `current` points at, from read_current()'s output (None: no link)."""
    out = out.strip()
    return out.rsplit("/", 1)[-1] if out else None


def parse_records(text: str) -> list[Release]:
    """The releases in read_records()' output, oldest first; unreadable records skipped."""
    found = []
    for chunk in text.split(SEPARATOR):
        if chunk.strip():
            try:
                found.append(Release.from_json(chunk))
            except (ValueError, TypeError):
                continue
    return sorted(found, key=lambda r: r.id)


class ReleaseStore:
    """The releases of one environment on one host."""

    def __init__(self, remote: Executor, remote_dir: str) -> None:
        self.remote = remote
        self.root = remote_dir.rstrip("/")

    def path(self, release_id: str, name: str = "") -> str:
        base = f"{self.root}/releases/{release_id}"
        return f"{base}/{name}" if name else base

    # ------------------------------------------------------------------ reading

    def current_id(self) -> str | None:
        return parse_current(self.remote.run(read_current(self.root)).stdout)

    def history(self) -> list[Release]:
        """Every recorded release, oldest first; unreadable records are skipped."""
        return parse_records(self.remote.run(read_records(self.root)).stdout)

    def current_and_history(self) -> tuple[str | None, list[Release]]:
        """current_id() and history() in one round trip."""
        current, records = self.remote.run_all([read_current(self.root), read_records(self.root)])
        return parse_current(current.stdout), parse_records(records.stdout)

    def get(self, release_id: str) -> Release:
        text = self.remote.read_text(self.path(release_id, "release.json"))
        if text is None:
            known = ", ".join(r.id for r in self.history()) or "none"
            raise OpsError(
                f"no release {release_id!r} on {self.remote.label}. Known releases: {known}"
            )
        return Release.from_json(text)

    # ------------------------------------------------------------------ writing

    def write_files(self, release_id: str, files: Mapping[str, str]) -> None:
        """The release's compose files and variables (each written atomically)."""
        for name, text in files.items():
            self.remote.put_text(self.path(release_id, name), text, mode=0o644)

    def record(self, release: Release) -> None:
        self.remote.put_text(self.path(release.id, "release.json"), release.to_json())

    def set_current(self, release_id: str) -> None:
        self.remote.run(point_current(self.root, release_id))

    def audit(self, event: Mapping[str, object]) -> None:
        """Append one JSON line to audit.log."""
        line = json.dumps({"at": iso(utc_now()), **event}, sort_keys=True)
        self.remote.run(append_audit(self.root, line), stdin=line + "\n")

    def prune(self, keep: int, protect: Sequence[str]) -> list[str]:
        """Delete the oldest release records beyond `keep`, never those in `protect`."""
        releases = self.history()
        removable = [r.id for r in releases if r.id not in protect]
        excess = len(releases) - keep
        doomed = removable[: max(0, excess)]
        for release_id in doomed:
            self.remote.run(remove_release(self.path(release_id)))
        return doomed
