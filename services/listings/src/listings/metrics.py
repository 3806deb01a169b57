"""Prometheus metrics. Under gunicorn every worker writes to PROMETHEUS_MULTIPROC_DIR and
/metrics aggregates them, so a scrape sees the whole API, not one random worker."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "listings_http_requests_total",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "listings_http_request_duration_seconds",
    "HTTP request latency by method, route template and status",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "listings_http_requests_in_flight", "Requests being served", multiprocess_mode="livesum"
)
DB_POOL = Gauge(
    "listings_db_pool_connections",
    "Database pool connections (state=open|in_use)",
    ["state"],
    multiprocess_mode="livesum",
)
INGEST_JOBS = Counter("listings_ingest_jobs_total", "Ingest jobs by outcome", ["status"])
INGEST_ROWS = Counter(
    "listings_ingest_rows_total", "Feed rows by result (accepted|rejected)", ["result"]
)
INGEST_RECONCILED = Counter(
    "listings_ingest_reconciled_jobs_total",
    "Queued jobs found missing from the stream and queued again by the reconciler",
)
INGEST_BATCH_SECONDS = Histogram(
    "listings_ingest_batch_duration_seconds",
    "Time to COPY and upsert one batch",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BUILD_INFO = Gauge(
    "listings_build_info",
    "Always 1; labels carry the running build",
    ["version", "git_sha", "release"],
    multiprocess_mode="max",
)


def render_latest() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
