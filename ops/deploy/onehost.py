"""A deploy or rollback of an environment with one host: Docker Compose over SSH.

The release's services start with `docker compose up` of its recorded files; the API replicas
are replaced behind nginx by the rolling update (ops/deploy/rollout.py): new ones started next
to the old, one nginx reload to switch, old ones drained. The tables of steps are at the bottom
of the class; the steps every mode shares are in ops/deploy/deployment.py.
"""

from __future__ import annotations

from ops import compose
from ops.deploy import certificates, checks, data, parts, preflight, smoke, watch
from ops.deploy.commands import docker
from ops.deploy.deployment import UNTOUCHED, Deployment
from ops.deploy.hostcompose import RemoteCompose
from ops.deploy.release import dotenv, release_files
from ops.deploy.rollout import SERVICE_WAIT, Containers, Rollout
from ops.deploy.workers import WorkerRollout
from ops.steps import Step, impacting
from ops.steps import preflight as check


class OneHostDeploy(Deployment):
    """Deploy or roll back the environment's one host with Compose."""

    # ------------------------------------------------------------------ the mode

    def overlays(self) -> list[str]:
        return [
            "remote.yaml",
            *([compose.LOGGING_OVERLAY] if self.monitoring else []),
            *([compose.BACKUP_S3_OVERLAY] if self.env.backup.s3 else []),
        ]

    def rcompose(self, release_id: str) -> RemoteCompose:
        """Compose of a release with its recorded files (a rollback target may predate some)."""
        release = self.release if self.release and self.release.id == release_id else None
        overlays = tuple(release.overlays) if release else tuple(self.overlays())
        return RemoteCompose(self.sh(), self.env.project_name, self.root, release_id, overlays)

    def release_files(self, release_id: str) -> dict[str, str]:
        """The release's files; its variables carry the digest of each part (parts.py)."""
        assert self.secrets is not None
        files = release_files(self.env, self.build, release_id, self.monitoring)
        self.part_digests = parts.digests(
            files,
            self.overlays(),
            self.secrets.values,
            self.planned_images,
            self.env.project_name,
        )
        files["release.env"] += dotenv(parts.variables(self.part_digests))
        return files

    def part_unchanged(self, part: str) -> str:
        """The step's note when every container of the release's `part` already runs with
        its digest (the part is left alone); '' when the step must run."""
        digest = self.release.parts.get(part, "") if self.release else ""
        if not digest:
            return ""
        services = [
            s
            for s in parts.PARTS[part]
            if s != compose.LOG_SERVICE or self.release_runs_monitoring()
        ]
        listed = self.sh().run(docker.configs(self.env.project_name)).stdout
        why = parts.unchanged(parts.parse_running(listed), services, digest)
        return f"unchanged, skipped: {why}" if why else ""

    def schema_at_head(self) -> str:
        """The database's schema revision (read in PostgreSQL's container) is the newest the
        release's image ships (read here, in a container of it): nothing to migrate."""
        if self.schema_note is None:
            self.schema_note = self.read_schema_state()
        return self.schema_note

    def read_schema_state(self) -> str:
        if self.restored or self.release is None:
            return ""
        postgres = [c.name for c in self.containers().of("postgres") if c.state == "running"]
        if not postgres:
            return ""
        found = self.sh().run(docker.schema_revision(postgres[0]), check=False)
        revision = found.stdout.strip() if found.ok else ""
        ref = next((r for r in self.release.images if r.startswith("slipway/listings:")), "")
        if not revision or not ref or "\n" in revision:
            return ""
        head = self.local.schema_head(ref)
        return f"the schema is at the image's newest revision ({head})" if revision == head else ""

    def check_mode(self) -> None:
        preflight.check_not_a_stack(self.env, self.sh())

    def containers(self) -> Containers:
        return Containers(self.sh(), self.env.project_name)

    def wait_healthy(self, services: tuple[str, ...], timeout: float = SERVICE_WAIT) -> None:
        self.containers().wait_healthy(services, timeout)

    def install_certificates(self) -> str:
        if self.acme:
            return certificates.prepare_acme(self.env, self.sh(), self.rcompose(self.release_id()))
        nginx = self.containers().running_nginx()
        return certificates.install_local_ca_certificate(self.env, self.build, self.sh(), nginx)

    def run_backup(self) -> str:
        return self.rcompose(self.release_id()).exec(
            data.BACKUP_SERVICE, *data.backup_run_args(),
            what="backup before migrations", timeout=data.BACKUP_LOCK_WAIT + 3600,
            check=False,  # its lines say what happened (75: another backup runs); we decide
        )  # fmt: skip

    # ------------------------------------------------------------------ steps

    def start_data(self) -> str:
        if not self.restore and (skipped := self.part_unchanged(parts.DATA)):
            return skipped
        self.refresh_lock()
        rc = self.rcompose(self.release_id())
        # The log collector first: the data stores' first lines go through it.
        collector = (compose.LOG_SERVICE,) if self.release_runs_monitoring() else ()
        if collector:
            rc.up(*collector, what="start the log collector")
        rebuilt = self.database_ready_for(rc)
        stores = compose.DATA_SERVICES
        rc.up(*stores, what="start postgres and redis")
        # A restored database replays its archived WAL before it is healthy.
        self.wait_healthy(
            (*collector, *stores), data.RESTORE_WAIT if self.restored else SERVICE_WAIT
        )
        rc.up(data.BACKUP_SERVICE, what="start the backup service")
        self.wait_healthy((data.BACKUP_SERVICE,))
        return rebuilt + ", ".join((*collector, *stores, data.BACKUP_SERVICE)) + " healthy"

    def certificates_before_switch(self) -> str:
        """With nginx already serving: certificates before any check through it."""
        if not self.acme:
            return "skipped: tls local-ca (installed with the release files)"
        if self.containers().running_nginx() is None:
            self.acme_deferred = True
            return "deferred: nginx is not running yet (first deploy); after it starts"
        self.refresh_lock()
        return certificates.ensure_certificates(self.rcompose(self.release_id()))

    def roll_api(self) -> str:
        self.refresh_lock()
        self.switched = True
        rollout = Rollout(
            self.rcompose(self.release_id()),
            self.env.replicas.api,
            self.env.deploy.batch,
            float(self.env.deploy.health_timeout),
            standby=0 if self.switching_back else self.env.deploy.standby,
            replica_memory=self.env.resources.api.memory_bytes or 0,
            checks=self.env.deploy.checks,
            check_latency=float(self.env.deploy.check_latency),
        )
        assert self.release is not None
        version = self.release.version

        def through_nginx() -> None:
            # Before the old replicas go: a failure here switches nginx straight back.
            if not self.maintenance:
                smoke.smoke_check(self.env, version, timeout=30.0)
                checks.through_nginx(self.env)

        note = rollout.run(verify=through_nginx)
        self.standby_kept = rollout.kept_release
        self.switched_at = rollout.switched_at
        return note

    def watch_errors(self) -> str:
        """The clients' requests to the new release, judged from Prometheus until
        `deploy.watch` seconds after the switch (ops/deploy/watch.py)."""
        deploy = self.env.deploy
        why = (
            "deploy.watch is 0"
            if not deploy.watch
            else "monitoring is off"
            if not self.monitoring
            else "a first deploy has nothing to switch back to"
            if self.first_deploy
            else "maintenance mode is on"
            if self.maintenance
            else "the traffic did not move"
            if self.switched_at is None
            else ""
        )
        if why:
            return f"skipped: {why}"
        assert self.release is not None and self.switched_at is not None
        try:
            with watch.prometheus(self.env, self.heartbeat_connection()) as ask:
                return watch.Watch(
                    ask,
                    self.release.id,
                    self.switched_at,
                    float(deploy.watch),
                    float(deploy.watch_error_percent),
                    deploy.watch_min_requests,
                    log=self.say,
                ).run()
        except watch.Unanswered as exc:
            self.say(f"WARNING: the watch could not judge the release: {exc}")
            return f"not judged: {exc}"

    def workers(self) -> WorkerRollout:
        return WorkerRollout(
            self.rcompose(self.release_id()),
            self.env.replicas.worker,
            float(self.env.deploy.health_timeout),
            log=self.say,
        )

    def start_workers(self) -> str:
        """Before the switch: the release's workers start next to the running ones."""
        self.refresh_lock()
        self.switched = True  # from here a failure puts the previous release's workers back
        return self.workers().start()

    def finish_workers(self) -> str:
        """After the switch: they are healthy, the others stop (kept with a standby)."""
        self.refresh_lock()
        return self.workers().finish(keep=self.standby_kept)

    def roll_workers(self) -> str:
        """Both halves at once (the automatic rollback's, after the API is back)."""
        self.start_workers()
        return self.finish_workers()

    def start_nginx(self) -> str:
        if skipped := self.part_unchanged(parts.NGINX):
            return skipped
        self.refresh_lock()
        self.rcompose(self.release_id()).up("nginx", what="start or update nginx")
        self.wait_healthy(("nginx",), timeout=60.0)
        return "nginx healthy"

    def certificates_after_nginx(self) -> str:
        """First deploy: certificates once nginx answers HTTP-01; then the renewal service."""
        if not self.acme:
            return "skipped: tls local-ca"
        self.refresh_lock()
        rc = self.rcompose(self.release_id())
        if self.acme_deferred:
            done = certificates.ensure_certificates(rc)
        else:
            done = "obtained before the switch"
        rc.up(certificates.CERTBOT_SERVICE, what="start the renewal service")
        return f"{done}; renewal service running"

    def start_monitoring(self) -> str:
        """Prometheus, Alertmanager and the exporters of the release (and the collector, which
        an older release's rollback target may not have started), healthy."""
        if not self.release_runs_monitoring():
            reason = "monitoring.enabled is false" if not self.monitoring else "an older release"
            self.stop_monitoring()
            return f"not part of this release ({reason}); the monitoring services are stopped"
        if skipped := self.part_unchanged(parts.MONITORING):
            return skipped
        self.refresh_lock()
        services = (compose.LOG_SERVICE, *parts.MONITORING_SERVICES)
        self.rcompose(self.release_id()).up(*services, what="start or update the monitoring stack")
        self.wait_healthy(services, timeout=float(self.env.deploy.health_timeout) + 60.0)
        return f"{len(services)} services healthy"

    def stop_monitoring(self) -> None:
        """Remove the monitoring containers of a stack that no longer runs them (data volumes
        stay). The collector stays while a container still sends it its lines (after a
        rollback to such a release, postgres and redis keep the log driver the newer one gave
        them)."""
        drivers = self.sh().run(docker.log_drivers(self.env.project_name)).stdout.split()
        keep_collector = "syslog" in drivers
        services = (*([] if keep_collector else [compose.LOG_SERVICE]), *parts.MONITORING_SERVICES)
        self.sh().run(docker.remove_services(self.env.project_name, services))
        if keep_collector:
            self.say(
                "the log collector stays: containers still send it their lines (they change "
                "log driver when next recreated by a deploy)"
            )

    # ------------------------------------------------------------------ the tables

    def deploy_steps(self) -> list[Step]:
        return [
            check("check configuration and secrets", self.check_config),
            check("check the images (built after the lock when missing)", self.check_images),
            check("check the host (SSH, docker, compose, disk, ports)", self.check_hosts),
            check("plan", self.plan),
            impacting("take the deploy lock", self.take_lock, "no lock was taken"),
            impacting("build missing images", self.build_images, UNTOUCHED),
            impacting("ship images", self.ship, UNTOUCHED),
            impacting("write the release files", self.write_release, UNTOUCHED),
            impacting("start postgres and redis", self.start_data),
            impacting(
                "backup before migrations",
                self.backup_before_migrations,
                f"{UNTOUCHED}; `invoke backup.list` shows the repository",
            ),
            impacting("migrate the schema (new image)", self.migrate, UNTOUCHED),
            impacting(
                "TLS certificates from the ACME CA (nginx running)",
                self.certificates_before_switch,
                f"{UNTOUCHED}; the previous certificates stay in place",
            ),
            impacting("start the new workers next to the running ones", self.start_workers),
            impacting("rolling update of the API", self.roll_api),
            impacting("workers: the new ones healthy, the others stopped", self.finish_workers),
            impacting("nginx", self.start_nginx),
            impacting(
                "TLS certificates (first deploy) and renewals", self.certificates_after_nginx
            ),
            impacting("monitoring and central logs", self.start_monitoring),
            impacting("smoke checks through the public URL", self.smoke),
            impacting("watch the error ratio (Prometheus)", self.watch_errors),
            impacting("record the release", self.record),
        ]

    def rollback_steps(self) -> list[Step]:
        return [
            check("check configuration and secrets", self.check_config),
            check("check the host (SSH, docker, compose, disk, ports)", self.check_hosts),
            check("choose the release and check its images", self.choose_release),
            impacting("take the deploy lock", self.take_lock, "no lock was taken"),
            impacting("point the image tags at the release's images", self.restore_image_tags),
            impacting("start the release's workers next to the running ones", self.start_workers),
            impacting("rolling update of the API", self.roll_api),
            impacting("workers: the release's healthy, the others stopped", self.finish_workers),
            impacting("nginx", self.start_nginx),
            impacting("monitoring and central logs", self.start_monitoring),
            impacting("smoke checks through the public URL", self.smoke),
            impacting("record the current release", self.record_rollback),
        ]

    def switch_back_steps(self) -> list[Step]:
        return [
            impacting(
                "point the image tags at the previous release's images", self.restore_image_tags
            ),
            impacting("API replicas back to the previous release", self.roll_api),
            impacting("workers back", self.roll_workers),
            impacting("nginx", self.start_nginx),
            impacting("monitoring and central logs", self.start_monitoring),
            impacting("smoke checks of the previous release", self.smoke),
        ]
