"""`invoke monitor`: where an environment's Prometheus and Alertmanager answer, and what they see.

Local stacks publish both on 127.0.0.1 (monitoring.prometheus_port / alertmanager_port); this
checks that they answer and prints the firing alerts and the targets that are not up.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from ops import compose
from ops.config import Environment
from ops.errors import OpsError

LOOPBACK = "127.0.0.1"
TIMEOUT = 5.0


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str
    since: str
    summary: str


@dataclass(frozen=True)
class View:
    prometheus: str
    alertmanager: str
    firing: list[Alert] = field(default_factory=list)
    down: list[str] = field(default_factory=list)  # "job instance: error"

    def lines(self) -> list[str]:
        out = [f"Prometheus    {self.prometheus}/", f"Alertmanager  {self.alertmanager}/"]
        out.append(f"consoles      {self.prometheus}/consoles/index.html")
        out.append(f"firing alerts: {len(self.firing)}")
        for alert in self.firing:
            out.append(
                f"  {alert.severity:<8} {alert.name:<32} since {alert.since}  {alert.summary}"
            )
        out.append(f"targets not up: {len(self.down)}")
        out.extend(f"  {line}" for line in self.down)
        return out


def urls(env: Environment) -> tuple[str, str]:
    """Base URLs of Prometheus and Alertmanager on this machine, or OpsError saying why not."""
    if env.target != "local":
        raise OpsError(
            f"environment {env.name!r} runs on hosts (target: {env.target}): Prometheus and "
            'Alertmanager are not deployed to hosts yet (docs/architecture.md, "Monitoring"). '
            "Fix: use a local stack (`invoke up`) until then"
        )
    if not compose.runs_monitoring(env):
        raise OpsError(
            f"monitoring is off in {env.source} (monitoring.enabled: false). Fix: set it to "
            f"true and run `invoke up --env {env.name}`"
        )
    mon = env.monitoring
    return f"http://{LOOPBACK}:{mon.prometheus_port}", f"http://{LOOPBACK}:{mon.alertmanager_port}"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 (loopback)
        return json.load(response) if "/api/" in url else response.read()


def _check(name: str, base: str, env: Environment) -> None:
    try:
        _get(f"{base}/-/ready")
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OpsError(
            f"{name} does not answer at {base} ({reason}). Fix: start the stack with "
            f"`invoke up --env {env.name}`, then see `invoke status --env {env.name}`"
        ) from exc


def view(env: Environment) -> View:
    prometheus, alertmanager = urls(env)
    _check("Prometheus", prometheus, env)
    _check("Alertmanager", alertmanager, env)
    alerts = _get(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
    firing = [
        Alert(
            name=a["labels"].get("alertname", "?"),
            severity=a["labels"].get("severity", "?"),
            since=str(a.get("activeAt", ""))[:19],
            summary=a.get("annotations", {}).get("summary", ""),
        )
        for a in alerts
        if a.get("state") == "firing"
    ]
    firing.sort(key=lambda a: ({"critical": 0, "warning": 1}.get(a.severity, 2), a.name))
    targets = _get(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
    down = [
        f"{t['labels'].get('job', '?')} {t['labels'].get('instance', '?')}: "
        f"{t.get('lastError', '')}"
        for t in targets
        if t.get("health") != "up"
    ]
    return View(prometheus, alertmanager, firing, sorted(down))
