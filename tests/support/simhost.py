"""A simulated deploy host for the orchestration's unit tests: a Recorder that keeps the state
a deploy changes (files, the lock, images, containers) and answers the deploy's commands from
it, so a whole `invoke deploy` or `rollback` runs in milliseconds and a test can look at the
commands it issued, in order, and at what the host holds afterwards.

It knows the commands of ops/deploy/commands/ and of the lock and release store by their
shape; a command it does not know fails the test (strict), so a new command needs a line here.
`FakeEngine` stands in for this machine's Docker engine (ops.deploy.images.LocalEngine).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

from ops import config, secrets
from ops.compose import Build
from ops.deploy import checks, parts
from ops.executor import Command, Result
from support.recorder import Recorder

DEPLOYED_SERVICES = ("logs", "postgres", "redis", "backup", "worker", "nginx", "certbot")
HEAD = "0002_api_key_names"  # the schema revision images ship unless a test says otherwise


@dataclass
class Container:
    name: str
    service: str
    release: str
    state: str = "running"
    slot: str = ""
    config: str = ""  # the org.slipway.config label (ops/deploy/parts.py)
    parked: bool = False  # a worker parked by SIGUSR1 (running, reading nothing)


class SimHost(Recorder):
    """One host's state, changed and read by the deploy's commands."""

    def __init__(
        self,
        host: config.Host | None = None,
        project: str = "slipway-staging",
        dry_run: bool = False,
    ) -> None:
        super().__init__(host, dry_run=dry_run)
        self.project = project
        self.files: dict[str, str] = {}
        self.images: dict[str, str] = {}  # ref -> image id
        self.stored: set[str] = set()  # ids of the images the engine holds, tagged or not
        self.certificate_installed = False
        self.containers: list[Container] = []
        self.clock = itertools.count(1796000000, 5)
        # A command line containing one of these keys fails with its text (exit 1).
        self.failing: dict[str, str] = {}
        # Containers of the services named here never pass their health or /ready probe.
        self.unhealthy: set[str] = set()
        # API replicas of these versions answer /ready but fail the requests of deploy.checks.
        self.failing_checks: set[str] = set()
        self.failing_containers: set[str] = set()  # their checks fail, whatever release
        self.unparkable: set[str] = set()  # releases whose images' workers cannot park
        self.migrate_output = "INFO  [alembic.runtime.migration] schema at head\n"
        # The database's schema revision (None: no schema yet); a migration brings it to
        # `migrate_to` (FakeEngine.heads says what each image ships).
        self.schema: str | None = None
        self.migrate_to = HEAD
        self.migrations = 0
        self.serial = itertools.count(1)
        self.memory_kib = 8 * 1024 * 1024  # MemAvailable
        # Versions of releases from before the slots: their API replicas carry no slot, their
        # nginx reads the upstream file.
        self.legacy: set[str] = set()
        # Stops of a standby scheduled on the host: (slot, release, until), fired by the test.
        self.scheduled: list[tuple[str, str, int]] = []

    # ------------------------------------------------------------------ what the test reads

    def running(self, service: str) -> list[Container]:
        return [c for c in self.containers if c.service == service and c.state == "running"]

    def current(self) -> str | None:
        target = self.files.get("@current")
        return target.rsplit("/", 1)[-1] if target else None

    def live_slot(self) -> str:
        return "green" if any(k.endswith("nginx/slot-green") for k in self.files) else "blue"

    def serving(self) -> list[str]:
        """The API replicas nginx sends the traffic to: those of the live slot."""
        return sorted(c.name for c in self.running("api") if c.slot == self.live_slot())

    def standby(self) -> dict[str, object] | None:
        text = next((v for k, v in self.files.items() if k.endswith("nginx/standby.json")), "")
        return json.loads(text) if text else None

    def fire_scheduled(self) -> None:
        """Time passes: every scheduled stop runs, as the script on the host does."""
        for slot, release, until in self.scheduled:
            record = self.standby()
            if record is None or record.get("until") != until or self.live_slot() == slot:
                continue
            self.containers = [
                c
                for c in self.containers
                if not (c.service == "api" and c.slot == slot and c.release == release)
                and not (c.service == "worker" and c.release == release)
            ]
            self.files = {k: v for k, v in self.files.items() if not k.endswith("standby.json")}
        self.scheduled.clear()

    def upstream(self) -> list[str]:
        text = next((v for k, v in self.files.items() if k.endswith("nginx/upstream.conf")), "")
        return [
            line.split()[1].split(":")[0] for line in text.splitlines() if line.startswith("server")
        ]

    def changed_lines(self) -> list[str]:
        return [c.display for c in self.changes]

    # ------------------------------------------------------------------ answers

    def respond(self, command: Command, stdin: str | None) -> Result:
        line = command.line
        if any(pattern.search(line) for pattern, _ in self.rules):
            return super().respond(command, stdin)  # a test's own answer wins
        for pattern, text in self.failing.items():
            if pattern in line:
                return Result(line, 1, text, text)
        for handler in (self._lock, self._files, self._images, self._containers, self._facts):
            answer = handler(line, stdin)
            if answer is not None:
                return Result(line, 0, answer, "") if isinstance(answer, str) else answer
        if " docker compose " in f" {line}":
            return Result(line, 0, self._compose(line), "")
        return super().respond(command, stdin)

    def _files(self, line: str, stdin: str | None) -> str | Result | None:
        if " && { set -e; mkdir -p -m 755" in line:  # a flip and the upstream file at once
            first, _, second = line.partition(" && { ")
            self._files(first, None)
            return self._files(second.removesuffix("; }"), stdin)
        if line.startswith("set -e; mkdir -p -m 755"):
            path = shlex.split(line.rsplit('mv -f "$tmp" ', 1)[1])[0]
            self.files[path] = stdin or ""
            return ""
        if line.startswith("cat ") and line.endswith("2>/dev/null || true"):
            return self.files.get(shlex.split(line)[1], "")
        if line.startswith("cat ") and line.endswith("2>/dev/null"):
            path = shlex.split(line)[1]
            return self.files[path] if path in self.files else Result(line, 1, "", "")
        if line.startswith("readlink "):
            return self.files.get("@current", "") + "\n"
        if "ln -sfn" in line:
            self.files["@current"] = shlex.split(line.split("ln -sfn ", 1)[1])[0]
            return ""
        if "*/release.json" in line:
            records = [v for k, v in sorted(self.files.items()) if k.endswith("/release.json")]
            return "".join(f"{r}\n----slipway-release----\n" for r in records)
        if "cat >> " in line and "audit.log" in line:
            self.files["@audit"] = self.files.get("@audit", "") + (stdin or "")
            return ""
        if line.startswith("rm -rf ") and "/releases/" in line:
            gone = shlex.split(line)[2]
            self.files = {k: v for k, v in self.files.items() if not k.startswith(gone + "/")}
            return ""
        if line.startswith("test -e ") and line.endswith("&& echo green || echo blue"):
            return "green\n" if shlex.split(line)[2] in self.files else "blue\n"
        if line.startswith("nohup sh -c ") and "org.slipway.slot=" in line:
            script = shlex.split(line)[3]
            slot = re.search(r"org\.slipway\.slot=(\w+)", script)
            release = re.search(r"org\.slipway\.release=([\w.-]+)", script)
            until = re.search(r'"until": (\d+)', script)
            assert slot and release and until, script
            self.scheduled.append((slot.group(1), release.group(1), int(until.group(1))))
            return ""
        if line.startswith("awk '/^MemAvailable:/"):
            return f"{self.memory_kib}\n"
        if (
            line.startswith("cd ")
            and "ids=$(docker ps -aq" in line
            and "rm -f nginx/standby" in line
        ):
            idle = "blue" if self.live_slot() == "green" else "green"
            record = self.standby() or {}
            self.containers = [
                c
                for c in self.containers
                if not (c.service == "api" and c.slot == idle)
                and not (c.service == "worker" and c.state == "exited")
                and not (c.service == "worker" and c.release == record.get("release"))
            ]
            self.files = {k: v for k, v in self.files.items() if not k.endswith("standby.json")}
            return ""
        if line.startswith("mkdir -p ") and " && touch " in line:
            self.files[shlex.split(line)[-1]] = ""
            return ""
        if line.startswith(("test -e ", "rm -f ")):
            path = shlex.split(line)[2]
            if line.startswith("rm -f "):
                self.files.pop(path, None)
                return ""
            return "" if path in self.files else Result(line, 1, "", "")
        if line.startswith("mkdir -p "):
            return ""
        return None

    def _lock(self, line: str, stdin: str | None) -> str | None:
        if line == "date +%s":
            return f"{next(self.clock)}\n"
        if "(the deploy lock)" in line or ("if mkdir" in line and "/lock " in line):
            if "@lock" in self.files:
                return "busy\n"
            self.files["@lock"] = stdin or ""
            return "taken\n"
        if line.startswith("date +%s; if [ -d"):
            now = next(self.clock)
            if "@lock" not in self.files:
                return f"{now}\n"
            return f"{now}\nheld\n{now}\ndigest\n{self.files['@lock']}\n"
        if "echo released" in line:
            self.files.pop("@lock", None)
            return "released\n"
        if "echo ok" in line and "echo lost" in line:
            return "ok\n"
        return None

    def _images(self, line: str, stdin: str | None) -> str | None:
        if line.startswith("docker image inspect -f"):
            found = self._image_id(shlex.split(line)[5])
            return found + "\n" if found else ""
        if line.startswith("set -- ") and "docker image inspect" in line:
            names = shlex.split(line.split("; if ids=", 1)[0])[2:]
            return "".join(f"{n}\t{self._image_id(n)}\n" for n in names)
        if line.startswith("docker tag "):
            for one in line.split(" && "):
                _, _, image, ref = shlex.split(one)
                self.images[ref] = self.images.get(image, image)
            return ""
        if line == "docker load -q":
            ref, _, image_id = (stdin or "").partition("=")
            self.images[ref] = image_id
            self.stored.add(image_id)
            return f"Loaded image: {ref}\n"
        if line.startswith("docker images "):
            repository = shlex.split(line)[2]
            return "".join(f"{r}\n" for r in self.images if r.startswith(repository + ":"))
        if line.startswith("docker image rm "):
            for ref in shlex.split(line.split(" >/dev/null")[0])[3:]:
                self.images.pop(ref, None)
            return ""
        return None

    def _image_id(self, wanted: str) -> str:
        if wanted in self.images:
            return self.images[wanted]
        return wanted if wanted in self.stored else ""

    def _checks(self, line: str) -> str:
        """The deploy's checks run in replicas (ops/deploy/checks.py in_replicas)."""
        out = []
        for name in re.findall(r"docker exec (\S+) python -c", line):
            found = [c for c in self.containers if c.name == name]
            bad = not found or name in self.failing_containers
            bad = bad or any(found[0].release.endswith(f"-{v}") for v in self.failing_checks)
            out.append(f"{checks.MARK} {name} {1 if bad else 0}")
            status = "FAIL /api/v1/listings?limit=5 500 4ms" if bad else "ok / 200 3ms"
            out.append(status)
        return "".join(f"{line}\n" for line in out)

    def _probe_all(self, line: str) -> str:
        """Probes of several containers at once (docker.probe_all)."""
        out = []
        for name in shlex.split(line.split("; do ", 1)[0])[3:]:
            found = [c for c in self.containers if c.name == name]
            if not found or found[0].state != "running":
                out.append(f"{name} state:{found[0].state if found else 'gone'}")
            elif found[0].service in self.unhealthy:
                out.append(f"{name} 1 not ready: schema")
            else:
                out.append(f"{name} 0 ok")
        return "".join(f"{line}\n" for line in out)

    def _containers(self, line: str, stdin: str | None) -> str | Result | None:
        if checks.MARK in line:
            return self._checks(line)
        if line.startswith("for n in ") and "docker exec" in line:
            return self._probe_all(line)
        if line.startswith("docker ps -a --filter label=com.docker.compose.project=") and (
            "com.docker.compose.service=" in line
        ):
            service = re.search(r"com\.docker\.compose\.service=(\S+)", line)
            assert service is not None
            rows = [c for c in self.containers if c.service == service.group(1)]
            return "".join(f"{c.name}\t{c.state}\t{c.release}\t{c.slot}\n" for c in rows)
        if line.startswith("docker inspect -f '{{.State.Status}}"):
            name = shlex.split(line)[-1]
            found = [c for c in self.containers if c.name == name]
            return f"{found[0].state}\tnull\n" if found else "\n"
        if line.startswith("docker inspect -f '{{range .Config.Env}}"):
            nginx = self.running("nginx")
            return "file\n" if nginx and self._is_legacy(nginx[0].release) else "slots\n"
        if line.startswith("docker exec ") and "alembic_version" in line:
            if self.schema is None:
                return Result(line, 1, 'ERROR:  relation "alembic_version" does not exist', "")
            return self.schema + "\n"
        if line.startswith("docker ps -a --filter label=com.docker.compose.project=") and (
            "{{.Names}}\t{{.Status}}" in line
        ):  # invoke status
            return "".join(
                f"{c.name}\t{self._status(c)}\tslipway/{c.service}\t{c.release}\t{c.slot}\n"
                for c in self.containers
            )
        if line.startswith("docker ps -a --filter label=com.docker.compose.project=") and (
            "org.slipway.config" in line
        ):
            return "".join(
                f"{c.service}\t{c.state}\t{self._status(c)}\t{c.config}\n" for c in self.containers
            )
        if line.startswith("docker exec ") and "hutting down" in line:
            return "0\n"  # no nginx worker of an older configuration left
        if line.startswith("docker exec ") and " nginx " in line:
            return ""
        if line.startswith("docker exec "):
            name = shlex.split(line)[2]
            found = [c for c in self.containers if c.name == name]
            if found and found[0].service in self.unhealthy:
                return Result(line, 1, "not ready: schema", "")
            return "ok\n"
        if line.startswith("nohup sh -c ") and "docker stop -t " in line:
            # A stop in the background: done by the time the test looks (removed unless kept).
            script = shlex.split(line)[3]
            names = set(script.split(";")[0].split()[4:])
            for container in self.containers:
                if container.name in names:
                    container.state = "exited"
            if "docker rm -f" in script:
                self.containers = [c for c in self.containers if c.name not in names]
            return ""
        if line.startswith("docker kill -s "):
            words = shlex.split(line.split(" >/dev/null")[0])
            for container in self.containers:
                if container.name in words[4:]:
                    assert container.release not in self.unparkable, "it would die of it"
                    container.parked = words[3] == "USR1"
            return ""
        if line.startswith("docker inspect -f '{{.Name}} {{index .Config.Labels"):
            names = shlex.split(line)[4:]
            found = [c for c in self.containers if c.name in names]
            return "".join(
                f"/{c.name} {'<no value>' if c.release in self.unparkable else '1'}\n"
                for c in found
            )
        if line.startswith("nohup sh -c ") and "'docker start " in line:
            # A start in the background: done by the time anything looks.
            names = set(shlex.split(line)[3].split()[2:])
            for container in self.containers:
                if container.name in names:
                    container.state = "running"
            return ""
        if line.startswith("docker start "):
            names = set(shlex.split(line.split(" >/dev/null")[0])[2:])
            for container in self.containers:
                if container.name in names:
                    container.state = "running"
            return ""
        if line.startswith(("docker stop ", "docker rm -f ")):
            names = set(shlex.split(line.split(" >/dev/null")[0])[2:])
            self.containers = [c for c in self.containers if c.name not in names]
            return ""
        if line.startswith(("docker logs ", "docker inspect -f '{{json .State}}'")):
            return "logs\n"
        return None

    def _facts(self, line: str, stdin: str | None) -> str | None:
        if "docker run --rm -i --network none" in line:  # the certificate into the tls volume
            before, self.certificate_installed = self.certificate_installed, True
            return "same\n" if before else "changed\n"
        answers = {
            "docker version -f": "20.10.24\n",
            "docker compose version --short": "2.40.3\n",
            "docker info -f '{{.DockerRootDir}}'": "/var/lib/docker\n",
            "d=": "/srv\n",
            "df -Pk": "52428800\n",
            "for t in tcp": "",
            "docker ps --filter label=com.docker.compose.project=": "",
            "docker service ls -q --filter": "",
            "docker ps -q --filter label=com.docker.compose.project=": "json-file\n",
            "for s in ": "",
            "docker volume create": "",
            "docker ps -q --filter label=com.docker.swarm.service.name=": "",
        }
        for start, answer in answers.items():
            if line.startswith(start):
                return answer
        return None

    def _compose(self, line: str) -> str:
        words = shlex.split(line.split(" && ", 1)[1].removesuffix(" 2>&1"))
        slot = ""
        if words[0].startswith("SLIPWAY_API_SLOT="):
            slot = words.pop(0).split("=", 1)[1]
            if slot.startswith("$(test -e nginx/slot-green"):
                slot = self.live_slot()
        else:
            assert "remote.yaml" not in line, "compose on a host runs with the API's slot"
        release = words[words.index("--env-file") + 1].split("/")[1]
        args = words[words.index("-f", words.index("--env-file")) :]
        while args[:1] == ["-f"]:
            args = args[2:]
        if args[:1] == ["run"]:
            if "pgbackrest" in args:
                return (
                    '[{"name": "listings", "status": {"code": 0, "message": "ok"}, "backup": []}]\n'
                )
            if "sh" in args:
                return "[slipway-cluster]\n"
            if "migrate" in args:
                self.schema = self.migrate_to
                self.migrations += 1
                return self.migrate_output
            return ""
        if args[:1] == ["exec"]:
            return '{"message": "backup (incr) into repo1 done in 1s: 1I"}\n[slipway-ok]\n'
        if args[:1] == ["up"]:
            self._compose_up(args, release, slot)
        return ""

    def _compose_up(self, args: list[str], release: str, slot: str) -> None:
        scale = {a.split("=")[0]: int(a.split("=")[1]) for a in args if re.match(r"^\w+=\d+$", a)}
        services = [a for a in args[1:] if not a.startswith("-") and "=" not in a]
        for service in services:
            wanted = scale.get(service, 1)
            # The slot is part of an API replica's configuration (its alias and label).
            own = slot if service == "api" and not self._is_legacy(release) else ""
            mine = [c for c in self.containers if c.service == service]
            config = self._config(release, service)
            if config:  # a part's service: compose compares its configuration, not the release
                stale = any(c.config != config for c in mine)
            else:
                stale = any(c.release != release or c.slot != own for c in mine)
            if "--no-recreate" not in args and (stale or len(mine) > wanted):
                # Compose recreates the containers of another configuration (a release's).
                self.containers = [c for c in self.containers if c.service != service]
                mine = []
            for container in mine:
                container.state = "running"  # compose starts a stopped container
            while len(mine) < wanted:
                number = next(self.serial)
                made = Container(
                    f"{self.project}-{service}-{number}", service, release, slot=own, config=config
                )
                self.containers.append(made)
                mine.append(made)

    def _config(self, release: str, service: str) -> str:
        """The configuration label compose gives `service` from the release's variables."""
        if self._is_legacy(release):
            return ""  # from before the parts: no label, compose compares the release
        part = next((p for p, names in parts.PARTS.items() if service in names), "")
        text = next((v for k, v in self.files.items() if k.endswith(f"{release}/release.env")), "")
        return parts.env_values(text).get(parts.variable(part), "") if part else ""

    def _status(self, container: Container) -> str:
        if container.state != "running":
            return "Exited (1) 3 seconds ago"
        return (
            "Up 2 minutes (unhealthy)"
            if container.service in self.unhealthy
            else "Up 2 minutes (healthy)"
        )

    def _is_legacy(self, release: str) -> bool:
        return any(release.endswith(f"-{version}") for version in self.legacy)


class FakeEngine:
    """This machine's engine: images by reference; building adds `buildable` ones missing."""

    def __init__(
        self, images: dict[str, str] | None = None, buildable: list[str] | None = None
    ) -> None:
        self.images = dict(images or {})
        self.buildable = list(buildable or [])
        self.built: list[str] = []
        self.receivers_rendered = 0
        self.client = None
        self.heads: dict[str, str] = {}  # ref -> schema head it ships (default HEAD)

    def image_id(self, ref: str) -> str | None:
        return self.images.get(ref)

    def missing(self, refs: list[str]) -> list[str]:
        return [ref for ref in refs if ref not in self.images]

    def size(self, ref: str) -> int:
        return 1_000_000

    def save(self, ref: str) -> Iterator[bytes]:
        yield f"{ref}={self.images[ref]}".encode()

    def build_missing(self, env: config.Environment, values: secrets.Secrets, build: Build) -> str:
        for ref in self.buildable:
            if ref not in self.images:
                self.images[ref] = image_id(ref)
                self.built.append(ref)
        return f"built {len(self.built)}"

    def render_alert_receivers(self, ref: str, given: object) -> None:
        self.receivers_rendered += 1

    def schema_head(self, ref: str) -> str:
        return self.heads.get(ref, HEAD)


def image_id(ref: str) -> str:
    """A stable image id for a reference (sha256:<64 hex>)."""
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
