"""`backup:`: pgBackRest's schedule, retention and resources, and `backup.s3` (off-site)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ops.config.model import COMPRESS_TYPES, S3_URI_STYLES, WEEKDAYS, Backup, S3Repository
from ops.config.reader import Reader, is_hostname

_TIME_OF_DAY_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
# S3 bucket names: 3 to 63 lowercase letters, digits, '.' and '-'.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def read_backup(reader: Reader, top: Mapping[str, Any]) -> Backup:
    keys = {
        "time",
        "full_days",
        "retention_days",
        "check_every",
        "retry_every",
        "process_max",
        "compress",
        "before_migrations",
        "s3",
    }
    data = reader.section(top, "backup", keys)
    raw_time = data.get("time", Backup.time)
    if isinstance(raw_time, int) and not isinstance(raw_time, bool) and 0 <= raw_time < 24 * 60:
        # YAML 1.1 reads an unquoted 12:30 as the sexagesimal integer 750 (12 * 60 + 30).
        raw_time = f"{raw_time // 60:02d}:{raw_time % 60:02d}"
    at = str(raw_time).strip()
    if not _TIME_OF_DAY_RE.match(at):
        reader.fail(
            "backup.time", f"is {at!r}, not a time of day", 'write HH:MM in UTC, e.g. "02:00"'
        )
    days = data.get("full_days", list(Backup.full_days))
    if isinstance(days, str):
        days = [d.strip() for d in days.split(",")]
    if not isinstance(days, list) or not days or any(_weekday(d) is None for d in days):
        reader.fail(
            "backup.full_days",
            f"is {days!r}, not a list of days",
            f"write e.g. [sun] or [wed, sun] (days: {', '.join(WEEKDAYS)})",
        )
    full_days = tuple(dict.fromkeys(str(_weekday(d)) for d in days))
    before = data.get("before_migrations", Backup.before_migrations)
    if not isinstance(before, bool):
        reader.fail(
            "backup.before_migrations",
            f"must be true or false, got {before!r}",
            "write true or false",
        )
    compress = str(data.get("compress", Backup.compress)).strip()
    if compress not in COMPRESS_TYPES:
        reader.fail(
            "backup.compress",
            f"is {compress!r}, not a pgBackRest compression",
            f"use one of: {', '.join(COMPRESS_TYPES)}",
        )
    return Backup(
        time=at,
        full_days=full_days,
        retention_days=reader.integer(
            data, "backup.retention_days", "retention_days", Backup.retention_days, minimum=1
        ),
        check_every=reader.integer(
            data, "backup.check_every", "check_every", Backup.check_every, minimum=60
        ),
        retry_every=reader.integer(
            data, "backup.retry_every", "retry_every", Backup.retry_every, minimum=60
        ),
        process_max=reader.integer(
            data, "backup.process_max", "process_max", Backup.process_max, minimum=1
        ),
        compress=compress,
        before_migrations=bool(before),
        s3=_read_s3(reader, data),
    )


_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _weekday(value: object) -> str | None:
    """mon..sun for a day written short (sun) or long (Sunday); None for anything else."""
    text = str(value).strip().lower()
    if text in WEEKDAYS:
        return text
    if text in _DAY_NAMES:
        return WEEKDAYS[_DAY_NAMES.index(text)]
    return None


def _read_s3(reader: Reader, backup: Mapping[str, Any]) -> S3Repository | None:
    if backup.get("s3") is None:
        return None
    keys = {
        "endpoint",
        "bucket",
        "region",
        "port",
        "path",
        "uri_style",
        "ca_file",
        "retention_days",
    }
    data = reader.section(backup, "s3", keys, where="backup.s3")
    endpoint = str(data.get("endpoint", "")).strip()
    if "://" in endpoint or not is_hostname(endpoint):
        reader.fail(
            "backup.s3.endpoint",
            f"is {endpoint!r}, not a host name",
            "write the S3 API's host name without scheme or port, e.g. s3.eu-west-1.amazonaws.com "
            "(the port goes in backup.s3.port; it is always HTTPS)",
        )
    bucket = str(data.get("bucket", "")).strip()
    if not _BUCKET_RE.match(bucket):
        reader.fail(
            "backup.s3.bucket",
            f"is {bucket!r}, not a bucket name",
            "write the bucket's name: 3 to 63 lowercase letters, digits, '.' and '-'",
        )
    region = str(data.get("region", S3Repository.region)).strip()
    if not region:
        reader.fail("backup.s3.region", "is empty", 'write the region, e.g. "us-east-1"')
    path = str(data.get("path", "")).strip()
    if path and (not path.startswith("/") or path.endswith("/") or "//" in path):
        reader.fail(
            "backup.s3.path",
            f"is {path!r}",
            "write an absolute path inside the bucket without a trailing '/', e.g. /slipway/prod",
        )
    uri_style = str(data.get("uri_style", S3Repository.uri_style)).strip()
    if uri_style not in S3_URI_STYLES:
        reader.fail(
            "backup.s3.uri_style",
            f"is {uri_style!r}",
            "write host (bucket.endpoint, AWS) or path (endpoint/bucket, most self-hosted servers)",
        )
    ca_file = None
    if data.get("ca_file") is not None:
        ca_file = reader.local_path(str(data["ca_file"]), "backup.s3.ca_file")
        if not ca_file.is_file():
            reader.fail(
                "backup.s3.ca_file",
                f"{ca_file} does not exist",
                "point it at the PEM file of the CA that signs the endpoint's certificate",
            )
    return S3Repository(
        endpoint=endpoint,
        bucket=bucket,
        region=region,
        port=reader.port(data, "backup.s3.port", "port", S3Repository.port),
        path=path,
        uri_style=uri_style,
        ca_file=ca_file,
        retention_days=reader.integer(
            data, "backup.s3.retention_days", "retention_days", 0, minimum=0
        ),
    )
