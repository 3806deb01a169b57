"""Every shell command in the README's code blocks runs against the e2e stack and succeeds.

The README talks about the `local` environment on its default ports; the commands are run as
written, with only the environment, URL and CA path swapped for the e2e stack's. `invoke up` and
`invoke down` are the session fixture's own setup and teardown, `nox` is what runs these tests.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from readme import readme_commands
from stack_names import ENV_NAME

if TYPE_CHECKING:
    from conftest import Stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
KEY_LINE = re.compile(r"^[A-Za-z0-9_\-]{32,}$")


def test_every_readme_command_works_against_a_running_stack(stack: Stack, api_key: str) -> None:
    env = dict(stack.env)
    job_id = ""
    ran = []
    for command in readme_commands()[2:]:
        if command.startswith(("python3 -m pip", "export KEY=")):
            continue
        if command.startswith("curl "):
            line = (
                command.replace("https://localhost:8443", stack.base_url)
                .replace(".slipway/local/ca.crt", str(stack.ca_path))
                .replace("JOB_ID", job_id)
            )
            result = subprocess.run(
                ["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            if "/api/v1/ingest" in command and "--data-binary" in command:
                job_id = json.loads(result.stdout)["job_id"]
            ran.append(command)
            continue
        argv = shlex.split(command)
        assert argv[0] == "invoke", f"unexpected README command: {command}"
        if argv[1] in ("up", "down"):
            continue
        if argv[1] != "--list":
            argv.append(f"--env={ENV_NAME}")
        result = stack.invoke(*argv[1:])
        if argv[1] == "apikey.create":
            keys = [ln for ln in result.stdout.splitlines() if KEY_LINE.match(ln.strip())]
            assert keys, result.stdout
            env["KEY"] = keys[-1].strip()
        ran.append(command)
    assert job_id, "the README's ingest command did not return a job id"
    assert len(ran) >= 9

    # The sample feed's job ends done with its five rows stored.
    job = stack.ingest_job(job_id, api_key)
    assert job["status"] == "done", job
    assert job["accepted"] == 5 and job["rejected"] == 0
