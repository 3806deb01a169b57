"""Docker Swarm on the hosts: forming it, deploying a stack, reading services and tasks."""

from __future__ import annotations

from collections.abc import Sequence

from ops.deploy.commands.docker import STACK_LABEL
from ops.executor import Command, change, query, quote
from ops.executor import join as join_words

# `docker stack deploy` returns once the services are updated; the wait is ours.
STACK_DEPLOY_TIMEOUT = 300.0


def node_state() -> Command:
    """`<LocalNodeState> <NodeID>` of the host's engine."""
    return query("docker info -f '{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}'", "swarm state")


def node_ids() -> Command:
    return query("docker node ls -q", "swarm nodes")


def init(advertise: str) -> Command:
    return change(f"docker swarm init --advertise-addr {quote(advertise)}", "docker swarm init")


def worker_token() -> Command:
    """The join token of workers (a secret: read quietly, never echoed)."""
    return query("docker swarm join-token -q worker", "join token")


def join(advertise: str, token: str, manager: str, label: str) -> Command:
    return change(
        f"docker swarm join --advertise-addr {quote(advertise)} --token {quote(token)} "
        f"{quote(manager)}:2377",
        f"join {label}",
        shown=f"docker swarm join --advertise-addr {quote(advertise)} --token <worker token> "
        f"{quote(manager)}:2377",
    )


def rotate_token() -> Command:
    """The token was on the joining hosts' command lines: make it worthless."""
    return change("docker swarm join-token --rotate -q worker >/dev/null", "rotate the join token")


def label_node(node: str, labels: Sequence[str]) -> Command:
    added = " ".join(f"--label-add {label}=true" for label in labels)
    return change(f"docker node update {added} {quote(node)} >/dev/null", "node labels")


def node_count() -> Command:
    return query("docker node ls -q | wc -l", "count the nodes")


def ready_nodes() -> Command:
    return query("docker node ls --format '{{.Status}} {{.Availability}}'", "list nodes")


def stack_deploy(root: str, release_id: str, file: str, stack: str, prune: bool) -> Command:
    """`docker stack deploy` of a release's stack file; the secrets come from the release's
    secrets.env, sourced by the shell (never on a command line)."""
    rel = f"releases/{release_id}"
    return change(
        f"cd {quote(root)} && set -a && . {quote(rel + '/secrets.env')} && set +a && "
        f"docker stack deploy --resolve-image never {'--prune ' if prune else ''}"
        f"-c {quote(rel + '/' + file)} {quote(stack)} 2>&1",
        f"docker stack deploy ({file})",
        STACK_DEPLOY_TIMEOUT,
    )


def service_ids(stack: str) -> Command:
    return query(f"docker service ls -q --filter label={STACK_LABEL}={quote(stack)}", "services")


# Per service: name, update state and message, and replicas ("global" for a global service).
SERVICE_FORMAT = (
    "{{.Spec.Name}}\t{{if .UpdateStatus}}{{.UpdateStatus.State}}\t"
    "{{.UpdateStatus.Message}}{{else}}\t{{end}}\t"
    "{{if .Spec.Mode.Replicated}}{{.Spec.Mode.Replicated.Replicas}}{{else}}global{{end}}"
)


def inspect_services(ids: Sequence[str]) -> Command:
    return query(
        f"docker service inspect -f {quote(SERVICE_FORMAT)} {join_words(ids)}", "inspect services"
    )


def tasks(stack: str) -> Command:
    return query(
        f"docker stack ps {quote(stack)} --no-trunc "
        "--format '{{.Name}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}'",
        "list tasks",
    )


def task_errors(stack: str) -> Command:
    return query(
        f"docker stack ps {quote(stack)} --no-trunc "
        "--format '{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}' | head -40",
        "tasks and their errors",
    )


def ensure_network(stack: str, name: str, internal: bool) -> Command:
    """The stack's overlay network as `docker stack deploy` makes it (same name, driver and
    namespace label, so the stack adopts it), when it does not exist yet."""
    full = f"{stack}_{name}"
    options = "--internal " if internal else ""
    return change(
        f"docker network inspect {quote(full)} >/dev/null 2>&1 || docker network create "
        f"--driver overlay --attachable {options}"
        f"--label {STACK_LABEL}={quote(stack)} {quote(full)} >/dev/null",
        f"network {full}",
    )


def ensure_volumes(stack: str, names: Sequence[str]) -> Command:
    """The stack's volumes as `docker stack deploy` would make them (it uses them as they are)."""
    label = f"{STACK_LABEL}={stack}"
    return change(
        " && ".join(
            f"docker volume create --label {quote(label)} {quote(f'{stack}_{n}')} >/dev/null"
            for n in names
        ),
        "volumes",
    )
