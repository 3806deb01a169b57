"""Slipway listings service: API, HTML viewer and ingest worker."""

__version__ = "0.1.0"
