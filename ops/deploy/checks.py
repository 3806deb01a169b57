"""The requests a release must answer before and after the traffic moves to it: the
environment's `deploy.checks` (GET paths: a search, a listing, the viewer page by default),
each judged on its status (2xx) and its time (`deploy.check_latency`).

Before the switch they run inside each new API replica, against its own gunicorn (a script of
the standard library in the replica's Python, all replicas at once in one command), so a
release that answers /ready but fails its searches never takes a client's request. After the
switch the same requests go through nginx and the public URL, as a client's do. `{listing}` in
a path is the id of the first listing an earlier check's answer returned (skipped, and said,
when there is none: an empty database).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Sequence

import httpx

from ops import config, health
from ops.deploy import smoke
from ops.errors import OpsError
from ops.executor import Command, join, query, quote

LISTING = "{listing}"

# Run by the replica's Python: argv[1] the paths as JSON, argv[2] the latency limit (seconds).
# One line per request: ok|FAIL <path> <status> <ms>ms; exit 1 when one failed.
SCRIPT = """
import json, sys, time, urllib.error, urllib.parse, urllib.request
paths, limit = json.loads(sys.argv[1]), float(sys.argv[2])
listing, failed = None, 0
for path in paths:
    if "{listing}" in path:
        if listing is None:
            print("skip", path, "no listing to ask for")
            continue
        path = path.replace("{listing}", urllib.parse.quote(str(listing), safe=""))
    began = time.monotonic()
    try:
        with urllib.request.urlopen("http://127.0.0.1:8000" + path, timeout=limit + 5) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, b""
    except Exception as exc:
        status, body = 0, str(exc).encode()
    took = time.monotonic() - began
    good = 200 <= status < 300 and took <= limit
    failed += not good
    print("ok" if good else "FAIL", path, status, "%dms" % (took * 1000))
    if good and listing is None:
        try:
            items = json.loads(body).get("items") or []
            listing = items[0]["id"] if items else None
        except Exception:
            pass
sys.exit(1 if failed else 0)
"""
MARK = "::slipway-replica::"


def in_replicas(names: Sequence[str], paths: Sequence[str], latency: float) -> Command:
    """The checks in each replica at once (one command): each replica's lines after a marker
    line with its name and its script's exit code."""
    argv = ["python", "-c", SCRIPT, json.dumps(list(paths)), str(latency)]
    runs = [
        f"( out=$(docker exec {quote(name)} {join(argv)} 2>&1); "
        f'printf "%s\\n" "{MARK} {name} $?" "$out" ) > "$d/{index}" &'
        for index, name in enumerate(names)
    ]
    script = "d=$(mktemp -d) && { " + " ".join(runs) + ' wait; cat "$d"/*; rm -rf "$d"; }'
    return query(script, "check the new replicas with real requests")


def failures(output: str, names: Sequence[str]) -> dict[str, list[str]]:
    """Each replica's failed lines, from in_replicas' output ({} when every one of `names`
    passed; a replica the output does not mention failed)."""
    seen = {line.split()[1] for line in output.splitlines() if line.startswith(MARK + " ")}
    failed: dict[str, list[str]] = {
        name: [f"no answer from the checks: {output.strip()[-300:] or 'no output'}"]
        for name in names
        if name not in seen
    }
    name, code = "", "0"
    lines: list[str] = []
    for line in [*output.splitlines(), f"{MARK} - 0"]:
        if line.startswith(MARK):
            if name and code != "0":
                failed[name] = (
                    [x for x in lines if x.startswith("FAIL")] or lines[-5:] or [f"exit {code}"]
                )
            _, name, code = [*line.split(), "", "", ""][:3]
            lines = []
        elif line.strip():
            lines.append(line.strip())
    return failed


def summary(failed: dict[str, list[str]]) -> str:
    """`failures()` as one line: `<replica>: <failed request>, ...; <replica>: ...`."""
    return "; ".join(f"{name}: {', '.join(lines)}" for name, lines in failed.items())


def through_nginx(env: config.Environment) -> str:
    """The checks through the public URL; OpsError naming the first that failed."""
    latency = float(env.deploy.check_latency)
    results: list[str] = []
    listing: object = None
    verify = smoke.verify_context(env)
    with httpx.Client(verify=verify, timeout=latency + 5) as client:
        for path in env.deploy.checks:
            if LISTING in path:
                if listing is None:
                    results.append(f"skip {path} (no listing to ask for)")
                    continue
                path = path.replace(LISTING, urllib.parse.quote(str(listing), safe=""))
            began = time.monotonic()
            try:
                answer = health.public_get(client, env.https_url, path, env.connect_to)
                status = answer.status_code
            except httpx.HTTPError as exc:
                raise OpsError(f"check {path} through {env.https_url}: {exc}") from exc
            took = time.monotonic() - began
            if not 200 <= status < 300 or took > latency:
                raise OpsError(
                    f"check {path} through {env.https_url}: {status} in {took * 1000:.0f} ms "
                    f"(wanted 2xx within {latency:.0f} s, deploy.check_latency)"
                )
            results.append(f"{path} {status}")
            if listing is None:
                listing = first_listing(answer)
    return ", ".join(results)


def first_listing(answer: httpx.Response) -> object:
    try:
        items = answer.json().get("items") or []
        return items[0]["id"] if items else None
    except (ValueError, AttributeError, KeyError, IndexError, TypeError):
        return None
