"""`listings healthcheck`: the container probes, which never load the settings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from listings import healthcheck
from listings.settings import Settings

pytestmark = pytest.mark.unit


def test_the_worker_probe_reads_the_heartbeat_settings_as_settings_do(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    environ = {
        "LISTINGS_WORKER_HEARTBEAT_FILE": str(beat),
        "listings_worker_heartbeat_max_age_s": "5",  # any case, as pydantic-settings reads it
    }
    assert healthcheck.worker_settings(environ) == (str(beat), 5.0)
    settings = Settings()
    assert healthcheck.worker_settings({}) == (
        settings.worker_heartbeat_file,
        settings.worker_heartbeat_max_age_s,
    )
    assert healthcheck.run("worker", environ) == 1  # no heartbeat yet
    beat.touch()
    assert healthcheck.run("worker", environ) == 0
    old = time.time() - 60
    os.utime(beat, (old, old))
    assert healthcheck.run("worker", environ) == 1


def test_a_probe_loads_neither_the_settings_nor_pydantic(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    beat.touch()
    code = (
        "import sys\n"
        "from listings.cli import main\n"
        "code = main(['healthcheck', 'worker'])\n"
        "print(code, sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'pydantic_settings') or m == 'listings.settings'))\n"
    )
    # Settings that would refuse to start: a probe of a running container does not judge them.
    env = {
        "PATH": os.environ["PATH"],
        "LISTINGS_ENV": "production",
        "LISTINGS_WORKER_HEARTBEAT_FILE": str(beat),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines()[-1] == "0 []"
    assert done.stdout.startswith("heartbeat ")
