"""The backup benchmark's pure parts: sizes, durations, du output, the containers' argv, and the
report with its PASS/MISS verdicts."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from typing import Any

import pytest

from ops.errors import OpsError
from ops.perf import bench_backup
from ops.perf.bench_backup import containers, measure, report
from ops.perf.bench_backup.containers import Mount
from ops.perf.bench_backup.measure import GB, MB
from ops.perf.bench_backup.report import Results

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1GB", GB),
        ("512MB", 512 * MB),
        ("2GB", 2 * GB),
        ("256mb", 256 * MB),
        ("256MiB", 256 * MB),
        ("2G", 2 * GB),
        ("1.5GB", 3 * GB // 2),
        (" 64 MB ", 64 * MB),
        ("16777216", 16 * MB),
        ("16777216B", 16 * MB),
        ("65536KB", 64 * MB),
    ],
)
def test_sizes_are_binary_units_as_postgresql_writes_them(text: str, size: int) -> None:
    assert measure.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "one GB", "1XB", "1 GB of data", "-1GB", "1iB"])
def test_a_size_that_is_no_size_is_refused_with_examples(text: str) -> None:
    with pytest.raises(OpsError, match=r"--size=.* is not a size: write e\.g\. 256MB, 1GB"):
        measure.parse_size(text)


def test_a_size_below_the_minimum_is_refused() -> None:
    with pytest.raises(OpsError, match="below the minimum of 16MB"):
        measure.parse_size("8MB")


def test_the_restore_target_is_a_minute_per_gigabyte() -> None:
    assert measure.restore_target(GB) == 60.0
    assert measure.restore_target(256 * MB) == 15.0
    assert measure.restore_target(2 * GB) == 120.0


def test_sizes_print_in_one_unit() -> None:
    assert measure.format_size(1089 * MB) == "1,089 MB"
    assert measure.format_size(0) == "0 MB"
    assert measure.format_gb(GB) == "1 GB"
    assert measure.format_gb(256 * MB) == "0.25 GB"
    assert measure.format_gb(3 * GB // 2) == "1.50 GB"


def test_rows_fill_the_database_up_to_the_size_beyond_what_is_not_the_table() -> None:
    assert measure.rows_needed(GB, 8 * MB, 400.0) == -(-(GB - 8 * MB) // 400)
    assert measure.rows_needed(MB, 2 * MB, 400.0) == 1
    with pytest.raises(OpsError):
        measure.rows_needed(GB, 0, 0.0)


def test_batches_cover_every_id_once_in_order() -> None:
    batches = measure.plan_batches(20_001, 100_000, 30_000)
    assert batches == [(20_001, 50_000), (50_001, 80_000), (80_001, 100_000)]
    ids = [i for first, last in batches for i in range(first, last + 1)]
    assert ids == list(range(20_001, 100_001))
    assert measure.plan_batches(11, 10, 5) == []
    assert measure.plan_batches(1, 3, 0) == [(1, 1), (2, 2), (3, 3)]


def test_the_duration_is_the_last_elapsed_line_of_the_output() -> None:
    output = (
        "pgbackrest: some warning\n"
        "bench-elapsed 1700000000.250000 1700000001.000000\n"
        "bench-elapsed 1700000010.000000 1700000012.500000\n"
    )
    assert measure.parse_elapsed(output) == pytest.approx(2.5)
    assert measure.parse_elapsed("bench-elapsed 10,5 12,0\n") == pytest.approx(1.5)
    with pytest.raises(OpsError, match="no duration"):
        measure.parse_elapsed("cp: cannot stat\n")


def test_the_timing_wrapper_measures_the_command_and_keeps_its_exit_code() -> None:
    argv = measure.timed(["sh", "-c", "sleep 0.2; echo out; exit 3"])
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 3
    assert result.stdout == "out\n"
    assert 0.15 < measure.parse_elapsed(result.stderr) < 5


BACKUP_LOG = """\
2026-11-30 12:17:26.552 P00   INFO: backup command begin 2.45: --compress-level=1 --process-max=2
2026-11-30 12:17:27.349 P00   INFO: execute non-exclusive backup start: backup begins after the \
requested immediate checkpoint completes
2026-11-30 12:17:27.965 P00   INFO: backup start archive = 00000001000000000000001A, \
lsn = 0/1A000028
2026-11-30 12:17:27.965 P00   INFO: check archive for prior segment 000000010000000000000019
2026-11-30 12:17:32.689 P00   INFO: execute non-exclusive backup stop and wait for all WAL \
segments to archive
2026-11-30 12:17:32.893 P00   INFO: backup stop archive = 00000001000000000000001A, lsn = 0/1A000100
2026-11-30 12:17:32.946 P00   INFO: new backup label = 20261130-121727F
2026-11-30 12:17:32.995 P00   INFO: backup command end: completed successfully (6445ms)
"""


def test_the_file_copy_is_timed_from_pgbackrests_log() -> None:
    assert measure.parse_copy_seconds(BACKUP_LOG) == pytest.approx(4.724)
    assert measure.parse_copy_seconds("P00 INFO: something else\n") is None
    started_only = BACKUP_LOG.split("check archive")[0]
    assert measure.parse_copy_seconds(started_only) is None


def test_du_output_maps_paths_to_bytes() -> None:
    output = "2398093312\t/mnt/volume\n1308622848\t/mnt/volume/pg_wal\ndu: warning\n"
    assert measure.parse_du(output) == {
        "/mnt/volume": 2398093312,
        "/mnt/volume/pg_wal": 1308622848,
    }


def test_only_the_global_section_of_pgbackrest_conf_is_read() -> None:
    text = (
        "# comment\n[global]\nrepo1-cipher-type=aes-256-cbc\ncompress-type = lz4\n"
        "# process-max=9\nprocess-max=2\n\n[listings]\npg1-path=/var/lib/postgresql/data\n"
        "process-max=7\n"
    )
    assert measure.conf_global(text) == {
        "repo1-cipher-type": "aes-256-cbc",
        "compress-type": "lz4",
        "process-max": "2",
    }


def test_servers_and_tools_run_hardened_without_secrets_on_the_command_line() -> None:
    server = containers.run_argv(
        "slipway-bench-backup-abc-postgres",
        "slipway/postgres:c.1",
        ["postgres"],
        [Mount("slipway-bench-backup-abc-data", "/var/lib/postgresql/data")],
        ["POSTGRES_PASSWORD", "PGBACKREST_REPO1_CIPHER_PASS"],
        server=True,
    )
    text = " ".join(server)
    for flag in ("--read-only", "--cap-drop ALL", "no-new-privileges:true", "--network none"):
        assert flag in text
    assert "-d" in server and "--rm" not in server and "--shm-size 256m" in text
    assert "-e POSTGRES_PASSWORD -e PGBACKREST_REPO1_CIPHER_PASS" in text
    assert server[-2:] == ["slipway/postgres:c.1", "postgres"]
    tool = containers.run_argv(
        "slipway-bench-backup-abc-backup",
        "slipway/postgres:c.1",
        ["pgbackrest", "backup"],
        [Mount("slipway-bench-backup-abc-data", "/var/lib/postgresql/data", read_only=True)],
    )
    assert "--rm" in tool and "-d" not in tool
    assert (
        "type=volume,source=slipway-bench-backup-abc-data,target=/var/lib/postgresql/data,readonly"
    ) in tool


def test_bad_options_are_refused_before_anything_runs() -> None:
    with pytest.raises(OpsError, match="--size"):
        bench_backup.BenchBackup(bench_backup.Options(size="lots"))
    with pytest.raises(OpsError, match="--process-max"):
        bench_backup.BenchBackup(bench_backup.Options(process_max=-1))


def test_no_secret_value_reaches_a_command_line() -> None:
    bench = bench_backup.BenchBackup(bench_backup.Options(size="64MB"))
    run = bench.containers
    secrets = [run.env["POSTGRES_PASSWORD"], run.env["PGBACKREST_REPO1_CIPHER_PASS"]]
    run.image = "slipway/postgres:c.1"
    argv = containers.run_argv(
        run.name("postgres"), run.image, ["postgres"], env_names=list(run.env)
    )
    assert not any(secret in arg for secret in secrets for arg in argv)
    assert run.name("data").startswith("slipway-bench-backup-")


BASE = Results(
    requested=GB,
    rows=2_908_136,
    volume=2287 * MB,
    wal=1248 * MB,
    copy_s=3.8,
    backup_s=8.8,
    backup_copy_s=6.2,
    restore_files_s=4.6,
    restore_start_s=3.6,
    backed_up=1038 * MB,
    stored=409 * MB,
    repo_volume=901 * MB,
)


def results(**changes: Any) -> Results:
    return replace(BASE, **changes)


def test_rates_use_the_data_directory_without_pg_wal() -> None:
    r = results()
    assert r.raw == 1039 * MB
    assert r.copy_rate == pytest.approx(1039 / 3.8)
    assert r.backup_rate == pytest.approx(1039 / 8.8)
    assert r.ratio == pytest.approx(3.8 / 8.8)
    assert r.restore_s == pytest.approx(8.2)
    assert r.compression == pytest.approx(1038 / 409)


def lines_with(lines: list[str], start: str) -> str:
    found = [line for line in lines if line.strip().startswith(start)]
    assert len(found) == 1, (start, lines)
    return found[0]


def test_a_backup_at_least_half_as_fast_as_the_raw_copy_passes() -> None:
    lines = report.report_lines(results(copy_s=4.0, backup_s=8.0))
    assert lines_with(lines, "ratio backup/raw copy").endswith("PASS")
    assert "0.50" in lines_with(lines, "ratio backup/raw copy")
    lines = report.report_lines(results(copy_s=3.8, backup_s=8.8))
    assert lines_with(lines, "ratio backup/raw copy").endswith("MISS")
    assert "0.43" in lines_with(lines, "ratio backup/raw copy")


def test_the_restore_target_scales_with_the_requested_size_and_says_so() -> None:
    lines = report.report_lines(results())
    line = lines_with(lines, "restore, until promoted")
    assert "< 60 s (60 s/GB x 1 GB)" in line and line.endswith("PASS")
    small = results(requested=256 * MB, restore_files_s=10.0, restore_start_s=5.5)
    line = lines_with(report.report_lines(small), "restore, until promoted")
    assert "< 15 s (60 s/GB x 0.25 GB)" in line and line.endswith("MISS")
    assert "15.5" in line


def test_the_report_shows_every_duration_rate_and_the_repository() -> None:
    lines = report.report_lines(results(), header=["bench.backup: header"])
    assert lines[0] == "bench.backup: header"
    text = "\n".join(lines)
    assert "raw size: 1,039 MB, the data volume (2,287 MB, 2,908,136 rows)" in text
    assert "pg_wal (1,248 MB)" in text
    copy = lines_with(lines, "raw copy")
    assert "3.8" in copy and "273.4" in copy
    backup = lines_with(lines, "pgBackRest full backup")
    assert "8.8" in backup and "118.1" in backup
    copying = lines_with(lines, "copying files")
    assert "6.2" in copying and "167.6" in copying
    assert "2.6" in lines_with(lines, "checkpoint, stop, WAL check")
    assert "4.6" in lines_with(lines, "pgbackrest restore")
    assert "3.6" in lines_with(lines, "start until promoted")
    repository = lines_with(lines, "repository:")
    assert "409 MB of 1,038 MB" in repository and "2.54x smaller" in repository
    assert "901 MB with the WAL archive" in repository


def test_without_the_log_lines_the_backup_is_not_split() -> None:
    lines = report.report_lines(results(backup_copy_s=None))
    assert not [line for line in lines if "copying files" in line]
    assert lines_with(lines, "pgBackRest full backup")


def test_zero_durations_do_not_divide_by_zero() -> None:
    r = results(
        copy_s=0.0,
        backup_s=0.0,
        backup_copy_s=0.0,
        restore_files_s=0.0,
        restore_start_s=0.0,
        stored=0,
    )
    assert r.copy_rate == r.backup_rate == r.ratio == r.restore_rate == r.compression == 0.0
    lines = report.report_lines(r)
    assert lines_with(lines, "ratio backup/raw copy").endswith("MISS")
    assert lines_with(lines, "raw copy").split()[-1] == "-"
