"""gzip answers: what clients that ask for it get, and that it is the same document.

Most HTTP clients (curl --compressed, requests, browsers, aiohttp) ask for gzip; a 1,000-option
answer is ~700 KiB plain and ~4x smaller gzipped. The option array is deflated once per Redis
read and stitched into each answer (api.compression), so these tests decode answers with the
standard library's gzip, not with the code that built them.
"""

from __future__ import annotations

import gzip
import json
import random
import time
import zlib
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api import crc32
from api.compression import MIN_SIZE, accepts_gzip, deflate_part, gzip_member
from api.streaming import CHUNK, chunks
from tests.fixtures_readers import Layout, layout, make_symbols, serve_api
from tests.servers import RedisServer

__all__ = ["layout"]

GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


async def fetch(url: str, headers: dict[str, str], method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and the body exactly as sent (not decoded by the client)."""
    async with aiohttp.ClientSession(auto_decompress=False) as session, \
            session.request(method, url, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def decoded(headers: dict[str, str], raw: bytes) -> Any:
    if headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    return json.loads(raw)


@pytest.fixture
def many(layout: Layout) -> list[str]:
    symbols = make_symbols("BTC", 1000, seed=21)
    layout.options(symbols, now=time.time())
    return symbols


async def test_the_full_answer_is_gzipped_for_clients_that_ask_and_is_the_same_document(
    redis_server: RedisServer, many: list[str],
) -> None:
    async with serve_api(redis_server.url) as url:
        status, headers, raw = await fetch(url + "/api/options/BTC", GZIP)
        _, plain_headers, plain = await fetch(url + "/api/options/BTC", IDENTITY)
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in headers["Vary"]
    assert "Accept-Encoding" in plain_headers["Vary"]
    assert "Content-Encoding" not in plain_headers
    assert int(headers["Content-Length"]) == len(raw) < len(plain) / 3
    zipped, unzipped = decoded(headers, raw), decoded(plain_headers, plain)
    assert zipped["count"] == 1000
    assert zipped["options"] == unzipped["options"]
    assert {o["symbol"] for o in zipped["options"]} == set(many)


async def test_a_filtered_answer_is_gzipped_too_and_selects_the_same_options(
    redis_server: RedisServer, many: list[str],
) -> None:
    path = "/api/options/BTC?type=C&strike_min=50000&strike_max=90000"  # ~50 options, ~35 KiB
    async with serve_api(redis_server.url) as url:
        _, headers, raw = await fetch(url + path, GZIP)
        _, plain_headers, plain = await fetch(url + path, IDENTITY)
    zipped, unzipped = decoded(headers, raw), decoded(plain_headers, plain)
    assert zipped["options"] == unzipped["options"]
    assert zipped["filters"] == unzipped["filters"]
    assert len(plain) >= MIN_SIZE  # else this test would not show a gzipped selection
    assert headers["Content-Encoding"] == "gzip"


@pytest.mark.parametrize("accept", ["", "identity", "gzip;q=0", "deflate, br", "*;q=0"])
async def test_clients_that_do_not_accept_gzip_get_plain_json(
    redis_server: RedisServer, many: list[str], accept: str,
) -> None:
    async with serve_api(redis_server.url) as url:
        status, headers, raw = await fetch(url + "/api/options/BTC", {"Accept-Encoding": accept})
    assert status == 200
    assert "Content-Encoding" not in headers
    assert json.loads(raw)["count"] == 1000


async def test_small_answers_are_not_compressed(redis_server: RedisServer, many: list[str]) -> None:
    async with serve_api(redis_server.url) as url:
        _, headers, raw = await fetch(url + f"/api/options/BTC/{many[0]}", GZIP)
        _, one_headers, _ = await fetch(url + "/api/options/BTC?limit=1", GZIP)
    assert "Content-Encoding" not in headers
    assert "Content-Encoding" not in one_headers
    assert json.loads(raw)["option"]["symbol"] == many[0]


async def test_head_reports_the_encoding_and_length_get_would_send(
    redis_server: RedisServer, many: list[str],
) -> None:
    async with serve_api(redis_server.url) as url:
        _, _, raw = await fetch(url + "/api/options/BTC", GZIP)
        _, head_headers, head_body = await fetch(url + "/api/options/BTC", GZIP, method="HEAD")
    assert head_body == b""
    assert head_headers["Content-Encoding"] == "gzip"
    assert abs(int(head_headers["Content-Length"]) - len(raw)) < 20  # timestamps may differ by a digit


@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=6), st.data())
def test_a_stitched_member_decodes_to_its_parts_whatever_was_deflated_in_advance(
    parts: list[bytes], data: st.DataObject,
) -> None:
    ahead = [deflate_part(p) if data.draw(st.booleans()) else None for p in parts]
    member = b"".join(gzip_member(parts, ahead))
    assert gzip.decompress(member) == b"".join(parts)
    stream = zlib.decompressobj(16 + zlib.MAX_WBITS)  # one member, ended where it says
    assert stream.decompress(member) == b"".join(parts)
    assert stream.eof
    assert stream.unused_data == b""


@given(st.binary(max_size=5000), st.binary(max_size=5000))
def test_crc32_of_a_concatenation_is_combined_from_its_parts_as_zlib_computes_it(a: bytes, b: bytes) -> None:
    assert crc32.combine(zlib.crc32(a), zlib.crc32(b), crc32.shift_operator(len(b))) == zlib.crc32(a + b)


def test_crc32_combines_over_a_large_shared_part() -> None:
    big = bytes(range(256)) * 4000  # ~1 MB: the operator's higher powers are used
    head = b'{"coin":"BTC","options":'
    assert crc32.combine(zlib.crc32(head), zlib.crc32(big), crc32.shift_operator(len(big))) == \
        zlib.crc32(head + big)


@pytest.mark.parametrize(("header", "expected"), [
    ("gzip", True), ("gzip, deflate, br", True), ("br;q=1.0, gzip;q=0.5", True), ("x-gzip", True),
    ("*", True), ("GZIP", True), ("", False), ("identity", False), ("gzip;q=0", False),
    ("gzip;q=0.0", False), ("deflate", False), ("*;q=0", False), ("identity, *;q=0", False),
    ("gzip;q=junk", False), ("*;q=0.1, gzip;q=0", False),
])
def test_accept_encoding_is_read_as_rfc_9110_says(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


@given(st.lists(st.integers(min_value=0, max_value=300_000), max_size=8))
def test_an_answer_goes_out_in_writes_of_at_most_a_chunk_nothing_lost_or_reordered(sizes: list[int]) -> None:
    parts = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    writes = [bytes(w) for w in chunks(parts)]
    assert b"".join(writes) == b"".join(parts)
    assert all(0 < len(w) <= CHUNK for w in writes)


def test_the_small_parts_of_a_gzip_answer_share_writes() -> None:
    noise = random.Random(1).randbytes(200_000)  # incompressible: its deflated form spans chunks
    shared = deflate_part(noise)
    parts = [b'{"coin":"BTC","options":', noise, b"}"]
    member = gzip_member(parts, [None, shared, None])
    big = len(shared.data)
    assert len(chunks(member)) == -(-big // CHUNK) + 2  # the big part's slices, one write before, one after
