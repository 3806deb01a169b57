"""bench.backup's results: what one run measured, and the closing table with PASS/MISS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ops.perf.bench_backup.measure import (
    MB,
    RESTORE_TARGET_PER_GB,
    TARGET_RATIO,
    format_gb,
    format_size,
    restore_target,
)
from ops.perf.bench_ingest import verdict


@dataclass(frozen=True)
class Results:
    """What one run measured (bytes and seconds)."""

    requested: int
    rows: int
    volume: int  # du of the data volume
    wal: int  # the part of it in pg_wal, which a backup leaves to the WAL archive
    copy_s: float
    backup_s: float
    backup_copy_s: float | None  # the part of it copying files (None: not in pgBackRest's log)
    restore_files_s: float  # pgbackrest restore
    restore_start_s: float  # start of PostgreSQL on it until promoted and accepting connections
    backed_up: int  # what pgBackRest says it backed up (database size)
    stored: int  # what the backup takes in the repository (compressed, encrypted)
    repo_volume: int  # du of the repository volume: this backup plus the WAL archive

    @property
    def raw(self) -> int:
        """The raw size all three rates use: the data directory without pg_wal's segments."""
        return self.volume - self.wal

    @property
    def copy_rate(self) -> float:
        return self.raw / MB / self.copy_s if self.copy_s > 0 else 0.0

    @property
    def backup_rate(self) -> float:
        return self.raw / MB / self.backup_s if self.backup_s > 0 else 0.0

    @property
    def ratio(self) -> float:
        return self.backup_rate / self.copy_rate if self.copy_rate > 0 else 0.0

    @property
    def restore_s(self) -> float:
        return self.restore_files_s + self.restore_start_s

    @property
    def restore_rate(self) -> float:
        return self.raw / MB / self.restore_s if self.restore_s > 0 else 0.0

    @property
    def restore_target(self) -> float:
        return restore_target(self.requested)

    @property
    def compression(self) -> float:
        return self.backed_up / self.stored if self.stored > 0 else 0.0

    @property
    def ratio_ok(self) -> bool:
        return self.ratio >= TARGET_RATIO

    @property
    def restore_ok(self) -> bool:
        return self.restore_s < self.restore_target


def report_lines(r: Results, header: Sequence[str] = ()) -> list[str]:
    """The closing table: durations, rates, ratio, targets with PASS/MISS, the repository."""

    def row(label: str, seconds: str, rate: str = "", target: str = "", result: str = "") -> str:
        return f"  {label:<34} {seconds:>8} {rate:>9}  {target:<34} {result}".rstrip()

    def rate(seconds: float) -> str:
        return f"{r.raw / MB / seconds:.1f}" if seconds > 0 else "-"

    restore_target = (
        f"< {r.restore_target:.0f} s ({RESTORE_TARGET_PER_GB:.0f} s/GB x {format_gb(r.requested)})"
    )
    lines = [
        *header,
        f"  raw size: {format_size(r.raw)}, the data volume ({format_size(r.volume)}, "
        f"{r.rows:,} rows) without pg_wal ({format_size(r.wal)}), which a backup leaves to "
        "the WAL archive; MB = 2^20 bytes",
        row("", "seconds", "MB/s", "target", "result"),
        row("raw copy (cp -a but pg_wal, fsync)", f"{r.copy_s:.1f}", rate(r.copy_s)),
        row("pgBackRest full backup", f"{r.backup_s:.1f}", rate(r.backup_s)),
    ]
    if r.backup_copy_s is not None:
        lines += [
            row("  copying files", f"{r.backup_copy_s:.1f}", rate(r.backup_copy_s)),
            row("  checkpoint, stop, WAL check", f"{r.backup_s - r.backup_copy_s:.1f}"),
        ]
    return [
        *lines,
        row(
            "ratio backup/raw copy", "", f"{r.ratio:.2f}", f">= {TARGET_RATIO}", verdict(r.ratio_ok)
        ),
        row(
            "restore, until promoted",
            f"{r.restore_s:.1f}",
            rate(r.restore_s),
            restore_target,
            verdict(r.restore_ok),
        ),
        row("  pgbackrest restore", f"{r.restore_files_s:.1f}"),
        row("  start until promoted", f"{r.restore_start_s:.1f}"),
        f"  repository: the backup takes {format_size(r.stored)} of {format_size(r.backed_up)} "
        f"backed up ({r.compression:.2f}x smaller: lz4 and encryption); the volume holds "
        f"{format_size(r.repo_volume)} with the WAL archive",
        "  rates: raw size / seconds; the ratio is of the whole backup's rate; the restore: "
        "pgbackrest restore, then PostgreSQL started on it (WAL replayed, promoted, accepting "
        "connections)",
    ]
