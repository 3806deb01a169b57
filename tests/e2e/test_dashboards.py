"""Placeholder while the dashboards test is written: brings the e2e stack up."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Stack

pytestmark = pytest.mark.e2e


def test_stack_is_up(stack: Stack) -> None:
    print(stack.prometheus_port, stack.https_port, stack.env["SLIPWAY_ENVIRONMENTS_DIR"])
