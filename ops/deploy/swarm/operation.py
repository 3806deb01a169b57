"""A deploy or rollback of an environment with several hosts: Docker Swarm.

`invoke deploy` forms the swarm when needed (init on the first host, join the others), ships
the images to every host, renders the release's stack files (ops/deploy/swarm/stackfile.py),
starts the data stores with the data stack, migrates with a one-off container on the overlay
network, then `docker stack deploy`s the release: Swarm replaces the replicas (rolled back by
Swarm itself when a new one fails its healthcheck). The layout on the hosts and the steps:
docs/architecture.md, "Several hosts (Docker Swarm)". The tables are at the bottom.
"""

from __future__ import annotations

from ops import compose
from ops.deploy import certificates, data, preflight, release
from ops.deploy.commands import docker
from ops.deploy.commands import host as host_commands
from ops.deploy.commands import swarm as commands
from ops.deploy.deployment import UNTOUCHED, Deployment
from ops.deploy.hostcompose import RemoteCompose
from ops.deploy.rollout import Containers
from ops.deploy.swarm import stackfile
from ops.deploy.swarm.cluster import Swarm
from ops.steps import Step, impacting
from ops.steps import preflight as check

DATA_WAIT = 240.0
STACK_STEP = "rolling update of the API (the stack: workers, nginx, monitoring)"


class SwarmDeploy(Deployment):
    """Deploy or roll back an environment of several hosts; the first one manages."""

    # ------------------------------------------------------------------ the mode

    @property
    def stack(self) -> str:
        return self.env.project_name

    def swarm(self) -> Swarm:
        return Swarm(self.stack, self.every_host(), refresh=self.refresh_lock)

    def overlays(self) -> list[str]:
        """What the release's one-off containers run with (the stack has its own file); the
        central logs' file marks a release that runs the monitoring stack."""
        return [
            stackfile.ONEOFF_FILE,
            *([compose.LOGGING_OVERLAY] if self.monitoring else []),
            *([compose.BACKUP_S3_OVERLAY] if self.env.backup.s3 else []),
        ]

    def rcompose(self, release_id: str) -> RemoteCompose:
        """One-off containers on the manager (migrations, ACME), with the central logs' file
        when the release has it (their lines go to the manager's collector)."""
        release_ = self.release if self.release and self.release.id == release_id else None
        recorded = tuple(release_.overlays) if release_ else tuple(self.overlays())
        overlays = recorded if stackfile.ONEOFF_FILE in recorded else (stackfile.ONEOFF_FILE,)
        return RemoteCompose(self.sh(), self.stack, self.root, release_id, overlays)

    def data_services(self) -> tuple[str, ...]:
        """What the data stack starts first: the stores, after the hosts' log collectors."""
        return (*([compose.LOG_SERVICE] if self.monitoring else []), *compose.DATA_SERVICES)

    def release_variables(self, release_id: str) -> dict[str, str]:
        assert self.secrets is not None
        values = release.release_env(self.env, self.build, release_id, set(self.secrets.values))
        values["SLIPWAY_STACK"] = self.stack
        batch = self.env.deploy.batch or 1  # Swarm's parallelism 0 would mean all at once
        values["SLIPWAY_DEPLOY_BATCH"] = str(batch)
        values["SLIPWAY_API_UPDATE_ORDER"] = stackfile.api_update_order(
            self.env.replicas.api, batch
        )
        return values

    def release_files(self, release_id: str) -> dict[str, str]:
        files = release.release_files(self.env, self.build, release_id, self.monitoring)
        files.pop("remote.yaml", None)
        variables = self.release_variables(release_id)
        files["release.env"] = release.dotenv(variables)
        files[stackfile.ONEOFF_FILE] = stackfile.oneoff_overlay()
        resolved = stackfile.render(self.env, variables, self.monitoring)
        whole = stackfile.stack_document(resolved)
        files[stackfile.STACK_FILE] = stackfile.stack_text(whole, release_id)
        stores = stackfile.stack_document(resolved, self.data_services())
        files[stackfile.DATA_STACK_FILE] = stackfile.stack_text(stores, release_id)
        return files

    def check_mode(self) -> None:
        preflight.check_not_compose(self.env, self.sh())

    def ensure_networks_and_volumes(self) -> None:
        """The stack's overlay networks and the first host's volumes, made as `docker stack
        deploy` would (it adopts them): one-off containers (certbot's prepare, migrations, the
        backup tools) use them before the first stack deploy."""
        for name, internal in (("backend", True), ("edge", False)):
            self.sh().run(commands.ensure_network(self.stack, name, internal))
        self.sh().run(commands.ensure_volumes(self.stack, stackfile.ONEOFF_VOLUMES))

    def install_certificates(self) -> str:
        if self.acme:
            self.ensure_networks_and_volumes()
            return certificates.prepare_acme(self.env, self.sh(), self.rcompose(self.release_id()))
        nginx = Containers(self.sh(), self.stack).running_nginx()
        return certificates.install_local_ca_certificate(self.env, self.build, self.sh(), nginx)

    def run_backup(self) -> str:
        """In the backup task's container on the data host (the first host), if one runs: the
        service comes with the full stack, after the migrations, so a first deploy has none."""
        found = self.sh().run(docker.swarm_task(self.stack, data.BACKUP_SERVICE)).stdout.split()
        if not found:
            return "skipped: no backup task runs yet (it starts with this release)"
        command = docker.exec_in(
            found[0], data.backup_run_args(), "backup before migrations",
            timeout=data.BACKUP_LOCK_WAIT + 3600,
        )  # fmt: skip
        # Its lines say what happened; the deploy decides.
        return self.sh().run(command, check=False).stdout

    def stack_deploy(self, file: str, prune: bool) -> None:
        command = commands.stack_deploy(self.root, self.release_id(), file, self.stack, prune)
        for line in self.sh().run(command).stdout.splitlines():
            if line.strip():
                self.say(line)

    # ------------------------------------------------------------------ steps

    def plan(self) -> str:
        note = super().plan()
        formed = self.swarm().plan()
        self.say(f"plan: swarm: {formed}")
        return f"{note}; swarm: {formed}"

    def form_swarm(self) -> str:
        return self.swarm().form()

    def write_release(self) -> str:
        # nginx's flag directory (maintenance mode), bind-mounted on the first host.
        self.sh().run(host_commands.make_directory(self.root + "/nginx"))
        return super().write_release()

    def start_data(self) -> str:
        self.refresh_lock()
        self.ensure_networks_and_volumes()
        # The release's passphrase must open the repository before PostgreSQL restarts with it.
        rebuilt = self.database_ready_for(self.rcompose(self.release_id()))
        self.stack_deploy(stackfile.DATA_STACK_FILE, prune=False)
        started = self.data_services()
        # A restored database replays its archived WAL before it is healthy.
        timeout = data.RESTORE_WAIT if self.restored else DATA_WAIT
        return f"{rebuilt}{', '.join(started)}: " + self.swarm().wait_converged(started, timeout)

    def certificates_before_switch(self) -> str:
        if not self.acme:
            return "skipped: tls local-ca (installed with the release files)"
        if not self.swarm().running("nginx"):
            self.acme_deferred = True
            return "deferred: nginx is not running yet (first deploy); after it starts"
        self.refresh_lock()
        return certificates.ensure_certificates(self.rcompose(self.release_id()))

    def deploy_stack(self) -> str:
        """The release's stack: Swarm's rolling update of the API, the workers, nginx and the
        monitoring services (the stack deploy's --prune removes what the release lacks)."""
        self.refresh_lock()
        self.switched = True
        self.stack_deploy(stackfile.STACK_FILE, prune=True)
        converged = self.swarm().wait_converged()
        if not self.release_runs_monitoring():
            converged += "; no monitoring in this release (removed with the stack deploy)"
        return converged

    def certificates_after_nginx(self) -> str:
        if not self.acme:
            return "skipped: tls local-ca"
        if not self.acme_deferred:
            return "obtained before the switch; renewal service in the stack"
        self.refresh_lock()
        done = certificates.ensure_certificates(self.rcompose(self.release_id()))
        return f"{done}; renewal in the stack"

    # ------------------------------------------------------------------ the tables

    def deploy_steps(self) -> list[Step]:
        return [
            check("check configuration and secrets", self.check_config),
            check("check the images (built after the lock when missing)", self.check_images),
            check("check the hosts (SSH, docker, compose, disk, ports)", self.check_hosts),
            check("plan", self.plan),
            impacting("take the deploy lock", self.take_lock, "no lock was taken"),
            impacting("build missing images", self.build_images, UNTOUCHED),
            impacting(
                "form the swarm (init on the first host, join the others)",
                self.form_swarm,
                UNTOUCHED,
            ),
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
            impacting(STACK_STEP, self.deploy_stack),
            impacting(
                "TLS certificates (first deploy) and renewals", self.certificates_after_nginx
            ),
            impacting("smoke checks through the public URL", self.smoke),
            impacting("record the release", self.record),
        ]

    def rollback_steps(self) -> list[Step]:
        return [
            check("check configuration and secrets", self.check_config),
            check("check the hosts (SSH, docker, compose, disk, ports)", self.check_hosts),
            check("choose the release and check its images", self.choose_release),
            impacting("take the deploy lock", self.take_lock, "no lock was taken"),
            impacting("point the image tags at the release's images", self.restore_image_tags),
            impacting(STACK_STEP, self.deploy_stack),
            impacting("smoke checks through the public URL", self.smoke),
            impacting("record the current release", self.record_rollback),
        ]

    def switch_back_steps(self) -> list[Step]:
        return [
            impacting(
                "point the image tags at the previous release's images", self.restore_image_tags
            ),
            impacting("the previous release's stack", self.deploy_stack),
            impacting("smoke checks of the previous release", self.smoke),
        ]
