"""Every fault switch of the simulator, provoked over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.fixtures_simulator import SimulatorHandle, ticker_problem
from tests.servers import wait_until
from tests.test_simulator_stream import (
    collect_until,
    open_stream,
    request,
    server_ms,
    tickers_of,
    topic_is,
    topics,
)

Factory = Callable[..., SimulatorHandle]
ALL_KINDS = {
    "truncated_json", "missing_mark_price", "missing_symbol", "missing_data", "non_numeric", "nan",
    "infinity", "overflow", "null_value", "number_not_string", "data_list", "hostile_star",
    "hostile_path", "hostile_wildcard", "hostile_long", "hostile_key_pattern", "topic_mismatch",
    "ts_zero", "ts_negative", "ts_year_3000",
}
HOSTILE = {"*": "hostile_star", "../x": "hostile_path", "BTC-*": "hostile_wildcard",
           "option:*": "hostile_key_pattern"}


@pytest.fixture
def fast_sim(simulator_factory: Factory) -> SimulatorHandle:
    return simulator_factory(instruments_per_coin=30, push_interval=0.1)


async def close_frame_code(ws: ClientConnection, within: float = 10.0) -> int | None:
    """Read until the connection closes; the code of the close frame received (None = cut, 1006)."""
    try:
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return None if exc.rcvd is None else exc.rcvd.code


def kind_of(raw: str | bytes) -> str | None:
    """Which malformed kind ``raw`` is (None for a well-formed ticker)."""
    if ticker_problem(raw) is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return "truncated_json"
    data = doc.get("data")
    if "data" not in doc:
        return "missing_data"
    if isinstance(data, list):
        return "data_list"
    symbol = data.get("symbol")
    if "symbol" not in data:
        return "missing_symbol"
    if "markPrice" not in data:
        return "missing_mark_price"
    if isinstance(symbol, str) and symbol in HOSTILE:
        return HOSTILE[symbol]
    if isinstance(symbol, str) and len(symbol) >= 10_000:
        return "hostile_long"
    if doc["ts"] == 0:
        return "ts_zero"
    if doc["ts"] < 0:
        return "ts_negative"
    if doc["ts"] > 30_000_000_000_000:
        return "ts_year_3000"
    values = list(data.values())
    for value, kind in (("abc", "non_numeric"), ("NaN", "nan"), ("Infinity", "infinity"),
                        ("1e999", "overflow"), (None, "null_value")):
        if value in values:
            return kind
    if any(isinstance(v, int | float) for v in values):
        return "number_not_string"
    if doc["topic"] != f"tickers.{symbol}":
        return "topic_mismatch"
    return "unclassified"


async def test_drop_every_cuts_connections_abnormally_and_clients_can_reconnect(
        fast_sim: SimulatorHandle) -> None:
    fast_sim.set_faults(drop_every=0.3)
    symbol = fast_sim.instruments()["BTC"][0]
    for _ in range(2):
        async with open_stream(fast_sim.ws_url) as ws:
            answer, _ = await request(ws, "subscribe", [f"tickers.{symbol}"])
            assert answer["success"] is True
            assert await close_frame_code(ws) is None
    assert fast_sim.state()["counters"]["drops_scheduled"] >= 2
    fast_sim.clear_faults()
    assert fast_sim.state()["faults"]["drop_every"] is None
    async with open_stream(fast_sim.ws_url) as ws:
        await request(ws, "subscribe", [f"tickers.{symbol}"])
        await collect_until(ws, topic_is(f"tickers.{symbol}"))


async def test_drop_cuts_every_connection_now(fast_sim: SimulatorHandle) -> None:
    async with open_stream(fast_sim.ws_url) as one, open_stream(fast_sim.ws_url) as two:
        await request(one, "ping")
        await request(two, "ping")
        fast_sim.drop_all()
        assert await close_frame_code(one) is None
        assert await close_frame_code(two) is None
    assert fast_sim.state()["counters"]["drops_requested"] == 2
    async with open_stream(fast_sim.ws_url) as again:
        pong, _ = await request(again, "ping")
        assert pong["op"] == "pong"


async def test_no_pong_leaves_pings_unanswered_until_cleared(fast_sim: SimulatorHandle) -> None:
    fast_sim.set_faults(no_pong=True)
    async with open_stream(fast_sim.ws_url) as ws:
        await ws.send(json.dumps({"req_id": "p1", "op": "ping"}))
        answer, before = await request(ws, "subscribe", topics(fast_sim.instruments()["ETH"][:1]))
        assert answer["type"] == "COMMAND_RESP"  # answers keep their order: a pong would have come first
        assert not [m for m in before if json.loads(m).get("op") == "pong"]
        fast_sim.clear_faults()
        pong, _ = await request(ws, "ping")
        assert pong["op"] == "pong"
    counters = fast_sim.state()["counters"]
    assert counters["pings_ignored"] == 1
    assert counters["pings_answered"] == 1


@pytest.mark.parametrize("style", ["op", "command_resp"])
async def test_reject_subscribe_over_fails_large_requests_entirely(
        fast_sim: SimulatorHandle, style: str) -> None:
    fast_sim.set_faults(reject_subscribe_over=5, response_style=style)
    symbols = fast_sim.instruments()["SOL"][:6]
    async with open_stream(fast_sim.ws_url) as ws:
        big, _ = await request(ws, "subscribe", topics(symbols))
        assert big["success"] is False
        if style == "command_resp":
            assert big["data"] == {"failTopics": topics(symbols), "successTopics": []}
        else:
            assert "5" in big["ret_msg"]
        small, _ = await request(ws, "subscribe", topics(symbols[:5]))
        assert small["success"] is True
    assert fast_sim.state()["counters"]["subscribe_failures"] == 1


async def test_malformed_frames_appear_at_about_the_ratio(fast_sim: SimulatorHandle) -> None:
    fast_sim.set_faults(malformed_ratio=0.3)
    symbols = fast_sim.instruments()["BTC"][:20]
    async with open_stream(fast_sim.ws_url) as ws:
        await request(ws, "subscribe", topics(symbols))
        count = 0

        def enough(doc: dict[str, Any]) -> bool:
            nonlocal count
            count += 1
            return count >= 600

        messages = await collect_until(ws, enough, within=30)
    bad = sum(1 for m in messages if ticker_problem(m) is not None)
    assert 0.2 < bad / len(messages) < 0.4, (bad, len(messages))


async def test_malformed_frames_include_every_kind_and_never_change_the_truth(
        fast_sim: SimulatorHandle) -> None:
    symbols = fast_sim.instruments()["ETH"][:10]
    async with open_stream(fast_sim.ws_url) as ws:
        await request(ws, "subscribe", topics(symbols))
        await collect_until(ws, topic_is(f"tickers.{symbols[-1]}"))
        fast_sim.set_faults(malformed_ratio=1.0)
        truth = fast_sim.truth()
        kinds: Counter[str | None] = Counter()
        async with asyncio.timeout(30):
            while not set(kinds) >= ALL_KINDS:
                raw = await ws.recv()
                kinds[kind_of(raw)] += 1
        assert fast_sim.truth() == truth
    assert "unclassified" not in kinds
    assert set(fast_sim.state()["counters"]["malformed_by_kind"]) == ALL_KINDS


async def test_silent_stops_pushes_but_pings_are_answered(fast_sim: SimulatorHandle) -> None:
    symbol = fast_sim.instruments()["BTC"][1]
    async with open_stream(fast_sim.ws_url) as ws:
        await request(ws, "subscribe", [f"tickers.{symbol}"])
        await collect_until(ws, topic_is(f"tickers.{symbol}"))
        fast_sim.set_faults(silent=True)
        since, _ = await server_ms(ws)
        cycles = fast_sim.state()["counters"]["push_cycles"]
        wait_until(lambda: fast_sim.state()["counters"]["push_cycles"] >= cycles + 5, what="5 silent cycles")
        pong, before = await request(ws, "ping")
        assert pong["op"] == "pong"
        assert not [t for t in tickers_of(before) if t["ts"] > since]
        fast_sim.set_faults(silent=False)
        resumed = tickers_of(await collect_until(ws, topic_is(f"tickers.{symbol}")))
        assert resumed[-1]["ts"] > since


async def test_listing_and_delivery_change_rest_and_pushes(fast_sim: SimulatorHandle) -> None:
    new = fast_sim.list_new("SOL", 3)
    assert len(new) == 3
    assert set(new) <= set(fast_sim.instruments()["SOL"])
    keep = fast_sim.instruments()["SOL"][0]
    async with open_stream(fast_sim.ws_url) as ws:
        answer, _ = await request(ws, "subscribe", topics([*new, keep]))
        assert answer["success"] is True
        await collect_until(ws, topic_is(f"tickers.{keep}"))
        delivered = fast_sim.deliver(symbols=[new[0]])
        assert delivered == [new[0]]
        assert new[0] not in fast_sim.instruments()["SOL"]
        since, _ = await server_ms(ws)
        later = tickers_of(await collect_until(
            ws, lambda d: d.get("topic") == f"tickers.{keep}" and d["ts"] > since + 250))
        assert not [t for t in later if t["topic"] == f"tickers.{new[0]}" and t["ts"] > since]
        assert [t for t in later if t["topic"] == f"tickers.{new[1]}"]
        again, _ = await request(ws, "subscribe", [f"tickers.{new[0]}"])
        assert again["success"] is False
    by_coin = fast_sim.deliver(coin="SOL", count=2)
    assert len(by_coin) == 2
    assert not set(by_coin) & set(fast_sim.instruments()["SOL"])
    assert new[0] not in fast_sim.truth("SOL")
