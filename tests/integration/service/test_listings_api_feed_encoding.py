"""The API refuses a feed that is not UTF-8 before queueing it, wherever the bad byte is."""

import httpx
import pytest

pytestmark = pytest.mark.integration

HEADER = b"source,source_id,title,kind,price,city\n"


def feed_with_bad_byte_after(head_bytes: int) -> tuple[bytes, int, int]:
    """A valid CSV feed with one Latin-1 byte on a row past `head_bytes`: body, offset, line."""
    rows = [HEADER]
    size = len(HEADER)
    i = 0
    while size <= head_bytes:
        row = f"enc,{i},Flat number {i},apartment,100000,Paris\n".encode()
        rows.append(row)
        size += len(row)
        i += 1
    bad_row = b"enc,bad,Caf\xe9 flat,apartment,100000,Paris\n"
    offset = size + bad_row.index(b"\xe9")
    line = len(rows) + 1
    rows.append(bad_row)
    rows.append(b"enc,last,Last flat,apartment,100000,Paris\n")
    return b"".join(rows), offset, line


async def test_a_bad_byte_after_64_kib_is_refused_with_line_and_offset(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body, offset, line = feed_with_bad_byte_after(70_000)
    assert offset > 65536
    response = await client.post(
        "/api/v1/ingest", content=body, headers={**auth, "Content-Type": "text/csv"}
    )
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["error"] == "not UTF-8"
    assert (error["line"], error["offset"]) == (line, offset)
    assert f"line {line}" in error["detail"]
    assert f"byte offset {offset}" in error["detail"]
    assert "send the feed encoded as UTF-8" in error["detail"]


async def test_a_bad_byte_in_the_header_is_refused_too(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/ingest",
        content=b'{"source": "\xff"}\n',
        headers={**auth, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 400
    assert (response.json()["line"], response.json()["offset"]) == (1, 12)


async def test_another_charset_is_refused_with_415_naming_it(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body, _, _ = feed_with_bad_byte_after(100)
    response = await client.post(
        "/api/v1/ingest",
        content=body,
        headers={**auth, "Content-Type": "text/csv; charset=ISO-8859-1"},
    )
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported media type"
    assert "ISO-8859-1" in response.json()["detail"]
    assert "UTF-8" in response.json()["detail"]


async def test_utf8_with_an_explicit_charset_and_a_bom_is_accepted(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = "\ufeff".encode() + HEADER + "enc,é1,Café crème,apartment,100000,Paris\n".encode()
    response = await client.post(
        "/api/v1/ingest", content=body, headers={**auth, "Content-Type": "text/csv; charset=UTF-8"}
    )
    assert response.status_code == 202, response.text
