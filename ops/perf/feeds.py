"""Synthetic listing feeds for end-to-end tests and the ingest benchmark.

The rows are deterministic for a given seed, so a test can recompute what it sent, and valid
unless asked otherwise: `bad_lines` turns chosen data lines into rows that break one rule each.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable, Iterator

FIELDS = (
    "source",
    "source_id",
    "title",
    "kind",
    "price",
    "city",
    "description",
    "postal_code",
    "bedrooms",
    "bathrooms",
    "area_m2",
    "latitude",
    "longitude",
    "listed_at",
    "contact_name",
    "contact_email",
    "contact_phone",
)
KINDS = ("apartment", "house", "studio", "land", "commercial")
CITIES = ("Lyon", "Paris", "Nantes", "Lille", "Bordeaux", "Toulouse", "Rennes", "Grenoble")
WORDS = (
    "bright",
    "quiet",
    "renovated",
    "garden",
    "balcony",
    "terrace",
    "central",
    "view",
    "cellar",
)

# One way to break a row per rejection reason the service must report, with the field it names.
BREAKAGES: tuple[tuple[str, str], ...] = (
    ("price", "-5"),
    ("kind", "castle"),
    ("title", ""),
    ("latitude", "91.5"),
    ("listed_at", "not-a-date"),
    ("bedrooms", "two"),
)


def rows(count: int, *, source: str = "synthetic", seed: int = 1) -> Iterator[dict[str, str]]:
    """Yield `count` valid feed rows with source ids 0..count-1."""
    rng = random.Random(seed)  # noqa: S311 - test data, not cryptography
    for i in range(count):
        city = CITIES[i % len(CITIES)]
        kind = KINDS[i % len(KINDS)]
        words = " ".join(rng.choice(WORDS) for _ in range(3))
        yield {
            "source": source,
            "source_id": str(i),
            "title": f"{words.capitalize()} {kind} in {city} #{i}",
            "kind": kind,
            "price": str(rng.randrange(50_000, 2_000_000)),
            "city": city,
            "description": f"A {words} {kind} close to the centre of {city}.",
            "postal_code": f"{rng.randrange(1000, 99999):05d}",
            "bedrooms": str(rng.randrange(0, 6)),
            "bathrooms": str(rng.randrange(1, 3)),
            "area_m2": str(rng.randrange(15, 400)),
            "latitude": f"{rng.uniform(42.0, 51.0):.5f}",
            "longitude": f"{rng.uniform(-4.5, 8.0):.5f}",
            "listed_at": f"2026-{rng.randrange(1, 12):02d}-{rng.randrange(1, 28):02d}T10:00:00Z",
            "contact_name": f"Agent {i}",
            "contact_email": f"agent{i}@example.test",
            "contact_phone": f"+33 6 {i % 100:02d} {i % 97:02d} {i % 89:02d} {i % 83:02d}",
        }


def break_rows(
    feed: Iterable[dict[str, str]], bad_lines: dict[int, int]
) -> Iterator[dict[str, str]]:
    """Break data line N (1-based, header excluded) with BREAKAGES[k] for each {N: k}."""
    for line, row in enumerate(feed, start=1):
        if line in bad_lines:
            field, value = BREAKAGES[bad_lines[line]]
            row = {**row, field: value}
        yield row


def to_csv(feed: Iterable[dict[str, str]]) -> bytes:
    """Serialise rows as CSV with a header row."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(feed)
    return out.getvalue().encode()
