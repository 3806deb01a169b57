"""What every deploy and rollback shares, whatever runs the release (one host with Compose,
ops/deploy/onehost.py; several with Docker Swarm, ops/deploy/swarm/operation.py): the state of
one operation and the steps that do not depend on the mode. Each mode's class adds its own
steps and its tables (`deploy_steps()`, `rollback_steps()`, `switch_back_steps()`) at the
bottom of its class.

The rules every step keeps: pre-flight steps only read (queries on the hosts, files and images
here), so `--dry-run` changes nothing on the hosts nor in this machine's images and containers
(it may record a new host's key in known_hosts, and renders the alert receivers in a throwaway
container); the first impacting step takes the host's deploy lock, and every later step that
changes a host first checks it is still held (`refresh_lock`); the executors echo each command
that changes something, with its host. A failure once the switch began puts the previous release
back (`failed()`); any other failure leaves the running release as it was and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ops import compose, config, secrets
from ops.compose import Build
from ops.deploy import checks, data, locks, plan, preflight, release, rollback, ship, smoke
from ops.deploy.commands import host as host_commands
from ops.deploy.hostcompose import RemoteCompose
from ops.deploy.images import LocalEngine, image_refs
from ops.deploy.registry import Registry
from ops.deploy.releases import Release, ReleaseStore, iso, new_id, utc_now
from ops.deploy.rollout import RolloutError
from ops.errors import OpsError
from ops.executor import Executor
from ops.remote import Remote
from ops.steps import Operation, Runner, Step

MIGRATE_TIMEOUT = 900.0
UNTOUCHED = "the running release is untouched"


@dataclass
class Deployment(Operation):
    """State shared by the steps of one deploy or rollback (kind), on the environment's hosts."""

    env: config.Environment
    build: Build
    kind: str = "deploy"  # deploy | rollback
    dry_run: bool = False
    explicit_version: bool = False  # --version given: never build, only use existing images
    skip_backup: bool = False  # --skip-backup: no backup before the migrations
    restore: bool = False  # --restore: a host without its database rebuilds it from the backups
    to: str | None = None  # rollback --to
    local: LocalEngine = field(default_factory=LocalEngine)
    # How a host is reached: SSH by default; unit tests give recording executors.
    connect: Callable[[config.Host], Executor] | None = None
    secrets: secrets.Secrets | None = None
    remotes: dict[int, Executor] = field(default_factory=dict)
    lock: locks.DeployLock | None = None
    heartbeat: locks.Heartbeat | None = None
    store: ReleaseStore | None = None
    release: Release | None = None  # what this operation puts in place
    previous: Release | None = None  # what ran before it
    to_build: list[str] = field(default_factory=list)  # images this machine builds first
    lacking: dict[int, list[str]] = field(default_factory=dict)  # images each host needs
    planned_images: dict[str, str] = field(default_factory=dict)  # ref -> id, once settled
    part_digests: dict[str, str] = field(default_factory=dict)  # ops/deploy/parts.py
    schema_note: str | None = None  # why no migration has work to do ('': some may), once read
    settled: bool = False  # the release is planned with every image id known
    first_deploy: bool = False
    unchanged: bool = False  # the current release already runs exactly this
    maintenance: bool = False  # maintenance mode is on: public smoke checks answer 503
    switched: bool = False  # the switch began: a failure now puts the previous release back
    switching_back: bool = False  # the automatic rollback's: the failed release is no standby
    standby_kept: str = ""  # the release whose replicas the switch kept on standby ("": none)
    switched_at: float | None = None  # when the API's traffic moved (time.time())
    acme_deferred: bool = False  # tls: acme and nginx not running yet: certificates after it
    restored: bool = False  # this deploy restored the database (PostgreSQL replays WAL)
    registry: Registry | None = None  # None: images go over SSH
    shipper: ship.Shipper | None = None
    started: float = field(default_factory=time.monotonic)

    # ------------------------------------------------------------------ what modes define

    def overlays(self) -> list[str]:
        """The compose files of a new release after compose.yaml."""
        raise NotImplementedError

    def rcompose(self, release_id: str) -> RemoteCompose:
        """Compose of a release on the first host, with the files that release recorded."""
        raise NotImplementedError

    def release_files(self, release_id: str) -> dict[str, str]:
        raise NotImplementedError

    def check_mode(self) -> None:
        """The hosts do not run the environment in the other mode."""
        raise NotImplementedError

    def deploy_steps(self) -> list[Step]:
        raise NotImplementedError

    def rollback_steps(self) -> list[Step]:
        raise NotImplementedError

    def switch_back_steps(self) -> list[Step]:
        """The automatic rollback after a failure once the switch began (self is the
        reversal: its release is the one that ran before)."""
        raise NotImplementedError

    def steps(self) -> list[Step]:
        return self.rollback_steps() if self.kind == "rollback" else self.deploy_steps()

    def __post_init__(self) -> None:
        self.title = (
            f"invoke rollback --env={self.env.name}"
            if self.kind == "rollback"
            else f"invoke deploy --env={self.env.name} (version {self.build.version})"
        )

    # ------------------------------------------------------------------ helpers

    @property
    def host(self) -> config.Host:
        return self.env.hosts[0]

    @property
    def root(self) -> str:
        return self.env.deploy.remote_dir.rstrip("/")

    @property
    def acme(self) -> bool:
        return self.env.tls == "acme"

    @property
    def monitoring(self) -> bool:
        """The release runs Prometheus, Alertmanager, the exporters and the central logs."""
        return compose.runs_monitoring(self.env)

    def refs(self) -> list[str]:
        return image_refs(self.build, self.acme, self.monitoring)

    def on(self, index: int) -> Executor:
        """The executor of the environment's host number `index` (connected at first use)."""
        if index not in self.remotes:
            host = self.env.hosts[index]
            self.remotes[index] = (
                self.connect(host) if self.connect else Remote(host, dry_run=self.dry_run)
            )
        return self.remotes[index]

    def sh(self) -> Executor:
        """The first host's executor: it runs compose, the release records and the lock."""
        return self.on(0)

    def every_host(self) -> list[tuple[config.Host, Executor]]:
        return [(host, self.on(index)) for index, host in enumerate(self.env.hosts)]

    def releases(self) -> ReleaseStore:
        if self.store is None:
            self.store = ReleaseStore(self.sh(), self.root)
        return self.store

    def release_id(self) -> str:
        if self.release is None:
            raise OpsError("internal: no release planned before a step that needs one")
        return self.release.id

    def refresh_lock(self) -> None:
        """Stop before changing anything more if the lock is no longer ours."""
        if self.heartbeat is not None:
            self.heartbeat.check()

    def release_runs_monitoring(self) -> bool:
        """The release being deployed or put back has the monitoring stack (its own record)."""
        return self.release is not None and compose.LOGGING_OVERLAY in self.release.overlays

    def say(self, line: str) -> None:
        print(f"    {line}", flush=True)

    # ------------------------------------------------------------------ pre-flight

    def check_config(self) -> str:
        preflight.check_target(self.env)
        if self.env.registry is not None:
            # Half-set or unusable credentials stop the deploy here, before any host.
            self.registry = Registry.from_env(self.env, secrets.registry_credentials(self.env))
        self.secrets = secrets.require(self.env)
        # A rollback runs with the secrets its release recorded: the receivers are its own.
        if self.kind == "deploy" and self.monitoring:
            preflight.check_alert_receivers_set(self.env, self.secrets)
        where = ", ".join(h.label for h in self.env.hosts)
        mode = f"swarm of {len(self.env.hosts)} hosts ({where})" if self.env.is_swarm else where
        return f"{self.env.source.name}: {mode}, version {self.build.version}"

    def check_images(self) -> str:
        """Which images this machine has; the missing ones are built after the lock (a dry run
        builds nothing). --version never builds: CI deploys exactly what it built and tested."""
        self.to_build = self.local.missing(self.refs())
        if self.to_build and self.explicit_version:
            raise OpsError(
                f"images missing for version {self.build.version}: {', '.join(self.to_build)}. "
                "Fix: load the images that were built for it (`invoke images.load "
                "--input=...`), or build them from that commit (`invoke build` with "
                "SLIPWAY_VERSION set)"
            )
        note = f"to build after the lock: {len(self.to_build)}" if self.to_build else "all present"
        if self.monitoring:
            note += "; " + self.check_alert_receivers()
        return note

    def check_alert_receivers(self) -> str:
        assert self.secrets is not None
        return preflight.check_alert_receivers(
            self.env, self.secrets, self.build, self.to_build, self.local
        )

    def check_hosts(self) -> str:
        """Every host: docker (and on the first, compose) usable, disk, ports, the mode."""
        notes = [
            preflight.check_host(self.env, host, remote, index == 0, self.monitoring)
            for index, (host, remote) in enumerate(self.every_host())
        ]
        self.check_mode()
        return "; ".join(notes)

    def plan(self) -> str:
        store = self.releases()
        current = store.current_id()
        self.previous = store.get(current) if current else None
        self.first_deploy = self.previous is None
        self.maintenance = (
            self.sh().run(host_commands.exists(f"{self.root}/nginx/maintenance"), check=False).ok
        )
        if self.maintenance:
            self.say(
                "plan: WARNING maintenance mode is on: the public smoke checks are skipped "
                "(new replicas still pass /ready from inside before any switch)"
            )
        if self.to_build:
            self.say(f"plan: images to build first: {', '.join(self.to_build)}")
            self.say("plan: what to ship is settled once they are built")
            self.lacking, self.release, self.unchanged, self.settled = {}, None, False, False
            return f"{len(self.to_build)} image(s) to build"
        return self.settle()

    def settle(self) -> str:
        """The release, once every image id is known: what each host lacks, the digest, and
        whether the current release already runs exactly this."""
        assert self.secrets is not None
        ids = self.planned_images = self.image_ids()
        digest = release.release_digest(self.release_files("-"), ids, self.secrets.values)
        self.settled = True
        previous = self.previous
        shipping = sorted({ref for refs in self.lacking.values() for ref in refs})
        if previous and previous.outcome == "succeeded" and previous.digest == digest:
            self.unchanged = True
            self.release = previous
            self.say(
                f"plan: nothing changed since the current release {previous.id} (same "
                "images, configuration and secrets): check it and leave it running"
            )
            return "unchanged"
        self.unchanged = False
        self.release = Release(
            digest=digest,
            id=new_id(self.build.version),
            version=self.build.version,
            git_sha=self.build.git_sha,
            images=ids,
            who=locks.default_owner(),
            kind=self.kind,
            started=iso(utc_now()),
            previous=previous.id if previous else "",
            overlays=self.overlays(),
            parts=dict(self.part_digests),
        )
        for line in plan.lines(self.env, previous, self.release, shipping):
            self.say(f"plan: {line}")
        return f"{len(shipping)} image(s) to ship"

    def image_ids(self) -> dict[str, str]:
        """The id of each image of the release; what each host lacks goes to `lacking`."""
        ids, self.lacking = plan.image_ids(self.every_host(), self.refs(), self.local)
        for index, (host, _) in enumerate(self.every_host()):
            if index > 0:
                self.say(f"plan: {host.label} lacks: {', '.join(self.lacking[index]) or 'none'}")
        return ids

    # ------------------------------------------------------------------ impacting: common

    def take_lock(self) -> str:
        planned = self.previous.id if self.previous else None
        version = self.release.version if self.release else self.build.version
        held = self.acquire_lock(version)
        if self.releases().current_id() != planned:
            # Another deploy finished while this one waited: plan again from what runs now.
            self.say("the current release changed while waiting for the lock: planning again")
            self.plan() if self.kind == "deploy" else self.choose_release()
        if self.kind == "rollback":
            assert self.release is not None
            self.releases().audit(
                {"event": "rollback started", "release": self.release.id, "who": held.owner}
            )
        return f"held by {held.owner}"

    def acquire_lock(self, version: str) -> locks.LockInfo:
        self.lock = locks.DeployLock(self.sh(), self.root, self.env.deploy.lock_ttl)
        held = self.lock.acquire(
            version, wait=float(self.env.deploy.lock_wait), operation=self.kind
        )
        self.heartbeat = locks.Heartbeat(self.lock, connect=self.heartbeat_connection).start()
        return held

    def heartbeat_connection(self) -> Executor:
        return self.connect(self.host) if self.connect else Remote(self.host)

    def build_images(self) -> str:
        """The images this machine lacks, built now (the plan is settled with their ids)."""
        if not self.to_build:
            return "skipped: every image is here"
        assert self.secrets is not None
        note = self.local.build_missing(self.env, self.secrets, self.build)
        self.to_build = []
        if self.monitoring:
            note += "; " + self.check_alert_receivers()
        return f"{note}; {self.settle()}"

    def ship(self) -> str:
        if self.shipper is None:
            self.shipper = ship.Shipper(self.local, self.registry)
        shipped = []
        for index, (host, remote) in enumerate(self.every_host()):
            self.refresh_lock()
            refs = self.lacking.get(index, [])
            note = self.shipper.to(remote, refs) if refs else "has every image"
            shipped.append(f"{host.label}: {note}" if len(self.env.hosts) > 1 else note)
        return "; ".join(shipped)

    def write_release(self) -> str:
        assert self.release is not None and self.secrets is not None
        self.refresh_lock()
        store = self.releases()
        # A local CA first: the release's files carry it (the blackbox probe verifies with it).
        note = "" if self.acme else self.install_certificates()
        if not self.unchanged:
            # A first deploy creates the local CA above: the digest then covers it too.
            self.release.digest = release.release_digest(
                self.release_files("-"), self.release.images, self.secrets.values
            )
            self.release.parts = dict(self.part_digests)
            store.write_files(self.release.id, self.release_files(self.release.id))
            store.record(self.release)
        self.sh().put_text(
            store.path(self.release.id, "secrets.env"),
            release.secrets_file(self.secrets.values),
            mode=0o600,
        )
        if self.acme:  # a one-off container of this release: after its files exist
            note = self.install_certificates()
        store.audit(
            {"event": f"{self.kind} started", "release": self.release.id, "who": self.release.who}
        )
        return f"releases/{self.release.id}; {note}"

    def install_certificates(self) -> str:
        raise NotImplementedError

    def database_ready_for(self, rc: RemoteCompose) -> str:
        """Before PostgreSQL starts: the repository opens with the release's passphrase, and a
        host without its database is rebuilt (--restore) or stops the deploy."""
        repository = data.open_repository(rc, self.host.label)
        found = data.has_database(rc, self.host.label)
        if not data.must_restore(self.env, self.host.label, found, repository, self.restore):
            return ""
        self.refresh_lock()
        note = data.restore_database(rc)
        self.restored = True
        return note

    def backup_before_migrations(self) -> str:
        """A backup right before the schema changes (`backup.before_migrations`, --skip-backup)."""
        if self.skip_backup:
            return "skipped: --skip-backup"
        if not self.env.backup.before_migrations:
            return "skipped: backup.before_migrations is false"
        if self.first_deploy:
            return "skipped: first deploy, no data to protect yet"
        if self.unchanged:
            return "skipped: the current release already runs this, no migration to protect from"
        if at_head := self.schema_at_head():
            return f"unchanged, skipped: {at_head}, no migration to protect from"
        self.refresh_lock()
        out = self.run_backup()
        if out.startswith("skipped:"):
            return out
        return data.backup_outcome(out, self.env.name)

    def run_backup(self) -> str:
        raise NotImplementedError

    def schema_at_head(self) -> str:
        """Why no migration has work to do; '' when one may (a mode that cannot tell)."""
        return ""

    def migrate(self) -> str:
        if at_head := self.schema_at_head():
            return f"unchanged, skipped: {at_head}"
        self.refresh_lock()
        try:
            out = self.rcompose(self.release_id()).oneoff(
                "migrate", what="migrate", timeout=MIGRATE_TIMEOUT
            )
        except OpsError as exc:
            raise OpsError(
                f"migration failed: {exc}. The schema is as it was (each migration runs in a "
                "transaction) and the running release was not touched"
            ) from exc
        last = [line for line in out.splitlines() if line.strip()][-1:]
        return last[0][-120:] if last else "schema at head"

    def smoke(self) -> str:
        assert self.release is not None
        if self.maintenance:
            return "skipped: maintenance mode is on (nginx answers 503)"
        ready = smoke.smoke_check(self.env, self.release.version)
        return f"{ready}; {checks.through_nginx(self.env)}" if self.env.deploy.checks else ready

    def record(self) -> str:
        assert self.release is not None
        self.refresh_lock()
        store = self.releases()
        if self.unchanged:
            event = {"event": f"{self.kind}: nothing changed", "release": self.release.id}
            store.audit({**event, "who": locks.default_owner()})
            return f"current = {self.release.id} (unchanged)"
        self.release.outcome = "succeeded"
        self.release.finished = iso(utc_now())
        self.release.seconds = round(time.monotonic() - self.started, 1)
        store.record(self.release)
        store.set_current(self.release.id)
        store.audit(
            {
                "event": f"{self.kind} succeeded",
                "release": self.release.id,
                "version": self.release.version,
                "who": self.release.who,
                "seconds": self.release.seconds,
            }
        )
        self.switched = False  # recorded: from here on nothing rolls the release back
        protect = [self.release.id] + ([self.previous.id] if self.previous else [])
        try:
            pruned = store.prune(self.env.deploy.keep_releases, protect)
            kept = {ref for r in store.history() for ref in r.images}
            for _, remote in self.every_host():
                ship.prune_listings_images(remote, kept)
        except OpsError as exc:
            print(f"    WARNING: pruning old releases failed (the deploy stands): {exc}")
            pruned = []
        return f"current = {self.release.id}" + (f"; pruned {len(pruned)}" if pruned else "")

    # ------------------------------------------------------------------ rollback

    def choose_release(self) -> str:
        """The release to put back, and whether every host still has its images (a query:
        the tags are pointed back at them after the lock)."""
        current, history = self.releases().current_and_history()
        target = rollback.choose_target(history, current, self.to, self.host.label, self.env.name)
        if target.id == current:
            self.say(f"plan: {target.id} is the current release: putting it back in place (repair)")
        missing = [
            f"{ref} on {host.label}"
            for host, remote in self.every_host()
            for ref in ship.not_recorded(remote, target.images)
        ]
        if missing:
            raise OpsError(
                f"images of {target.id} are no longer on the host: {', '.join(missing)}. Fix: "
                f"deploy that version instead (`invoke deploy --env={self.env.name} "
                f"--version={target.version}`)"
            )
        self.previous = next((r for r in history if r.id == current), None)
        self.release = target
        self.say(f"plan: current {current or 'none'} -> {target.id} (version {target.version})")
        self.say("plan: uses the recorded compose files and the images already on the host")
        return f"to {target.id}"

    def restore_image_tags(self) -> str:
        """Point each recorded tag back at its recorded image on every host (a rebuilt version
        may have moved the tag since)."""
        assert self.release is not None
        self.refresh_lock()
        moved = sum(ship.point_tags(remote, self.release.images) for _, remote in self.every_host())
        hosts = len(self.env.hosts)
        return f"{len(self.release.images)} tag(s) on {hosts} host(s), {moved} moved back"

    def record_rollback(self) -> str:
        assert self.release is not None
        self.refresh_lock()
        store = self.releases()
        store.set_current(self.release.id)
        store.audit(
            {
                "event": "rollback succeeded",
                "release": self.release.id,
                "from": self.previous.id if self.previous else "",
                "who": locks.default_owner(),
                "seconds": round(time.monotonic() - self.started, 1),
            }
        )
        return f"current = {self.release.id}"

    # ------------------------------------------------------------------ failure

    def failed(self, error: BaseException) -> None:
        """Once the switch began, put the previous release back (and say so in the error);
        before it, the running release is untouched. A RolloutError's container logs and
        health output are printed either way."""
        if isinstance(error, RolloutError) and error.details:
            print(error.details, flush=True)
        if not (self.switched and self.release is not None and self.kind == "deploy"):
            return
        try:
            outcome = self.roll_back_automatically(error)
        except (Exception, KeyboardInterrupt) as again:
            back = f" --to={self.previous.id}" if self.previous else ""
            raise OpsError(
                f"deploy failed ({error}) and the automatic rollback failed too ({again}). "
                f"State: mixed. Fix: `invoke rollback --env={self.env.name}{back}`, then "
                f"`invoke status --env={self.env.name}`"
            ) from again
        if not isinstance(error, (OpsError, KeyboardInterrupt)):
            # A bug: the release is back, and the error surfaces as itself (with traceback).
            print(f"\n==> {outcome}; the error below is a bug in ops, not an operator error")
            return
        raise OpsError(f"deploy failed: {error}. {outcome}") from error

    def roll_back_automatically(self, error: BaseException) -> str:
        assert self.release is not None
        store = self.releases()
        if self.previous is not None and self.previous.id == self.release.id:
            store.audit(
                {
                    "event": f"{self.kind} of the unchanged release failed",
                    "release": self.release.id,
                    "error": str(error)[:300],
                }
            )
            return (
                f"the release {self.release.id} was already current (nothing changed): left as "
                "it is; check `invoke status`"
            )
        if self.previous is None:
            self.release.outcome = "failed"
            store.record(self.release)
            store.audit({"event": f"{self.kind} failed", "release": self.release.id})
            return "no previous release to roll back to (first deploy): fix and deploy again"
        print(f"\n==> automatic rollback to {self.previous.id}", flush=True)
        self.keep_lock_for_the_rollback()
        back = self.reversal()
        title = f"automatic rollback of {self.env.name} to {self.previous.id}"
        Runner(title).run(back.switch_back_steps())
        self.release.outcome = "rolled back"
        self.release.finished = iso(utc_now())
        self.release.note = str(error)[:500]
        store.record(self.release)
        store.set_current(self.previous.id)
        store.audit(
            {
                "event": f"{self.kind} failed, rolled back",
                "release": self.release.id,
                "restored": self.previous.id,
            }
        )
        return f"rolled back to {self.previous.id}"

    def keep_lock_for_the_rollback(self) -> None:
        """The heartbeat may have stopped although the lock is still ours (its own connection
        failed): check it on the main connection and refresh it with a new heartbeat. A lock
        another deploy took over stops the rollback here (that deploy owns the host now)."""
        if self.lock is None or self.lock.held is None:
            return
        if self.heartbeat is not None:
            self.heartbeat.stop()
        self.lock.refresh()
        self.heartbeat = locks.Heartbeat(self.lock, connect=self.heartbeat_connection).start()

    def reversal(self) -> Deployment:
        """The same environment with the previous release as the one to put in place, on the
        same connections, lock, heartbeat and records."""
        back = type(self)(self.env, self.build, kind="rollback", local=self.local)
        back.connect, back.secrets, back.remotes = self.connect, self.secrets, self.remotes
        back.lock, back.heartbeat, back.store = self.lock, self.heartbeat, self.store
        back.release, back.previous, back.switching_back = self.previous, None, True
        # Under maintenance nginx answers 503 to the public: the checks through it are skipped.
        back.maintenance = self.maintenance
        return back

    def close(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.lock is not None and self.lock.held is not None:
            try:
                self.lock.release()
            except OpsError as exc:
                print(f"    WARNING: could not release the deploy lock: {exc}", flush=True)
        for remote in self.remotes.values():
            remote.close()
