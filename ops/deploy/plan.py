"""What a deploy plans before it changes anything: the id of each image of the release, and
what each host lacks of them (pure apart from reading image ids, here and on the hosts)."""

from __future__ import annotations

from collections.abc import Sequence

from ops import config
from ops.deploy.images import LocalEngine, content_tagged
from ops.deploy.releases import Release
from ops.deploy.ship import image_ids_on
from ops.executor import Executor


def image_ids(
    hosts: Sequence[tuple[config.Host, Executor]], refs: Sequence[str], local: LocalEngine
) -> tuple[dict[str, str], dict[int, list[str]]]:
    """The release's image ids, and per host (by index) the images it lacks.

    A host has an image when it holds that id under the tag, or, for a content-tagged image
    (the tag names its build inputs), the tag at all: shipping it again because this machine
    built it anew (another id) would restart PostgreSQL, Redis or nginx for nothing. The first
    host's id is then the release's."""
    ids: dict[str, str] = {}
    lacking: dict[int, list[str]] = {}
    here = {ref: local.image_id(ref) or "" for ref in refs}
    for index, (_, remote) in enumerate(hosts):
        lacking[index] = []
        there = image_ids_on(remote, refs)
        for ref in refs:
            local_id = here[ref]
            remote_id = there[ref]
            has = bool(remote_id) and (remote_id == local_id or content_tagged(ref))
            if index == 0:
                ids[ref] = remote_id if has else local_id
            if not has:
                lacking[index].append(ref)
    return ids, lacking


def lines(
    env: config.Environment, previous: Release | None, release: Release, shipping: Sequence[str]
) -> list[str]:
    """What the plan says before the lock (each printed after `plan: `)."""
    return [
        f"hosts {', '.join(h.label for h in env.hosts)}, {env.deploy.remote_dir}",
        "current release: " + (previous.id if previous else "none (first deploy)"),
        f"new release: {release.id}",
        "images to ship: " + (", ".join(shipping) or "none (the hosts have them)"),
        f"API: {env.replicas.api} replica(s), {env.deploy.batch or 'all if memory allows'} "
        "at a time; "
        f"workers: {env.replicas.worker}",
        f"then smoke checks through {env.https_url}",
    ]
