import json
from datetime import UTC, datetime

import pytest
from listings.ingest.batches import iter_batches
from listings.ingest.feed import (
    COLUMNS,
    FeedFormatError,
    RowError,
    check_feed_head,
    feed_format,
    parse_feed,
    validate_values,
)

pytestmark = pytest.mark.unit

GOOD = {
    "source": "agency",
    "source_id": "A-1",
    "title": "Bright flat",
    "kind": "apartment",
    "price": "250000",
    "city": "Lyon",
}


def check(**changes: object) -> tuple[tuple[object, ...] | None, list[RowError]]:
    row = {**GOOD, **changes}
    return validate_values(7, [row.get(name) for name in COLUMNS])


def only_error(**changes: object) -> RowError:
    record, errors = check(**changes)
    assert record is None
    assert len(errors) == 1, errors
    return errors[0]


def test_a_minimal_row_is_valid_and_typed() -> None:
    record, errors = check()
    assert errors == []
    assert record is not None
    values = dict(zip(COLUMNS, record, strict=True))
    assert values["price"] == 250000
    assert values["description"] is None


def test_optional_fields_are_converted() -> None:
    record, _ = check(
        bedrooms="3",
        bathrooms=1,
        area_m2="72.5",
        latitude="45.76",
        longitude=4.83,
        listed_at="2024-05-01T10:00:00Z",
        contact_email="agent@agency.fr",
        kind="House",
    )
    assert record is not None
    values = dict(zip(COLUMNS, record, strict=True))
    assert values["bedrooms"] == 3
    assert values["area_m2"] == 72.5
    assert values["listed_at"] == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert values["kind"] == "house"


def test_a_date_without_zone_is_taken_as_utc() -> None:
    record, _ = check(listed_at="2024-05-01")
    assert record is not None
    assert record[COLUMNS.index("listed_at")] == datetime(2024, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize("field", ["source", "source_id", "title", "kind", "price", "city"])
@pytest.mark.parametrize("missing", [None, "", "   "])
def test_each_required_field_is_required(field: str, missing: object) -> None:
    error = only_error(**{field: missing})
    assert (error.line, error.field) == (7, field)
    assert error.message in (
        "is required",
        "must be one of apartment, house, studio, land, commercial",
        "must be a positive whole number of euros",
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kind", "castle", "must be one of apartment, house, studio, land, commercial"),
        ("price", "0", "must be a positive whole number of euros"),
        ("price", "-5", "must be a positive whole number of euros"),
        ("price", "12.5", "must be a positive whole number of euros"),
        ("price", "1_000", "must be a positive whole number of euros"),
        ("price", "cheap", "must be a positive whole number of euros"),
        ("price", True, "must be a positive whole number of euros"),
        ("price", str(10**13), "must be a positive whole number of euros"),
        ("bedrooms", "-1", "must be a whole number from 0 to 1000"),
        ("bathrooms", "two", "must be a whole number from 0 to 1000"),
        ("area_m2", "0", "must be a positive number of square metres"),
        ("area_m2", "nan", "must be a positive number of square metres"),
        ("latitude", "90.1", "must be a number from -90 to 90"),
        ("latitude", "north", "must be a number from -90 to 90"),
        ("longitude", "-180.5", "must be a number from -180 to 180"),
        ("listed_at", "yesterday", "must be an ISO 8601 date or date-time"),
        ("listed_at", 20240501, "must be an ISO 8601 date or date-time"),
        ("contact_email", "not-an-address", "must be an e-mail address"),
        ("title", "x" * 301, "must be at most 300 characters"),
        ("description", "x" * 10_001, "must be at most 10000 characters"),
        ("title", "bad\x00byte", "must not contain NUL characters"),
        ("title", ["a", "list"], "must be a string"),
    ],
)
def test_each_rejection_reason(field: str, value: object, message: str) -> None:
    error = only_error(**{field: value})
    assert (error.line, error.field, error.message) == (7, field, message)


def test_rejections_never_echo_personal_data() -> None:
    error = only_error(contact_email="jane.doe AT mail")
    assert "jane" not in error.message


def test_every_bad_field_of_a_row_is_reported() -> None:
    record, errors = check(kind="castle", price="-1", city="")
    assert record is None
    assert [e.field for e in errors] == ["kind", "price", "city"]


HEADER = "source,source_id,title,kind,price,city,bedrooms\n"


def test_csv_good_and_bad_rows_are_separated_with_line_numbers() -> None:
    body = (
        HEADER
        + "a,1,One,house,100,Lyon,2\n"
        + "a,2,Two,boat,100,Lyon,2\n"
        + "a,3,Three,house,100\n"
        + '"a","4","Multi\nline title",studio,50,Lille,\n'
        + "a,5,Five,land,70,Nice,1\n"
    ).encode()
    rows = list(parse_feed(body, "csv"))
    good = [line for line, record, _ in rows if record is not None]
    bad = {line: errors for line, record, errors in rows if record is None}
    assert good == [2, 6, 7]
    assert bad[3][0].as_dict() == {
        "line": 3,
        "field": "kind",
        "message": "must be one of apartment, house, studio, land, commercial",
    }
    assert bad[4][0].field is None
    assert "has 5 columns, the header has 7" in bad[4][0].message


def test_csv_header_is_case_and_space_insensitive_and_may_have_extra_columns() -> None:
    body = b" Source ,SOURCE_ID,title,kind,price,city,colour\na,1,One,house,100,Lyon,red\n"
    [(line, record, errors)] = list(parse_feed(body, "csv"))
    assert errors == [] and record is not None and line == 2


def test_csv_without_required_columns_is_not_a_feed() -> None:
    with pytest.raises(FeedFormatError, match="lacks required column\\(s\\): kind, price"):
        list(parse_feed(b"source,source_id,title,city\na,1,t,Lyon\n", "csv"))


def test_ndjson_rows_are_validated_per_line() -> None:
    lines = [
        json.dumps({**GOOD, "price": 100}),
        "",
        "{not json",
        "[1, 2]",
        json.dumps({**GOOD, "source_id": 42, "price": 12.0}),
    ]
    rows = list(parse_feed("\n".join(lines).encode(), "ndjson"))
    assert [(line, record is not None) for line, record, _ in rows] == [
        (1, True),
        (3, False),
        (4, False),
        (5, True),
    ]
    assert rows[1][2][0].message == "is not valid JSON"
    assert rows[2][2][0].message == "is not a JSON object"
    assert rows[3][1] is not None and rows[3][1][COLUMNS.index("source_id")] == "42"


def test_a_body_that_is_not_utf8_is_not_a_feed() -> None:
    with pytest.raises(FeedFormatError, match="not UTF-8"):
        list(parse_feed(HEADER.encode() + b"\xff\xfe\n", "csv"))


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/csv", "csv"),
        ("text/csv; charset=utf-8", "csv"),
        ("application/x-ndjson", "ndjson"),
        ("application/ndjson", "ndjson"),
    ],
)
def test_feed_formats_follow_the_content_type(content_type: str, expected: str) -> None:
    assert feed_format(content_type) == expected


@pytest.mark.parametrize("content_type", [None, "", "application/json", "text/plain"])
def test_other_content_types_are_refused_with_the_fix(content_type: str | None) -> None:
    with pytest.raises(FeedFormatError, match=r"text/csv .*application/x-ndjson"):
        feed_format(content_type)


@pytest.mark.parametrize(
    ("body", "fmt", "message"),
    [
        (b"", "csv", "feed is empty"),
        (b"   \n", "ndjson", "feed is empty"),
        (b"<html><body>hi</body></html>", "csv", "lacks required column"),
        (b"<html><body>hi</body></html>", "ndjson", "line 1 is not JSON"),
        (b"[1, 2, 3]\n", "ndjson", "not a JSON object"),
    ],
)
def test_the_head_check_refuses_non_feeds(body: bytes, fmt: str, message: str) -> None:
    with pytest.raises(FeedFormatError, match=message):
        check_feed_head(body, fmt)  # type: ignore[arg-type]


def test_the_head_check_accepts_real_feeds() -> None:
    check_feed_head(HEADER.encode() + b"a,1,One,house,100,Lyon,2\n", "csv")
    check_feed_head(json.dumps(GOOD).encode() + b"\n", "ndjson")


def test_batches_fold_repeated_listings_and_cap_errors() -> None:
    rows = [f"a,{i % 3},T,house,{100 + i},Lyon,1" for i in range(7)] + ["a,x,T,boat,1,Lyon,1"] * 5
    body = (HEADER + "\n".join(rows) + "\n").encode()
    batches = list(iter_batches(body, "csv", batch_size=4, max_errors=2))
    assert [b.valid for b in batches] == [4, 3]
    assert [len(b.records) for b in batches] == [3, 3]
    assert sum(b.rejected for b in batches) == 5
    assert sum(len(b.errors) for b in batches) == 2
    # the last row of a repeated listing wins
    prices = {r[COLUMNS.index("source_id")]: r[COLUMNS.index("price")] for r in batches[0].records}
    assert prices == {"0": 103, "1": 101, "2": 102}


@pytest.mark.parametrize("field", ["title", "city", "description", "contact_name"])
def test_text_with_a_lone_surrogate_is_a_row_error_naming_the_field(field: str) -> None:
    # json.loads turns the escape "\ud800" into a lone surrogate: valid JSON, but no UTF-8 text,
    # so the database write would fail for the whole batch.
    line = json.dumps({**GOOD, field: "Flat \ud800 near the sea"})
    assert "\\ud800" in line
    [(number, record, errors)] = list(parse_feed(line.encode(), "ndjson"))
    assert record is None
    assert [e.as_dict() for e in errors] == [
        {"line": number, "field": field, "message": "is not valid text"}
    ]


def test_non_ascii_text_is_still_valid() -> None:
    record, errors = check(title="Château près de l'église 🏰", city="Saint-Étienne")
    assert errors == [] and record is not None


def test_batches_keep_the_feed_line_of_each_record() -> None:
    rows = ["a,1,T,house,100,Lyon,1", "a,2,T,boat,1,Lyon,1", "a,1,T,house,101,Lyon,1"]
    rows += ["a,3,T,house,102,Lyon,1"]
    body = (HEADER + "\n".join(rows) + "\n").encode()
    [batch] = list(iter_batches(body, "csv", batch_size=10, max_errors=10))
    ids = [r[COLUMNS.index("source_id")] for r in batch.records]
    # a repeated listing keeps its last row, and that row's line
    assert dict(zip(ids, batch.lines, strict=True)) == {"1": 4, "3": 5}
