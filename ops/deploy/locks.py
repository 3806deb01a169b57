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

from ops.errors import OpsError
from ops.remote import Remote, quote

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


class DeployLock:
    """The lock of one environment on one host."""

    def __init__(self, remote: Remote, remote_dir: str, ttl: int) -> None:
        self.remote = remote
        self.dir = f"{remote_dir.rstrip('/')}/lock"
        self.info_path = f"{self.dir}/info.json"
        self.ttl = ttl
        self.held: LockInfo | None = None
        self.last_digest = ""

    # ------------------------------------------------------------------ reading

    def remote_now(self) -> int:
        return int(self.remote.run("date +%s", what="read the host's clock").stdout.strip())

    def status(self) -> tuple[LockInfo | None, int]:
        """(holder or None, host time). Also keeps the digest of info.json in `last_digest`."""
        info_path = quote(self.info_path)
        script = (
            f"date +%s; if [ -d {quote(self.dir)} ]; then echo held; "
            f"stat -c %Y {quote(self.dir)}; "
            f"{{ cat {info_path} 2>/dev/null || true; }} | sha256sum | cut -c1-64; "
            f"cat {info_path} 2>/dev/null; fi"
        )
        lines = self.remote.run(script, what="read the deploy lock").stdout.splitlines()
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

    def _guarded(self, script: str) -> str:
        """`script` under flock on a guard file: check-then-change steps never interleave."""
        guard = f"{self.dir.rsplit('/', 1)[0]}/.lock-guard"
        return f"flock -w 20 {quote(guard)} sh -c {quote(script)}"

    # ------------------------------------------------------------------ taking

    def _try_mkdir(self, info: LockInfo) -> bool:
        payload = json.dumps(info.__dict__)
        script = (
            f"mkdir -p {quote(str(self.dir).rsplit('/', 1)[0])} && "
            f"if mkdir {quote(self.dir)} 2>/dev/null; then "
            f"cat > {quote(self.info_path)}; echo taken; else cat >/dev/null; echo busy; fi"
        )
        out = self.remote.run(script, stdin=payload, what="take the deploy lock").stdout
        return out.strip().endswith("taken")

    def _break_stale(self, digest: str) -> None:
        """Rename the stale lock away, but only if info.json is still exactly what was judged
        stale (a holder that refreshed in between keeps its lock), then remove it."""
        grave = f"{self.dir}.stale.{secrets.token_hex(4)}"
        info = quote(self.info_path)
        script = (
            f"now=$({{ cat {info} 2>/dev/null || true; }} | sha256sum | cut -c1-64); "
            f'if [ "$now" = {quote(digest)} ]; then mv -T {quote(self.dir)} {quote(grave)} '
            f"&& rm -rf {quote(grave)}; fi; true"
        )
        self.remote.run(self._guarded(script), what="remove the stale deploy lock")

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
            if self._try_mkdir(mine):
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
                            f"a stale deploy lock on {self.remote.host.label} could not be "
                            f"removed ({holder.describe(now)}). Fix: check {self.dir} on the "
                            "host (owner, permissions), then `invoke lock.release --env=<env>`"
                        )
                    sleep(POLL_SECONDS)
                else:
                    log(
                        f"    WARNING: taking over a stale deploy lock on "
                        f"{self.remote.host.label}: {holder.describe(now)} (not refreshed for "
                        f"{now - holder.refreshed}s, ttl {holder.ttl}s): its deploy was killed "
                        "or lost its connection"
                    )
                    broken.add(self.last_digest)
                    self._break_stale(self.last_digest)
                continue
            if time.monotonic() >= deadline:
                raise OpsError(
                    f"{self.remote.host.label} is locked: {holder.describe(now)}. Fix: wait for "
                    "it to finish (or pass a longer wait), or if that deploy is dead, "
                    "`invoke lock.release --env=<env>` after checking with its owner"
                )
            if not announced:
                log(f"    waiting for the deploy lock: {holder.describe(now)}")
                announced = True
            sleep(POLL_SECONDS)

    def refresh(self) -> None:
        """Push the expiry forward; fail if the lock is no longer ours (taken over)."""
        if self.held is None:
            raise OpsError("refresh of a deploy lock that is not held")
        now = self.remote_now()
        updated = LockInfo(**{**self.held.__dict__, "refreshed": now})
        tmp = f"{self.info_path}.{self.held.token}.tmp"
        script = f"cat > {quote(tmp)}; " + self._guarded(
            f"grep -qF {quote(self.held.token)} {quote(self.info_path)} 2>/dev/null "
            f"&& mv -f {quote(tmp)} {quote(self.info_path)} && echo ok "
            f"|| {{ rm -f {quote(tmp)}; echo lost; }}"
        )
        out = self.remote.run(script, stdin=json.dumps(updated.__dict__), what="refresh lock")
        if out.stdout.strip() != "ok":
            raise OpsError(
                f"the deploy lock on {self.remote.host.label} was taken over by another deploy "
                "(this one was idle longer than lock_ttl): stopping here"
            )
        self.held = updated

    def release(self) -> bool:
        """Remove the lock if it is still ours; True when removed."""
        if self.held is None:
            return False
        script = self._guarded(
            f"grep -qF {quote(self.held.token)} {quote(self.info_path)} 2>/dev/null && "
            f"rm -rf {quote(self.dir)} && echo released || echo not-ours"
        )
        out = self.remote.run(script, what="release the deploy lock").stdout.strip()
        self.held = None
        return out == "released"

    def force_release(self) -> LockInfo | None:
        """Remove whatever lock is there (operator command); returns what it was."""
        holder, _ = self.status()
        if holder is not None:
            self.remote.run(f"rm -rf {quote(self.dir)}", what="remove the deploy lock")
        return holder


class Heartbeat:
    """Refreshes a held lock every ttl/3 on its own SSH connection, so a long step (a slow
    image transfer, a long migration) never lets the lock look stale. `lost` says why it
    stopped if the lock was taken over or the host became unreachable."""

    def __init__(self, lock: DeployLock) -> None:
        self.main = lock
        self.interval = max(5.0, lock.ttl / 3)
        self.lost = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lock-heartbeat")

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        remote = Remote(self.main.remote.host)
        mirror = DeployLock(remote, self.main.dir.rsplit("/", 1)[0], self.main.ttl)
        mirror.held = self.main.held
        try:
            while not self._stop.wait(self.interval):
                try:
                    mirror.refresh()
                except OpsError as exc:
                    self.lost = str(exc)
                    return
        finally:
            remote.close()

    def check(self) -> None:
        """Raise when the lock is no longer ours: nothing more may change on the host."""
        if self.lost:
            raise OpsError(f"the deploy lock was lost: {self.lost}")
