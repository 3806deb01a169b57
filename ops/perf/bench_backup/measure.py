"""bench.backup's pure measurement parts: sizes, targets, and what the tools print parsed.

Nothing here runs anything: the numbers come from the strings the containers printed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime

from ops.errors import OpsError

DEFAULT_SIZE = "1GB"
MB = 2**20  # MB and GB are binary here, as in PostgreSQL (pg_size_pretty) and `du -m`
GB = 2**30
MIN_SIZE = 16 * MB
TARGET_RATIO = 0.5  # backup MB/s over raw copy MB/s
RESTORE_TARGET_PER_GB = 60.0  # seconds of restore per GB of requested size, scaled linearly
# Disk the run may fill, in multiples of --size: data (with pg_wal during the load), the raw
# copy, the repository (backup and WAL archive) and the restored copy.
DISK_FACTOR = 6


# Wraps a command run in a container: its own duration, measured inside (container start-up
# is not part of it), on the last line of stderr.
_TIMED = (
    's=$EPOCHREALTIME; "$@"; rc=$?; '
    'printf "bench-elapsed %s %s\\n" "$s" "$EPOCHREALTIME" >&2; exit $rc'
)
_ELAPSED = re.compile(r"^bench-elapsed ([0-9]+[.,][0-9]+) ([0-9]+[.,][0-9]+)$", re.MULTILINE)
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": MB, "g": GB, "t": 2**40}


def parse_size(text: str) -> int:
    """Bytes of a --size such as 512MB, 1GB, 1.5GB, 2G or 256MiB (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise OpsError(f"--size={text!r} is not a size: write e.g. 256MB, 1GB or 2GB")
    number, unit = float(match.group(1)), match.group(2).lower()
    if not unit and match.group(3).lower() not in ("", "b"):
        raise OpsError(f"--size={text!r} is not a size: write e.g. 256MB, 1GB or 2GB")
    size = int(number * _UNITS[unit])
    if size < MIN_SIZE:
        raise OpsError(f"--size={text!r} is below the minimum of {MIN_SIZE // MB}MB")
    return size


def format_size(count: float) -> str:
    """Always MB (2^20 bytes), thousands separated: one unit keeps the lines comparable."""
    return f"{count / MB:,.0f} MB"


def format_gb(count: float) -> str:
    """1 GB, 0.25 GB, 1.50 GB: the requested size."""
    return f"{count / GB:.2f} GB".replace(".00 GB", " GB")


def restore_target(requested: int) -> float:
    """Seconds a restore may take: 60 s per GB of the requested size, scaled linearly."""
    return RESTORE_TARGET_PER_GB * requested / GB


def rows_needed(target: int, other: int, bytes_per_row: float) -> int:
    """Rows that bring the database to `target` bytes when `other` bytes are not the table."""
    if bytes_per_row <= 0:
        raise OpsError("internal: the calibration measured no bytes per row")
    return max(1, math.ceil((target - other) / bytes_per_row))


def plan_batches(first: int, total: int, per_batch: int) -> list[tuple[int, int]]:
    """Inclusive id ranges [first, total] cut into batches of at most per_batch rows."""
    per_batch = max(1, per_batch)
    return [
        (start, min(start + per_batch - 1, total)) for start in range(first, total + 1, per_batch)
    ]


def parse_elapsed(output: str) -> float:
    """Seconds of a command wrapped by _TIMED (its last `bench-elapsed <start> <end>` line)."""
    found = _ELAPSED.findall(output)
    if not found:
        raise OpsError(f"no duration in the command's output: {output.strip()[-300:]}")
    start, end = (float(v.replace(",", ".")) for v in found[-1])
    return end - start


def timed(command: Sequence[str]) -> list[str]:
    """The command wrapped so that it prints its own duration (parse_elapsed)."""
    return ["bash", "-c", _TIMED, "bench", *command]


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) P\d+ +\w+: (.*)$", re.MULTILINE)


def parse_copy_seconds(log: str) -> float | None:
    """Seconds pgBackRest spent copying files, from its info log: from `backup start archive`
    (the start checkpoint is done) to `execute ... backup stop`. None when the lines are missing
    (another pgBackRest version)."""
    started = stopped = None
    for stamp, message in _LOG_LINE.findall(log):
        moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f")
        if started is None and message.startswith("backup start archive"):
            started = moment
        elif started is not None and message.startswith("execute") and "backup stop" in message:
            stopped = moment
            break
    if started is None or stopped is None:
        return None
    return (stopped - started).total_seconds()


def parse_du(output: str) -> dict[str, int]:
    """`du -sb A B ...` output: path -> bytes."""
    sizes: dict[str, int] = {}
    for line in output.splitlines():
        count, sep, path = line.partition("\t")
        if sep and count.strip().isdigit():
            sizes[path.strip()] = int(count)
    return sizes


def conf_global(text: str) -> dict[str, str]:
    """The [global] options of a pgbackrest.conf."""
    options: dict[str, str] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if sep and section == "global":
            options[key.strip()] = value.strip()
    return options


def disk_needed(requested: int) -> int:
    return DISK_FACTOR * requested
