"""The `listings` command: the image's single entry point."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from listings import __version__

if TYPE_CHECKING:
    from listings.settings import Settings

DEFAULT_METRICS_DIR = "/tmp/listings-prometheus"  # noqa: S108  # nosec B108 - per-container tmpfs


def _api(settings: Settings, _: argparse.Namespace) -> int:
    # A fresh multiprocess directory per start: files of dead processes would skew the metrics.
    metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", DEFAULT_METRICS_DIR)
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:listings.gunicorn_conf",
        "listings.api.app:create_app()",
    ]
    # exec: gunicorn becomes this process and receives SIGTERM directly from docker.
    os.execv(sys.executable, argv)  # noqa: S606 - fixed argv, no shell


def _worker(settings: Settings, _: argparse.Namespace) -> int:
    from listings.ingest.worker import run_worker
    from listings.logs import configure_logging

    configure_logging("worker", settings.log_level)
    run_worker(settings)
    return 0


def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    from listings import migrate

    migrate.upgrade(settings.database_url.get_secret_value())
    print(f"database schema at {migrate.head_revision()}")
    return 0


def _apikey(settings: Settings, args: argparse.Namespace) -> int:
    from listings import apikeys
    from listings.db import create_engine

    async def run() -> int:
        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                if args.apikey_command == "create":
                    key = await apikeys.create_key(conn, settings.pepper_bytes(), args.name)
                    print(key)
                    print(
                        f"API key {args.name!r} created; it is shown only this once.",
                        file=sys.stderr,
                    )
                    return 0
                if await apikeys.revoke_key(conn, args.name):
                    print(f"API key {args.name!r} revoked.")
                    return 0
                print(f"no active API key named {args.name!r}", file=sys.stderr)
                return 1
        except apikeys.ApiKeyError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _check_settings(settings: Settings, _: argparse.Namespace) -> int:
    print(f"settings OK for environment {settings.env!r} (version {settings.version})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="listings", description="Slipway listings service")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("api", help="serve the HTTP API on 0.0.0.0:8000 (gunicorn + uvicorn)")
    sub.add_parser("worker", help="run the ingest worker")
    sub.add_parser("migrate", help="upgrade the database schema to the latest migration")
    apikey = sub.add_parser("apikey", help="create or revoke API keys")
    apikey_sub = apikey.add_subparsers(dest="apikey_command", required=True)
    for name, text in (("create", "create a key and print it once"), ("revoke", "revoke a key")):
        cmd = apikey_sub.add_parser(name, help=text)
        cmd.add_argument("--name", required=True, help="who or what the key is for")
    sub.add_parser("check-settings", help="validate the LISTINGS_* settings and exit")
    health = sub.add_parser("healthcheck", help="container health check")
    health.add_argument(
        "target",
        choices=["api", "ready", "worker"],
        help="api: /health answers; ready: /ready (dependencies, schema); worker: heartbeat",
    )
    return parser


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "api": _api,
    "worker": _worker,
    "migrate": _migrate,
    "apikey": _apikey,
    "check-settings": _check_settings,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "healthcheck":  # a probe: never loads the settings (healthcheck.py)
        from listings import healthcheck

        return healthcheck.run(args.target)
    from listings.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"listings {args.command}: refusing to start, {exc}", file=sys.stderr)
        return 2
    return COMMANDS[args.command](settings, args)
