"""The deploy lock on a host: `mkdir <remote_dir>/lock` is atomic, lock/info.json says who.

A second deploy waits (bounded by `deploy.lock_wait`) and then fails naming the holder. A lock
not refreshed for `deploy.lock_ttl` seconds is stale (its deploy was killed): it is taken over
with a warning, by renaming it away first so two deploys can never both take it. The holder
refreshes the lock at every step and checks its token, so a deploy whose lock was taken over
stops instead of racing the new owner. Times are the host's clock (`date +%s`), never ours.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ops.deploy.commands import host as host_commands
from ops.errors import OpsError
from ops.executor import Command, Executor, change, query, quote
from ops.remote import Remote

POLL_SECONDS = 2.0


@dataclass(frozen=True)
class LockInfo:
    """What lock/info.json holds (empty strings when the holder died before writing it)."""

    owner: str
    token: str
    version: str
    started: int
    refreshed: int
    ttl: int
    operation: str = "deploy"

    def expires(self) -> int:
        return self.refreshed + self.ttl

    def describe(self, now: int) -> str:
        age = max(0, now - self.started)
        left = self.expires() - now
        state = f"expires in {left}s" if left > 0 else f"STALE since {-left}s"
        return (
            f"{self.operation} of {self.version or '?'} by {self.owner or 'unknown'}, "
            f"started {age}s ago, {state}"
        )


def default_owner() -> str:
    """Who is deploying: CI's actor when under GitHub Actions, else user@machine."""
    actor = os.environ.get("GITHUB_ACTOR")
    if actor:
        run = os.environ.get("GITHUB_RUN_ID", "")
        return f"github:{actor}" + (f" (run {run})" if run else "")
    return f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"


def parse_info(text: str | None, fallback_time: int) -> LockInfo:
    """LockInfo from info.json; a missing or broken file is a lock of unknown owner."""
    try:
        data = json.loads(text or "")
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return LockInfo("", "", "", fallback_time, fallback_time, 0)
    return LockInfo(
        owner=str(data.get("owner", "")),
        token=str(data.get("token", "")),
        version=str(data.get("version", "")),
        started=int(data.get("started", fallback_time)),
        refreshed=int(data.get("refreshed", fallback_time)),
        ttl=int(data.get("ttl", 0)),
        operation=str(data.get("operation", "deploy")),
    )


# ------------------------------------------------------------------------------ commands


def _guarded(guard: str, script: str) -> str:
    """`script` under flock on a guard file: check-then-change steps never interleave."""
    return f"flock -w 20 {quote(guard)} sh -c {quote(script)}"


def read_lock(directory: str) -> Command:
    """The host's time; then, when the lock is held: `held`, the lock's age, the digest of
    info.json and info.json itself."""
    info = quote(f"{directory}/info.json")
    return query(
        f"date +%s; if [ -d {quote(directory)} ]; then echo held; "
        f"stat -c %Y {quote(directory)}; "
        f"{{ cat {info} 2>/dev/null || true; }} | sha256sum | cut -c1-64; "
        f"cat {info} 2>/dev/null; fi",
        "read the deploy lock",
    )


def take_lock(directory: str) -> Command:
    """mkdir is atomic: the first to create the directory holds the lock and writes info.json
    from standard input; prints `taken` or `busy`."""
    info = quote(f"{directory}/info.json")
    return change(
        f"mkdir -p {quote(directory.rsplit('/', 1)[0])} && "
        f"if mkdir {quote(directory)} 2>/dev/null; then "
        f"cat > {info}; echo taken; else cat >/dev/null; echo busy; fi",
        "take the deploy lock",
        shown=f"mkdir {directory} (the deploy lock), then write its info.json",
    )


def break_stale_lock(directory: str, guard: str, digest: str, grave: str) -> Command:
    """Rename the lock away, but only if info.json is still exactly what was judged stale (a
    holder that refreshed in between keeps its lock), then remove it."""
    info = quote(f"{directory}/info.json")
    script = (
        f"now=$({{ cat {info} 2>/dev/null || true; }} | sha256sum | cut -c1-64); "
        f'if [ "$now" = {quote(digest)} ]; then mv -T {quote(directory)} {quote(grave)} '
        f"&& rm -rf {quote(grave)}; fi; true"
    )
    return change(_guarded(guard, script), "remove the stale deploy lock")


def refresh_lock(directory: str, guard: str, token: str) -> Command:
    """Replace info.json with standard input if the lock still carries `token`; prints `ok`
    or `lost`."""
    info = quote(f"{directory}/info.json")
    tmp = quote(f"{directory}/info.json.{token}.tmp")
    script = f"cat > {tmp}; " + _guarded(
        guard,
        f"grep -qF {quote(token)} {info} 2>/dev/null "
        f"&& mv -f {tmp} {info} && echo ok "
        f"|| {{ rm -f {tmp}; echo lost; }}",
    )
    return change(script, "refresh the deploy lock")


def release_lock(directory: str, guard: str, token: str) -> Command:
    """Remove the lock if it still carries `token`; prints `released` or `not-ours`."""
    info = quote(f"{directory}/info.json")
    return change(
        _guarded(
            guard,
            f"grep -qF {quote(token)} {info} 2>/dev/null && "
            f"rm -rf {quote(directory)} && echo released || echo not-ours",
        ),
        "release the deploy lock",
    )


def remove_lock(directory: str) -> Command:
    return change(f"rm -rf {quote(directory)}", "remove the deploy lock")


# ------------------------------------------------------------------------------ the lock


class LockTakenOver(OpsError):
    """The lock no longer carries this deploy's token: another deploy holds it now."""


class DeployLock:
    """The lock of one environment on one host."""

    def __init__(self, remote: Executor, remote_dir: str, ttl: int) -> None:
        self.remote = remote
        self.dir = f"{remote_dir.rstrip('/')}/lock"
        self.info_path = f"{self.dir}/info.json"
        self.guard = f"{remote_dir.rstrip('/')}/.lock-guard"
        self.ttl = ttl
        self.held: LockInfo | None = None
        self.last_digest = ""

    # ------------------------------------------------------------------ reading

    def remote_now(self) -> int:
        return int(self.remote.run(host_commands.clock()).stdout.strip())

    def status(self) -> tuple[LockInfo | None, int]:
        """(holder or None, host time). Also keeps the digest of info.json in `last_digest`."""
        lines = self.remote.run(read_lock(self.dir)).stdout.splitlines()
        now = int(lines[0])
        if len(lines) < 2 or lines[1] != "held":
            self.last_digest = ""
            return None, now
        made = int(lines[2]) if len(lines) > 2 else now
        self.last_digest = lines[3] if len(lines) > 3 else ""
        info = parse_info("\n".join(lines[4:]), made)
        if info.ttl == 0:  # died before writing info.json (or wrote garbage): judge by age
            info = LockInfo(info.owner, info.token, info.version, made, made, self.ttl)
        return info, now

    # ------------------------------------------------------------------ taking

    def _try_mkdir(self, info: LockInfo, echo: bool | None) -> bool:
        command = take_lock(self.dir)
        out = self.remote.run(command, stdin=json.dumps(info.__dict__), echo=echo).stdout
        return out.strip().endswith("taken")

    def _break_stale(self, digest: str) -> None:
        grave = f"{self.dir}.stale.{secrets.token_hex(4)}"
        self.remote.run(break_stale_lock(self.dir, self.guard, digest, grave))

    def acquire(
        self,
        version: str,
        wait: float,
        owner: str | None = None,
        operation: str = "deploy",
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] = print,
    ) -> LockInfo:
        """Take the lock, waiting up to `wait` seconds for a live holder; break a stale one."""
        deadline = time.monotonic() + wait
        announced = False
        broken: set[str] = set()
        attempts = 0
        while True:
            now = self.remote_now()
            mine = LockInfo(
                owner=owner or default_owner(),
                token=secrets.token_hex(8),
                version=version,
                started=now,
                refreshed=now,
                ttl=self.ttl,
                operation=operation,
            )
            # Said once: the retries while waiting are the "waiting for the lock" line's.
            attempts += 1
            if self._try_mkdir(mine, echo=None if attempts == 1 else False):
                if attempts > 1:  # the retries were quiet: say the one that took it
                    self.remote.echo(take_lock(self.dir))
                self.held = mine
                return mine
            holder, now = self.status()
            if holder is None:
                continue  # released between our two commands: try again at once
            if holder.expires() <= now:
                if self.last_digest in broken:
                    # Already tried to remove this very lock: it cannot be removed from here.
                    if time.monotonic() >= deadline:
                        raise OpsError(
                            f"a stale deploy lock on {self.remote.label} could not be "
                            f"removed ({holder.describe(now)}). Fix: check {self.dir} on the "
                            "host (owner, permissions), then `invoke lock.release --env=<env>`"
                        )
                    sleep(POLL_SECONDS)
                else:
                    log(
                        f"    WARNING: taking over a stale deploy lock on "
                        f"{self.remote.label}: {holder.describe(now)} (not refreshed for "
                        f"{now - holder.refreshed}s, ttl {holder.ttl}s): its deploy was killed "
                        "or lost its connection"
                    )
                    broken.add(self.last_digest)
                    self._break_stale(self.last_digest)
                continue
            if time.monotonic() >= deadline:
                raise OpsError(
                    f"{self.remote.label} is locked: {holder.describe(now)}. Fix: wait for "
                    "it to finish (or pass a longer wait), or if that deploy is dead, "
                    "`invoke lock.release --env=<env>` after checking with its owner"
                )
            if not announced:
                log(f"    waiting for the deploy lock: {holder.describe(now)}")
                announced = True
            sleep(POLL_SECONDS)

    def refresh(self, echo: bool | None = None) -> None:
        """Push the expiry forward; fail if the lock is no longer ours (taken over)."""
        if self.held is None:
            raise OpsError("refresh of a deploy lock that is not held")
        now = self.remote_now()
        updated = LockInfo(**{**self.held.__dict__, "refreshed": now})
        out = self.remote.run(
            refresh_lock(self.dir, self.guard, self.held.token),
            stdin=json.dumps(updated.__dict__),
            echo=echo,
        )
        if out.stdout.strip() != "ok":
            raise LockTakenOver(
                f"the deploy lock on {self.remote.label} was taken over by another deploy "
                "(this one was idle longer than lock_ttl): stopping here"
            )
        self.held = updated

    def release(self) -> bool:
        """Remove the lock if it is still ours; True when removed."""
        if self.held is None:
            return False
        command = release_lock(self.dir, self.guard, self.held.token)
        out = self.remote.run(command).stdout.strip()
        self.held = None
        return out == "released"

    def force_release(self) -> LockInfo | None:
        """Remove whatever lock is there (operator command); returns what it was."""
        holder, _ = self.status()
        if holder is not None:
            self.remote.run(remove_lock(self.dir))
        return holder


class Heartbeat:
    """Refreshes a held lock every ttl/3 on its own SSH connection, so a long step (a slow
    image transfer, a long migration) never lets the lock look stale. `lost` says why it
    stopped if the lock was taken over or the host became unreachable."""

    def __init__(self, lock: DeployLock, connect: Callable[[], Executor] | None = None) -> None:
        """connect: opens the heartbeat's own connection to the lock's host (default: a new
        SSH connection to the host of the lock's Remote)."""
        self.main = lock
        self.connect = connect or self._new_ssh_connection
        self.interval = max(5.0, lock.ttl / 3)
        self.lost = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lock-heartbeat")

    def _new_ssh_connection(self) -> Executor:
        remote = self.main.remote
        if not isinstance(remote, Remote):
            raise OpsError("internal: a heartbeat off SSH needs its `connect`")
        return Remote(remote.host)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        """Refresh every interval on a connection of its own. A refresh that fails for another
        reason than a takeover (the connection dropped) is retried at the next interval, on a
        new connection, until the lock would soon look stale: only then is it lost."""
        remote: Executor | None = None
        mirror: DeployLock | None = None
        last_refresh = time.monotonic()
        try:
            while not self._stop.wait(self.interval):
                try:
                    if remote is None or mirror is None:
                        remote = self.connect()
                        mirror = DeployLock(remote, self.main.dir.rsplit("/", 1)[0], self.main.ttl)
                        mirror.held = self.main.held
                    # Quiet: its lines would land in the middle of the steps' output.
                    mirror.refresh(echo=False)
                    last_refresh = time.monotonic()
                except LockTakenOver as exc:
                    self.lost = str(exc)
                    return
                except Exception as exc:  # any: a dead thread must say so
                    if remote is not None:
                        remote.close()
                    remote = mirror = None
                    if time.monotonic() - last_refresh > self.main.ttl * 2 / 3:
                        self.lost = (
                            f"the lock could not be refreshed for "
                            f"{time.monotonic() - last_refresh:.0f}s: {exc or type(exc).__name__}"
                        )
                        return
        finally:
            if remote is not None:
                remote.close()

    def check(self) -> None:
        """Raise when the lock is no longer ours: nothing more may change on the host."""
        if self.lost:
            raise OpsError(f"the deploy lock was lost: {self.lost}")
