"""The standby on a host with Compose: the API replicas a switch took the traffic from, kept
running out of traffic for `deploy.standby` seconds so a rollback within them is a switch back.

Its record, `<remote_dir>/nginx/standby.json` ({"release", "slot", "until"}), is what `invoke
status` shows. A stop scheduled on the host (a detached shell: nothing of this machine needs to
stay connected) ends it: when the time comes it takes the deploy lock (so no deploy or
rollback moves the traffic meanwhile), and stops the slot's replicas of that release only if
the slot is still out of traffic; while a deploy holds the lock it waits, as that deploy may use
or replace them. A stop that finds nothing to do does nothing.
"""

from __future__ import annotations

import re

from ops.deploy.commands.compose import LIVE_SLOT
from ops.deploy.commands.docker import PROJECT_LABEL, RELEASE_LABEL, SERVICE_LABEL, SLOT_LABEL
from ops.deploy.commands.nginx import SLOTS
from ops.executor import Command, change, query, quote

RECORD = "nginx/standby.json"
# How long a scheduled stop waits for a deploy holding the lock, and the lock's ttl while it
# stops the replicas (then anyone may take it over, as a stale lock).
LOCK_WAIT = 3600
LOCK_TTL = 300
# Release ids go into the script as they are: ops/deploy/release.py makes them of these only.
_RELEASE = re.compile(r"^[A-Za-z0-9._-]+$")

_STOP_SCRIPT = """
left=$(( {until} - $(date +%s) ))
[ "$left" -le 0 ] || sleep "$left"
cd {root} || exit 0
deadline=$(( $(date +%s) + {lock_wait} ))
until mkdir lock 2>/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || exit 0
  sleep 5
done
now=$(date +%s)
printf '{{"owner": "standby stop on the host", "token": "%s", "version": "", "started": %s, \
"refreshed": %s, "ttl": {lock_ttl}, "operation": "stop the standby"}}' "$$-$now" "$now" "$now" \
  > lock/info.json
token="$$-$now"
# Only the standby this stop was scheduled for (a later switch records another one), and only
# while its slot takes no traffic.
if grep -qF '"until": {until}' {record} 2>/dev/null && [ {live} != {slot} ]; then
  ids=$(docker ps -aq --filter label={project_label}={project} \
    --filter label={service_label}=api --filter label={slot_label}={slot} \
    --filter label={release_label}={release})
  if [ -n "$ids" ]; then
    docker stop -t {stop_timeout} $ids >/dev/null 2>&1
    docker rm -f $ids >/dev/null 2>&1
  fi
  # Its workers, kept parked or stopped since the switch (ops/deploy/workers.py).
  ids=$(docker ps -aq --filter label={project_label}={project} \
    --filter label={service_label}=worker --filter label={release_label}={release})
  if [ -n "$ids" ]; then
    docker stop -t {stop_timeout} $ids >/dev/null 2>&1
    docker rm -f $ids >/dev/null 2>&1
  fi
  rm -f {record}
fi
grep -qF "$token" lock/info.json 2>/dev/null && rm -rf lock
"""


def memory_available() -> Command:
    """The host's available memory in KiB (MemAvailable)."""
    return query("awk '/^MemAvailable:/ {print $2}' /proc/meminfo", "available memory")


def schedule_stop(
    project: str, root: str, slot: str, release: str, until: int, stop_timeout: int
) -> Command:
    """The standby's replicas stopped at `until` (the host's clock, seconds) by a detached shell
    on the host (see the module's docstring), each given `stop_timeout` seconds to drain;
    `until` is also the mark of its record (written by the rollout)."""
    if slot not in SLOTS or not _RELEASE.match(release):
        raise ValueError(f"not a slot and a release id: {slot!r}, {release!r}")
    script = _STOP_SCRIPT.format(
        until=int(until),
        root=quote(root),
        lock_wait=LOCK_WAIT,
        lock_ttl=LOCK_TTL,
        live=LIVE_SLOT,
        slot=quote(slot),
        project_label=PROJECT_LABEL,
        project=quote(project),
        service_label=SERVICE_LABEL,
        slot_label=SLOT_LABEL,
        release_label=RELEASE_LABEL,
        release=release,
        stop_timeout=int(stop_timeout),
        record=RECORD,
    )
    return change(
        f"nohup sh -c {quote(script)} </dev/null >/dev/null 2>&1 &",
        "schedule the end of the standby",
        shown=f"at {until} (host clock), on the host: stop the {slot} replicas of {release} if "
        "they still take no traffic (under the deploy lock)",
    )


def clear(root: str) -> Command:
    """No standby (any replica out of traffic is gone, or about to be)."""
    return change(f"rm -f {quote(root + '/' + RECORD)}", "forget the standby")


def read(root: str) -> Command:
    """The standby's record, empty when there is none."""
    return query(f"cat {quote(root + '/' + RECORD)} 2>/dev/null || true", "read the standby")


def discard(project: str, root: str) -> Command:
    """Stop and remove every API replica out of traffic (the slot not live), the workers kept
    stopped and those kept parked (the release the record names), and forget the standby:
    before something restarts the API as a whole (a restore)."""
    idle = "$(test -e nginx/slot-green && echo blue || echo green)"
    project_filter = f"--filter label={PROJECT_LABEL}={quote(project)}"
    release = r"""r=$(sed -n 's/.*"release": *"\([^"]*\)".*/\1/p' """ + f"{RECORD} 2>/dev/null); "
    return change(
        f"cd {quote(root)} && {release}"
        f"ids=$(docker ps -aq {project_filter} "
        f"--filter label={SERVICE_LABEL}=api --filter label={SLOT_LABEL}={idle}; "
        f"docker ps -aq {project_filter} --filter label={SERVICE_LABEL}=worker "
        "--filter status=exited; "
        f'[ -z "$r" ] || docker ps -aq {project_filter} --filter label={SERVICE_LABEL}=worker '
        f'--filter label={RELEASE_LABEL}="$r"); '
        '[ -z "$ids" ] || docker rm -f $ids >/dev/null; '
        f"rm -f {RECORD}",
        "remove the standby API replicas and workers",
    )
