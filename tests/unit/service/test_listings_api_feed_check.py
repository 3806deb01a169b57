import pytest
from listings.api.feed_check import CHUNK_BYTES, charset_problem, first_invalid_utf8

pytestmark = pytest.mark.unit


def test_a_utf8_body_passes_whole() -> None:
    body = ("source,title\n" + "é€😀 ok\n" * 200_000).encode()
    assert len(body) > 2 * CHUNK_BYTES
    assert first_invalid_utf8(body) is None
    assert first_invalid_utf8(b"") is None
    assert first_invalid_utf8("\ufeffa,b\n".encode()) is None


def test_a_bad_byte_far_after_the_head_is_found_with_line_and_offset() -> None:
    line = b"x" * 99 + b"\n"
    body = line * 1500 + b"caf\xe9\n" + line
    bad = first_invalid_utf8(body)
    assert bad is not None
    assert bad.offset == 150_003
    assert bad.line == 1501
    assert bad.byte == 0xE9
    assert "line 1501" in bad.message
    assert "byte offset 150003" in bad.message
    assert "send the feed encoded as UTF-8" in bad.message


@pytest.mark.parametrize("shift", [-2, -1, 0, 1])
def test_a_character_split_across_chunks_is_fine_and_a_bad_one_is_located(shift: int) -> None:
    # "€" is three bytes; put it across the chunk boundary in every possible way.
    prefix = b"a" * (CHUNK_BYTES + shift)
    assert first_invalid_utf8(prefix + "€\n".encode()) is None
    cut = prefix + "€".encode()[:2] + b"\n"
    bad = first_invalid_utf8(cut)
    assert bad is not None
    assert bad.offset == len(prefix)
    assert bad.line == 1


def test_a_truncated_character_at_the_very_end_is_found() -> None:
    bad = first_invalid_utf8(b"a,b\nc," + "€".encode()[:2])
    assert bad is not None
    assert (bad.offset, bad.line) == (6, 2)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/csv",
        "text/csv; charset=utf-8",
        "text/csv; charset=UTF-8",
        'text/csv; charset="utf-8"',
        "application/x-ndjson;charset=utf8",
    ],
)
def test_utf8_or_no_charset_is_accepted(content_type: str) -> None:
    assert charset_problem(content_type) is None


@pytest.mark.parametrize(
    "content_type", ["text/csv; charset=latin-1", 'text/csv; charset="windows-1252"']
)
def test_another_charset_is_named_and_refused(content_type: str) -> None:
    problem = charset_problem(content_type)
    assert problem is not None
    assert content_type.split("=")[1].strip('"') in problem
    assert "UTF-8" in problem
