"""nginx with two slots of API replicas (NGINX_UPSTREAM_SLOTS, hosts with Compose): the traffic
moves when the flag file appears or goes, with no reload and no client connection closed.

The nginx image of this checkout runs as compose runs it (read-only root filesystem, tmpfs /tmp,
no capabilities) on a network of its own, next to two stand-in replicas: the same image running
a four-line nginx that answers its slot's name, one with the alias api-blue, one api-green. The
flag directory is bind-mounted read-only, as the deploy's is. Clients of three kinds run while
the flag flips: kept-alive HTTP/1.1 connections that never retry (Python http.client), one new
connection per request, and kept-alive HTTP/2 (curl, which reuses one connection for all its
URLs and never retries). Everything created here is removed at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from built import built_image
from support import tls
from support.waiting import wait_for

pytestmark = pytest.mark.e2e

LABEL = {"slipway.test": "nginx-slots"}
START_TIMEOUT = 30.0
FLIPS = 12
# A stand-in API replica: nginx answering its slot's name (no newline) on every path, on 8000.
REPLICA = (
    "printf 'pid /tmp/r.pid; error_log stderr; events {} http { access_log off; "
    "client_body_temp_path /tmp; proxy_temp_path /tmp; fastcgi_temp_path /tmp; "
    "uwsgi_temp_path /tmp; scgi_temp_path /tmp; server { listen 8000; location / "
    '{ default_type text/plain; return 200 "%s\\n"; } } }\' "$SLOT" > /tmp/r.conf && '
    "exec nginx -e stderr -c /tmp/r.conf -g 'daemon off;'"
)


@dataclass
class Slots:
    """The engine, the network, the flag directory and the containers made here."""

    client: Any
    image: str
    flags: Path
    network: Any = None
    containers: list[Any] = field(default_factory=list)

    def replica(self, slot: str) -> Any:
        container = self.client.containers.run(
            self.image,
            entrypoint=["sh", "-c", REPLICA],
            environment={"SLOT": slot},
            read_only=True,
            tmpfs={"/tmp": "size=8m"},
            network=self.network.name,
            labels=LABEL,
            detach=True,
        )
        # The alias is per network: the replica joins it again under its slot's name.
        self.network.disconnect(container)
        self.network.connect(container, aliases=[f"api-{slot}"])
        self.containers.append(container)
        return container

    def nginx(self, environment: dict[str, str] | None = None, restart: bool = True) -> Any:
        cert_dir = self.flags.parent / f"{self.flags.name}-tls"
        cert_dir.mkdir(mode=0o755, exist_ok=True)
        tls.make_cert("localhost").write(cert_dir)
        for path in (cert_dir, *cert_dir.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        container = self.client.containers.run(
            self.image,
            environment={
                "NGINX_UPSTREAM_SLOTS": "/etc/nginx/upstream",
                # The clients below all come from one address: far above what they send.
                "NGINX_API_RATE": "100000r/s",
                "NGINX_API_BURST": "100000",
                **(environment or {}),
            },
            volumes={
                str(self.flags): {"bind": "/etc/nginx/upstream", "mode": "ro"},
                str(cert_dir): {"bind": "/etc/nginx/tls", "mode": "ro"},
            },
            read_only=True,
            tmpfs={"/tmp": "size=64m"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            network=self.network.name,
            ports={"8443/tcp": ("127.0.0.1", None)},
            restart_policy={"Name": "unless-stopped" if restart else "no"},
            labels=LABEL,
            detach=True,
        )
        self.containers.append(container)
        return container

    def live(self, slot: str) -> None:
        """What the deploy does (ops/deploy/commands/nginx.py): one file created or removed."""
        flag = self.flags / "slot-green"
        if slot == "green":
            flag.touch()
        else:
            flag.unlink(missing_ok=True)


@pytest.fixture
def slots() -> Iterator[Slots]:
    client = docker.from_env()
    flags = Path(tempfile.mkdtemp(prefix="slipway-slots-"))
    flags.chmod(0o755)  # nginx (uid 101) reads the flag
    handle = Slots(client, built_image("nginx", "SLIPWAY_NGINX_TAG"), flags)
    handle.network = client.networks.create(f"slipway-slots-{os.getpid()}", labels=LABEL)
    try:
        yield handle
    finally:
        for container in handle.containers:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            handle.network.remove()
        shutil.rmtree(flags, ignore_errors=True)
        shutil.rmtree(flags.parent / f"{flags.name}-tls", ignore_errors=True)


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def https_port(container: Any) -> int:
    def ready() -> int:
        container.reload()
        assert container.status in {"created", "running"}, container.logs().decode()[-2000:]
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get("8443/tcp")
        if not bindings:
            return 0
        port = int(bindings[0]["HostPort"])
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=_context(), timeout=5)
        try:
            connection.request("GET", "/api/x")
            assert connection.getresponse().status == 200
        finally:
            connection.close()
        return port

    return int(
        wait_for(
            ready,
            what="nginx proxying to the live slot",
            timeout=START_TIMEOUT,
            interval=0.2,
            ignoring=(OSError, AssertionError, http.client.HTTPException),
        )
    )


@dataclass
class Seen:
    """What each kind of client got: answers by body, and failures."""

    answers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, body: str, problem: str = "") -> None:
        with self.lock:
            if problem:
                self.failures.append(f"{kind}: {problem}")
            else:
                self.answers[f"{kind} {body}"] += 1


def kept_alive(port: int, stop: threading.Event, seen: Seen) -> None:
    """One HTTP/1.1 connection for as long as it lasts; a failed request is never retried."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=_context(), timeout=10)
    try:
        while not stop.is_set():
            try:
                connection.request("GET", "/api/v1/listings")
                response = connection.getresponse()
                body = response.read().decode().strip()
            except (OSError, http.client.HTTPException) as exc:
                seen.add("kept-alive", "", f"{type(exc).__name__}: {exc}")
                connection.close()  # the next request opens a new connection
                continue
            if response.status != 200:
                seen.add("kept-alive", "", f"HTTP {response.status}")
            else:
                seen.add("kept-alive", body)
    finally:
        connection.close()


def new_connections(port: int, stop: threading.Event, seen: Seen) -> None:
    while not stop.is_set():
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=_context(), timeout=10)
        try:
            connection.request("GET", "/api/v1/listings")
            response = connection.getresponse()
            body = response.read().decode().strip()
            if response.status != 200:
                seen.add("new", "", f"HTTP {response.status}")
            else:
                seen.add("new", body)
        except (OSError, http.client.HTTPException) as exc:
            seen.add("new", "", f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()


def http2(port: int, requests: int) -> subprocess.Popen[str]:
    """curl over one HTTP/2 connection for all its URLs (no retry); one line per answer:
    `body#=status HTTP-version connections-opened-for-it=#`."""
    url = f"https://127.0.0.1:{port}/api/v1/listings"
    return subprocess.Popen(  # a fixed argv of our own
        [
            "curl", "--http2", "-sk", "--no-progress-meter",
            "-w", "#=%{http_code} %{http_version} %{num_connects}=#",
            *([url] * requests),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def test_flipping_the_flag_moves_every_client_kind_with_no_failure_and_no_reload(
    slots: Slots,
) -> None:
    slots.replica("blue")
    slots.replica("green")
    nginx = slots.nginx()
    port = https_port(nginx)
    pids_before = nginx.exec_run(["sh", "-c", "pgrep -d, nginx"]).output.decode().strip()

    seen = Seen()
    stop = threading.Event()
    clients = [
        *(threading.Thread(target=kept_alive, args=(port, stop, seen)) for _ in range(4)),
        *(threading.Thread(target=new_connections, args=(port, stop, seen)) for _ in range(2)),
    ]
    curl = http2(port, 4000)
    for thread in clients:
        thread.start()
    try:
        for flip in range(FLIPS):
            time.sleep(0.4)
            slots.live("green" if flip % 2 == 0 else "blue")
        time.sleep(0.4)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
    out, err = curl.communicate(timeout=120)

    h2 = [
        (body.strip(), code, version, connects)
        for body, code, version, connects in re.findall(r"(.*?)#=(\d+) (\S+) (\d+)=#", out, re.S)
    ]
    h2_failed = [line for line in h2 if line[1] != "200"]
    assert len(h2) == 4000 and not h2_failed and curl.returncode == 0, (h2_failed[:5], err)
    assert {line[2] for line in h2} == {"2"}, "curl spoke HTTP/2"
    # nginx ends an HTTP/2 connection gracefully (GOAWAY) after 1000 requests
    # (http2_max_requests): one connection per 1000, none because of a switch.
    assert sum(int(line[3]) for line in h2) == len(h2) // 1000
    for body, *_ in h2:
        seen.add("http2", body)

    assert not seen.failures, seen.failures[:10]
    for kind in ("kept-alive", "new", "http2"):
        assert seen.answers[f"{kind} blue"] > 0 and seen.answers[f"{kind} green"] > 0, seen
    # No reload happened: the same nginx processes served before and after.
    pids_after = nginx.exec_run(["sh", "-c", "pgrep -d, nginx"]).output.decode().strip()
    assert pids_after == pids_before
    assert "reloaded" not in nginx.logs().decode()


def test_a_replica_replaced_under_its_slot_name_is_found_without_a_reload(
    slots: Slots,
) -> None:
    blue = slots.replica("blue")
    nginx = slots.nginx()
    port = https_port(nginx)
    blue.remove(force=True)
    slots.replica("blue")  # another container, another address, the same name

    def answers() -> str:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=_context(), timeout=5)
        try:
            connection.request("GET", "/api/x")
            response = connection.getresponse()
            assert response.status == 200, response.status
            return response.read().decode().strip()
        finally:
            connection.close()

    assert wait_for(answers, what="the new blue replica answering", timeout=15.0,
                    interval=0.2, ignoring=(AssertionError, OSError)) == "blue"  # fmt: skip
    assert "reloaded" not in nginx.logs().decode()


def test_a_missing_flag_directory_stops_nginx_naming_the_mount(slots: Slots) -> None:
    nginx = slots.nginx({"NGINX_UPSTREAM_SLOTS": "/etc/nginx/nowhere"}, restart=False)
    status = nginx.wait(timeout=START_TIMEOUT)
    logs = nginx.logs().decode()
    assert status["StatusCode"] != 0, logs
    assert "NGINX_UPSTREAM_SLOTS=/etc/nginx/nowhere is not a readable directory" in logs, logs
