"""What ``/api/options/{coin}``, ``/api/options/{coin}/{symbol}`` and ``/api/coins`` answer.

Redis holds the ingest's layout (tests.fixtures_readers.Layout); the API is a real HTTP
server on loopback.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from common import keys
from tests.fixtures_readers import Layout, layout, make_symbols, parse_exposition, serve_api
from tests.servers import RedisServer

__all__ = ["layout"]

COINS = ("BTC", "ETH", "SOL")


async def get_json(url: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as resp:
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


@pytest.fixture
def seeded(layout: Layout) -> dict[str, dict[str, str]]:
    """40 BTC and 10 ETH options, written now; SOL has none."""
    now = time.time()
    written = layout.options(make_symbols("BTC", 40, seed=1), now=now)
    written.update(layout.options(make_symbols("ETH", 10, seed=2), now=now))
    return written


async def test_every_indexed_option_is_served_with_its_stored_fields_unchanged(
    redis_server: RedisServer, seeded: dict[str, dict[str, str]],
) -> None:
    async with serve_api(redis_server.url) as url:
        status, headers, body = await get_json(url + "/api/options/BTC")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    btc = {s: f for s, f in seeded.items() if s.startswith("BTC-")}
    assert body["coin"] == "BTC"
    assert body["count"] == body["total"] == len(btc) == len(body["options"])
    for option in body["options"]:
        stored = btc[option["symbol"]]
        for name, value in stored.items():
            assert option[name] == value, (option["symbol"], name)  # strings as stored, "0" included
        assert set(option) == set(stored) | {"expiry", "expiry_date", "strike", "type", "settle"}


async def test_each_option_carries_the_parts_of_its_symbol(
    layout: Layout, redis_server: RedisServer,
) -> None:
    now_ms = int(time.time() * 1000)
    layout.option("BTC-3JAN27-95000.5-P-USDT", ts_ms=now_ms)
    layout.option("BTC-27DEC26-100000-C", ts_ms=now_ms)
    async with serve_api(redis_server.url) as url:
        _, _, body = await get_json(url + "/api/options/BTC")
    first, second = body["options"]
    assert {k: first[k] for k in ("symbol", "expiry", "expiry_date", "strike", "type", "settle")} == {
        "symbol": "BTC-27DEC26-100000-C", "expiry": "27DEC26", "expiry_date": "2026-12-27",
        "strike": "100000", "type": "C", "settle": "USDC"}
    assert {k: second[k] for k in ("expiry", "expiry_date", "strike", "type", "settle")} == {
        "expiry": "3JAN27", "expiry_date": "2027-01-03", "strike": "95000.5", "type": "P", "settle": "USDT"}


async def test_options_are_sorted_by_expiry_date_then_strike_then_type(
    redis_server: RedisServer, seeded: dict[str, dict[str, str]],
) -> None:
    async with serve_api(redis_server.url) as url:
        _, _, body = await get_json(url + "/api/options/BTC")
    keys_seen = [(o["expiry_date"], Decimal(o["strike"]), o["type"], o["settle"]) for o in body["options"]]
    assert keys_seen == sorted(keys_seen)


async def test_the_answer_says_how_fresh_the_data_is(layout: Layout, redis_server: RedisServer) -> None:
    now = time.time()
    layout.option("ETH-27DEC26-4000-C", ts_ms=int((now - 95) * 1000), recv_ms=int((now - 90) * 1000))
    layout.option("ETH-27DEC26-4000-P", ts_ms=int((now - 35) * 1000), recv_ms=int((now - 30) * 1000))
    async with serve_api(redis_server.url) as url:
        status, headers, body = await get_json(url + "/api/options/ETH")
    assert status == 200
    assert body["last_update"] == pytest.approx(now - 30, abs=0.01)
    assert 30 <= body["staleness_seconds"] < 60
    assert body["as_of"] <= body["generated_at"]
    assert body["cache"] == "miss"
    assert body["stale"] is False
    assert headers["X-Cache"] == "miss"
    assert headers["Age"] == "0"


async def test_a_coin_without_options_answers_an_empty_list(
    redis_server: RedisServer, seeded: dict[str, dict[str, str]],
) -> None:
    async with serve_api(redis_server.url) as url:
        status, _, body = await get_json(url + "/api/options/SOL")
    assert status == 200
    assert body["options"] == []
    assert body["count"] == 0
    assert body["last_update"] is None
    assert body["staleness_seconds"] is None


async def test_index_members_whose_hash_expired_are_left_out(
    layout: Layout, redis_server: RedisServer,
) -> None:
    now_ms = int(time.time() * 1000)
    layout.option("BTC-27DEC26-100000-C", ts_ms=now_ms)
    layout.client.sadd(keys.coin_index_key("BTC"), "BTC-27DEC26-90000-C")  # no hash (expired)
    async with serve_api(redis_server.url) as url:
        _, _, body = await get_json(url + "/api/options/BTC")
    assert [o["symbol"] for o in body["options"]] == ["BTC-27DEC26-100000-C"]


async def test_malformed_or_foreign_index_members_are_skipped_and_counted(
    layout: Layout, redis_server: RedisServer,
) -> None:
    now_ms = int(time.time() * 1000)
    layout.option("BTC-27DEC26-100000-C", ts_ms=now_ms)
    layout.option("ETH-27DEC26-4000-C", ts_ms=now_ms, index=False)
    layout.client.sadd(keys.coin_index_key("BTC"), "*", "../x", "ETH-27DEC26-4000-C")
    async with serve_api(redis_server.url) as url:
        _, _, body = await get_json(url + "/api/options/BTC")
        async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
            metrics = await resp.text()
    assert [o["symbol"] for o in body["options"]] == ["BTC-27DEC26-100000-C"]
    assert 'bybit_api_errors_total{type="bad_data"} 3.0' in metrics
    calls = layout.client.info("commandstats")
    assert "cmdstat_keys" not in calls
    assert "cmdstat_scan" not in calls


@pytest.mark.parametrize(("query", "expected"), [
    ("type=C", lambda o: o["type"] == "C"),
    ("type=p", lambda o: o["type"] == "P"),
    ("strike_min=50000", lambda o: Decimal(o["strike"]) >= 50000),
    ("strike_max=50000", lambda o: Decimal(o["strike"]) <= 50000),
    ("strike_min=20000&strike_max=80000&type=P", lambda o: 20000 <= Decimal(o["strike"]) <= 80000
     and o["type"] == "P"),
])
async def test_filters_select_exactly_the_matching_options(
    query: str, expected: Any, redis_server: RedisServer, seeded: dict[str, dict[str, str]],
) -> None:
    async with serve_api(redis_server.url) as url:
        _, _, everything = await get_json(url + "/api/options/BTC")
        status, _, body = await get_json(url + "/api/options/BTC?" + query)
    assert status == 200
    want = [o["symbol"] for o in everything["options"] if expected(o)]
    assert want, "the seed must contain matches for every filter"
    assert len(want) < len(everything["options"]), "and non-matches"
    assert [o["symbol"] for o in body["options"]] == want
    assert body["count"] == body["total"] == len(want)


async def test_the_expiry_filter_takes_the_symbol_form(
    redis_server: RedisServer, seeded: dict[str, dict[str, str]],
) -> None:
    async with serve_api(redis_server.url) as url:
        _, _, everything = await get_json(url + "/api/options/BTC")
        expiry = everything["options"][0]["expiry"]
        _, _, body = await get_json(url + "/api/options/BTC", params={"expiry": expiry.lower()})
    assert body["filters"] == {"expiry": expiry}
    assert [o["symbol"] for o in body["options"]] == [
        o["symbol"] for o in everything["options"] if o["expiry"] == expiry]


async def test_limit_and_offset_page_through_the_matches(
    redis_server: RedisServer, seeded: dict[str, dict[str, str]],
) -> None:
    async with serve_api(redis_server.url) as url:
        _, _, everything = await get_json(url + "/api/options/BTC")
        _, _, page = await get_json(url + "/api/options/BTC?limit=5&offset=10")
    assert [o["symbol"] for o in page["options"]] == [o["symbol"] for o in everything["options"][10:15]]
    assert page["count"] == 5
    assert page["total"] == 40


async def test_one_option_by_symbol(redis_server: RedisServer, seeded: dict[str, dict[str, str]]) -> None:
    symbol = next(s for s in seeded if s.startswith("ETH-"))
    async with serve_api(redis_server.url) as url:
        status, headers, body = await get_json(url + f"/api/options/ETH/{symbol}")
        lower_status, _, lower = await get_json(url + f"/api/options/eth/{symbol.lower()}")
    assert status == 200
    assert body["symbol"] == symbol
    assert body["option"]["markPrice"] == seeded[symbol]["markPrice"]
    assert headers["X-Cache"] in ("hit", "miss")
    assert lower_status == 200
    assert lower["option"] == body["option"]


async def test_coins_lists_every_configured_coin_with_its_count(
    redis_server: RedisServer, seeded: dict[str, dict[str, str]],
) -> None:
    async with serve_api(redis_server.url) as url:
        status, _, body = await get_json(url + "/api/coins")
    assert status == 200
    assert [(c["coin"], c["count"]) for c in body["coins"]] == [("BTC", 40), ("ETH", 10), ("SOL", 0)]
    assert body["coins"][2]["staleness_seconds"] is None


async def test_head_answers_the_headers_of_get_without_a_body(
    redis_server: RedisServer, seeded: dict[str, dict[str, str]],
) -> None:
    async with serve_api(redis_server.url) as url, aiohttp.ClientSession() as session, \
            session.head(url + "/api/options/BTC") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        assert await resp.read() == b""


async def test_the_lowercase_coin_is_the_same_coin(
    redis_server: RedisServer, seeded: dict[str, dict[str, str]],
) -> None:
    async with serve_api(redis_server.url) as url:
        _, _, upper = await get_json(url + "/api/options/BTC")
        _, _, lower = await get_json(url + "/api/options/btc")
    assert lower["coin"] == "BTC"
    assert lower["options"] == upper["options"]


async def test_a_large_answer_is_streamed_whole_and_head_reports_its_length(
    layout: Layout, redis_server: RedisServer,
) -> None:
    layout.options(make_symbols("BTC", 1000, seed=6), now=time.time())
    identity = {"Accept-Encoding": "identity"}
    async with serve_api(redis_server.url) as url, aiohttp.ClientSession(headers=identity) as session:
        async with session.get(url + "/api/options/BTC") as resp:
            raw = await resp.read()
            length = int(resp.headers["Content-Length"])
        async with session.head(url + "/api/options/BTC") as resp:
            head_length = int(resp.headers["Content-Length"])
    assert len(raw) == length > 500_000  # many chunks
    assert abs(head_length - length) < 20  # the same answer (its timestamps may differ by a digit)
    body = json.loads(raw)
    assert body["count"] == len(body["options"]) == 1000


async def test_a_client_leaving_mid_answer_is_counted_and_the_api_keeps_serving(
    layout: Layout, redis_server: RedisServer,
) -> None:
    # ~7 MB: more than the kernel buffers a stalled connection (tcp_wmem max is 4 MB by default).
    layout.options(make_symbols("BTC", 10_000, seed=6), now=time.time())
    async with serve_api(redis_server.url) as url:
        host, port = url.removeprefix("http://").split(":")
        for _ in range(3):
            small = socket.socket()
            small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow reader's window
            small.setblocking(False)
            await asyncio.get_running_loop().sock_connect(small, (host, int(port)))
            reader, writer = await asyncio.open_connection(sock=small)
            writer.write(b"GET /api/options/BTC HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readexactly(100)  # the answer has started
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not FIN
            writer.close()

        async def counted() -> float:
            while True:
                _, _, text = await get_text(url + "/metrics")
                value = parse_exposition(text).value("bybit_api_errors_total", type="client_gone")
                if value >= 1:
                    return value
                await asyncio.sleep(0.05)

        assert await asyncio.wait_for(counted(), timeout=10) >= 1
        status, _, body = await get_json(url + "/api/options/BTC")
    assert status == 200
    assert body["count"] == 10_000


async def get_text(url: str) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, dict(resp.headers), await resp.text()
