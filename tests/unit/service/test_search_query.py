import pytest
from listings.cursor import encode_cursor
from listings.search import SearchFilters, build_search_query, paginate
from sqlalchemy.dialects import postgresql

pytestmark = pytest.mark.unit


def sql(filters: SearchFilters) -> tuple[str, dict[str, object]]:
    compiled = build_search_query(filters).compile(dialect=postgresql.dialect())
    return str(compiled), dict(compiled.params)


def test_no_filters_orders_newest_first_and_fetches_one_extra_row() -> None:
    text, params = sql(SearchFilters(limit=20))
    assert "WHERE" not in text
    assert "ORDER BY listings.id DESC" in text
    assert 21 in params.values()


def test_contact_details_are_not_selected_for_results() -> None:
    text, _ = sql(SearchFilters())
    assert "contact_" not in text
    assert "listings.search" not in text.split("FROM")[0]


def test_every_filter_becomes_a_condition() -> None:
    text, params = sql(
        SearchFilters(
            city=" Paris ", kind="house", min_price=100, max_price=900, bedrooms=2, q="garden"
        )
    )
    assert "lower(listings.city) = " in text
    assert "listings.kind = " in text
    assert "listings.price >= " in text
    assert "listings.price <= " in text
    assert "listings.bedrooms >= " in text
    assert "listings.search @@ websearch_to_tsquery(" in text
    assert set(params.values()) >= {"paris", "house", 100, 900, 2, "garden", "simple"}


def test_a_cursor_continues_below_the_last_id() -> None:
    text, params = sql(SearchFilters(after_id=500))
    assert "listings.id < " in text
    assert 500 in params.values()


def test_blank_text_filters_are_ignored() -> None:
    text, _ = sql(SearchFilters(city="", q="   "))
    assert "WHERE" not in text


def test_paginate_returns_a_cursor_only_when_more_rows_exist() -> None:
    rows = [{"id": i} for i in (9, 8, 7)]
    page, cursor = paginate(rows, 2)
    assert page == rows[:2]
    assert cursor == encode_cursor(8)
    assert paginate(rows, 3) == (rows, None)
