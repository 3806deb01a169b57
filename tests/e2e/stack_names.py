"""Names of the e2e stack shared by its fixture (conftest.py) and the test modules, which cannot
import conftest itself (pytest loads a conftest per directory under the same module name)."""

from __future__ import annotations

ENV_NAME = "e2e"
PROJECT = f"slipway-{ENV_NAME}"
# Alertmanager's webhook receiver in the e2e stack: a container of that name on the stack's edge
# network (tests/e2e/test_alerts.py starts it; alerts sent before it exists are retried).
ALERT_RECEIVER = "slipway-e2e-alert-receiver"
ALERT_WEBHOOK_URL = f"http://{ALERT_RECEIVER}:9000/hook"
ALERT_WATCHDOG_URL = f"http://{ALERT_RECEIVER}:9000/watchdog"
