"""Images of this checkout for tests that run one container by hand: built through compose
(the tags `invoke build` uses) when missing."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def built_image(
    service: str, tag_variable: str, name: str = "", overlays: tuple[str, ...] = ()
) -> str:
    """slipway/<name or service>:<content tag>, built with `docker compose build <service>` if
    missing (`name` when the image is not named after the service: exporters, node-exporter;
    `overlays`: compose/<file>s on top of compose.yaml where the service is defined, such as
    logging.yaml for `logs`)."""
    from ops.compose import ACME_PROFILE, MONITORING_PROFILE, detect_build
    from ops.images import engine, ensure_base, has_image

    build = detect_build()
    env = dict(os.environ)
    env.update(
        SLIPWAY_ENV="test",
        SLIPWAY_VERSION=build.version,
        SLIPWAY_GIT_SHA=build.git_sha,
        SLIPWAY_BUILD_CA=str(build.ca_bundle),
        # Every profile's services can be built (certbot is in `acme`, Prometheus & co in
        # `monitoring`).
        COMPOSE_PROFILES=f"{ACME_PROFILE},{MONITORING_PROFILE}",
        # Required by compose.yaml's interpolation; nothing here uses them.
        POSTGRES_PASSWORD=secrets.token_urlsafe(24),
        REDIS_PASSWORD=secrets.token_urlsafe(24),
        LISTINGS_API_KEY_PEPPER=secrets.token_urlsafe(32),
        BACKUP_PASSPHRASE=secrets.token_urlsafe(32),
        **build.image_tags,
    )
    image = f"slipway/{name or service}:{build.image_tags[tag_variable]}"
    client = engine()
    if not has_image(client, image):
        ensure_base(client)
        argv = ["docker", "compose", "-p", f"slipway-test-{service}"]
        for file in ("compose.yaml", *overlays):
            argv += ["-f", str(ROOT / "compose" / file)]
        argv += ["build", service]
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0 and has_image(client, image), (
            f"building {image} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return image
