"""A webhook receiver for the alert tests: what Alertmanager posts, kept in memory.

Runs in a container on the e2e stack's edge network (python3 of the listings image):
POST <any path> records {"at": <unix time>, "path", "payload"}; GET /received lists them all.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 9000), Handler).serve_forever()
