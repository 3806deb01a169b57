"""`invoke sandbox.down`: remove a sandbox's containers, its files, and the unused network.

A plain function, not an ops.steps.Operation: one confirmation, then removals in a fixed order
(containers, the network, files), with no pre-flight phase a step table would show.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ops import docker_engine
from ops.errors import OpsError
from ops.sandbox.engine import remove_container, remove_network_if_unused, sandbox_containers
from ops.sandbox.files import SandboxFiles, written_by_sandbox
from ops.sandbox.names import DEFAULT_NAME, LABEL, NETWORK, ROLE_NAMES, check_name, role_of
from ops.stack.local import confirm_destroy


def down(name: str = DEFAULT_NAME, yes: bool = False) -> None:
    """Remove sandbox `name`: its hosts (engines and images with them), its ACME server and
    registry (the images pushed there with it), files, and the network when no sandbox uses it
    any more. A sandbox that does not exist is reported, not an error."""
    check_name(name)
    files = SandboxFiles.of(name)
    engine = docker_engine.client()
    containers = sandbox_containers(engine, name)
    ours = written_by_sandbox(files.environment)
    doomed = _doomed_files(files, ours, bool(containers))
    if not containers and not doomed:
        print(f"sandbox {name} does not exist: no host labelled {LABEL}={name}, no files")
        return
    if files.environment.exists() and not ours:
        print(f"note: {files.environment} was not written by sandbox.up: it is kept")
    servers = [c for c in containers if role_of(c)]
    what = (
        f"sandbox {name}: {len(containers) - len(servers)} host(s) with everything deployed on them"
    )
    for server in servers:
        what += f", its {ROLE_NAMES.get(role_of(server), role_of(server))} {server.name}"
    if doomed:
        what += f", and {', '.join(_shown(files, p) for p in doomed)}"
    confirm_destroy(what, yes)
    for container in containers:
        print(f"removing {container.name}", flush=True)
        remove_container(engine, container.name)
    left = sandbox_containers(engine, name)
    if left:
        raise OpsError(
            f"{', '.join(c.name for c in left)} still exist(s). Fix: `docker rm -f` them, "
            f"then `invoke sandbox.down --name {name}` again"
        )
    if remove_network_if_unused(engine):
        print(f"removed the network {NETWORK} (no sandbox uses it)")
    for path in doomed:
        print(f"deleting {_shown(files, path)}", flush=True)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    print(f"sandbox {name} is gone")


def _doomed_files(files: SandboxFiles, ours: bool, has_containers: bool) -> list[Path]:
    """The files down deletes: the environment file when sandbox.up wrote it, .env.<name> and
    .slipway/<name>/ (what its deploys kept here) when they are the sandbox's, the key
    directory."""
    exists = has_containers or ours or files.key_dir.exists()
    doomed = [files.environment] if ours else []
    # .env.<name> and .slipway/<name>/ are the sandbox's unless environments/<name>.yaml is
    # someone else's file.
    sandboxes = exists and (ours or not files.environment.exists())
    doomed += [path for path in (files.secrets, files.deploy_state) if sandboxes and path.exists()]
    if files.key_dir.exists():
        doomed.append(files.key_dir)
    return doomed


def _shown(files: SandboxFiles, path: Path) -> str:
    try:
        return files.relative(path)
    except ValueError:
        return str(path)
