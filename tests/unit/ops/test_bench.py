"""The ingest benchmark's pure parts: chunking, timings, the report and its PASS/MISS verdicts."""

from __future__ import annotations

import csv
import io
import itertools

import pytest

from ops.errors import OpsError
from ops.perf import bench_ingest as bench
from ops.perf import feeds
from ops.perf.bench_ingest import Measurement, Results

pytestmark = pytest.mark.unit


def test_a_million_rows_cut_into_chunks_of_fifty_thousand_gives_twenty() -> None:
    assert bench.plan_chunks(1_000_000, 50_000) == [50_000] * 20


def test_the_last_chunk_holds_the_remainder() -> None:
    assert bench.plan_chunks(120_001, 50_000) == [50_000, 50_000, 20_001]
    assert sum(bench.plan_chunks(999_999, 70_000)) == 999_999


def test_fewer_rows_than_a_chunk_make_one_chunk() -> None:
    assert bench.plan_chunks(10, 50_000) == [10]


@pytest.mark.parametrize(("rows", "chunk_rows"), [(0, 10), (10, 0), (-1, 10)])
def test_nonsense_sizes_are_refused_naming_the_option(rows: int, chunk_rows: int) -> None:
    with pytest.raises(OpsError, match=r"--rows|--chunk-rows"):
        bench.plan_chunks(rows, chunk_rows)


def test_chunks_stay_ten_percent_below_the_feed_limit() -> None:
    limit = 64 * 2**20
    rows = bench.max_chunk_rows(limit, 320)
    assert rows * 320 <= limit * bench.SIZE_HEADROOM
    assert (rows + 1) * 320 > limit * bench.SIZE_HEADROOM


def test_the_default_chunk_of_synthetic_rows_fits_the_default_limit_with_room() -> None:
    chunk = feeds.to_csv(feeds.rows(2_000, source=bench.BENCH_SOURCE))
    per_row = len(chunk) / 2_000
    assert per_row * bench.DEFAULT_CHUNK_ROWS < 64 * 2**20 * bench.SIZE_HEADROOM


def test_a_chunk_above_the_limit_is_refused_with_the_fix() -> None:
    bench.check_chunk_sizes([100, 200], 200)
    with pytest.raises(OpsError, match=r"chunk 2 is 201 bytes.*--chunk-rows"):
        bench.check_chunk_sizes([100, 201, 300], 200)


def test_the_raw_csv_keeps_one_header_and_every_row_of_every_chunk() -> None:
    source = feeds.rows(25, source=bench.BENCH_SOURCE)
    chunks = [feeds.to_csv(itertools.islice(source, n)) for n in bench.plan_chunks(25, 10)]
    rows = list(csv.DictReader(io.StringIO(bench.raw_csv(chunks).decode())))
    assert [r["source_id"] for r in rows] == [str(i) for i in range(25)]
    assert bench.raw_csv([]) == b""


def test_psql_timings_are_read_in_seconds() -> None:
    out = "COPY 1000000\nTime: 4363.046 ms (00:04.363)\nINSERT 0 1000000\nTime: 48318.5 ms\n"
    assert bench.parse_psql_timings(out) == pytest.approx([4.363046, 48.3185])
    assert bench.parse_psql_timings("nothing timed") == []


def test_api_timestamps_are_read_and_junk_is_none() -> None:
    assert bench.parse_timestamp("1970-01-01T00:00:10+00:00") == 10.0
    assert bench.parse_timestamp("1970-01-01T00:00:10Z") == 10.0
    assert bench.parse_timestamp(None) is None
    assert bench.parse_timestamp("soon") is None


def test_the_upsert_targets_the_given_table_and_skips_unchanged_rows() -> None:
    sql = bench.upsert_sql("bench_scratch", "bench_staging")
    assert sql.startswith("INSERT INTO bench_scratch (source, source_id, title")
    assert "FROM bench_staging ON CONFLICT (source, source_id) DO UPDATE SET title = " in sql
    assert "source = EXCLUDED.source," not in sql
    assert "IS DISTINCT FROM" in sql


def _results(pipeline: float, raw: float) -> Results:
    rows = 1_000_000
    return Results(
        pipeline=Measurement(rows, rows / pipeline),
        raw=Measurement(rows, rows / raw, (("COPY", 4.0), ("upsert", rows / raw - 4.0))),
        pipeline_replay=Measurement(rows, 10.0),
        raw_replay=Measurement(rows, 20.0),
    )


def test_rates_and_the_ratio_come_from_rows_and_seconds() -> None:
    r = _results(pipeline=25_000, raw=50_000)
    assert r.pipeline.rate == pytest.approx(25_000)
    assert r.ratio == pytest.approx(0.5)
    assert r.replay_ratio == pytest.approx(2.0)
    assert Measurement(10, 0.0).rate == 0.0


@pytest.mark.parametrize(
    ("pipeline", "raw", "rate_ok", "ratio_ok"),
    [
        (50_000, 100_000, True, True),  # exactly on both targets passes
        (49_999, 60_000, False, True),
        (60_000, 130_000, True, False),
        (15_000, 27_000, False, True),
    ],
)
def test_pass_and_miss_follow_the_targets(
    pipeline: float, raw: float, rate_ok: bool, ratio_ok: bool
) -> None:
    r = _results(pipeline, raw)
    assert (r.rate_ok, r.ratio_ok) == (rate_ok, ratio_ok)


def test_the_report_prints_both_rates_the_ratio_targets_verdicts_and_the_replay() -> None:
    text = "\n".join(bench.report_lines(_results(pipeline=40_000, raw=60_000)))
    assert "pipeline (HTTPS → API → worker)" in text
    assert "40,000 listings/s" in text
    assert "60,000 listings/s" in text
    assert "(COPY 4.0s, upsert 12.7s)" in text
    assert "ratio pipeline/raw                       0.67" in text
    assert "target: >= 50,000 listings/s end to end: MISS (40,000)" in text
    assert "target: >= 0.5 of raw: PASS (0.67)" in text
    assert "pipeline replay" in text
    assert "raw replay" in text
    assert "100,000 listings/s" in text and "50,000 listings/s" in text


def test_verdict_words() -> None:
    assert bench.verdict(True) == "PASS"
    assert bench.verdict(False) == "MISS"
