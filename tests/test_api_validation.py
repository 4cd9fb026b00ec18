"""Every way a request can be wrong gets a 4xx JSON error with its code — never a 500.

A real API on loopback with a real (seeded) Redis; requests are sent raw where the client
library would otherwise clean them up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from api import errors
from tests.fixtures_readers import Layout, layout, serve_api
from tests.servers import RedisServer

__all__ = ["layout"]

SYMBOL = "BTC-27DEC26-100000-C"


@pytest.fixture
def seeded(layout: Layout) -> None:
    now_ms = int(time.time() * 1000)
    layout.option(SYMBOL, ts_ms=now_ms)
    layout.option("ETH-27DEC26-4000-C", ts_ms=now_ms)


async def raw_request(url: str, target: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Send ``target`` exactly as given (no normalisation, no quoting) over a raw socket."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("latin-1"))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        chunks, rest = [], body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            chunks.append(rest[:size])
            rest = rest[size + 2:]
        body = b"".join(chunks)
    return status, headers, body


def error_code(body: bytes) -> str:
    import json

    doc: dict[str, Any] = json.loads(body)
    assert set(doc) == {"error"}
    assert set(doc["error"]) == {"code", "message"}
    assert doc["error"]["code"] in errors.CODES
    return str(doc["error"]["code"])


CASES = [
    # (request target, status, error code)
    ("/api/options/DOGE", 404, errors.UNKNOWN_COIN),
    ("/api/options/*", 404, errors.UNKNOWN_COIN),
    ("/api/options/%2A", 404, errors.UNKNOWN_COIN),
    ("/api/options/BTC%00", 404, errors.UNKNOWN_COIN),
    ("/api/options/" + "B" * 10_000, 404, errors.UNKNOWN_COIN),
    ("/api/options/BTC/not-a-symbol", 400, errors.BAD_SYMBOL),
    ("/api/options/BTC/*", 400, errors.BAD_SYMBOL),
    ("/api/options/BTC/BTC-27DEC26-100000-C%0A", 400, errors.BAD_SYMBOL),
    ("/api/options/BTC/BTC-31FEB26-100000-X", 400, errors.BAD_SYMBOL),
    ("/api/options/BTC/ETH-27DEC26-4000-C", 404, errors.UNKNOWN_SYMBOL),
    ("/api/options/BTC/BTC-27DEC26-99000-C", 404, errors.UNKNOWN_SYMBOL),
    (f"/api/options/BTC/{SYMBOL}?x=1", 400, errors.UNKNOWN_PARAMETER),
    ("/api/coins?x=1", 400, errors.UNKNOWN_PARAMETER),
    ("/api/options/BTC?foo=1", 400, errors.UNKNOWN_PARAMETER),
    ("/api/options/BTC?%00=1", 400, errors.UNKNOWN_PARAMETER),
    ("/api/options/BTC?type=C&type=P", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?type=X", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?type=", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?expiry=2026-12-27", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?expiry=31FEB26", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?expiry=*", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?expiry=" + "A" * 10_000, 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?strike_min=-1", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?strike_min=1e5", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?strike_max=NaN", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?strike_min=9999999999999", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?strike_min=5&strike_max=4", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?limit=0", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?limit=10001", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?limit=1.5", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?offset=-1", 400, errors.BAD_PARAMETER),
    ("/api/options/BTC?offset=99999999", 400, errors.BAD_PARAMETER),
    ("/nope", 404, errors.NOT_FOUND),
    ("/api/options", 404, errors.NOT_FOUND),
    ("/api/options/BTC/BTC-27DEC26-100000-C/extra", 404, errors.NOT_FOUND),
    ("/../etc/passwd", 404, errors.NOT_FOUND),
    ("/api/options/../../x", 404, errors.NOT_FOUND),
]


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize(("target", "status", "code"), CASES, ids=[c[0][:60] for c in CASES])
async def test_bad_input_is_a_json_error_with_its_code(
    target: str, status: int, code: str, redis_server: RedisServer,
) -> None:
    async with serve_api(redis_server.url) as url:
        got_status, headers, body = await raw_request(url, target)
    assert got_status == status, body[:300]
    assert headers["content-type"].startswith("application/json")
    assert error_code(body) == code


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"])
async def test_only_get_and_head_are_allowed(method: str, redis_server: RedisServer) -> None:
    async with serve_api(redis_server.url) as url:
        status, headers, body = await raw_request(url, "/api/options/BTC", method=method)
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    assert error_code(body) == errors.METHOD_NOT_ALLOWED


@pytest.mark.usefixtures("seeded")
async def test_a_method_http_does_not_know_is_refused_before_the_application(
    redis_server: RedisServer,
) -> None:
    async with serve_api(redis_server.url) as url:
        status, _, _ = await raw_request(url, "/api/options/BTC", method="FOO")
    assert status == 400  # aiohttp's HTTP parser: not a method at all


@pytest.mark.usefixtures("seeded")
async def test_error_messages_quote_client_input_short_and_printable(redis_server: RedisServer) -> None:
    async with serve_api(redis_server.url) as url:
        _, _, body = await raw_request(url, "/api/options/BTC?expiry=%1B%5B31m" + "Z" * 5000)
    text = body.decode()
    assert len(text) < 400
    assert "\x1b" not in text
    assert "(5005 chars)" in text


@pytest.mark.usefixtures("seeded")
async def test_validation_never_reaches_redis_with_user_input(
    redis_server: RedisServer, layout: Layout,
) -> None:
    async with serve_api(redis_server.url) as url, aiohttp.ClientSession() as session:
        for target in ("/api/options/*", "/api/options/BTC/*", "/api/options/BTC?expiry=*",
                       "/api/options/BTC%2A"):
            async with session.get(url + target) as resp:
                assert resp.status in (400, 404)
    stats = layout.client.info("commandstats")
    assert "cmdstat_smembers" not in stats
    assert "cmdstat_hgetall" not in stats
