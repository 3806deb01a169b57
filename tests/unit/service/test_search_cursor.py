import base64

import pytest
from listings.cursor import InvalidCursorError, decode_cursor, encode_cursor

pytestmark = pytest.mark.unit


def test_a_cursor_round_trips() -> None:
    assert decode_cursor(encode_cursor(12345)) == 12345


def test_a_cursor_is_opaque_urlsafe_text() -> None:
    cursor = encode_cursor(987654321)
    # The id it carries must not show through as plain digits (clients would start editing it).
    assert "987654321" not in cursor
    assert all(c.isalnum() or c in "-_" for c in cursor)
    assert "=" not in cursor


def test_the_largest_bigint_id_round_trips_and_one_more_is_refused() -> None:
    assert decode_cursor(encode_cursor(2**63 - 1)) == 2**63 - 1
    with pytest.raises(InvalidCursorError):
        decode_cursor(encode_cursor(2**63))


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64 at all!",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"v": 2, "id": 5}').decode(),
        base64.urlsafe_b64encode(b'{"v": 1, "id": "5"}').decode(),
        base64.urlsafe_b64encode(b'{"v": 1, "id": -3}').decode(),
        base64.urlsafe_b64encode(b'{"v": 1, "id": true}').decode(),
        base64.urlsafe_b64encode(b'{"v": 1, "id": 99999999999999999999999}').decode(),
        encode_cursor(5)[:-3],
        "A" * 500,
    ],
)
def test_a_tampered_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(cursor)
