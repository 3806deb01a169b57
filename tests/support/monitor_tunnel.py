"""A monitored host without SSH, for the unit tests of `invoke monitor`: small HTTP servers on
127.0.0.1 stand for the host's Prometheus and Alertmanager, and TunnelRemote is a real
ops.remote.Remote whose SSH transport opens its "channels" as TCP connections to them, so
Remote.forward's own listener and pumps carry every request.

    prometheus = FakeHttp(prometheus_routes())
    remote = TunnelRemote({9090: prometheus.port})    # the host's port -> the server here
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import paramiko

from ops import config
from ops.errors import OpsError
from ops.remote import Remote

ALERTS = {
    "status": "success",
    "data": {
        "alerts": [
            {
                "labels": {"alertname": "APIDown", "severity": "critical"},
                "annotations": {"summary": "no API replica answers"},
                "state": "firing",
                "activeAt": "2026-12-01T10:00:00.123Z",
            },
            {
                "labels": {"alertname": "DiskFilling", "severity": "warning"},
                "annotations": {"summary": "disk fills"},
                "state": "firing",
                "activeAt": "2026-12-01T09:00:00Z",
            },
            {
                "labels": {"alertname": "Slow", "severity": "warning"},
                "annotations": {"summary": "pending only"},
                "state": "pending",
                "activeAt": "2026-12-01T09:30:00Z",
            },
        ]
    },
}
TARGETS = {
    "status": "success",
    "data": {
        "activeTargets": [
            {"labels": {"job": "api", "instance": "10.0.0.5:8000"}, "health": "up"},
            {
                "labels": {"job": "postgres", "instance": "postgres-exporter:9187"},
                "health": "down",
                "lastError": "connection refused",
            },
        ]
    },
}


class FakeHttp:
    """A tiny HTTP server on 127.0.0.1 answering fixed bodies by path (404 otherwise)."""

    def __init__(self, routes: dict[str, bytes]) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                body = routes.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def prometheus_routes(alerts: object = ALERTS, targets: object = TARGETS) -> dict[str, bytes]:
    return {
        "/-/ready": b"Prometheus Server is Ready.\n",
        "/api/v1/alerts": json.dumps(alerts).encode(),
        "/api/v1/targets": json.dumps(targets).encode(),
    }


class FakeTransport:
    """What Remote.forward uses of paramiko's Transport: a "direct-tcpip" channel to the host's
    (address, port) is a TCP connection to the server standing for that port here."""

    def __init__(self, routes: dict[int, int]) -> None:
        self.routes = routes
        self.opened: list[tuple[str, int]] = []
        self.active = True

    def is_active(self) -> bool:
        return self.active

    def open_channel(self, kind: str, dest: tuple[str, int], src: tuple[str, int]) -> socket.socket:
        assert kind == "direct-tcpip"
        self.opened.append(dest)
        if dest[0] != "127.0.0.1" or dest[1] not in self.routes:
            raise paramiko.ChannelException(2, "Connect failed")
        return socket.create_connection(("127.0.0.1", self.routes[dest[1]]))


class TunnelRemote(Remote):
    """A Remote to deploy@203.0.113.10:22 whose SSH transport is a FakeTransport."""

    def __init__(self, routes: dict[int, int]) -> None:
        super().__init__(config.Host("deploy", "203.0.113.10", 22))
        self.fake = FakeTransport(routes)
        self.closed = False

    def _transport(self) -> Any:
        if self.closed or not self.fake.active:
            raise OpsError(f"SSH connection to {self.host.label} is closed")
        return self.fake

    def connected(self) -> bool:
        return not self.closed and self.fake.active

    def close(self) -> None:
        self.closed = True


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False
