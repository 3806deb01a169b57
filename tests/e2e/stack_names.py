"""Names of the e2e stack shared by its fixture (conftest.py) and the test modules, which cannot
import conftest itself (pytest loads a conftest per directory under the same module name)."""

from __future__ import annotations

import os

# SLIPWAY_E2E_ENV runs a second e2e stack next to the first (another name, project, ports).
ENV_NAME = os.environ.get("SLIPWAY_E2E_ENV", "e2e")
PROJECT = f"slipway-{ENV_NAME}"
# Alertmanager's webhook receiver in the e2e stack: a container of that name on the stack's edge
# network (tests/e2e/test_alerts.py starts it; alerts sent before it exists are retried).
ALERT_RECEIVER = f"{PROJECT}-alert-receiver"
ALERT_WEBHOOK_URL = f"http://{ALERT_RECEIVER}:9000/hook"
ALERT_WATCHDOG_URL = f"http://{ALERT_RECEIVER}:9000/watchdog"
