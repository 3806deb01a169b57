"""Cut a validated feed into write batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from listings.ingest.feed import (
    SOURCE_ID_INDEX,
    SOURCE_INDEX,
    FeedFormat,
    Record,
    RowError,
    parse_feed,
)


@dataclass
class Batch:
    records: list[Record] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # feed line of each record, same order
    valid: int = 0  # feed rows accepted; more than len(records) when a listing repeats
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)


def iter_batches(body: bytes, fmt: FeedFormat, batch_size: int, max_errors: int) -> Iterator[Batch]:
    """Yield batches of at most `batch_size` valid rows; keep only the first `max_errors` errors."""
    reported = 0
    # Keyed by (source, source_id): a listing repeated inside one batch keeps its last row,
    # since one INSERT ... ON CONFLICT cannot touch the same row twice.
    unique: dict[tuple[object, object], tuple[int, Record]] = {}
    batch = Batch()
    for line, record, row_errors in parse_feed(body, fmt):
        if record is None:
            batch.rejected += 1
            if reported < max_errors:
                kept = row_errors[: max_errors - reported]
                batch.errors.extend(kept)
                reported += len(kept)
            continue
        unique[(record[SOURCE_INDEX], record[SOURCE_ID_INDEX])] = (line, record)
        batch.valid += 1
        if batch.valid >= batch_size:
            _fill(batch, unique)
            yield batch
            unique, batch = {}, Batch()
    if batch.valid or batch.rejected:
        _fill(batch, unique)
        yield batch


def _fill(batch: Batch, unique: dict[tuple[object, object], tuple[int, Record]]) -> None:
    batch.lines = [line for line, _ in unique.values()]
    batch.records = [record for _, record in unique.values()]
