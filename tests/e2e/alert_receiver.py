"""A webhook receiver for the alert tests: what Alertmanager posts, kept in memory.

Runs in a container on the e2e stack's edge network (python3 of the listings image):
POST <any path> records {"at": <unix time>, "path", "payload"}; GET /received lists them all.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RECEIVED: list[dict[str, object]] = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload: object = json.loads(body)
        except ValueError:
            payload = {"unparsable": body.decode(errors="replace")}
        with LOCK:
            RECEIVED.append({"at": time.time(), "path": self.path, "payload": payload})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        with LOCK:
            data = json.dumps(RECEIVED).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return


def run_argv(name: str, network: str, image: str, publish: str) -> list[str]:
    """`docker run` of this receiver as container `name` on `network`, from `image` (one with
    python3: the listings image), port 9000 published at `publish` (host part of `-p`).

    Compose-built images carry compose's labels and the API's healthcheck: without the labels
    and --no-healthcheck here the receiver would count as a replica of whichever stack built
    the image.
    """
    return [
        "docker",
        "run",
        "-d",
        "--name",
        name,
        "--network",
        network,
        "-p",
        f"{publish}:9000",
        "--read-only",
        "--user",
        "65534",
        "--label",
        f"com.docker.compose.project={name}",
        "--label",
        "com.docker.compose.service=alert-receiver",
        "--no-healthcheck",
        "-v",
        f"{Path(__file__).resolve()}:/receiver.py:ro",
        "--entrypoint",
        "python3",
        image,
        "/receiver.py",
    ]


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 9000), Handler).serve_forever()
