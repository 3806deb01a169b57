"""Feed parsing and validation (CSV with a header row, or NDJSON).

Plain Python on purpose: this runs for every row of million-row feeds, and a per-row pydantic
model costs several times more than these small converters.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from listings.tables import KINDS

FeedFormat = Literal["csv", "ndjson"]
CONTENT_TYPES: dict[str, FeedFormat] = {
    "text/csv": "csv",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
}

MAX_PRICE = 10**12
MAX_ROOMS = 1000
MAX_AREA = 10**7
_KINDS = frozenset(KINDS)
_KIND_LIST = ", ".join(KINDS)


class FeedFormatError(ValueError):
    """The body is not a usable CSV/NDJSON feed at all."""


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    field: str | None
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "field": self.field, "message": self.message}


Converter = Callable[[object], object]


def _text(max_len: int) -> Converter:
    def convert(value: object) -> object:
        if type(value) is str:  # the CSV case, checked first: it is by far the most common
            text = value.strip()
        elif isinstance(value, str):
            text = str(value).strip()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            text = str(value)  # numeric ids in NDJSON are common and harmless
        else:
            raise ValueError("must be a string")
        if len(text) > max_len:
            raise ValueError(f"must be at most {max_len} characters")
        if "\x00" in text:
            raise ValueError("must not contain NUL characters")
        # A JSON escape can smuggle in a lone surrogate ("\ud800"), which no database column can
        # store. isascii() is O(1) on CPython, so only non-ASCII text pays for the check.
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("is not valid text") from None
        return text

    return convert


def _integer(low: int, high: int, what: str) -> Converter:
    def convert(value: object) -> object:
        if type(value) is str:
            text = value.strip()
            digits = text[1:] if text[:1] in "+-" else text
            # int() alone would also take "1_000" and non-ASCII digits; feeds should not.
            if not (digits.isascii() and digits.isdigit()):
                raise ValueError(f"must be {what}")
            number = int(text)
        elif isinstance(value, bool):
            raise ValueError(f"must be {what}")
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        else:
            raise ValueError(f"must be {what}")
        if not low <= number <= high:
            raise ValueError(f"must be {what}")
        return number

    return convert


def _number(low: float, high: float, what: str) -> Converter:
    def convert(value: object) -> object:
        if isinstance(value, bool):
            raise ValueError(f"must be {what}")
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"must be {what}") from None
        else:
            raise ValueError(f"must be {what}")
        if not (math.isfinite(number) and low <= number <= high):
            raise ValueError(f"must be {what}")
        return number

    return convert


def _kind(value: object) -> object:
    if isinstance(value, str):
        kind = value.strip().lower()
        if kind in _KINDS:
            return kind
    raise ValueError(f"must be one of {_KIND_LIST}")


def _timestamp(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date or date-time")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("must be an ISO 8601 date or date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_email_text = _text(254)


def _email(value: object) -> object:
    email = _email_text(value)
    assert isinstance(email, str)
    local, sep, domain = email.partition("@")
    # Deliberately loose: the message must never echo the address (personal data).
    if not (sep and local and "." in domain and " " not in email and "@" not in domain):
        raise ValueError("must be an e-mail address")
    return email


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    required: bool
    convert: Converter


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("source", True, _text(100)),
    FieldSpec("source_id", True, _text(200)),
    FieldSpec("title", True, _text(300)),
    FieldSpec("description", False, _text(10_000)),
    FieldSpec("kind", True, _kind),
    FieldSpec("price", True, _integer(1, MAX_PRICE, "a positive whole number of euros")),
    FieldSpec("city", True, _text(100)),
    FieldSpec("postal_code", False, _text(20)),
    FieldSpec("address", False, _text(300)),
    FieldSpec("bedrooms", False, _integer(0, MAX_ROOMS, "a whole number from 0 to 1000")),
    FieldSpec("bathrooms", False, _integer(0, MAX_ROOMS, "a whole number from 0 to 1000")),
    FieldSpec("area_m2", False, _number(0.01, MAX_AREA, "a positive number of square metres")),
    FieldSpec("latitude", False, _number(-90.0, 90.0, "a number from -90 to 90")),
    FieldSpec("longitude", False, _number(-180.0, 180.0, "a number from -180 to 180")),
    FieldSpec("listed_at", False, _timestamp),
    FieldSpec("contact_name", False, _text(200)),
    FieldSpec("contact_email", False, _email),
    FieldSpec("contact_phone", False, _text(50)),
)
COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS)
REQUIRED: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
SOURCE_INDEX = COLUMNS.index("source")
SOURCE_ID_INDEX = COLUMNS.index("source_id")

Record = tuple[object, ...]


_SPECS: tuple[tuple[str, bool, Converter], ...] = tuple(
    (f.name, f.required, f.convert) for f in FIELDS
)


def validate_values(line: int, raws: Sequence[object]) -> tuple[Record | None, list[RowError]]:
    """Convert raw values (in COLUMNS order) to a record, or report every bad field."""
    values: list[object] = []
    append = values.append
    errors: list[RowError] = []
    for (name, required, convert), raw in zip(_SPECS, raws, strict=True):
        if raw is None or raw == "":
            value = None
        else:
            try:
                value = convert(raw)
            except ValueError as exc:
                errors.append(RowError(line, name, str(exc)))
                append(None)
                continue
            if value == "":
                value = None
        if value is None and required:
            errors.append(RowError(line, name, "is required"))
        append(value)
    if errors:
        return None, errors
    return tuple(values), errors


def feed_format(content_type: str | None) -> FeedFormat:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        return CONTENT_TYPES[media]
    except KeyError:
        raise FeedFormatError(
            f"unsupported Content-Type {media or '(none)'!r}: send text/csv (with a header row) "
            "or application/x-ndjson"
        ) from None


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FeedFormatError(f"feed is not UTF-8 text (bad byte at offset {exc.start})") from None


def _csv_header(header: list[str]) -> list[int]:
    names = [h.strip().lower() for h in header]
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise FeedFormatError("CSV header row lacks required column(s): " + ", ".join(missing))
    return [names.index(name) if name in names else -1 for name in COLUMNS]


def check_feed_head(body: bytes, fmt: FeedFormat) -> None:
    """Cheap check of the start of a feed so the API can refuse non-feeds before queueing."""
    if not body.strip():
        raise FeedFormatError("feed is empty")
    # Only the start is looked at; a cut multi-byte character at the end must not fail it.
    head = body[:65536].decode("utf-8-sig", errors="replace")
    first = next((line for line in head.splitlines() if line.strip()), "")
    if fmt == "csv":
        try:
            header = next(csv.reader([first]))
        except csv.Error as exc:
            raise FeedFormatError(f"CSV header row cannot be parsed: {exc}") from None
        _csv_header(header)
    else:
        try:
            obj = json.loads(first)
        except ValueError:
            raise FeedFormatError(
                "line 1 is not JSON: NDJSON needs one JSON object per line"
            ) from None
        if not isinstance(obj, dict):
            raise FeedFormatError("line 1 is not a JSON object: NDJSON needs one object per line")


Parsed = tuple[int, Record | None, list[RowError]]


def _csv_rows(text: str) -> Iterator[Parsed]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise FeedFormatError("feed is empty") from None
    except csv.Error as exc:
        raise FeedFormatError(f"CSV header row cannot be parsed: {exc}") from None
    positions = _csv_header(header)
    width = len(header)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, None, [RowError(reader.line_num, None, f"bad CSV: {exc}")]
            continue
        line = reader.line_num
        if not row:
            continue
        if len(row) != width:
            message = f"has {len(row)} columns, the header has {width}"
            yield line, None, [RowError(line, None, message)]
            continue
        raws = [row[i] if i >= 0 else None for i in positions]
        record, errors = validate_values(line, raws)
        yield line, record, errors


def _ndjson_rows(text: str) -> Iterator[Parsed]:
    for line, raw_line in enumerate(text.split("\n"), start=1):
        if not raw_line.strip():
            continue
        try:
            obj = json.loads(raw_line)
        except ValueError:
            yield line, None, [RowError(line, None, "is not valid JSON")]
            continue
        if not isinstance(obj, dict):
            yield line, None, [RowError(line, None, "is not a JSON object")]
            continue
        get = obj.get
        record, errors = validate_values(line, [get(name) for name in COLUMNS])
        yield line, record, errors


def parse_feed(body: bytes, fmt: FeedFormat) -> Iterator[Parsed]:
    """Yield (line, record or None, errors) for every row; FeedFormatError if unusable."""
    text = _decode(body)
    if not text.strip():
        raise FeedFormatError("feed is empty")
    return _csv_rows(text) if fmt == "csv" else _ndjson_rows(text)
