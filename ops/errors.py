"""The one error type of the ops layer: every message says what went wrong and what to do."""

from __future__ import annotations


class OpsError(Exception):
    """An operation cannot continue; the message is written for the person running it."""
